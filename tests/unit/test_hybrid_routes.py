"""Issue 24 at the HTTP boundary (fake Triton, real stages): `/embed_hybrid` and the routes of a hybrid (BGE-M3)
model, late chunking and long inputs, and every bad combination the issue names answering 4xx with a clear
message. The values against FlagEmbedding and transformers: tests/test_hybrid_and_long_inputs.py."""

from __future__ import annotations

import numpy as np
import pytest

from testkit.gateway_server import error_message

HYBRID = "tiny-bge-m3"
TEXTS = ["the quick brown fox", "hello world, hello again", "a"]


def ok(gateway, path: str, body: dict) -> object:
    response = gateway.post(path, body)
    assert response.status_code == 200, response.text
    return response.json()


def refused(gateway, path: str, body: dict, status: int, words: str) -> None:
    response = gateway.post(path, body)
    assert response.status_code == status, response.text
    assert words in error_message(response), response.text


def test_embed_hybrid_answers_what_is_asked_and_matches_each_route(gateway):
    both = ok(gateway, "/embed_hybrid", {"inputs": TEXTS, "model": HYBRID})
    assert [sorted(item) for item in both] == [["dense", "sparse"]] * len(TEXTS)
    every = ok(gateway, "/embed_hybrid", {"inputs": TEXTS, "model": HYBRID, "return_colbert": True})
    assert [sorted(item) for item in every] == [["colbert", "dense", "sparse"]] * len(TEXTS)
    assert ok(gateway, "/embed_hybrid", {"inputs": TEXTS, "model": HYBRID, "priority": "bulk"}) == both  # its lane
    one = ok(gateway, "/embed_hybrid", {"inputs": TEXTS[0], "model": HYBRID, "return_dense": False})
    assert len(one) == 1 and list(one[0]) == ["sparse"]  # a single string: a list of one
    np.testing.assert_allclose([item["dense"] for item in every], ok(gateway, "/embed", {"inputs": TEXTS,
                                                                                         "model": HYBRID}), atol=1e-6)
    assert [item["sparse"] for item in every] == ok(gateway, "/embed_sparse", {"inputs": TEXTS, "model": HYBRID})
    colbert = ok(gateway, "/embed_all", {"inputs": TEXTS, "model": HYBRID})
    assert [item["colbert"] for item in every] == colbert
    assert sum(len(item["sparse"]) for item in every) > 3  # something to compare
    for item, vectors in zip(every, colbert, strict=True):
        assert item["sparse"] == sorted(item["sparse"], key=lambda e: e["index"])  # index order
        assert all(e["index"] > 3 and e["value"] > 0 for e in item["sparse"])  # <s> <pad> </s> <unk> never weigh
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5) and len(vectors[0]) == 16


def test_embed_hybrid_on_models_with_one_output(gateway):
    refused(gateway, "/embed_hybrid", {"inputs": "x", "model": "tiny-bert-mean"}, 400, "has no sparse output")
    dense = ok(gateway, "/embed_hybrid", {"inputs": "x", "model": "tiny-bert-mean", "return_sparse": False})
    np.testing.assert_allclose(dense[0]["dense"], ok(gateway, "/embed", {"inputs": "x", "model": "tiny-bert-mean"})[0],
                               atol=1e-6)
    sparse = ok(gateway, "/embed_hybrid", {"inputs": "x", "model": "tiny-splade", "return_dense": False})
    assert sparse[0]["sparse"] == ok(gateway, "/embed_sparse", {"inputs": "x", "model": "tiny-splade"})[0]
    refused(gateway, "/embed_hybrid", {"inputs": "x", "model": "tiny-colbert"}, 400, "has no dense or sparse output")
    colbert = ok(gateway, "/embed_hybrid", {"inputs": "x", "model": "tiny-colbert", "return_dense": False,
                                            "return_sparse": False, "return_colbert": True})
    assert colbert[0]["colbert"] == ok(gateway, "/embed_all", {"inputs": "x", "model": "tiny-colbert"})[0]
    refused(gateway, "/embed_hybrid", {"inputs": "x", "model": "tiny-reranker"}, 400, "/rerank")


