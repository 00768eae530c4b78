"""Issue 24 through the real stack (tritonserver, ONNX Runtime, the gateway), one stack for the module:

- BGE-M3 (a tiny XLM-RoBERTa in FlagEmbedding's layout, testkit.published.make_bge_m3) against FlagEmbedding's
  own `BGEM3FlagModel` (its venv: `make reference-venv`, testkit/flag_reference.py), with its max lengths set
  to the model's maximum: `/embed_hybrid` dense and ColBERT within 1e-4 (cosine >= 0.9999), the same sparse
  keys with values within 1e-4, each input alone and in a batch; the dense routes, `/embed_sparse` and
  `/embed_all`; `/rerank`, `/v1/rerank`, `/v2/rerank` against `compute_score(...)["colbert+sparse+dense"]` of
  each pair alone (and each mode's score with `scores`), within 1e-4.
- late chunking and long inputs on a mean-pooled BERT (max length 32, a prompt), against transformers' hidden
  states over the ids the issue's rules give, computed here: 1e-4 per component.
The largest difference of each comparison is printed at the end (-s).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from testkit.factories import make_tiny_bert
from testkit.published import BGE_M3_COLBERT_DIM, make_bge_m3
from testkit.stack import Stack

ROOT = Path(__file__).resolve().parent.parent
FLAG_PYTHON = ROOT / ".venv-flag" / "bin" / "python"
TOLERANCE = 1e-4
M3_MAX, MEAN_MAX = 64, 32
PROMPT = "query: "
TEXTS = ["hello world", "The quick brown fox jumps over the lazy dog.", "Zürich, São Paulo and Kraków: naïve café",
         "a", "Berlin is the capital of Germany. " * 12]  # the last past 64 tokens: cut as FlagEmbedding cuts
QUERY = "where is the quick fox?"
DOCUMENTS = ["the fox", "The quick brown fox jumps over the lazy dog, and then it runs far away into the woods.",
             "hello world", "Berlin is the capital of Germany. " * 12]
WEIGHTS = [0.4, 0.2, 0.4]
BIGGEST: dict[str, float] = {}


def note(name: str, gap: float) -> float:
    BIGGEST[name] = max(BIGGEST.get(name, 0.0), gap)
    return gap


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("issue-24")
    mean = make_tiny_bert(root / "mean", pooling="mean", normalize=True, max_seq_length=MEAN_MAX, seed=31)
    (mean / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": PROMPT}, "default_prompt_name": None, "similarity_fn_name": "cosine"}))
    return {"bge-m3": make_bge_m3(root, seed=32, max_seq_length=M3_MAX), "mean": mean}


@pytest.fixture(scope="module")
def client(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    args = [arg for name, path in models.items() for arg in ("--model", f"{name}={path}")]
    stack = Stack([*args, "--chunk-long-inputs"], tmp_path_factory.mktemp("issue-24-stack") / "serve.log").start()
    with httpx.Client(base_url=stack.base_url, timeout=120) as client:
        yield client
    stack.stop()
    if BIGGEST:
        print("\nlargest differences vs the references:\n" + "\n".join(f"  {k}: {v:.3e}" for k, v in BIGGEST.items()))


@pytest.fixture(scope="module")
def flag(models: dict[str, Path]) -> dict:
    """FlagEmbedding's answers for TEXTS and the (QUERY, document) pairs, default and WEIGHTS."""
    if not FLAG_PYTHON.exists():
        pytest.skip("FlagEmbedding's venv is missing: `make reference-venv` (make test makes it)")
    answers = {}
    for name, weights in (("default", None), ("weighted", WEIGHTS)):
        request = {"model": str(models["bge-m3"]), "max_length": M3_MAX, "colbert_dim": BGE_M3_COLBERT_DIM,
                   "texts": TEXTS, "pairs": [[QUERY, d] for d in DOCUMENTS], "weights": weights}
        script = ROOT / "testkit" / "flag_reference.py"
        done = subprocess.run([str(FLAG_PYTHON), str(script)], input=json.dumps(request), capture_output=True,
                              text=True, timeout=600, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        answers[name] = json.loads(done.stdout)
    return answers


def ok(client: httpx.Client, path: str, body: dict) -> object:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def compare_dense(served: list[float], expected: list[float], name: str) -> None:
    served, expected = np.asarray(served, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert note(f"{name} max |diff|", float(np.abs(served - expected).max())) <= TOLERANCE
    cosine = served @ expected / (np.linalg.norm(served) * np.linalg.norm(expected))
    assert 1 - note(f"{name} 1 - cosine", float(1 - cosine)) >= 0.9999


def compare_sparse(served: list[dict], expected: dict[str, float], name: str) -> None:
    weights = {str(entry["index"]): entry["value"] for entry in served}
    assert set(weights) == set(expected), name  # the same keys: token ids
    assert expected, "something to compare"
    assert note(f"{name} max |diff|", max(abs(weights[k] - expected[k]) for k in expected)) <= TOLERANCE


def compare_colbert(served: list[list[float]], expected: list[list[float]], name: str) -> None:
    served, expected = np.asarray(served), np.asarray(expected)
    assert served.shape == expected.shape, name
    assert note(f"{name} max |diff|", float(np.abs(served - expected).max())) <= TOLERANCE


def test_embed_hybrid_matches_bge_m3_flag_model(client, flag):
    body = {"model": "bge-m3", "return_colbert": True, "truncate": True}
    batch = ok(client, "/embed_hybrid", {**body, "inputs": TEXTS})
    for i, (text, expected) in enumerate(zip(TEXTS, flag["default"]["alone"], strict=True)):
        (alone,) = ok(client, "/embed_hybrid", {**body, "inputs": text})
        for served, how in ((alone, "alone"), (batch[i], "in a batch")):
            compare_dense(served["dense"], expected["dense_vecs"], f"embed_hybrid dense {how}")
            compare_sparse(served["sparse"], expected["lexical_weights"], f"embed_hybrid sparse {how}")
            compare_colbert(served["colbert"], expected["colbert_vecs"], f"embed_hybrid colbert {how}")
    assert len(batch[-1]["colbert"]) == M3_MAX - 1  # the long text, cut at the model's maximum; CLS left out


def test_bge_m3_routes_answer_its_outputs(client, flag):
    alone = flag["default"]["alone"]
    for vector, expected in zip(ok(client, "/v1/embeddings", {"input": TEXTS, "model": "bge-m3"})["data"], alone,
                                strict=True):
        compare_dense(vector["embedding"], expected["dense_vecs"], "/v1/embeddings dense")
    for vector, expected in zip(ok(client, "/embed", {"inputs": TEXTS, "model": "bge-m3", "truncate": True}), alone,
                                strict=True):
        compare_dense(vector, expected["dense_vecs"], "/embed dense")
    cohere = ok(client, "/v2/embed", {"texts": TEXTS, "model": "bge-m3"})["embeddings"]["float"]
    for vector, expected in zip(cohere, alone, strict=True):
        compare_dense(vector, expected["dense_vecs"], "/v2/embed dense")
    sparse = ok(client, "/embed_sparse", {"inputs": TEXTS, "model": "bge-m3", "truncate": True})
    for row, expected in zip(sparse, alone, strict=True):
        compare_sparse(row, expected["lexical_weights"], "/embed_sparse")
    top = ok(client, "/embed_sparse", {"inputs": TEXTS[1], "model": "bge-m3", "top_k": 3})[0]
    largest = sorted(alone[1]["lexical_weights"].items(), key=lambda item: -item[1])[:3]
    assert sorted(e["index"] for e in top) == sorted(int(k) for k, _ in largest)
    colbert = ok(client, "/embed_all", {"inputs": TEXTS, "model": "bge-m3", "truncate": True})
    for vectors, expected in zip(colbert, alone, strict=True):
        compare_colbert(vectors, expected["colbert_vecs"], "/embed_all colbert")
    similarity = ok(client, "/similarity", {"inputs": {"source_sentence": TEXTS[0], "sentences": TEXTS[1:4]},
                                            "model": "bge-m3"})
    dense = np.array([expected["dense_vecs"] for expected in alone[:4]])
    np.testing.assert_allclose(similarity, dense[1:] @ dense[0], atol=TOLERANCE)


def test_rerank_matches_compute_score_of_each_pair_alone(client, flag):
    for name, weights in (("default", None), ("weighted", WEIGHTS)):
        expected = flag[name]["scores"]
        extra = {"scores": True, **({"weights": weights} if weights else {})}
        tei = ok(client, "/rerank", {"query": QUERY, "texts": DOCUMENTS, "model": "bge-m3", "truncate": True, **extra})
        cohere = ok(client, "/v1/rerank", {"query": QUERY, "documents": DOCUMENTS, "model": "bge-m3", **extra})
        v2 = ok(client, "/v2/rerank", {"query": QUERY, "documents": DOCUMENTS, "model": "bge-m3", **extra})
        answers = ((tei, "score"), (cohere["results"], "relevance_score"), (v2["results"], "relevance_score"))
        for results, score in answers:
            assert len(results) == len(DOCUMENTS)
            for item in results:
                reference = expected[item["index"]]
                gap = abs(item[score] - reference["colbert+sparse+dense"])
                assert note(f"rerank {name} combined", gap) <= TOLERANCE
                for mode in ("dense", "sparse", "colbert"):
                    assert note(f"rerank {mode}", abs(item["scores"][mode] - reference[mode])) <= TOLERANCE
        alone = ok(client, "/rerank", {"query": QUERY, "texts": DOCUMENTS[:1], "model": "bge-m3", **extra})
        assert alone[0]["score"] == next(item["score"] for item in tei if item["index"] == 0)  # batch-independent
    batched = flag["default"]["batch_scores"]["colbert"]
    own = [pair["colbert"] for pair in flag["default"]["scores"]]
    print(f"\nFlagEmbedding's batched ColBERT scores differ from its pairs alone by up to "
          f"{max(abs(a - b) for a, b in zip(batched, own, strict=True)):.3e} (zero padding rows in its MaxSim)")


# --- late chunking and long inputs ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(models: dict[str, Path]):
    """The mean model in transformers: its tokenizer and each id sequence's last hidden state."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(models["mean"]))
    model = AutoModel.from_pretrained(str(models["mean"])).eval()

    def hidden(ids: list[int]) -> np.ndarray:
        with torch.inference_mode():
            tensor = torch.tensor([ids])
            return model(input_ids=tensor, attention_mask=torch.ones_like(tensor)).last_hidden_state[0].numpy()

    return tokenizer, hidden


def pieces(tokenizer, texts: list[str]) -> list[list[int]]:
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]


def wrapped(tokenizer, ids: list[int]) -> list[int]:
    """BERT's special tokens around one text's ids: [CLS] ... [SEP]."""
    return [tokenizer.cls_token_id, *ids, tokenizer.sep_token_id]


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def test_late_chunking_matches_transformers(client, reference):
    tokenizer, hidden = reference
    chunks = ["The quick brown fox", " jumps over the lazy dog.", " Then it sleeps", " in the sun."]
    for prompt_name, prompt in ((None, ""), ("query", PROMPT)):
        prompt_ids = pieces(tokenizer, [prompt])[0] if prompt else []
        ids = pieces(tokenizer, chunks)
        document = wrapped(tokenizer, prompt_ids + [i for chunk in ids for i in chunk])
        states = hidden(document)
        start = 1 + len(prompt_ids)  # after [CLS] and the prompt, which belongs to no chunk
        expected = []
        for chunk in ids:
            expected.append(unit(states[start : start + len(chunk)].mean(axis=0)))
            start += len(chunk)
        body = {"input": chunks, "model": "mean", "late_chunking": True,
                **({"prompt_name": prompt_name} if prompt_name else {})}
        answer = ok(client, "/v1/embeddings", body)
        served = np.array([item["embedding"] for item in answer["data"]])
        assert note("late chunking max |diff|", float(np.abs(served - np.array(expected)).max())) <= TOLERANCE
        assert answer["usage"]["prompt_tokens"] == len(document)  # the document's tokens, once
        tei = ok(client, "/embed", {"inputs": chunks, "model": "mean", "late_chunking": True,
                                    **({"prompt_name": prompt_name} if prompt_name else {})})
        np.testing.assert_allclose(tei, served, atol=1e-6)
    too_long = client.post("/embed", json={"inputs": ["word " * 20, "word " * 20], "model": "mean",
                                           "late_chunking": True})
    assert too_long.status_code == 422 and "42 tokens" in too_long.json()["error"], too_long.text


def windowed(tokenizer, hidden, text: str, prompt: str) -> tuple[np.ndarray, int]:
    """The issue's rule for a long input: the mean of its content tokens over windows that fill the maximum,
    each the prompt + a slice + the special tokens; and the tokens every window holds."""
    prompt_ids = pieces(tokenizer, [prompt])[0] if prompt else []
    content = pieces(tokenizer, [text])[0]
    room = MEAN_MAX - 2 - len(prompt_ids)
    states, tokens = [], 0
    for start in range(0, len(content), room):
        window = content[start : start + room]
        ids = wrapped(tokenizer, prompt_ids + window)
        first = 1 + len(prompt_ids)
        states.append(hidden(ids)[first : first + len(window)])
        tokens += len(ids)
    return unit(np.concatenate(states).mean(axis=0)), tokens


def test_long_inputs_match_transformers(client, reference):
    tokenizer, hidden = reference
    long_text = "The quick brown fox jumps over the lazy dog near the river bank. " * 6  # about 3 windows
    short = "a short text"
    for prompt_name, prompt in ((None, ""), ("query", PROMPT)):
        expected, tokens = windowed(tokenizer, hidden, long_text, prompt)
        extra = {"prompt_name": prompt_name} if prompt_name else {}
        served = ok(client, "/embed", {"inputs": [long_text, short], "model": "mean", "chunk_long_inputs": True,
                                       **extra})
        assert note("long input max |diff|", float(np.abs(np.array(served[0]) - expected).max())) <= TOLERANCE
        plain = ok(client, "/embed", {"inputs": [short], "model": "mean", **extra})
        np.testing.assert_allclose(served[1], plain[0], atol=1e-6)  # an input that fits: pooled as ever
        answer = ok(client, "/v1/embeddings", {"input": [long_text], "model": "mean", **extra})  # server default
        np.testing.assert_allclose(answer["data"][0]["embedding"], served[0], atol=1e-6)
        assert answer["usage"]["prompt_tokens"] == tokens  # every token of every window
    cut = ok(client, "/v1/embeddings", {"input": [long_text], "model": "mean", "chunk_long_inputs": False})
    ids = tokenizer(long_text, truncation=True, max_length=MEAN_MAX)["input_ids"]
    np.testing.assert_allclose(cut["data"][0]["embedding"], unit(hidden(ids).mean(axis=0)), atol=TOLERANCE)
    refused = client.post("/embed", json={"inputs": [long_text], "model": "mean", "chunk_long_inputs": False,
                                          "truncate": False})
    assert refused.status_code == 422 and "tokens" in refused.json()["error"]
    m3 = client.post("/embed", json={"inputs": [long_text], "model": "bge-m3", "truncate": True})
    assert m3.status_code == 200  # the server default applies where it can: not to a CLS model
