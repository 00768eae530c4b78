"""`/embed_sparse` (a SPLADE model) and `/embed_all` (token embeddings) against the fake Triton: the real
tokenizer, sparse postprocess and gateway over a fake engine whose outputs are known (testkit.fake_triton:
a SPLADE vector has 0.5 + id % 7 / 10 at the id of each of its tokens; a token embedding is its token's
table row, and the pooled vector their mean). Parity with sentence-transformers: tests/test_beyond_tei.py."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoTokenizer

from testkit.gateway_server import error_message

TEXTS = ["the quick brown fox", "a lazy dog, a lazy dog", "Zürich 🍕"]


@pytest.fixture(scope="module")
def splade_tokenizer(unit_checkpoints):
    return AutoTokenizer.from_pretrained(str(unit_checkpoints["tiny-splade"]))


def expected_entries(ids: list[int], top_k: int | None = None) -> list[dict]:
    values = {i: np.float32(0.5 + (i % 7) / 10) for i in set(ids)}
    kept = sorted(values, key=lambda i: (-values[i], i))[:top_k] if top_k else list(values)
    return [{"index": i, "value": float(values[i])} for i in sorted(kept)]


def test_embed_sparse_answers_the_non_zero_entries_in_index_order(gateway, splade_tokenizer):
    response = gateway.post("/embed_sparse", {"inputs": TEXTS, "model": "tiny-splade"})
    assert response.status_code == 200, response.text
    expected = [expected_entries(splade_tokenizer(text)["input_ids"]) for text in TEXTS]
    assert response.json() == expected
    assert int(response.headers["x-compute-tokens"]) == sum(len(splade_tokenizer(t)["input_ids"]) for t in TEXTS)


def test_top_k_keeps_the_largest_and_ties_go_to_the_lower_index(gateway, splade_tokenizer):
    ids = splade_tokenizer(TEXTS[0])["input_ids"]
    for k in (1, 3, len(set(ids)), 100):
        answer = gateway.post("/embed_sparse", {"inputs": TEXTS[0], "model": "tiny-splade", "top_k": k}).json()
        assert answer == [expected_entries(ids, k)], k


def test_embed_sparse_takes_token_ids(gateway, splade_tokenizer):
    ids = splade_tokenizer(TEXTS[1])["input_ids"]
    by_ids = gateway.post("/embed_sparse", {"inputs": [ids], "model": "tiny-splade"}).json()
    assert by_ids == gateway.post("/embed_sparse", {"inputs": TEXTS[1], "model": "tiny-splade"}).json()


def test_sub_requests_of_different_widths_are_gathered(gateway, splade_tokenizer):
    texts = [TEXTS[i % 3] * (1 + i % 4) for i in range(70)]  # 3 sub-requests, each as wide as its own widest
    answer = gateway.post("/embed_sparse", {"inputs": texts, "model": "tiny-splade"}).json()
    assert answer == [expected_entries(splade_tokenizer(t)["input_ids"]) for t in texts]


@pytest.mark.parametrize("path,body", [
    ("/embed", {"inputs": "x"}), ("/v1/embeddings", {"input": "x"}), ("/v2/embed", {"texts": ["x"]}),
    ("/similarity", {"inputs": {"source_sentence": "x", "sentences": ["y"]}}), ("/embed_all", {"inputs": "x"}),
    ("/rerank", {"query": "q", "texts": ["d"]}),
])
def test_dense_routes_on_a_sparse_model_name_embed_sparse(gateway, path, body):
    response = gateway.post(path, {**body, "model": "tiny-splade"})
    assert response.status_code == 400, response.text
    assert "it serves /embed_sparse" in error_message(response)


def test_sparse_model_in_info_invocations_and_default_route(gateway, splade_tokenizer):
    info = gateway.get("/info", params={"model": "tiny-splade"}).json()
    assert (info["task"], info["pooling"], info["dimensions"]) == ("sparse", "splade", splade_tokenizer.vocab_size)
    assert info["quantization_ranges"] is None and info["routes"] == ["/embed_sparse", "/embed_hybrid"]
    body = {"inputs": TEXTS[:2], "model": "tiny-splade"}
    expected = gateway.post("/embed_sparse", body).json()
    assert gateway.post("/invocations", body).json() == expected == gateway.post("/", body).json()


@pytest.mark.parametrize(("body", "status", "fragment"), [
    ({"inputs": []}, 400, "must not be empty"),
    ({"inputs": [""]}, 400, "empty string"),
    ({"inputs": "x", "top_k": 0}, 422, "top_k"),
    ({"inputs": [[1, 100000]]}, 422, "outside the vocabulary"),
    ({"inputs": "word " * 200, "truncate": False}, 422, "input 0 has 202 tokens"),
    ({"inputs": "x", "prompt_name": "query"}, 200, ""),  # SparseEncoder's empty query prompt
    ({"inputs": "x", "prompt_name": "nope"}, 422, "unknown prompt_name"),
])
def test_embed_sparse_bad_requests(gateway, body, status, fragment):
    response = gateway.post("/embed_sparse", {**body, "model": "tiny-splade"})
    assert response.status_code == status, response.text
    assert status == 200 or fragment in error_message(response)


def test_embed_all_is_one_row_per_token_whose_mean_is_the_pooled_vector(gateway, unit_checkpoints):
    tokenizer = AutoTokenizer.from_pretrained(str(unit_checkpoints["tiny-bert-mean"]))
    response = gateway.post("/embed_all", {"inputs": TEXTS, "model": "tiny-bert-mean"})
    assert response.status_code == 200, response.text
    matrices = [np.asarray(m, dtype=np.float32) for m in response.json()]
    assert [m.shape for m in matrices] == [(len(tokenizer(t)["input_ids"]), 32) for t in TEXTS]
    pooled = np.asarray(gateway.post("/embed", {"inputs": TEXTS, "normalize": False}).json(), dtype=np.float32)
    np.testing.assert_allclose(np.stack([m.mean(axis=0) for m in matrices]), pooled, atol=1e-6)
    assert int(response.headers["x-compute-tokens"]) == sum(m.shape[0] for m in matrices)


def test_embed_all_rows_do_not_depend_on_the_batch(gateway):
    texts = [("word " * (1 + i % 9)).strip() for i in range(70)]  # 3 sub-requests of different longest
    batched = gateway.post("/embed_all", {"inputs": texts, "model": "tiny-bert-mean"}).json()
    for i in (0, 33, 69):
        assert batched[i] == gateway.post("/embed_all", {"inputs": texts[i], "model": "tiny-bert-mean"}).json()[0]


def test_embed_all_prompt_and_truncation(gateway):
    body = {"inputs": "word " * 200, "model": "tiny-bert-mean"}
    assert gateway.post("/embed_all", {**body, "truncate": False}).status_code == 422
    assert len(gateway.post("/embed_all", {**body, "truncate": True}).json()[0]) == 128
    cls = {"inputs": "x", "model": "tiny-bert-cls"}
    assert len(gateway.post("/embed_all", {**cls, "prompt_name": "query"}).json()[0]) > \
        len(gateway.post("/embed_all", cls).json()[0])


@pytest.mark.parametrize(("body", "status"), [
    ({"inputs": []}, 400), ({"inputs": [[1, 2]]}, 422), ({"inputs": "x", "model": "tiny-reranker"}, 400),
])
def test_embed_all_bad_requests(gateway, body, status):
    assert gateway.post("/embed_all", {"model": "tiny-bert-mean", **body}).status_code == status
