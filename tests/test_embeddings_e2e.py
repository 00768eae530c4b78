"""/v1/embeddings through the real stack (tritonserver + gateway), against sentence-transformers."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
from openai import OpenAI
from sentence_transformers import SentenceTransformer

from tests.texts import varied_texts

COSINE_MIN = 0.9999  # stated tolerance: per text, Trident vs sentence-transformers (fp32 both)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


@pytest.fixture(scope="module")
def client(stack) -> OpenAI:
    return OpenAI(base_url=f"{stack.base_url}/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("model", ["all-MiniLM-L6-v2", "tiny-bert-cls", "tiny-bert-mean"])
def test_vectors_match_sentence_transformers(client, model, minilm_dir, tiny_models):
    path = minilm_dir if model == "all-MiniLM-L6-v2" else tiny_models[model]
    texts = varied_texts()
    assert len(texts) >= 50
    reference = SentenceTransformer(str(path), device="cpu").encode(texts, batch_size=16)
    response = client.embeddings.create(input=texts, model=model)
    served = np.array([item.embedding for item in response.data], dtype=np.float32)
    assert [item.index for item in response.data] == list(range(len(texts)))
    assert served.shape == reference.shape
    worst = cosines(served, reference).min()
    assert worst >= COSINE_MIN, f"{model}: worst cosine {worst}"
    # Vectors are the model's own: normalized only where the checkpoint has a Normalize module.
    np.testing.assert_allclose(served, reference, atol=2e-4)


def test_the_issue_example(client):
    response = client.embeddings.create(
        input=["A man is playing a guitar.", "Someone is playing an instrument."], model="all-MiniLM-L6-v2")
    a, b = (np.array(item.embedding) for item in response.data)
    assert len(a) == len(b) == 384
    assert abs(float(a @ b) - 0.675) < 0.01
    assert response.usage.prompt_tokens == response.usage.total_tokens > 0


def test_usage_counts_real_tokens(client, minilm_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
    texts = ["A man is playing a guitar.", "word " * 1000]
    expected = sum(min(len(tokenizer(t)["input_ids"]), 256) for t in texts)
    assert client.embeddings.create(input=texts, model="all-MiniLM-L6-v2").usage.prompt_tokens == expected


def test_base64_equals_float(client):
    texts = ["base64 please", "and floats"]
    floats = client.embeddings.create(input=texts, model="all-MiniLM-L6-v2", encoding_format="float")
    raw = httpx.post(f"{client.base_url}embeddings",
                     json={"input": texts, "model": "all-MiniLM-L6-v2", "encoding_format": "base64"}).json()
    for item, reference in zip(raw["data"], floats.data, strict=True):
        decoded = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
        np.testing.assert_array_equal(decoded, np.array(reference.embedding, dtype=np.float32))


def test_sdk_base64_path(client):
    """The SDK asks for base64 by default when encoding_format is omitted in newer versions: both work."""
    response = client.embeddings.create(input="hello", model="all-MiniLM-L6-v2", encoding_format="base64")
    assert isinstance(response.data[0].embedding, str | list)


def test_dimensions_truncate_then_renormalize(client):
    full = np.array(client.embeddings.create(input="matryoshka", model="all-MiniLM-L6-v2").data[0].embedding)
    short = np.array(client.embeddings.create(input="matryoshka", model="all-MiniLM-L6-v2",
                                              dimensions=64).data[0].embedding)
    assert short.shape == (64,)
    np.testing.assert_allclose(short, full[:64] / np.linalg.norm(full[:64]), atol=1e-6)


def test_token_ids_equal_text(client, minilm_dir):
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(str(minilm_dir))("A man is playing a guitar.")["input_ids"]
    by_text = client.embeddings.create(input="A man is playing a guitar.", model="all-MiniLM-L6-v2")
    by_ids = client.embeddings.create(input=[ids], model="all-MiniLM-L6-v2")
    np.testing.assert_allclose(by_ids.data[0].embedding, by_text.data[0].embedding, atol=1e-6)
    single = client.embeddings.create(input=ids, model="all-MiniLM-L6-v2")
    np.testing.assert_allclose(single.data[0].embedding, by_text.data[0].embedding, atol=1e-6)
    assert by_ids.usage.prompt_tokens == len(ids)


def test_models_listed(stack):
    body = httpx.get(f"{stack.base_url}/v1/models").json()
    assert {m["id"] for m in body["data"]} == {"all-MiniLM-L6-v2", "tiny-bert-cls", "tiny-bert-mean"}


def test_health(stack):
    response = httpx.get(f"{stack.base_url}/health")
    assert response.status_code == 200 and response.json()["status"] == "ok"
