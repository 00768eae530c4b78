"""The gateway as its clients see it, on the shared real stack, where real engines and Triton's dynamic
batcher matter: the async OpenAI SDK's concurrent requests and Baseten's performance client give the
vectors one request gives, and Triton's own metrics ride along on /metrics. (Everything about the
gateway alone, status codes, headers, logs, /tokenize, OpenAPI: tests/unit/test_gateway_http.py.)"""

from __future__ import annotations

import asyncio
import base64

import httpx
import numpy as np
from openai import AsyncOpenAI
from prometheus_client.parser import text_string_to_metric_families

from tests.texts import BASE

MODEL = "all-MiniLM-L6-v2"
SAME_VECTOR = 1e-5  # stated tolerance: one text's vector, alone or in any batch (fp32 both)


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


# --- OpenAI SDK ---------------------------------------------------------------------------------


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


# --- Metrics -----------------------------------------------------------------------------------


def scrape(stack) -> dict[tuple[str, frozenset], float]:
    response = httpx.get(f"{stack.base_url}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_triton_metrics_ride_along(stack):
    """GET /metrics appends the real Triton's own Prometheus text (the gateway's counters: tests/unit)."""
    assert post(stack, "/embed", {"inputs": "count me"}).status_code == 200
    samples = scrape(stack)
    assert value(samples, "trident_triton_metrics_up") == 1
    # (the parser names counter samples `<family>_total`; Triton's text says nv_inference_request_success)
    assert value(samples, "nv_inference_request_success_total", model=MODEL, version="1") >= 1
