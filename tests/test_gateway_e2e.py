"""The gateway as its clients see it, on the shared real stack: the OpenAI SDK (sync and async),
Baseten's performance client, TEI's /tokenize and /decode, choosing a model, timing headers,
request ids, Prometheus metrics, JSON logs and the OpenAPI document."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from openai import AsyncOpenAI, OpenAI, UnprocessableEntityError
from prometheus_client.parser import text_string_to_metric_families
from transformers import AutoTokenizer

from tests.texts import BASE

MODEL = "all-MiniLM-L6-v2"
SAME_VECTOR = 1e-5  # stated tolerance: one text's vector, alone or in any batch (fp32 both)
TIMING = ("x-total-time", "x-compute-time", "x-queue-time", "x-inference-time", "x-compute-tokens",
          "x-compute-characters")


def post(stack, path: str, body: object, **kwargs) -> httpx.Response:
    return httpx.post(f"{stack.base_url}{path}", json=body, timeout=60, **kwargs)


def embed(stack, texts: list[str], model: str = MODEL, **extra) -> np.ndarray:
    response = post(stack, "/v1/embeddings", {"input": texts, "model": model, "encoding_format": "float", **extra})
    assert response.status_code == 200, response.text
    return np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)


def vectors(response) -> np.ndarray:
    return np.array([item.embedding for item in response.data], dtype=np.float32)


def unit_prefix(full: np.ndarray, dims: int) -> np.ndarray:
    return full[:, :dims] / np.linalg.norm(full[:, :dims], axis=1, keepdims=True)


@pytest.fixture(scope="module")
def tokenizer(minilm_dir: Path):
    return AutoTokenizer.from_pretrained(str(minilm_dir))


# --- OpenAI SDK ---------------------------------------------------------------------------------


def test_openai_sdk_sync_float_base64_and_dimensions(stack):
    client = OpenAI(base_url=f"{stack.base_url}/v1", api_key="unused", max_retries=0)
    texts = BASE[:6]
    floats = vectors(client.embeddings.create(input=texts, model=MODEL, encoding_format="float"))
    assert floats.shape == (6, 384)
    # Without encoding_format the SDK asks for base64 itself and decodes it: same numbers, bit for bit.
    np.testing.assert_array_equal(vectors(client.embeddings.create(input=texts, model=MODEL)), floats)
    explicit = client.embeddings.create(input=texts, model=MODEL, encoding_format="base64")
    decoded = np.stack([np.frombuffer(base64.b64decode(item.embedding), dtype="<f4") for item in explicit.data])
    np.testing.assert_array_equal(decoded, floats)

    short = vectors(client.embeddings.create(input=texts, model=MODEL, dimensions=128))
    np.testing.assert_allclose(short, unit_prefix(floats, 128), atol=1e-6)
    short_b64 = client.embeddings.create(input=texts, model=MODEL, dimensions=128, encoding_format="base64")
    decoded = np.stack([np.frombuffer(base64.b64decode(item.embedding), dtype="<f4") for item in short_b64.data])
    np.testing.assert_array_equal(decoded, short)

    with pytest.raises(UnprocessableEntityError, match="between 1 and 384"):
        client.embeddings.create(input=texts, model=MODEL, dimensions=385)


def test_openai_sdk_async_concurrent(stack):
    texts = BASE[:12]

    async def run():
        async with AsyncOpenAI(base_url=f"{stack.base_url}/v1", api_key="unused", max_retries=0) as client:
            singles = await asyncio.gather(*(client.embeddings.create(input=t, model=MODEL) for t in texts))
            batch = await client.embeddings.create(input=texts, model=MODEL, encoding_format="float")
            short = await client.embeddings.create(input=texts, model=MODEL, dimensions=64,
                                                   encoding_format="base64")
            return singles, batch, short

    singles, batch, short = asyncio.run(run())
    one_by_one = np.concatenate([vectors(r) for r in singles])
    np.testing.assert_allclose(one_by_one, vectors(batch), atol=SAME_VECTOR)
    decoded = np.stack([np.frombuffer(base64.b64decode(item.embedding), dtype="<f4") for item in short.data])
    np.testing.assert_allclose(decoded, unit_prefix(vectors(batch), 64), atol=1e-6)
    assert batch.usage.prompt_tokens == sum(r.usage.prompt_tokens for r in singles)


# --- Baseten performance client ----------------------------------------------------------------


def test_performance_client_1000_inputs_concurrently(stack):
    """A tiny model keeps 3,000 embeddings cheap on 2 CPU cores; the point is splitting and order."""
    from baseten_performance_client import PerformanceClient, RequestProcessingPreference

    model = "tiny-bert-mean"
    texts = [f"{BASE[i % len(BASE)]} (item {i})" for i in range(1000)]
    client = PerformanceClient(base_url=stack.base_url, api_key="unused")
    preference = RequestProcessingPreference(batch_size=16, max_concurrent_requests=8, timeout_s=120)
    response = client.embed(input=texts, model=model, preference=preference)

    served = response.numpy()
    assert served.shape == (1000, 32)
    assert [item.index for item in response.data] == list(range(1000))
    assert len(response.response_headers) == 63  # ceil(1000 / 16) HTTP requests, 8 at a time
    assert len({h["x-request-id"] for h in response.response_headers}) == 63
    # The same 1000 texts in one request (the gateway splits it into Triton-sized sub-requests) ...
    np.testing.assert_allclose(served, embed(stack, texts, model), atol=SAME_VECTOR)
    # ... and a sample of them alone.
    for i in range(0, 1000, 111):
        np.testing.assert_allclose(served[i], embed(stack, [texts[i]], model)[0], atol=SAME_VECTOR)


# --- /tokenize and /decode ---------------------------------------------------------------------


def test_tokenize_matches_the_models_tokenizer(stack, tokenizer):
    texts = ["Hello, world!", "naïve café résumé 🍕", "A man is playing a guitar."]
    response = post(stack, "/tokenize", {"inputs": texts})
    assert response.status_code == 200, response.text
    for text, tokens in zip(texts, response.json(), strict=True):
        expected = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
        assert [t["id"] for t in tokens] == expected["input_ids"]
        for token, (start, stop), special in zip(tokens, expected["offset_mapping"],
                                                 expected["special_tokens_mask"], strict=True):
            assert token["special"] == bool(special)
            if special:
                assert token["start"] is None and token["stop"] is None
                assert token["text"] == tokenizer.convert_ids_to_tokens(token["id"])
            else:
                assert (token["start"], token["stop"]) == (start, stop)
                assert token["text"] == text[start:stop]


def test_tokenize_single_input_without_special_tokens(stack, tokenizer):
    response = post(stack, "/tokenize", {"inputs": "Hello, world!", "add_special_tokens": False})
    assert response.status_code == 200
    (tokens,) = response.json()
    assert [t["id"] for t in tokens] == tokenizer("Hello, world!", add_special_tokens=False)["input_ids"]
    assert not any(t["special"] for t in tokens)


def test_tokenize_uses_the_named_models_tokenizer(stack, tiny_models):
    tiny = AutoTokenizer.from_pretrained(str(tiny_models["tiny-bert-cls"]))
    response = post(stack, "/tokenize", {"inputs": "the quick brown fox", "model": "tiny-bert-cls"})
    assert [t["id"] for t in response.json()[0]] == tiny("the quick brown fox")["input_ids"]


def test_decode_round_trips(stack, tokenizer):
    ids = tokenizer("Hello, world! A man is playing a guitar.")["input_ids"]
    assert post(stack, "/decode", {"ids": ids}).json() == [tokenizer.decode(ids, skip_special_tokens=True)]
    both = post(stack, "/decode", {"ids": [ids, ids[1:3]], "skip_special_tokens": False}).json()
    assert both == [tokenizer.decode(ids, skip_special_tokens=False), tokenizer.decode(ids[1:3])]


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/tokenize", {"inputs": []}, 400, "must not be empty"),
        ("/tokenize", {"inputs": 5}, 422, "inputs"),
        ("/tokenize", {"inputs": ["x"] * 2049}, 413, "2048"),
        ("/tokenize", {"inputs": "x", "prompt_name": "query"}, 422, "unknown prompt_name"),
        ("/tokenize", {"inputs": "x", "model": "nope"}, 404, "not served"),
        ("/decode", {"ids": []}, 400, "must not be empty"),
        ("/decode", {"ids": [101, 30522]}, 422, "outside the vocabulary"),
        ("/decode", {"ids": [[101], [-1]]}, 422, "item 1"),
        ("/decode", {"ids": "101"}, 422, "ids"),
        ("/decode", {"ids": [[1]] * 2049}, 413, "2048"),
    ],
)
def test_tokenize_and_decode_errors(stack, path, body, status, fragment):
    response = post(stack, path, body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"] and response.json()["error_type"]


# --- Several models in one server --------------------------------------------------------------


def test_model_field_picks_the_model(stack, embedding_repositories):
    assert len(post(stack, "/embed", {"inputs": "which model?"}).json()[0]) == 384  # --default-model
    assert len(post(stack, "/embed", {"inputs": "which model?", "model": "tiny-bert-cls"}).json()[0]) == 32
    openai = post(stack, "/v1/embeddings", {"input": "which model?", "model": "tiny-bert-mean"}).json()
    assert openai["model"] == "tiny-bert-mean" and len(openai["data"][0]["embedding"]) == 32
    info = httpx.get(f"{stack.base_url}/info", params={"model": "tiny-bert-cls"}).json()
    assert info["model_id"] == "tiny-bert-cls" and info["dimensions"] == 32
    assert set(info["models"]) == set(embedding_repositories)
    unknown = post(stack, "/embed", {"inputs": "x", "model": "nope"})
    assert unknown.status_code == 404 and "tiny-bert-cls" in unknown.json()["error"]


# --- Timing headers and request ids ------------------------------------------------------------


def test_timing_headers_on_text_inputs(stack):
    texts = ["timing headers, please", "and one more"]
    response = post(stack, "/v1/embeddings", {"input": texts, "model": MODEL})
    headers = response.headers
    assert all(headers[name].isdigit() for name in TIMING), dict(headers)
    assert headers["x-compute-time"] == headers["x-total-time"]  # as TEI: both are the whole request
    total = int(headers["x-total-time"])
    assert int(headers["x-queue-time"]) <= total and int(headers["x-inference-time"]) <= total
    assert int(headers["x-compute-tokens"]) == response.json()["usage"]["prompt_tokens"]
    assert int(headers["x-compute-characters"]) == sum(len(t) for t in texts)
    assert "x-tokenization-time" not in headers  # tokenized inside Triton: part of x-inference-time


def test_timing_headers_on_token_ids(stack, tokenizer):
    ids = tokenizer("token ids need no tokenizer")["input_ids"]
    headers = post(stack, "/embed", {"inputs": [ids]}).headers
    assert headers["x-tokenization-time"] == "0"
    assert int(headers["x-compute-tokens"]) == len(ids)


def test_no_timing_headers_on_errors(stack):
    response = post(stack, "/embed", {"inputs": []})
    assert response.status_code == 400
    assert "x-inference-time" not in response.headers and response.headers["x-request-id"]


def test_request_id_echoed_or_made(stack):
    echoed = post(stack, "/embed", {"inputs": "id?"}, headers={"x-request-id": "trace-42.a"})
    assert echoed.headers["x-request-id"] == "trace-42.a"
    made = post(stack, "/embed", {"inputs": "id?"}).headers["x-request-id"]
    assert len(made) == 32 and int(made, 16) >= 0
    replaced = post(stack, "/embed", {"inputs": "id?"}, headers={"x-request-id": "no spaces <allowed>"})
    assert replaced.headers["x-request-id"] != "no spaces <allowed>"
    assert len(replaced.headers["x-request-id"]) == 32


# --- Metrics -----------------------------------------------------------------------------------


def scrape(stack) -> dict[tuple[str, frozenset], float]:
    response = httpx.get(f"{stack.base_url}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_what_happened(stack):
    before = scrape(stack)
    ok = post(stack, "/embed", {"inputs": ["metrics one", "metrics two", "metrics three"]})
    assert ok.status_code == 200
    assert post(stack, "/embed", {"inputs": []}).status_code == 400
    after = scrape(stack)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("trident_requests_total", route="/embed", method="POST", status="200") == 1
    assert delta("trident_requests_total", route="/embed", method="POST", status="400") == 1
    assert delta("trident_request_duration_seconds_count", route="/embed") == 2
    assert delta("trident_request_inputs_count", route="/embed") == 1
    assert delta("trident_request_inputs_sum", route="/embed") == 3
    assert delta("trident_request_tokens_sum", route="/embed") == int(ok.headers["x-compute-tokens"])
    assert delta("trident_request_queue_seconds_count", route="/embed") == 1
    assert delta("trident_request_inference_seconds_count", route="/embed") == 1
    assert delta("trident_triton_call_duration_seconds_count", model=MODEL, outcome="ok") >= 1
    assert value(after, "trident_requests_in_flight", route="/metrics") == 1  # the scrape itself
    # Triton's own metrics ride along.
    assert value(after, "trident_triton_metrics_up") == 1
    # (the parser names counter samples `<family>_total`; Triton's text says nv_inference_request_success)
    assert value(after, "nv_inference_request_success_total", model=MODEL, version="1") >= 1


# --- Logs --------------------------------------------------------------------------------------


def log_entries(stack, request_id: str, timeout: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = stack.log_path.read_text(errors="replace").splitlines()
        entries = [json.loads(line) for line in lines if request_id in line and line.startswith("{")]
        if entries:
            return entries
        time.sleep(0.1)
    return []


def test_json_access_log_with_request_id(stack):
    request_id = f"log-{uuid.uuid4().hex}"
    secret_text = f"private text {uuid.uuid4().hex}"
    assert post(stack, "/embed", {"inputs": [secret_text, "two"]}, headers={"x-request-id": request_id}).is_success
    (entry,) = log_entries(stack, request_id)
    assert entry["logger"] == "trident.access" and entry["level"] == "info"
    assert entry["request_id"] == request_id and entry["path"] == "/embed" and entry["status"] == 200
    assert entry["model"] == MODEL and entry["inputs"] == 2 and entry["tokens"] > 0 and entry["duration_ms"] > 0
    assert secret_text not in stack.log_path.read_text(errors="replace")  # bodies are never logged


def test_errors_are_logged_with_their_message(stack):
    request_id = f"err-{uuid.uuid4().hex}"
    post(stack, "/embed", {"inputs": "x", "dimensions": 999}, headers={"x-request-id": request_id})
    (entry,) = log_entries(stack, request_id)
    assert entry["status"] == 422 and "between 1 and 384" in entry["error"]


# --- OpenAPI -----------------------------------------------------------------------------------


def test_openapi_documents_routes_and_real_error_bodies(stack):
    doc = httpx.get(f"{stack.base_url}/openapi.json").json()
    operations = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert {("/v1/embeddings", "post"), ("/embed", "post"), ("/tokenize", "post"), ("/decode", "post"),
            ("/health", "get"), ("/v1/models", "get"), ("/info", "get"), ("/metrics", "get")} <= operations
    assert "HTTPValidationError" not in doc.get("components", {}).get("schemas", {})
    for path, item in doc["paths"].items():
        for operation in item.values():
            for status, answer in operation["responses"].items():
                if int(status) < 400:
                    continue
                schema = answer["content"]["application/json"]["schema"]
                expected = {"error"} if path.startswith("/v1/") else {"error", "error_type"}
                assert set(schema["required"]) == expected, (path, status)
    embed_errors = set(doc["paths"]["/embed"]["post"]["responses"])
    assert {"400", "401", "413", "415", "422", "424", "429", "503"} <= embed_errors
    assert set(doc["paths"]["/health"]["get"]["responses"]) == {"200", "503"}
