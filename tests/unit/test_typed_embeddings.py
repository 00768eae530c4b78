"""Typed embeddings (Cohere's `embedding_types`, `/embed`'s `embedding_type`) against sentence-transformers'
`quantize_embeddings` with the served ranges, and `POST /v2/embed` in Cohere's shape, against the fake
Triton (the real tokenizer and postprocess stages over a fake engine: tests/unit/conftest.py, which gives
tiny-bert-mean its calibration ranges as a build would). Exact equality everywhere: same bytes."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from sentence_transformers import quantize_embeddings

from gateway import embedding_types
from testkit.gateway_server import error_message

TEXTS = ["a short one", "Zürich, São Paulo and Kraków: naïve café", "the quick brown fox " * 12, "🍕 emoji"]
MODEL = "tiny-bert-mean"


def served_ranges(gateway, model: str = MODEL) -> np.ndarray:
    return np.asarray(gateway.get("/info", params={"model": model}).json()["quantization_ranges"], dtype=np.float32)


def floats(gateway, texts: list[str], **extra) -> np.ndarray:
    response = gateway.post("/embed", {"inputs": texts, "model": MODEL, **extra})
    assert response.status_code == 200, response.text
    return np.asarray(response.json(), dtype=np.float32)


@pytest.mark.parametrize("kind", ["int8", "uint8", "binary", "ubinary", "float32"])
def test_encoding_is_quantize_embeddings(kind):
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((200, 48)).astype(np.float32)
    ranges = np.vstack([calibration.min(axis=0), calibration.max(axis=0)])
    ranges[:, 5] = 0.25  # a zero-width dimension: step 1, as the library does
    vectors = 1.3 * rng.standard_normal((17, 48)).astype(np.float32)  # some outside the ranges: clipped
    ours = embedding_types.encode(vectors, "float" if kind == "float32" else kind, ranges)
    reference = quantize_embeddings(vectors, kind, ranges=ranges)
    assert ours.dtype == reference.dtype and ours.shape == reference.shape
    np.testing.assert_array_equal(ours, reference)


def test_base64_is_little_endian_float32():
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    decoded = [np.frombuffer(base64.b64decode(row), dtype="<f4") for row in embedding_types.encode(vectors, "base64")]
    np.testing.assert_array_equal(np.stack(decoded), vectors)


@pytest.mark.parametrize("kind", ["int8", "uint8", "binary", "ubinary"])
def test_embed_embedding_type_matches_the_library_with_the_served_ranges(gateway, kind):
    reference = quantize_embeddings(floats(gateway, TEXTS), kind, ranges=served_ranges(gateway))
    response = gateway.post("/embed", {"inputs": TEXTS, "model": MODEL, "embedding_type": kind})
    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(np.asarray(response.json(), dtype=reference.dtype), reference)
    width = 32 // 8 if kind.endswith("binary") else 32
    assert np.asarray(response.json()).shape == (len(TEXTS), width)


def test_an_int8_row_does_not_depend_on_its_batch(gateway):
    alone = gateway.post("/embed", {"inputs": [TEXTS[1]], "model": MODEL, "embedding_type": "int8"}).json()
    others = ["something else entirely", TEXTS[1], "x " * 40]
    batched = gateway.post("/embed", {"inputs": others, "model": MODEL, "embedding_type": "int8"}).json()
    assert batched[1] == alone[0]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"inputs": "x", "model": MODEL, "embedding_type": "int8", "normalize": False}, "normalized 32-dimension"),
        ({"inputs": "x", "model": MODEL, "embedding_type": "uint8", "dimensions": 8}, "normalized 32-dimension"),
        ({"inputs": "x", "model": "tiny-bert-cls", "embedding_type": "int8"}, "no calibrated quantization ranges"),
        ({"inputs": "x", "model": MODEL, "embedding_type": "int4"}, "embedding_type"),
    ],
)
def test_int8_outside_its_calibration_is_422(gateway, body, fragment):
    response = gateway.post("/embed", body)
    assert response.status_code == 422, response.text
    assert fragment in error_message(response)


def test_binary_needs_no_ranges_and_takes_any_shape(gateway):
    short = floats(gateway, TEXTS, dimensions=16)
    response = gateway.post("/embed", {"inputs": TEXTS, "model": "tiny-bert-mean", "dimensions": 16,
                                       "embedding_type": "ubinary"})
    np.testing.assert_array_equal(np.asarray(response.json(), dtype=np.uint8), quantize_embeddings(short, "ubinary"))


def test_v2_embed_answers_every_type_asked_for_in_cohere_shape(gateway):
    types = ["float", "int8", "uint8", "binary", "ubinary", "base64"]
    response = gateway.post("/v2/embed", {"texts": TEXTS, "model": MODEL, "embedding_types": types})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "embeddings", "texts", "meta", "response_type"}
    assert body["response_type"] == "embeddings_by_type" and body["texts"] == TEXTS
    assert list(body["embeddings"]) == types
    assert body["meta"]["api_version"] == {"version": "2"}
    assert body["meta"]["billed_units"]["input_tokens"] == int(response.headers["x-compute-tokens"])
    vectors = floats(gateway, TEXTS)  # /embed normalizes by default, as Cohere's vectors are
    np.testing.assert_array_equal(np.asarray(body["embeddings"]["float"], dtype=np.float32), vectors)
    ranges = served_ranges(gateway)
    for kind in ("int8", "uint8", "binary", "ubinary"):
        reference = quantize_embeddings(vectors, kind, ranges=ranges)
        np.testing.assert_array_equal(np.asarray(body["embeddings"][kind], dtype=reference.dtype), reference)
    decoded = np.stack([np.frombuffer(base64.b64decode(r), dtype="<f4") for r in body["embeddings"]["base64"]])
    np.testing.assert_array_equal(decoded, vectors)


def test_v2_embed_inputs_output_dimension_and_default_type(gateway):
    body = {"inputs": [{"content": [{"type": "text", "text": t}]} for t in TEXTS], "model": MODEL,
            "output_dimension": 8}
    answer = gateway.post("/v2/embed", body).json()
    assert list(answer["embeddings"]) == ["float"] and answer["texts"] == TEXTS
    np.testing.assert_array_equal(np.asarray(answer["embeddings"]["float"], dtype=np.float32),
                                  floats(gateway, TEXTS, dimensions=8))


def test_v2_embed_input_type_picks_the_models_prompt(gateway):
    def embed_v2(input_type: str | None) -> list:
        body = {"texts": ["where is zürich"], "model": "tiny-bert-cls", "input_type": input_type}
        return gateway.post("/v2/embed", {k: v for k, v in body.items() if v is not None}).json()["embeddings"]["float"]

    def embed(prompt_name: str | None) -> list:
        body = {"inputs": ["where is zürich"], "model": "tiny-bert-cls", "prompt_name": prompt_name}
        return gateway.post("/embed", {k: v for k, v in body.items() if v is not None}).json()

    assert embed_v2("search_query") == embed("query")
    assert embed_v2("search_document") == embed("document")
    assert embed_v2("clustering") == embed_v2(None) == embed(None)  # no prompt of that kind: the text as sent
    assert embed_v2("search_query") != embed_v2("search_document")


def test_v2_embed_truncate_and_max_tokens(gateway):
    words = ("paris london berlin tokyo " + "the quick brown fox jumps over the lazy dog " * 5 + "apple google").split()
    long = " ".join(words)  # 51 words of one token each: 53 tokens with [CLS] and [SEP]

    def embed(texts: list[str], **options) -> dict:
        return gateway.post("/v2/embed", {"texts": texts, "model": MODEL, **options}).json()

    none = gateway.post("/v2/embed", {"texts": [long], "model": MODEL, "truncate": "NONE", "max_tokens": 20})
    assert none.status_code == 422 and "input 0 has 53 tokens" in error_message(none)
    end = embed(["a", long], max_tokens=20)
    assert end["meta"]["billed_units"]["input_tokens"] == 3 + 20
    assert end["embeddings"]["float"][1] == embed([" ".join(words[:18])])["embeddings"]["float"][0]
    start = embed([long], max_tokens=20, truncate="START")
    assert start["embeddings"]["float"][0] == embed([" ".join(words[-18:])])["embeddings"]["float"][0]
    assert embed([long], truncate="NONE")["meta"]["billed_units"]["input_tokens"] == 53  # under the model's 128


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"model": MODEL}, 422, "either `texts` or `inputs`"),
        ({"texts": ["a"], "inputs": [{"content": [{"type": "text", "text": "b"}]}], "model": MODEL}, 422, "either"),
        ({"inputs": [{"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}], "model": MODEL},
         422, "one text per input"),
        ({"inputs": [{"content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "model": MODEL}, 422, "type"),
        ({"texts": [], "model": MODEL}, 400, "`texts` must not be empty"),
        ({"texts": [""], "model": MODEL}, 400, "empty string"),
        ({"texts": ["a"], "model": MODEL, "embedding_types": []}, 422, "embedding_types"),
        ({"texts": ["a"], "model": MODEL, "embedding_types": ["int8"], "output_dimension": 8}, 422,
         "normalized 32-dimension"),
        ({"texts": ["a"], "model": MODEL, "output_dimension": 33}, 422, "`output_dimension` must be between 1 and 32"),
        ({"texts": ["a"], "model": MODEL, "truncate": "MIDDLE"}, 422, "truncate"),
        ({"texts": ["a"], "model": MODEL, "max_tokens": 0}, 422, "max_tokens"),
        ({"texts": ["a"], "model": MODEL, "max_tokens": 2}, 422, "leaves no room"),
        ({"texts": ["a"], "model": MODEL, "input_type": "search_everything"}, 422, "input_type"),
        ({"texts": ["a"], "model": "tiny-reranker"}, 400, "it serves /rerank"),
    ],
)
def test_v2_embed_bad_requests(gateway, body, status, fragment):
    response = gateway.post("/v2/embed", body)
    assert response.status_code == status, response.text
    assert fragment in error_message(response)
