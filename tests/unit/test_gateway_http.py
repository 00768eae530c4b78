"""The gateway as its clients see it, over HTTP against the fake Triton: the OpenAI SDK's encodings and
dimensions, TEI's /tokenize and /decode, choosing a model, timing headers, request ids, Prometheus
metrics, JSON access logs and the OpenAPI document. (Against real engines: tests/test_gateway_e2e.py.)"""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from openai import OpenAI, UnprocessableEntityError
from prometheus_client.parser import text_string_to_metric_families
from transformers import AutoTokenizer

from tests.http_files import ArchiveServer
from tests.texts import BASE

MODEL = "tiny-bert-mean"  # the default model, dim 32
SERVED = {"tiny-bert-mean", "tiny-bert-cls", "tiny-reranker", "tiny-classifier", "tiny-ner", "tiny-splade",
          "tiny-colbert", "tiny-bge-m3"}  # conftest
TIMING = ("x-total-time", "x-compute-time", "x-queue-time", "x-inference-time", "x-compute-tokens",
          "x-compute-characters")


def vectors(response) -> np.ndarray:
    return np.array([item.embedding for item in response.data], dtype=np.float32)


def unit_prefix(full: np.ndarray, dims: int) -> np.ndarray:
    return full[:, :dims] / np.linalg.norm(full[:, :dims], axis=1, keepdims=True)


@pytest.fixture(scope="module")
def tokenizer(unit_checkpoints: dict[str, Path]):
    return AutoTokenizer.from_pretrained(str(unit_checkpoints[MODEL]))


# --- OpenAI SDK ---------------------------------------------------------------------------------


def test_openai_sdk_float_base64_and_dimensions(gateway):
    client = OpenAI(base_url=f"{gateway.base_url}/v1", api_key="unused", max_retries=0)
    texts = BASE[:6]
    floats = vectors(client.embeddings.create(input=texts, model=MODEL, encoding_format="float"))
    assert floats.shape == (6, 32)
    # Without encoding_format the SDK asks for base64 itself and decodes it: same numbers, bit for bit.
    np.testing.assert_array_equal(vectors(client.embeddings.create(input=texts, model=MODEL)), floats)
    explicit = client.embeddings.create(input=texts, model=MODEL, encoding_format="base64")
    decoded = np.stack([np.frombuffer(base64.b64decode(item.embedding), dtype="<f4") for item in explicit.data])
    np.testing.assert_array_equal(decoded, floats)

    short = vectors(client.embeddings.create(input=texts, model=MODEL, dimensions=16))
    np.testing.assert_allclose(short, unit_prefix(floats, 16), atol=1e-6)
    short_b64 = client.embeddings.create(input=texts, model=MODEL, dimensions=16, encoding_format="base64")
    decoded = np.stack([np.frombuffer(base64.b64decode(item.embedding), dtype="<f4") for item in short_b64.data])
    np.testing.assert_array_equal(decoded, short)

    with pytest.raises(UnprocessableEntityError, match="between 1 and 32"):
        client.embeddings.create(input=texts, model=MODEL, dimensions=33)


# --- /tokenize and /decode ---------------------------------------------------------------------


def test_tokenize_matches_the_models_tokenizer(gateway, tokenizer):
    texts = ["Hello, world!", "naïve café résumé 🍕", "The quick brown fox jumps over the lazy dog."]
    response = gateway.post("/tokenize", {"inputs": texts})
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


def test_tokenize_single_input_without_special_tokens(gateway, tokenizer):
    response = gateway.post("/tokenize", {"inputs": "Hello, world!", "add_special_tokens": False})
    assert response.status_code == 200
    (tokens,) = response.json()
    assert [t["id"] for t in tokens] == tokenizer("Hello, world!", add_special_tokens=False)["input_ids"]
    assert not any(t["special"] for t in tokens)


def test_tokenize_uses_the_named_models_tokenizer(gateway, unit_checkpoints):
    reference = AutoTokenizer.from_pretrained(str(unit_checkpoints["tiny-ner"]))
    response = gateway.post("/tokenize", {"inputs": "the quick brown fox", "model": "tiny-ner"})
    assert response.status_code == 200, response.text
    assert [t["id"] for t in response.json()[0]] == reference("the quick brown fox")["input_ids"]


