"""Every failure status produced for real: a gateway pointed (`--triton-url`) at a tritonserver this
module starts itself, so the tests can freeze it (SIGSTOP), stop it and start it again.

The gateway runs with an API key (from the environment), one request in flight at most and a
4-second deadline on every Triton call. The served model is a tiny BERT whose built repository is
copied with one lie: its manifest claims a vocabulary of 100,000 tokens while the engine's
embedding table has ~500 rows. Text requests are unaffected (the tokenizer only makes real ids);
token ids past the real table pass the gateway's check and fail inside the ONNX engine, which is
a real engine failure, the 424 path.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

from cli.triton_server import TritonServer
from testkit.stack import Stack, free_port

KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
MODEL = "tiny-bert-cls"
REFUSED = ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"})
DEADLINE_S = 4
CLAIMED_VOCAB = 100_000


def copy_with_inflated_vocabulary(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    for config in target.glob("*/config.pbtxt"):  # the manifest travels in every config (escaped JSON)
        config.write_text(re.sub(r'(\\(?:042|")vocab_size\\(?:042|"):)\d+', rf"\g<1>{CLAIMED_VOCAB}",
                                 config.read_text()))
    manifest = target / MODEL / "manifest.json"
    manifest.write_text(re.sub(r'("vocab_size": )\d+', rf"\g<1>{CLAIMED_VOCAB}", manifest.read_text()))
    return target


@pytest.fixture(scope="module")
def repository(embedding_repositories, tmp_path_factory) -> Path:
    return copy_with_inflated_vocabulary(embedding_repositories[MODEL], tmp_path_factory.mktemp("faulty") / "repo")


@pytest.fixture(scope="module")
def triton(repository, tmp_path_factory) -> Iterator[TritonServer]:
    server = TritonServer([repository], tmp_path_factory.mktemp("triton"), free_port(), free_port(), free_port())
    server.start()
    server.wait_ready()
    yield server
    resume(server)
    server.stop()


@pytest.fixture(scope="module")
def gateway(triton, repository, tmp_path_factory) -> Iterator[Stack]:
    args = ["--triton-url", triton.url, "--repository", str(repository), "--triton-metrics-url", triton.metrics_url,
            "--max-concurrent-requests", "1", "--request-timeout", str(DEADLINE_S)]
    stack = Stack(args, tmp_path_factory.mktemp("gateway") / "serve.log", env={"TRIDENT_API_KEY": KEY}).start()
    yield stack
    stack.stop()


def freeze(server: TritonServer) -> None:
    os.kill(server.process.pid, signal.SIGSTOP)


def resume(server: TritonServer) -> None:
    if server.alive():
        os.kill(server.process.pid, signal.SIGCONT)


@contextmanager
def frozen(server: TritonServer) -> Iterator[None]:
    freeze(server)
    try:
        yield
    finally:
        resume(server)


def post(stack: Stack, path: str, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{stack.base_url}{path}", json=body, headers=AUTH if headers is None else headers, timeout=30)


def embedding(stack: Stack, text: str) -> np.ndarray:
    response = post(stack, "/v1/embeddings", {"input": text})
    assert response.status_code == 200, response.text
    return np.array(response.json()["data"][0]["embedding"])


def timed(call) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def in_flight(stack: Stack, route: str) -> float:
    text = httpx.get(f"{stack.base_url}/metrics", headers=AUTH, timeout=10).text
    match = re.search(rf'^trident_requests_in_flight{{route="{re.escape(route)}"}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


# --- 401: the API key --------------------------------------------------------------------------


def test_every_route_but_health_needs_the_key(gateway):
    doc = httpx.get(f"{gateway.base_url}/openapi.json", headers=AUTH).json()
    operations = [(path, method) for path, item in doc["paths"].items() for method in item]
    assert len(operations) >= 8
    for path, method in operations:
        for headers in REFUSED:
            response = httpx.request(method, f"{gateway.base_url}{path}", headers=headers, json={}, timeout=10)
            if path == "/health":
                assert response.status_code == 200
                continue
            assert response.status_code == 401, (path, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            body = response.json()
            assert (body["error"]["type"] if path.startswith("/v1/") else body["error_type"]) == "authentication_error"
    assert httpx.get(f"{gateway.base_url}/openapi.json").status_code == 401


def test_bearer_and_api_key_schemes_are_accepted(gateway):
    for scheme in ("Bearer", "bearer", "Api-Key"):
        response = post(gateway, "/embed", {"inputs": "let me in"}, headers={"Authorization": f"{scheme} {KEY}"})
        assert response.status_code == 200, (scheme, response.text)


def test_the_key_is_never_logged(gateway):
    post(gateway, "/embed", {"inputs": "log me, not my key"})
    post(gateway, "/embed", {"inputs": "x"}, headers={"Authorization": "Bearer wrong-key-in-log?"})
    log = gateway.log_path.read_text(errors="replace")
    assert '"status":401' in log and '"status":200' in log
    assert KEY not in log and "wrong-key-in-log?" not in log


# --- /tokenize with --triton-url + --repository; 501 without ----------------------------------


def test_tokenize_reads_the_given_repository(gateway):
    response = post(gateway, "/tokenize", {"inputs": "the quick brown fox"})
    assert response.status_code == 200 and [t["text"] for t in response.json()[0][1:-1]] == ["the", "quick",
                                                                                               "brown", "fox"]


def test_without_repository_tokenize_is_501_and_no_triton_metrics(triton, tmp_path):
    bare = Stack(["--triton-url", triton.url], tmp_path / "serve.log").start()
    try:
        response = httpx.post(f"{bare.base_url}/tokenize", json={"inputs": "x"}, timeout=10)
        assert response.status_code == 501 and "--repository" in response.json()["error"]
        metrics = httpx.get(f"{bare.base_url}/metrics", timeout=10).text
        assert "trident_triton_metrics_up 0.0" in metrics and "nv_inference" not in metrics
    finally:
        bare.stop()


# --- 424: the engine fails ---------------------------------------------------------------------


def test_engine_failure_is_424_and_the_next_request_works(gateway):
    expected = embedding(gateway, "before the failure")
    past_the_table = [[2, 5000, 3]]  # < the claimed 100,000, > the engine's real vocabulary
    openai = post(gateway, "/v1/embeddings", {"input": past_the_table})
    assert openai.status_code == 424, openai.text
    assert openai.json()["error"]["type"] == "backend_error" and "Gather" in openai.json()["error"]["message"]
    tei = post(gateway, "/embed", {"inputs": past_the_table})
    assert tei.status_code == 424 and tei.json()["error_type"] == "backend_error"
    np.testing.assert_array_equal(embedding(gateway, "before the failure"), expected)


# --- 429: too many requests in flight ----------------------------------------------------------


def test_over_the_concurrency_limit_is_429_with_retry_after(gateway, triton):
    expected = embedding(gateway, "held in flight")
    held: dict[str, httpx.Response] = {}
    with frozen(triton):  # the first request cannot finish while Triton is frozen
        worker = threading.Thread(target=lambda: held.update(r=post(gateway, "/v1/embeddings",
                                                                       {"input": "held in flight"})))
        worker.start()
        deadline = time.monotonic() + 5
        while in_flight(gateway, "/v1/embeddings") < 1:
            assert time.monotonic() < deadline, "the held request never got in flight"
            time.sleep(0.05)
        rejected = [post(gateway, "/v1/embeddings", {"input": "one too many"}),
                    post(gateway, "/embed", {"inputs": "x"})]
    worker.join(30)
    for response in rejected:
        assert response.status_code == 429, response.text
        assert response.headers["retry-after"] == "1"
        assert "limit 1" in response.text
    assert held["r"].status_code == 200  # resumed well before its 4 s deadline
    np.testing.assert_allclose(held["r"].json()["data"][0]["embedding"], expected, atol=1e-6)
    assert httpx.get(f"{gateway.base_url}/health").status_code == 200  # exempt from the limit


# --- 503: Triton frozen, stopped, restarted ----------------------------------------------------


def test_frozen_triton_is_503_at_the_deadline_never_a_hang(gateway, triton):
    with frozen(triton):
        response, seconds = timed(lambda: post(gateway, "/v1/embeddings", {"input": "anyone there?"}))
        health, health_seconds = timed(lambda: httpx.get(f"{gateway.base_url}/health", timeout=30))
    assert response.status_code == 503 and "Deadline" in response.json()["error"]["message"]
    assert DEADLINE_S - 0.5 < seconds < DEADLINE_S + 3
    assert health.status_code == 503 and health_seconds < 5
    embedding(gateway, "thawed")


def test_stopped_triton_is_503_at_once_and_the_gateway_recovers(gateway, triton):
    expected = embedding(gateway, "before the outage")
    triton.stop()
    try:
        health, seconds = timed(lambda: httpx.get(f"{gateway.base_url}/health"))
        assert health.status_code == 503 and seconds < 3
        assert health.json() == {"error": "the inference server is not ready", "error_type": "unavailable"}
        openai, seconds = timed(lambda: post(gateway, "/v1/embeddings", {"input": "down?"}))
        assert openai.status_code == 503 and seconds < 3
        assert openai.json()["error"]["type"] == "unavailable"
        tei = post(gateway, "/embed", {"inputs": "down?"})
        assert tei.status_code == 503 and tei.json()["error_type"] == "unavailable"
    finally:
        triton.start()
        triton.wait_ready()
    deadline = time.monotonic() + 15
    while httpx.get(f"{gateway.base_url}/health").status_code != 200:  # same gateway process, no restart
        assert time.monotonic() < deadline, "the gateway did not recover"
        time.sleep(0.1)
    np.testing.assert_allclose(embedding(gateway, "before the outage"), expected, atol=1e-6)
