"""The response cache (`trident serve --cache-size`): an identical request answers from memory, byte for byte
what was computed, without a Triton call; any option change computes again; a batch computes only what is not
cached; the cache stays within its size and reports itself in /metrics and `x-cache`."""

from __future__ import annotations

import re

import numpy as np
import pytest

from gateway.cache import ResponseCache, own_row
from trident import tensors as T

MODEL = "tiny-bert-mean"


@pytest.fixture
def cached(make_gateway):
    return make_gateway(cache_size_mib=4)


def send(gateway, fake, path: str, body: dict, headers: dict | None = None):
    """(answer, the inputs Triton computed for it)."""
    before = len(fake.infer_requests)
    response = gateway.post(path, body, headers=headers or {})
    assert response.status_code == 200, response.text
    return response, sum(call.inputs for call in fake.infer_requests[before:])


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/embeddings", {"input": ["cached once", "and twice"], "model": MODEL}),
    ("/embed", {"inputs": ["cached once"], "model": MODEL, "dimensions": 8, "embedding_type": "binary"}),
    ("/embed", {"inputs": [[101, 23, 102]], "model": MODEL}),  # token ids: the `_ids` ensemble
    ("/similarity", {"inputs": {"source_sentence": "a", "sentences": ["b", "c"]}, "model": MODEL}),
    ("/embed_all", {"inputs": ["every token", "of two texts here"], "model": MODEL}),
    ("/embed_sparse", {"inputs": ["sparse and cached", "x"], "model": "tiny-splade"}),
    ("/rerank", {"query": "q", "texts": ["a", "b b b"], "model": "tiny-reranker", "raw_scores": True}),
    ("/predict", {"inputs": [["a", "b"], ["c", "d"]], "model": "tiny-classifier"}),
    ("/predict_tokens", {"inputs": [["New York is big"]], "model": "tiny-ner", "aggregation_strategy": "simple"}),
    ("/embed_all", {"inputs": ["a colbert document"], "model": "tiny-colbert"}),
    ("/embed_hybrid", {"inputs": ["bge-m3 cached", "y"], "model": "tiny-bge-m3", "return_colbert": True}),
    ("/embed", {"inputs": ["word " * 200], "model": MODEL, "chunk_long_inputs": True}),  # windows: per input
])
def test_an_identical_request_answers_from_memory_byte_for_byte(cached, fake, path, body):
    first, computed = send(cached, fake, path, body)
    second, again = send(cached, fake, path, body)
    assert computed > 0 and again == 0
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    assert second.content == first.content
    assert second.headers["x-compute-tokens"] == first.headers["x-compute-tokens"]


@pytest.mark.parametrize("change", [
    {"dimensions": 16}, {"normalize": False}, {"truncate": True}, {"truncation_direction": "left"},
    {"inputs": ["Cached Once"]}, {"model": "tiny-bert-cls"},
])
def test_any_option_change_computes_again(cached, fake, change):
    body = {"inputs": ["cached once"], "model": MODEL}
    send(cached, fake, "/embed", body)
    response, computed = send(cached, fake, "/embed", {**body, **change})
    assert computed == 1 and response.headers["x-cache"] == "miss"


def test_what_a_route_does_with_the_rows_is_not_a_new_question(cached, fake):
    body = {"input": ["base64 or not"], "model": MODEL}
    plain, _ = send(cached, fake, "/v1/embeddings", body)
    encoded, computed = send(cached, fake, "/v1/embeddings", {**body, "encoding_format": "base64"})
    assert computed == 0 and encoded.headers["x-cache"] == "hit"
    vector = np.frombuffer(__import__("base64").b64decode(encoded.json()["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_array_equal(vector, np.array(plain.json()["data"][0]["embedding"], dtype=np.float32))


def test_a_batch_computes_only_its_new_inputs_in_order(cached, fake):
    send(cached, fake, "/embed", {"inputs": ["second", "fourth"], "model": MODEL})
    batch = ["first", "second", "third", "fourth", "fifth"]
    mixed, computed = send(cached, fake, "/embed", {"inputs": batch, "model": MODEL})
    assert computed == 3 and mixed.headers["x-cache"] == "miss" and mixed.headers["x-cache-hits"] == "2"
    alone = [send(cached, fake, "/embed", {"inputs": [text], "model": MODEL})[0].json()[0] for text in batch]
    assert mixed.json() == alone


def test_the_cache_stays_within_its_size_and_forgets_the_oldest(fake, make_gateway):
    gateway = make_gateway(cache_size_mib=0.01)  # 10 KiB: a few dozen 32-float vectors
    texts = [f"input number {i}" for i in range(200)]
    for start in range(0, 200, 20):
        send(gateway, fake, "/embed", {"inputs": texts[start : start + 20], "model": MODEL})
    metrics = gateway.get("/metrics").text
    held = float(re.search(r"^trident_cache_bytes (\S+)$", metrics, re.MULTILINE).group(1))
    entries = float(re.search(r"^trident_cache_entries (\S+)$", metrics, re.MULTILINE).group(1))
    assert 0 < held <= 0.01 * 2**20 and 0 < entries < 200
    assert send(gateway, fake, "/embed", {"inputs": texts[-1:], "model": MODEL})[1] == 0  # the newest: kept
    assert send(gateway, fake, "/embed", {"inputs": texts[:1], "model": MODEL})[1] == 1  # the oldest: gone


def test_metrics_count_hits_and_misses_per_input(cached, fake):
    def count(name: str) -> float:
        match = re.search(rf'^trident_cache_{name}_total{{model="{MODEL}"}} (\S+)$', cached.get("/metrics").text,
                          re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    hits, misses = count("hits"), count("misses")
    send(cached, fake, "/embed", {"inputs": ["m1", "m2", "m3"], "model": MODEL})
    send(cached, fake, "/embed", {"inputs": ["m1", "m2", "m4"], "model": MODEL})
    assert (count("hits") - hits, count("misses") - misses) == (2, 4)


def test_no_cache_computes_every_time(gateway, fake):
    body = {"inputs": ["never cached"], "model": MODEL}
    for _ in range(2):
        response, computed = send(gateway, fake, "/embed", body)
        assert computed == 1 and response.headers["x-cache"] == "miss"


def test_an_entry_keeps_one_input_s_own_rows_and_no_tokenizing_time():
    outputs = {T.TOKEN_EMBEDDINGS: np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3),
               T.NUM_TOKENS: np.array([[2], [4]], dtype=np.int32), T.TOKENIZE_NS: np.array([[5], [7]])}
    row = own_row(outputs, 0)
    assert row[T.TOKEN_EMBEDDINGS].shape == (1, 2, 3) and row[T.TOKENIZE_NS].tolist() == [[0]]
    assert not np.shares_memory(row[T.TOKEN_EMBEDDINGS], outputs[T.TOKEN_EMBEDDINGS])
    cache = ResponseCache(max_bytes=10)
    cache.put(("key",), row)  # bigger than the whole cache: not kept
    assert len(cache) == 0 and cache.bytes == 0


def test_late_chunking_never_answers_from_the_cache(cached, fake):
    """A chunk's vector depends on the whole document: no chunk is cached on its own, nor served from a cache
    filled by the same texts embedded apart."""
    chunks = {"inputs": ["one chunk", "and the next"], "model": MODEL}
    send(cached, fake, "/embed", chunks)  # the texts alone, now cached
    for _ in range(2):
        _, computed = send(cached, fake, "/embed", {**chunks, "late_chunking": True})
        assert computed == 2
