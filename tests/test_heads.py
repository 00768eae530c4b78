"""Embedding heads as sentence-transformers writes them (Pooling -> Dense* -> Normalize, the LaBSE and
EmbeddingGemma shape): read from modules.json, run by the ONNX and torch engines, served through Triton,
and equal to `SentenceTransformer.encode` of the very same folder.

Tolerances: max |diff| <= 1e-5 per component against sentence-transformers in float32 (the builder's own
gate is 1e-4), on normalized and unnormalized vectors and on Matryoshka-truncated ones.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from torch import nn

from builder.errors import BuildError
from builder.inspect import inspect_checkpoint
from testkit.factories import make_tiny_bert
from testkit.stack import Stack
from trident.heads import HeadError, check

TOLERANCE = 1e-5
TEXTS = ["a short one", "Zürich, São Paulo and Kraków: naïve café", "the quick brown fox " * 12, "🍕 emoji"]


def save_dense_model(out: Path, base: Path, pooling: str) -> Path:
    """A sentence-transformers model over the tiny BERT, with two Dense modules (tanh + bias, then a
    bias-free identity projection to 16) before Normalize, saved by the library itself."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models

    modules = [models.Transformer(str(base)), models.Pooling(32, pooling),
               models.Dense(32, 24, activation_function=nn.Tanh()),
               models.Dense(24, 16, bias=False, activation_function=nn.Identity()), models.Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(out))
    return out


@pytest.fixture(scope="module")
def dense_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dense")
    return save_dense_model(root / "tiny-dense", make_tiny_bert(root / "base", seed=3), "mean")


@pytest.fixture(scope="module")
def reference(dense_model: Path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(dense_model), device="cpu")
    normalized = model.encode(TEXTS, convert_to_numpy=True)
    without_normalize = SentenceTransformer(modules=list(model)[:-1], device="cpu")  # the head up to Dense
    return normalized, without_normalize.encode(TEXTS, convert_to_numpy=True)


def test_the_head_is_the_module_list(dense_model):
    spec = inspect_checkpoint(dense_model, "tiny-dense")
    assert [module["type"] for module in spec.head] == ["Pooling", "Dense", "Dense", "Normalize"]
    assert spec.head[1] == {"type": "Dense", "path": "2_Dense", "in_features": 32, "out_features": 24,
                            "bias": True, "activation": "Tanh"}
    assert spec.head[2]["bias"] is False and spec.head[2]["activation"] == "Identity"
    assert (spec.dim, spec.pooling, spec.normalize) == (16, "mean", True)


def test_heads_the_engines_cannot_run_are_refused(tmp_path):
    with pytest.raises(HeadError, match="last"):
        check([{"type": "Pooling", "mode": "cls"}, {"type": "Normalize"}, {"type": "Normalize"}])
    with pytest.raises(HeadError, match="starts with a Pooling"):
        check([{"type": "Normalize"}])
    with pytest.raises(HeadError, match="activation"):
        check([{"type": "Pooling", "mode": "cls"}, {"type": "Dense", "activation": "Softmax"}])
    model = make_tiny_bert(tmp_path / "m")
    (model / "2_Dense").mkdir()
    (model / "2_Dense" / "config.json").write_text('{"in_features": 32, "out_features": 8}')
    modules = (model / "modules.json").read_text().replace(
        '"type": "sentence_transformers.models.Pooling"\n  }',
        '"type": "sentence_transformers.models.Pooling"\n  },\n  {"idx": 2, "name": "2", "path": "2_Dense", '
        '"type": "sentence_transformers.models.Dense"}')
    (model / "modules.json").write_text(modules)
    with pytest.raises(BuildError, match=r"2_Dense has none of model\.safetensors"):
        inspect_checkpoint(model, "m")


def test_the_torch_engine_runs_the_dense_modules(dense_model, reference):
    from transformers import AutoTokenizer

    from trident.engines.torch.engine import TorchEngine
    from trident.postprocess import l2_normalize

    spec = inspect_checkpoint(dense_model, "tiny-dense")
    tokenizer = AutoTokenizer.from_pretrained(dense_model)
    ids = [np.array(tokenizer(t, truncation=True, max_length=spec.max_length)["input_ids"]) for t in TEXTS]
    pooled = np.stack(TorchEngine.load(dense_model, spec, device="cpu").run(ids, None))
    np.testing.assert_allclose(pooled, reference[1], atol=TOLERANCE)
    np.testing.assert_allclose(l2_normalize(pooled), reference[0], atol=TOLERANCE)


@pytest.fixture(scope="module")
def served(dense_model, tmp_path_factory):
    stack = Stack(["--model", f"tiny-dense={dense_model}"], tmp_path_factory.mktemp("dense-stack") / "serve.log")
    yield stack.start()
    stack.stop()


def test_served_dense_head_matches_sentence_transformers(served, reference):
    normalized, unnormalized = reference
    with httpx.Client(base_url=served.base_url, timeout=60) as client:
        openai = client.post("/v1/embeddings", json={"input": TEXTS}).json()
        vectors = np.array([item["embedding"] for item in openai["data"]], dtype=np.float32)
        np.testing.assert_allclose(vectors, normalized, atol=TOLERANCE)
        raw = np.array(client.post("/embed", json={"inputs": TEXTS, "normalize": False}).json(), dtype=np.float32)
        np.testing.assert_allclose(raw, unnormalized, atol=TOLERANCE)
        short = np.array(client.post("/embed", json={"inputs": TEXTS, "dimensions": 8}).json(), dtype=np.float32)
        cut = unnormalized[:, :8] / np.linalg.norm(unnormalized[:, :8], axis=1, keepdims=True)
        np.testing.assert_allclose(short, cut, atol=TOLERANCE)
        info = client.get("/info").json()
        assert (info["dimensions"], info["pooling"]) == (16, "mean")