def test_decode_round_trips(gateway, tokenizer):
    ids = tokenizer("Hello, world! The quick brown fox.")["input_ids"]
    assert gateway.post("/decode", {"ids": ids}).json() == [tokenizer.decode(ids, skip_special_tokens=True)]
    both = gateway.post("/decode", {"ids": [ids, ids[1:3]], "skip_special_tokens": False}).json()
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
        ("/decode", {"ids": [101, 503]}, 422, "outside the vocabulary"),
        ("/decode", {"ids": [[101], [-1]]}, 422, "item 1"),
        ("/decode", {"ids": "101"}, 422, "ids"),
        ("/decode", {"ids": [[1]] * 2049}, 413, "2048"),
    ],
)
def test_tokenize_and_decode_errors(gateway, path, body, status, fragment):
    response = gateway.post(path, body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"] and response.json()["error_type"]


def test_tokenize_reads_the_given_repository_and_without_one_is_501(gateway, make_gateway):
    response = gateway.post("/tokenize", {"inputs": "the quick brown fox"})
    assert response.status_code == 200
    assert [t["text"] for t in response.json()[0][1:-1]] == ["the", "quick", "brown", "fox"]
    bare = make_gateway(repositories=[])  # `trident serve --triton-url URL` without --repository
    response = bare.post("/tokenize", {"inputs": "x"})
    assert response.status_code == 501 and "--repository" in response.json()["error"]
    assert bare.post("/embed", {"inputs": "inference needs no tokenizer here"}).status_code == 200


# --- Several models in one server --------------------------------------------------------------


def test_model_field_picks_the_model(gateway):
    default = gateway.post("/v1/embeddings", {"input": "which model?"}).json()  # --default-model
    cls = gateway.post("/v1/embeddings", {"input": "which model?", "model": "tiny-bert-cls"}).json()
    assert default["model"] == MODEL and cls["model"] == "tiny-bert-cls"
    assert default["data"][0]["embedding"] != cls["data"][0]["embedding"]
    assert gateway.post("/embed", {"inputs": "which model?"}).json()[0] == default["data"][0]["embedding"]
    info = gateway.get("/info", params={"model": "tiny-bert-cls"}).json()
    assert info["model_id"] == "tiny-bert-cls" and info["dimensions"] == 32
    assert set(info["models"]) == SERVED
    unknown = gateway.post("/embed", {"inputs": "x", "model": "nope"})
    assert unknown.status_code == 404 and "tiny-bert-cls" in unknown.json()["error"]


# --- Timing headers and request ids ------------------------------------------------------------


def test_timing_headers_on_text_inputs(gateway):
    texts = ["timing headers, please", "and one more"]
    response = gateway.post("/v1/embeddings", {"input": texts, "model": MODEL})
    headers = response.headers
    assert all(headers[name].isdigit() for name in TIMING), dict(headers)
    assert headers["x-compute-time"] == headers["x-total-time"]  # as TEI: both are the whole request
    total = int(headers["x-total-time"])
    assert int(headers["x-queue-time"]) <= total and int(headers["x-inference-time"]) <= total
    assert int(headers["x-compute-tokens"]) == response.json()["usage"]["prompt_tokens"]
    assert int(headers["x-compute-characters"]) == sum(len(t) for t in texts)
    # Measured by the tokenizer step inside Triton, which reports it: part of x-inference-time.
    assert int(headers["x-tokenization-time"]) <= int(headers["x-inference-time"])


def test_timing_headers_on_token_ids(gateway, tokenizer):
    ids = tokenizer("token ids need no tokenizer")["input_ids"]
    headers = gateway.post("/embed", {"inputs": [ids]}).headers
    assert headers["x-tokenization-time"] == "0"  # the ids step only cuts them: well under a millisecond
    assert int(headers["x-compute-tokens"]) == len(ids)


def test_no_timing_headers_on_errors(gateway):
    response = gateway.post("/embed", {"inputs": []})
    assert response.status_code == 400
    assert "x-inference-time" not in response.headers and response.headers["x-request-id"]


def test_request_id_echoed_or_made(gateway):
    echoed = gateway.post("/embed", {"inputs": "id?"}, headers={"x-request-id": "trace-42.a"})
    assert echoed.headers["x-request-id"] == "trace-42.a"
    made = gateway.post("/embed", {"inputs": "id?"}).headers["x-request-id"]
    assert len(made) == 32 and int(made, 16) >= 0
    replaced = gateway.post("/embed", {"inputs": "id?"}, headers={"x-request-id": "no spaces <allowed>"})
    assert replaced.headers["x-request-id"] != "no spaces <allowed>"
    assert len(replaced.headers["x-request-id"]) == 32


# --- Metrics -----------------------------------------------------------------------------------


def scrape(gateway) -> dict[tuple[str, frozenset], float]:
    response = gateway.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_what_happened(gateway):
    before = scrape(gateway)
    ok = gateway.post("/embed", {"inputs": ["metrics one", "metrics two", "metrics three"]})
    assert ok.status_code == 200
    assert gateway.post("/embed", {"inputs": []}).status_code == 400
    after = scrape(gateway)

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
    assert value(after, "trident_triton_metrics_up") == 0  # no --triton-metrics-url
    assert "nv_inference" not in gateway.get("/metrics").text


def test_triton_metrics_ride_along(make_gateway, tmp_path):
    """--triton-metrics-url: Triton's Prometheus text appended to the gateway's (real Triton's: the e2e test)."""
    (tmp_path / "metrics").write_text('# TYPE nv_inference_request_success counter\n'
                                      'nv_inference_request_success{model="tiny-bert-mean",version="1"} 7\n')
    with ArchiveServer(tmp_path) as triton_metrics:
        gateway = make_gateway(triton_metrics_url=triton_metrics.url("metrics"))
        samples = scrape(gateway)
    assert value(samples, "trident_triton_metrics_up") == 1
    assert value(samples, "nv_inference_request_success_total", model=MODEL, version="1") == 7
    assert value(scrape(gateway), "trident_triton_metrics_up") == 0  # its endpoint is gone


# --- Logs --------------------------------------------------------------------------------------


def log_entries(log, request_id: str, timeout: float = 5.0) -> list[dict]:
    """The request's log lines; the access line is written just after the answer is sent, so wait for it."""
    deadline = time.monotonic() + timeout
    while True:
        entries = [json.loads(line) for line in log.getvalue().splitlines() if request_id in line]
        if entries or time.monotonic() > deadline:
            return entries
        time.sleep(0.01)


def test_json_access_log_with_request_id(gateway, gateway_log):
    request_id = f"log-{uuid.uuid4().hex}"
    secret_text = f"private text {uuid.uuid4().hex}"
    assert gateway.post("/embed", {"inputs": [secret_text, "two"]}, headers={"x-request-id": request_id}).is_success
    (entry,) = log_entries(gateway_log, request_id)
    assert entry["logger"] == "trident.access" and entry["level"] == "info"
    assert entry["request_id"] == request_id and entry["path"] == "/embed" and entry["status"] == 200
    assert entry["model"] == MODEL and entry["inputs"] == 2 and entry["tokens"] > 0 and entry["duration_ms"] > 0
    assert secret_text not in gateway_log.getvalue()  # bodies are never logged


def test_errors_are_logged_with_their_message(gateway, gateway_log):
    request_id = f"err-{uuid.uuid4().hex}"
    gateway.post("/embed", {"inputs": "x", "dimensions": 999}, headers={"x-request-id": request_id})
    (entry,) = log_entries(gateway_log, request_id)
    assert entry["status"] == 422 and "between 1 and 32" in entry["error"]


# --- OpenAPI -----------------------------------------------------------------------------------


def test_openapi_documents_routes_and_real_error_bodies(gateway):
    doc = gateway.get("/openapi.json").json()
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
