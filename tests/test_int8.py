"""`quantization_type: int8` (CPU, ONNX Runtime dynamic int8): the gate, the refusals, and served vectors.

Stated tolerance: int8 embeddings keep cosine >= 0.99 to sentence-transformers' float32 ones, per text (the
build's own gate holds them to >= 0.99 of the float32 engine on the parity texts).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from openai import OpenAI
from sentence_transformers import SentenceTransformer

from builder.build import BuildOptions, build
from builder.config_file import check_settings, parse_build_config
from builder.errors import BuildError
from builder.inspect import inspect_checkpoint
from builder.int8 import candidates
from testkit.factories import make_tiny_bert
from testkit.stack import Stack
from tests.texts import varied_texts
from trident.gate import TOLERANCES, Tolerance
from trident.precision import variant

INT8_OPS = {"DynamicQuantizeMatMul", "MatMulInteger", "DynamicQuantizeLinear"}


def engine_ops(repository, name):
    """The ops of the graph the engine serves: the manifest's variant (int8/model.onnx beside the float32 one)."""
    served = variant(json.loads((repository / name / "manifest.json").read_text())["variant"]).file
    graph = onnx.load(str(repository / f"{name}_engine" / "1" / served), load_external_data=False).graph
    return {node.op_type for node in graph.node}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def test_candidates_try_the_most_int8_work_first():
    groups = {(4, 4): ["q", "k", "v", "o"], (4, 16): ["up"], (16, 4): ["down"]}
    combos = candidates(groups)
    assert combos[0] == [(4, 4), (4, 16), (16, 4)]  # everything: 64 + 64 + 64 multiply-adds
    assert len(combos) == 7 and all(combos)  # every non-empty combination, none twice
    work = [sum(s[0] * s[1] * len(groups[s]) for s in combo) for combo in combos]
    assert work == sorted(work, reverse=True)


def test_settings_int8_is_the_onnxruntime_engine_on_any_family(tmp_path):
    spec = inspect_checkpoint(make_tiny_bert(tmp_path / "m"), "m")
    check_settings(spec, "encoder_bert", "int8", None, "onnxruntime")  # BERT: accepted for CPU int8
    with pytest.raises(BuildError, match="ONNX Runtime's CPU int8"):
        check_settings(spec, None, "int8", None, "torch")
    config = parse_build_config({"trt_llm": {"build": {"base_model": "encoder_bert", "quantization_type": "int8",
                                                       "checkpoint_repository": {"repo": "x"}}}})
    assert config.quantization == "int8"


def test_int8_build_keeps_int8_and_passes_the_gate(tmp_path):
    model = make_tiny_bert(tmp_path / "m", pooling="mean")
    result = build(BuildOptions(model=str(model), out=tmp_path / "out", name="m8", quantization="int8"),
                   progress=lambda _: None)
    manifest = json.loads((tmp_path / "out" / "m8" / "manifest.json").read_text())
    report = manifest["parity"]["int8_vs_float32"]
    assert manifest["quantization"] == result.spec.quantization == "int8"
    assert report["passed"] and report["min_cosine"] >= TOLERANCES["reduced"].min_cosine
    assert 0 < report["int8_fraction"] <= 1
    assert engine_ops(tmp_path / "out", "m8") & INT8_OPS


def test_int8_build_refused_when_no_combination_passes(tmp_path, monkeypatch):
    monkeypatch.setitem(TOLERANCES, "reduced", Tolerance(min_cosine=1.0 + 1e-9))  # unreachable: every try fails
    model = make_tiny_bert(tmp_path / "m", pooling="mean")
    with pytest.raises(BuildError, match=r"int8 outputs differ from float32.*nothing was written"):
        build(BuildOptions(model=str(model), out=tmp_path / "out", name="m8", quantization="int8"),
              progress=lambda _: None)
    assert not (tmp_path / "out" / "m8").exists()


@pytest.fixture(scope="module")
def int8_stack(minilm_dir, tmp_path_factory):
    """The real all-MiniLM-L6-v2 built with --quantization int8 by `trident serve`, served by real Triton."""
    server = Stack(["--model", f"minilm-int8={minilm_dir}", "--quantization", "int8"],
                   tmp_path_factory.mktemp("int8") / "serve.log").start(timeout=600)
    yield server
    server.stop()


def test_served_int8_minilm_stays_within_cosine_099_of_sentence_transformers(int8_stack, minilm_dir):
    texts = varied_texts()
    client = OpenAI(base_url=f"{int8_stack.base_url}/v1", api_key="unused", max_retries=0)
    served = np.array([d.embedding for d in client.embeddings.create(input=texts, model="minilm-int8").data])
    reference = SentenceTransformer(str(minilm_dir), device="cpu").encode(texts, batch_size=16)
    worst = cosines(served, reference)
    print(f"\nint8 MiniLM vs sentence-transformers fp32 over {len(texts)} texts: min cosine {worst.min():.5f}, "
          f"mean {worst.mean():.5f}")
    assert worst.min() >= 0.99
    assert worst.min() < 0.99999  # it is int8: a float32 engine would give ~1.0 (the test would prove nothing)
