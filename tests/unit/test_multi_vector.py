"""A multi-vector (ColBERT-style) model against the fake Triton: the real tokenizer (sides, query expansion),
postprocess (normalize, skiplist) and gateway (MaxSim) over a fake engine (each token's vector is a fixed
row of a table). Parity with sentence-transformers' MultiVectorEncoder: tests/test_beyond_tei.py."""

from __future__ import annotations

import string

import numpy as np
import pytest
from transformers import AutoTokenizer

from testkit.gateway_server import error_message

MODEL = "tiny-colbert"
DOCUMENTS = ["the quick brown fox, jumps.", "a lazy dog", "paris: london; berlin!"]


@pytest.fixture(scope="module")
def tokenizer(unit_checkpoints):
    return AutoTokenizer.from_pretrained(str(unit_checkpoints[MODEL]))


def vectors(gateway, texts: list[str], side: str | None = None) -> list[np.ndarray]:
    body = {"inputs": texts, "model": MODEL, "truncate": True, **({"prompt_name": side} if side else {})}
    response = gateway.post("/embed_all", body)
    assert response.status_code == 200, response.text
    return [np.asarray(matrix, dtype=np.float32) for matrix in response.json()]


def test_a_query_is_expanded_to_12_vectors(gateway, tokenizer):
    short, long = vectors(gateway, ["what is a fox?", "word " * 30], "query")
    assert short.shape == long.shape == (12, 16)  # [MASK]-padded up to, and cut at, the expansion length
    np.testing.assert_allclose(np.linalg.norm(short, axis=1), 1.0, atol=1e-6)
    ids = tokenizer("[Q] what is a fox?")["input_ids"]
    assert len(ids) < 12 and len(set(map(tuple, short[len(ids):].round(6)))) == 1  # the expansion: one [MASK] row


def test_a_document_drops_its_punctuation(gateway, tokenizer):
    skip = {tokenizer.convert_tokens_to_ids(c) for c in string.punctuation}
    for matrix, text in zip(vectors(gateway, DOCUMENTS, "document"), DOCUMENTS, strict=True):
        ids = tokenizer("[D] " + text)["input_ids"]
        assert matrix.shape == (sum(i not in skip for i in ids), 16)
    no_side = vectors(gateway, DOCUMENTS[:1])[0]  # encode() with no task: no prompt, still a document's mask
    assert no_side.shape[0] == vectors(gateway, DOCUMENTS[:1], "document")[0].shape[0] - 1


def maxsim(query: np.ndarray, document: np.ndarray) -> float:
    return float((query @ document.T).max(axis=1).sum())


def test_rerank_is_maxsim_of_the_query_and_document_vectors(gateway):
    query = vectors(gateway, ["where is the fox?"], "query")[0]
    expected = [maxsim(query, d) for d in vectors(gateway, DOCUMENTS, "document")]
    tei = gateway.post("/rerank", {"query": "where is the fox?", "texts": DOCUMENTS, "model": MODEL}).json()
    assert [r["index"] for r in tei] == list(np.argsort(expected)[::-1])
    np.testing.assert_allclose([r["score"] for r in sorted(tei, key=lambda r: r["index"])], expected, rtol=1e-6)
    cohere = gateway.post("/v1/rerank", {"query": "where is the fox?", "documents": DOCUMENTS, "model": MODEL,
                                         "top_n": 2}).json()
    assert [(r["index"], r["relevance_score"]) for r in cohere["results"]] == [(r["index"], r["score"])
                                                                             for r in tei[:2]]
    v2 = gateway.post("/v2/rerank", {"query": "where is the fox?", "documents": DOCUMENTS, "model": MODEL}).json()
    assert [r["relevance_score"] for r in v2["results"]] == [r["score"] for r in tei]


def test_document_length_and_max_tokens_per_doc(gateway):
    long = "word " * 60
    assert vectors(gateway, [long], "document")[0].shape[0] == 40  # document_length
    response = gateway.post("/embed_all", {"inputs": long, "model": MODEL, "prompt_name": "document",
                                           "truncate": False})
    assert response.status_code == 422 and "more than the model's maximum of 40" in error_message(response)
    body = {"query": "q", "documents": [long], "model": MODEL}
    tokens = int(gateway.post("/v2/rerank", {**body, "max_tokens_per_doc": 10}).headers["x-compute-tokens"])
    assert tokens == 12 + 10  # the query's 12, the document cut to 10


@pytest.mark.parametrize("path,body", [
    ("/embed", {"inputs": "x"}), ("/v1/embeddings", {"input": "x"}), ("/embed_sparse", {"inputs": "x"}),
    ("/predict", {"inputs": "x"}), ("/similarity", {"inputs": {"source_sentence": "x", "sentences": ["y"]}}),
])
def test_other_routes_name_the_multi_vector_ones(gateway, path, body):
    response = gateway.post(path, {**body, "model": MODEL})
    assert response.status_code == 400 and "it serves /embed_all, /rerank" in error_message(response)


def test_info_and_invocations(gateway):
    info = gateway.get("/info", params={"model": MODEL}).json()
    assert (info["task"], info["dimensions"], info["pooling"]) == ("multi_vector", 16, None)
    assert info["routes"] == ["/embed_all", "/rerank", "/v1/rerank", "/v2/rerank", "/embed_hybrid"]
    body = {"inputs": DOCUMENTS, "model": MODEL, "prompt_name": "document"}
    assert gateway.post("/invocations", body).json() == gateway.post("/embed_all", body).json()


@pytest.mark.parametrize(("body", "status"), [
    ({"inputs": "x", "prompt_name": "nope"}, 422), ({"inputs": []}, 400), ({"inputs": [""]}, 400),
])
def test_bad_requests(gateway, body, status):
    assert gateway.post("/embed_all", {**body, "model": MODEL}).status_code == status