def test_embed_hybrid_refuses_asking_for_nothing(gateway):
    refused(gateway, "/embed_hybrid", {"inputs": "x", "model": HYBRID, "return_dense": False, "return_sparse": False},
            422, "ask for at least one")


def test_hybrid_rerank_weights_and_scores(gateway):
    body = {"query": "quick fox", "texts": TEXTS, "model": HYBRID, "scores": True, "weights": [0.4, 0.2, 0.4]}
    ranked = ok(gateway, "/rerank", body)
    for item in ranked:
        modes = item["scores"]
        assert sorted(modes) == ["colbert", "dense", "sparse"]
        expected = (0.4 * modes["dense"] + 0.2 * modes["sparse"] + 0.4 * modes["colbert"]) / 1.0
        assert item["score"] == pytest.approx(expected, abs=1e-6)
    assert [item["score"] for item in ranked] == sorted((item["score"] for item in ranked), reverse=True)
    plain = ok(gateway, "/rerank", {"query": "quick fox", "texts": TEXTS, "model": HYBRID})
    assert "scores" not in plain[0]
    default = ok(gateway, "/rerank", {**body, "weights": None})
    equal = {item["index"]: sum(item["scores"].values()) / 3 for item in default}
    assert {item["index"]: item["score"] for item in plain} == pytest.approx(equal, abs=1e-6)  # [1, 1, 1]
    cohere = ok(gateway, "/v1/rerank", {"query": "quick fox", "documents": TEXTS, "model": HYBRID, "scores": True})
    assert all(sorted(r["scores"]) == ["colbert", "dense", "sparse"] for r in cohere["results"])
    v2 = ok(gateway, "/v2/rerank", {"query": "quick fox", "documents": TEXTS, "model": HYBRID, "top_n": 2})
    assert len(v2["results"]) == 2 and "scores" not in v2["results"][0]


def test_rerank_weights_refused_where_they_mean_nothing(gateway):
    refused(gateway, "/rerank", {"query": "q", "texts": ["d"], "model": "tiny-reranker", "scores": True}, 400,
            "hybrid (BGE-M3) models")
    refused(gateway, "/v1/rerank", {"query": "q", "documents": ["d"], "model": "tiny-colbert", "weights": [1, 1, 1]},
            400, "hybrid (BGE-M3) models")
    for weights in ([1, 1], [1, -1, 1], [0, 0, 0]):
        refused(gateway, "/rerank", {"query": "q", "texts": ["d"], "model": HYBRID, "weights": weights}, 422,
                "`weights` must be [dense, sparse, colbert]")


