"""`trident serve` flags, for real: several models by `--model` (one as NAME=PATH), the default
model, client-batch and payload limits, Triton sub-request size, --auto-truncate, text logs."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from testkit.stack import Stack

LONG = "word " * 300  # 302 tokens: more than the tiny models' maximum of 128


@pytest.fixture(scope="module")
def flagged(tiny_models: dict[str, Path], embedding_repositories, tmp_path_factory) -> Iterator[Stack]:
    # A folder name unlike the served name proves NAME=PATH names the model; the content is the same
    # as the session's tiny-bert-cls, so the build is reused (builds are keyed by content and name).
    renamed = shutil.copytree(tiny_models["tiny-bert-cls"], tmp_path_factory.mktemp("ckpt") / "some-checkpoint")
    args = ["--model", f"tiny-bert-cls={renamed}", "--model", str(tiny_models["tiny-bert-mean"]),
            "--default-model", "tiny-bert-mean", "--max-client-batch-size", "8", "--triton-batch-size", "3",
            "--max-payload-bytes", "4096", "--auto-truncate", "--log-format", "text"]
    stack = Stack(args, tmp_path_factory.mktemp("flagged") / "serve.log").start()
    yield stack
    stack.stop()


def post(stack: Stack, path: str, body: object, **kwargs) -> httpx.Response:
    return httpx.post(f"{stack.base_url}{path}", json=body, timeout=30, **kwargs)


def embed(stack: Stack, inputs: list[str], model: str | None = None) -> np.ndarray:
    response = post(stack, "/embed", {"inputs": inputs, **({"model": model} if model else {})})
    assert response.status_code == 200, response.text
    return np.array(response.json(), dtype=np.float32)


def test_models_served_by_name(flagged):
    listed = httpx.get(f"{flagged.base_url}/v1/models").json()["data"]
    assert {m["id"] for m in listed} == {"tiny-bert-cls", "tiny-bert-mean"}


def test_same_builds_same_vectors_as_the_session_stack(flagged, stack):
    texts = ["same model, other server", "the quick brown fox"]
    for model in ("tiny-bert-cls", "tiny-bert-mean"):
        np.testing.assert_allclose(embed(flagged, texts, model), embed(stack, texts, model), atol=1e-6)


def test_default_model_answers_requests_without_one(flagged):
    texts = ["no model named"]
    np.testing.assert_array_equal(embed(flagged, texts), embed(flagged, texts, "tiny-bert-mean"))
    openai = post(flagged, "/v1/embeddings", {"input": texts}).json()
    assert openai["model"] == "tiny-bert-mean"
    unknown = post(flagged, "/v1/embeddings", {"input": texts, "model": "text-embedding-3-small"})
    assert unknown.status_code == 404 and "tiny-bert-cls, tiny-bert-mean" in unknown.json()["error"]["message"]


def test_sub_requests_of_three_come_back_in_order(flagged):
    texts = [f"item {i} of eight" for i in range(8)]  # 3 + 3 + 2 Triton sub-requests, run concurrently
    together = embed(flagged, texts, "tiny-bert-cls")
    alone = np.concatenate([embed(flagged, [t], "tiny-bert-cls") for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_client_batch_limit_is_413_naming_it(flagged):
    for path, body in (("/embed", {"inputs": ["x"] * 9}), ("/tokenize", {"inputs": ["x"] * 9})):
        response = post(flagged, path, body)
        assert response.status_code == 413 and "limit is 8" in response.json()["error"], response.text
    response = post(flagged, "/v1/embeddings", {"input": ["x"] * 9})
    assert response.status_code == 413 and "--max-client-batch-size" in response.json()["error"]["message"]


def test_payload_limit_is_413_naming_it(flagged):
    response = post(flagged, "/embed", {"inputs": "y" * 5000})
    assert response.status_code == 413 and "4096 bytes" in response.json()["error"]


def test_auto_truncate_is_the_tei_default(flagged):
    assert len(embed(flagged, [LONG])) == 1  # truncated: --auto-truncate
    refused = post(flagged, "/embed", {"inputs": LONG, "truncate": False})
    assert refused.status_code == 422 and "input 0 has 302 tokens" in refused.json()["error"]


def test_text_logs_carry_the_request_id(flagged):
    post(flagged, "/embed", {"inputs": "text log"}, headers={"x-request-id": "text-log-1"})
    pattern = re.compile(r"INFO trident\.access \[text-log-1\]: POST /embed 200")
    deadline = time.monotonic() + 5
    while not pattern.search(flagged.log_path.read_text(errors="replace")):
        assert time.monotonic() < deadline, flagged.log_tail()
        time.sleep(0.1)
