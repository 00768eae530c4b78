"""Every failure status the backend can cause, against the fake Triton: 424 when a model fails, 429 over
the concurrency limit, 503 when Triton is frozen (at the deadline, never a hang), stopped, not ready,
unreachable or restarting a dead stub, and recovery in the same gateway process afterwards.

(The real thing, a stub killed or a tritonserver SIGKILLed under the supervisor: tests/test_reliability.py.)
"""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np

from testkit.fake_triton import Fault

MODEL = "tiny-bert-mean"
DEADLINE_S = 1.0


def embedding(gateway, text: str, model: str = MODEL) -> np.ndarray:
    response = gateway.post("/v1/embeddings", {"input": text, "model": model})
    assert response.status_code == 200, response.text
    return np.array(response.json()["data"][0]["embedding"])


def timed(call) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


# --- 424: the model fails --------------------------------------------------------------------------


def test_engine_failure_is_424_and_the_next_request_works(gateway):
    expected = embedding(gateway, "before the failure", "tiny-bert-cls")
    past_the_table = [[2, 5000, 3]]  # < the claimed 100,000 ids, > the engine's real vocabulary (conftest)
    openai = gateway.post("/v1/embeddings", {"input": past_the_table, "model": "tiny-bert-cls"})
    assert openai.status_code == 424, openai.text
    assert openai.json()["error"]["type"] == "backend_error" and "Gather" in openai.json()["error"]["message"]
    tei = gateway.post("/embed", {"inputs": past_the_table, "model": "tiny-bert-cls"})
    assert tei.status_code == 424 and tei.json()["error_type"] == "backend_error"
    np.testing.assert_array_equal(embedding(gateway, "before the failure", "tiny-bert-cls"), expected)


# --- 429: too many requests in flight ----------------------------------------------------------


def test_over_the_concurrency_limit_is_429_with_retry_after(fake, make_gateway):
    gateway = make_gateway(max_concurrent_requests=1)
    expected = embedding(gateway, "held in flight")
    held: dict[str, httpx.Response] = {}
    with fake.hung(MODEL):  # the first request cannot finish while its ensemble is held
        worker = threading.Thread(target=lambda: held.update(r=httpx.post(
            f"{gateway.base_url}/v1/embeddings", json={"input": "held in flight"}, timeout=30)))
        worker.start()
        wait_for(lambda: fake.waiting() >= 1, 5, "the held request never reached Triton")
        rejected = [gateway.post("/v1/embeddings", {"input": "one too many"}), gateway.post("/embed", {"inputs": "x"})]
        health = gateway.get("/health")  # exempt from the limit
    worker.join(30)
    for response in rejected:
        assert response.status_code == 429, response.text
        assert response.headers["retry-after"] == "1"
        assert "limit 1" in response.text
    assert health.status_code == 200
    assert held["r"].status_code == 200
    np.testing.assert_allclose(held["r"].json()["data"][0]["embedding"], expected, atol=1e-6)


# --- 503: Triton frozen, stopped, not ready, unreachable, restarting a stub -------------------------


def test_frozen_triton_is_503_at_the_deadline_never_a_hang(fake, make_gateway):
    gateway = make_gateway(request_timeout_s=DEADLINE_S)
    with fake.hung():  # every RPC, as a SIGSTOPped tritonserver
        response, seconds = timed(lambda: gateway.post("/v1/embeddings", {"input": "anyone there?"}))
        health, health_seconds = timed(lambda: gateway.get("/health"))
    assert response.status_code == 503 and "Deadline" in response.json()["error"]["message"]
    assert DEADLINE_S - 0.2 < seconds < DEADLINE_S + 2
    assert health.status_code == 503 and health_seconds < 5
    embedding(gateway, "thawed")


def test_stopped_triton_is_503_at_once_and_the_gateway_recovers(fake, make_gateway):
    gateway = make_gateway()
    expected = embedding(gateway, "before the outage")
    fake.stop()
    try:
        health, seconds = timed(lambda: gateway.get("/health"))
        assert health.status_code == 503 and seconds < 3
        assert health.json() == {"error": "the inference server is not ready", "error_type": "unavailable"}
        openai, seconds = timed(lambda: gateway.post("/v1/embeddings", {"input": "down?"}))
        assert openai.status_code == 503 and seconds < 3
        assert openai.json()["error"]["type"] == "unavailable"
        tei = gateway.post("/embed", {"inputs": "down?"})
        assert tei.status_code == 503 and tei.json()["error_type"] == "unavailable"
    finally:
        fake.start()  # the same port, as a restarted tritonserver
    wait_for(lambda: gateway.get("/health").status_code == 200, 15, "the gateway did not recover")
    np.testing.assert_allclose(embedding(gateway, "before the outage"), expected, atol=1e-6)


def test_not_ready_is_503_on_health_only(fake, gateway):
    fake.ready = False
    health = gateway.get("/health")
    assert health.status_code == 503 and health.json()["error"] == "the inference server is not ready"
    embedding(gateway, "a loaded model still answers")
    fake.ready = True
    assert gateway.get("/health").status_code == 200


def test_unreachable_endpoint_is_503(fake, gateway):
    fake.inject(Fault.unavailable(times=1))
    response = gateway.post("/v1/embeddings", {"input": "x"})
    assert response.status_code == 503, response.text
    assert response.json()["error"]["type"] == "unavailable" and "unavailable" in response.json()["error"]["message"]
    embedding(gateway, "and back")


def test_a_dead_stub_is_503_retry_not_424(fake, gateway):
    """Triton's own untagged INTERNAL for a stub that died: the supervisor restarts it, so the client retries."""
    fake.inject(Fault.stub_unhealthy(f"{MODEL}_engine", times=2))
    openai = gateway.post("/v1/embeddings", {"input": "x"})
    tei = gateway.post("/embed", {"inputs": "x"})
    assert openai.status_code == 503 and "is not healthy" in openai.json()["error"]["message"]
    assert tei.status_code == 503 and tei.json()["error_type"] == "unavailable"
    embedding(gateway, "restarted")