def test_late_chunking_and_long_inputs_shapes_and_usage(gateway):
    chunks = ["the quick brown fox", " jumps over", " the lazy dog"]
    answer = ok(gateway, "/v1/embeddings", {"input": chunks, "model": "tiny-bert-mean", "late_chunking": True})
    pieces = [ok(gateway, "/tokenize", {"inputs": chunk, "model": "tiny-bert-mean", "add_special_tokens": False})[0]
              for chunk in chunks]
    assert answer["usage"]["prompt_tokens"] == sum(map(len, pieces)) + 2  # the document once, [CLS] ... [SEP]
    vectors = np.array([item["embedding"] for item in answer["data"]])
    assert vectors.shape == (3, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    bulk = ok(gateway, "/embed", {"inputs": chunks, "model": "tiny-bert-mean", "late_chunking": True,
                                  "priority": "bulk"})
    np.testing.assert_allclose(bulk, vectors, atol=1e-6)
    many = ok(gateway, "/embed", {"inputs": ["word"] * 40, "model": "tiny-bert-mean", "late_chunking": True,
                                  "priority": "bulk"})  # more chunks than the bulk lane batches: one request still
    assert len(many) == 40
    plain = np.array(ok(gateway, "/embed", {"inputs": chunks, "model": "tiny-bert-mean"}))
    assert not np.allclose(vectors, plain, atol=1e-3)  # each chunk sees the document: not its own text alone
    long_text = "word " * 300  # past tiny-bert-mean's 128 tokens
    refused(gateway, "/embed", {"inputs": [long_text], "model": "tiny-bert-mean", "truncate": False}, 422, "tokens")
    windows = ok(gateway, "/embed", {"inputs": [long_text, "short"], "model": "tiny-bert-mean",
                                     "chunk_long_inputs": True})
    plain_short = ok(gateway, "/embed", {"inputs": ["short"], "model": "tiny-bert-mean"})[0]
    np.testing.assert_allclose(windows[1], plain_short, atol=1e-6)  # an input that fits: as without windows
    assert len(windows[0]) == 32
    cohere = ok(gateway, "/v2/embed", {"texts": [long_text], "model": "tiny-bert-mean", "chunk_long_inputs": True})
    np.testing.assert_allclose(cohere["embeddings"]["float"][0], windows[0], atol=1e-6)
    assert cohere["meta"]["billed_units"]["input_tokens"] > 300  # every window's every token


def test_bad_combinations_are_refused_at_the_boundary(gateway):
    refused(gateway, "/embed", {"inputs": ["a", "b"], "model": "tiny-bert-cls", "late_chunking": True}, 422,
            "late_chunking needs a mean-pooled embedding model")
    refused(gateway, "/v1/embeddings", {"input": ["a"], "model": HYBRID, "late_chunking": True}, 422,
            "mean-pooled")
    refused(gateway, "/embed", {"inputs": [[5, 6, 7]], "model": "tiny-bert-mean", "chunk_long_inputs": True}, 422,
            "chunk_long_inputs takes texts, not token ids")
    refused(gateway, "/v1/embeddings", {"input": [[5, 6]], "model": "tiny-bert-mean", "late_chunking": True}, 422,
            "late_chunking takes texts")
    refused(gateway, "/embed", {"inputs": ["a"], "model": "tiny-bert-mean", "late_chunking": True,
                                "chunk_long_inputs": True}, 422, "send one of them")
    refused(gateway, "/embed", {"inputs": ["a"] * 257, "model": "tiny-bert-mean", "late_chunking": True}, 422,
            "at most 256 chunks")
    refused(gateway, "/v2/embed", {"texts": ["a"], "model": "tiny-bert-mean", "chunk_long_inputs": True,
                                   "max_tokens": 5}, 422, "send one of them")
    refused(gateway, "/embed", {"inputs": ["a"], "model": "tiny-splade", "chunk_long_inputs": True}, 400,
            "/embed_sparse")  # not an embedding route of that model at all


def test_new_fields_in_openapi_and_info(gateway):
    schemas = gateway.get("/openapi.json").json()["components"]["schemas"]
    assert {"late_chunking", "chunk_long_inputs"} <= set(schemas["OpenAIEmbeddingRequest"]["properties"])
    assert {"late_chunking", "chunk_long_inputs"} <= set(schemas["EmbedRequest"]["properties"])
    assert "chunk_long_inputs" in schemas["CohereEmbedRequest"]["properties"]
    assert {"return_dense", "return_sparse", "return_colbert"} <= set(schemas["EmbedHybridRequest"]["properties"])
    assert {"weights", "scores"} <= set(schemas["RerankRequest"]["properties"])
    assert "/embed_hybrid" in gateway.get("/openapi.json").json()["paths"]
    hybrid = gateway.get("/info", params={"model": HYBRID}).json()
    assert hybrid["embed_hybrid"] == ["dense", "sparse", "colbert"] and not hybrid["late_chunking"]
    assert "/embed_hybrid" in hybrid["routes"] and hybrid["task"] == "hybrid"
    mean = gateway.get("/info", params={"model": "tiny-bert-mean"}).json()
    assert mean["embed_hybrid"] == ["dense"] and mean["late_chunking"] and mean["chunk_long_inputs"] is False
