"""/rerank, /v1/rerank, /predict and /predict_tokens refusing what they cannot answer, against the fake
Triton (the real tokenizer and postprocess stages): a model asked for a route it does not serve is a 400
naming the routes it serves; a bad body, the documented status naming the problem. (Scores and entities
against the reference implementations: tests/test_tasks_e2e.py.)"""

from __future__ import annotations

import pytest

from testkit.gateway_server import error_message


@pytest.mark.parametrize(
    ("path", "body", "served"),
    [
        ("/predict_tokens", {"inputs": [["x"]], "model": "tiny-reranker"}, "/rerank, /v1/rerank, /v2/rerank, /predict"),
        ("/rerank", {"query": "q", "texts": ["d"], "model": "tiny-classifier"}, "/predict"),
        ("/predict", {"inputs": "x", "model": "tiny-ner"}, "/predict_tokens"),
        ("/v1/embeddings", {"input": "x", "model": "tiny-ner"}, "/predict_tokens"),
        ("/embed", {"inputs": "x", "model": "tiny-classifier"}, "/predict"),
        ("/v1/rerank", {"query": "q", "documents": ["d"], "model": "tiny-bert-mean"}, "/v1/embeddings, /embed"),
    ],
)
def test_wrong_route_is_400_naming_the_routes(gateway, path, body, served):
    response = gateway.post(path, body)
    assert response.status_code == 400, response.text
    assert f"it serves {served}" in error_message(response) and path in error_message(response)


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/predict", {"inputs": ["a", "b", "c"], "model": "tiny-classifier"}, 422, "pair"),
        ("/predict", {"inputs": [["a"], "b"], "model": "tiny-classifier"}, 422, "do not mix"),
        ("/predict", {"inputs": [], "model": "tiny-classifier"}, 400, "inputs"),
        ("/predict", {"inputs": [["ok"], [""]], "model": "tiny-classifier"}, 400, "item 1"),
        ("/predict", {"inputs": "word " * 700, "model": "tiny-classifier", "truncate": False}, 422,
         "input 0 has 702 tokens"),
        ("/predict_tokens", {"inputs": [["x"]], "model": "tiny-ner", "aggregation_strategy": "loudest"}, 422,
         "aggregation_strategy"),
        ("/predict_tokens", {"inputs": [[1, 2]], "model": "tiny-ner"}, 422, "inputs"),
        ("/rerank", {"query": "q", "texts": [], "model": "tiny-reranker"}, 400, "texts"),
        ("/rerank", {"query": "q", "texts": ["ok", "word " * 600], "model": "tiny-reranker", "truncate": False},
         422, "input 1 has"),
        ("/v1/rerank", {"query": "q", "documents": ["d"], "top_n": 0, "model": "tiny-reranker"}, 422, "top_n"),
    ],
)
def test_bad_requests(gateway, path, body, status, fragment):
    response = gateway.post(path, body)
    assert response.status_code == status, response.text
    assert fragment in error_message(response)
    assert gateway.post("/predict", {"inputs": "still alive?", "model": "tiny-classifier"}).status_code == 200
