"""A request's priority, as the gateway decides and sends it (against the fake Triton, which records every
call): the body's `priority`, else `x-trident-priority`, else by size; bulk goes to the bulk lane, a few
sub-requests at a time; an interactive request is not held behind a bulk job. Real Triton's side (the
ensemble hands the level to its steps, the lanes run apart): tests/test_priorities.py."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from testkit.fake_triton import InferCall
from trident.priorities import BULK_IN_FLIGHT, BULK_MAX_BATCH, Priority

MODEL = "tiny-bert-mean"
INTERACTIVE, BULK = Priority.INTERACTIVE.value, Priority.BULK.value


def calls_of(fake, send) -> list[InferCall]:
    before = len(fake.infer_requests)
    response = send()
    assert response.status_code == 200, response.text
    return fake.infer_requests[before:]


def texts(n: int, tag: str = "") -> list[str]:
    return [f"text {tag} {i}" for i in range(n)]


@pytest.mark.parametrize(("body", "headers", "expected"), [
    ({"input": texts(3)}, {}, (MODEL, INTERACTIVE)),
    ({"input": texts(9)}, {}, (f"{MODEL}_bulk", BULK)),  # more than --bulk-threshold 8
    ({"input": texts(8)}, {}, (MODEL, INTERACTIVE)),
    ({"input": texts(1), "priority": "bulk"}, {}, (f"{MODEL}_bulk", BULK)),
    ({"input": texts(40), "priority": "interactive"}, {}, (MODEL, INTERACTIVE)),
    ({"input": texts(1)}, {"x-trident-priority": "bulk"}, (f"{MODEL}_bulk", BULK)),
    ({"input": texts(20)}, {"X-Trident-Priority": "Interactive"}, (MODEL, INTERACTIVE)),
    ({"input": texts(1), "priority": "interactive"}, {"x-trident-priority": "bulk"}, (MODEL, INTERACTIVE)),
])
def test_the_body_then_the_header_then_the_size_decide(gateway, fake, body, headers, expected):
    response = gateway.post("/v1/embeddings", {**body, "model": MODEL}, headers=headers)
    assert response.status_code == 200, response.text
    calls = fake.infer_requests[-1:]
    assert {(call.model, call.priority) for call in calls} == {expected}
    assert response.headers["x-trident-priority"] == Priority(expected[1]).label


def test_bulk_sub_requests_fit_the_lane_and_the_threshold_is_a_flag(fake, make_gateway):
    gateway = make_gateway(bulk_threshold=2, triton_batch_size=64)
    calls = calls_of(fake, lambda: gateway.post("/embed", {"inputs": texts(100), "model": MODEL}))
    assert [call.inputs for call in calls] == [BULK_MAX_BATCH] * 3 + [100 - 3 * BULK_MAX_BATCH]
    assert {(call.model, call.priority) for call in calls} == {(f"{MODEL}_bulk", BULK)}
    calls = calls_of(fake, lambda: gateway.post("/embed", {"inputs": texts(2), "model": MODEL}))
    assert {(call.model, call.priority) for call in calls} == {(MODEL, INTERACTIVE)}


@pytest.mark.parametrize(("path", "body", "model"), [
    ("/rerank", {"query": "q", "texts": texts(12)}, "tiny-reranker"),
    ("/predict", {"inputs": [[t] for t in texts(12)]}, "tiny-classifier"),
    ("/predict_tokens", {"inputs": [texts(12)]}, "tiny-ner"),
    ("/embed_sparse", {"inputs": texts(12)}, "tiny-splade"),
    ("/embed_all", {"inputs": texts(12)}, MODEL),
    ("/similarity", {"inputs": {"source_sentence": "s", "sentences": texts(12)}}, MODEL),
    ("/v2/embed", {"texts": texts(12)}, MODEL),
])
def test_every_inference_route_sends_a_big_batch_as_bulk(gateway, fake, path, body, model):
    calls = calls_of(fake, lambda: gateway.post(path, {**body, "model": model}))
    assert calls and {call.priority for call in calls} == {BULK}
    assert all(call.model.endswith("_bulk") for call in calls)
    calls = calls_of(fake, lambda: gateway.post(path, {**body, "model": model, "priority": "interactive"}))
    assert {call.priority for call in calls} == {INTERACTIVE} and not any(c.model.endswith("_bulk") for c in calls)


def test_a_multi_vector_rerank_scores_query_and_documents_at_the_batch_s_priority(gateway, fake):
    calls = calls_of(fake, lambda: gateway.post("/rerank", {"query": "q", "texts": texts(12), "model": "tiny-colbert"}))
    assert len(calls) == 2 and {call.priority for call in calls} == {BULK}


def test_a_bad_priority_is_refused_with_what_is_allowed(gateway):
    response = gateway.post("/embed", {"inputs": "x", "priority": "urgent"})
    assert response.status_code == 422 and "interactive" in response.text
    response = gateway.post("/embed", {"inputs": "x"}, headers={"x-trident-priority": "urgent"})
    assert response.status_code == 400
    assert response.json()["error"] == "header x-trident-priority must be one of interactive, bulk, got 'urgent'"
    assert gateway.post("/tokenize", {"inputs": "x"}, headers={"x-trident-priority": "urgent"}).status_code == 200


def test_a_bulk_job_keeps_a_few_sub_requests_in_flight_and_never_holds_an_interactive_one(fake, make_gateway):
    """While every bulk sub-request is held inside Triton, the job has only BULK_IN_FLIGHT of them there, and an
    interactive request goes through."""
    gateway = make_gateway(triton_batch_size=4)
    bulk: dict[str, httpx.Response] = {}
    with fake.hung(f"{MODEL}_bulk"):
        worker = threading.Thread(target=lambda: bulk.update(r=gateway.post(
            "/embed", {"inputs": texts(64, "bulk"), "model": MODEL}, timeout=30)))
        worker.start()
        deadline = time.monotonic() + 10
        while fake.waiting() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # time for more to arrive, were the job not paced
        held = fake.waiting()
        query = gateway.post("/embed", {"inputs": "a search query", "model": MODEL})
        assert "r" not in bulk  # the bulk job is still held
    worker.join(30)
    assert held == BULK_IN_FLIGHT
    assert query.status_code == 200 and query.headers["x-trident-priority"] == "interactive"
    assert bulk["r"].status_code == 200 and len(bulk["r"].json()) == 64


def test_info_says_how_requests_are_prioritized_and_cached(make_gateway):
    info = make_gateway(bulk_threshold=4, cache_size_mib=2).get("/info", params={"model": MODEL}).json()
    assert (info["bulk_threshold"], info["bulk_lane"], info["cache_size_mib"]) == (4, True, 2)
