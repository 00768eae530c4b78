"""Sparse, token-embedding and multi-vector models through the real stack (tritonserver, ONNX Runtime engines,
the gateway), each answer against sentence-transformers itself on the same inputs, all models in one stack:

- SPLADE (a tiny BertForMaskedLM with SpladePooling, in the 6.x and the 5.x file layouts): `/embed_sparse`
  against `SparseEncoder.encode` (and `max_active_dims` for `top_k`): the same non-zero set, values 1e-4.
- `/embed_all` against `SentenceTransformer.encode(output_value="token_embeddings")`, 1e-4.
- a ColBERT-style model saved by `MultiVectorEncoder` (queries [MASK]-expanded without attention, a
  punctuation skiplist): `/embed_all` with prompt_name query / document against `encode_query` /
  `encode_document` (1e-4 per component, the same number of vectors), `/rerank` against `similarity` (1e-4).
- typed embeddings: int8 / uint8 / binary / ubinary equal to `quantize_embeddings` with the served ranges
  (exact), the ranges equal to those of the library's vectors of the calibration texts (1e-5), an int8 row
  independent of its batch; `/similarity` equal to the cosine of `/embed` vectors (1e-6).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from builder.calibration import calibration_texts
from testkit.factories import make_tiny_bert, make_tiny_colbert, make_tiny_splade
from testkit.stack import Stack
from trident.spec import ModelSpec

TOLERANCE = 1e-4
TEXTS = ["hello world", "the quick brown fox jumps over the lazy dog", "Zürich, São Paulo and Kraków: naïve café",
         "🍕 emoji " * 3, "a"]
DOCUMENTS = ["the quick brown fox, jumps over the lazy dog.", "a dog!", "paris: london; berlin and tokyo?"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("beyond-tei")
    return {"splade6": make_tiny_splade(root / "splade6", layout="6", seed=21),
            "splade5": make_tiny_splade(root / "splade5", layout="5", strategy="sum", activation="log1p_relu",
                                        seed=22),
            "dense": make_tiny_bert(root / "dense", pooling="mean", normalize=True, seed=23),
            "colbert": make_tiny_colbert(root / "colbert", seed=24)}


@pytest.fixture(scope="module")
def client(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    args = [arg for name, path in models.items() for arg in ("--model", f"{name}={path}")]
    stack = Stack(args, tmp_path_factory.mktemp("beyond-tei-stack") / "serve.log").start()
    with httpx.Client(base_url=stack.base_url, timeout=120) as client:
        yield client
    stack.stop()


def sparse_rows(answer: list[list[dict]], width: int) -> np.ndarray:
    dense = np.zeros((len(answer), width), dtype=np.float32)
    for row, entries in enumerate(answer):
        assert [e["index"] for e in entries] == sorted(e["index"] for e in entries)  # index order
        for entry in entries:
            dense[row, entry["index"]] = entry["value"]
    return dense


@pytest.mark.parametrize("name", ["splade6", "splade5"])
def test_embed_sparse_matches_sparse_encoder(client, models, name):
    from sentence_transformers import SparseEncoder

    encoder = SparseEncoder(str(models[name]), device="cpu")
    reference = encoder.encode(TEXTS).to_dense().numpy()
    response = client.post("/embed_sparse", json={"inputs": TEXTS, "model": name})
    assert response.status_code == 200, response.text
    served = sparse_rows(response.json(), reference.shape[1])
    assert ((served != 0) == (reference != 0)).all()  # the same non-zero set
    np.testing.assert_allclose(served, reference, atol=TOLERANCE)
    assert (reference != 0).sum(axis=1).min() > 5  # something to compare
    top = encoder.encode(TEXTS, max_active_dims=5).to_dense().numpy()
    served_top = sparse_rows(client.post("/embed_sparse", json={"inputs": TEXTS, "model": name, "top_k": 5}).json(),
                             reference.shape[1])
    assert ((served_top != 0) == (top != 0)).all()
    np.testing.assert_allclose(served_top, top, atol=TOLERANCE)
    info = client.get("/info", params={"model": name}).json()
    assert (info["task"], info["pooling"], info["dimensions"]) == ("sparse", "splade", reference.shape[1])
    dense = client.post("/embed", json={"inputs": "x", "model": name})
    assert dense.status_code == 400 and "/embed_sparse" in dense.json()["error"]


def test_embed_all_matches_token_embeddings(client, models):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(models["dense"]), device="cpu").encode(TEXTS, output_value="token_embeddings")
    response = client.post("/embed_all", json={"inputs": TEXTS, "model": "dense"})
    assert response.status_code == 200, response.text
    for served, expected in zip(response.json(), reference, strict=True):
        served = np.asarray(served, dtype=np.float32)
        assert served.shape == tuple(expected.shape)  # special tokens included
        np.testing.assert_allclose(served, expected.numpy(), atol=TOLERANCE)
    assert int(response.headers["x-tokenization-time"]) <= int(response.headers["x-inference-time"])


def test_multi_vector_matches_multi_vector_encoder(client, models):
    from sentence_transformers import MultiVectorEncoder

    encoder = MultiVectorEncoder(str(models["colbert"]), device="cpu")
    queries = ["where is the fox?", "dogs", "a query much longer than the twelve tokens of its expansion length"]
    for side, encode, texts in (("query", encoder.encode_query, queries),
                                ("document", encoder.encode_document, DOCUMENTS)):
        reference = encode(texts, convert_to_numpy=True)
        response = client.post("/embed_all", json={"inputs": texts, "model": "colbert", "prompt_name": side,
                                                   "truncate": True})
        assert response.status_code == 200, response.text
        for served, expected in zip(response.json(), reference, strict=True):
            served = np.asarray(served, dtype=np.float32)
            assert served.shape == expected.shape, side
            np.testing.assert_allclose(served, expected, atol=TOLERANCE)
    scores = encoder.similarity(encoder.encode_query(queries[:1]), encoder.encode_document(DOCUMENTS))[0].tolist()
    ranked = client.post("/rerank", json={"query": queries[0], "texts": DOCUMENTS, "model": "colbert"}).json()
    np.testing.assert_allclose([r["score"] for r in sorted(ranked, key=lambda r: r["index"])], scores, atol=TOLERANCE)
    assert [r["index"] for r in ranked] == list(np.argsort(scores)[::-1])


def test_typed_embeddings_are_quantize_embeddings_with_the_served_ranges(client, models):
    from sentence_transformers import SentenceTransformer, quantize_embeddings

    info = client.get("/info", params={"model": "dense"}).json()
    ranges = np.asarray(info["quantization_ranges"], dtype=np.float32)
    spec = ModelSpec(name="dense", task="embedding", architecture="BertModel", model_type="bert", max_length=128,
                     dim=32)
    library = SentenceTransformer(str(models["dense"]), device="cpu").encode(calibration_texts(spec),
                                                                             normalize_embeddings=True)
    np.testing.assert_allclose(ranges, np.vstack([library.min(axis=0), library.max(axis=0)]), atol=1e-5)
    floats = np.asarray(client.post("/embed", json={"inputs": TEXTS, "model": "dense"}).json(), dtype=np.float32)
    types = ["int8", "uint8", "binary", "ubinary"]
    answer = client.post("/v2/embed", json={"texts": TEXTS, "model": "dense", "embedding_types": types}).json()
    for kind in types:
        expected = quantize_embeddings(floats, kind, ranges=ranges)
        np.testing.assert_array_equal(np.asarray(answer["embeddings"][kind], dtype=expected.dtype), expected)
        served = client.post("/embed", json={"inputs": TEXTS, "model": "dense", "embedding_type": kind}).json()
        np.testing.assert_array_equal(np.asarray(served, dtype=expected.dtype), expected)
    alone = client.post("/embed", json={"inputs": [TEXTS[2]], "model": "dense", "embedding_type": "int8"}).json()
    assert alone[0] == answer["embeddings"]["int8"][2]  # the same row, whatever it is batched with
    similarity = client.post("/similarity", json={"inputs": {"source_sentence": TEXTS[0], "sentences": TEXTS[1:]},
                                                  "model": "dense"}).json()
    np.testing.assert_allclose(similarity, floats[1:] @ floats[0], atol=1e-6)
