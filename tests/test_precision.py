"""The CPU engine's variants, built and served: a forced precision the CPU lacks is refused (exit code 2), a
variant that fails the gate is never written, the serve-time re-check on another kind of CPU, OpenVINO inside
Triton's Python stub, and the real all-MiniLM-L6-v2 in bf16 where the CPU has it (else its fastest float32
variant; auto's choice among every variant is the tiny model's test, kept short).

Stated tolerances: float32 variants within 1e-4 of sentence-transformers; every reduced precision at
cosine >= 0.99 to float32 per text over the gate's texts (trident.precision).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

import builder.variants
from builder.build import BuildOptions, build
from builder.errors import BuildError
from builder.gate_texts import gate_texts
from cli.main import main
from testkit.factories import make_tiny_bert
from testkit.stack import Stack, embed
from trident import cpu
from trident.engines.onnxruntime import OnnxEngine
from trident.engines.openvino import OpenVinoEngine
from trident.gate import TOLERANCES, Tolerance
from trident.precision import GATE_FILE, load_gate, missing, save_gate, served_engine, variant, variant_gate
from trident.spec import ModelSpec

AVX2_ONLY = "fpu sse4_2 avx avx2 fma"
HAS_BF16 = missing(variant("openvino-bf16"), cpu.cpu_flags()) is None
REDUCED = "openvino-bf16" if HAS_BF16 else "openvino-int8"  # a reduced precision this CPU runs
MINILM_PRECISION = "bf16" if HAS_BF16 else "fp32"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny") / "tiny", pooling="mean", normalize=True)


def built(model: Path, out: Path, precision: str) -> ModelSpec:
    return build(BuildOptions(model=str(model), out=out, name="t", precision=precision), progress=lambda _: None).spec


def test_a_forced_bf16_on_an_avx2_cpu_is_refused_with_exit_code_2(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cpu.FLAGS_ENV, AVX2_ONLY)
    assert main(["build", str(tiny), "--out", str(tmp_path / "out"), "--precision", "bf16"]) == 2
    error = capsys.readouterr().err
    assert "--precision bf16: openvino-bf16 needs a CPU with avx512_bf16 or amx_bf16" in error
    assert "this one (avx2)" in error
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_auto_measures_every_variant_the_cpu_allows_and_serves_the_fastest_that_passes(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(builder.variants, "AUTO_MIN_ENGINE_BYTES", 0)  # measure even a tiny model
    spec = built(tiny, tmp_path / "out", "auto")
    manifest = ModelSpec.load(tmp_path / "out" / "t" / "manifest.json")
    choice = manifest.variant_choice
    allowed = [row.name for row in builder.variants.candidates_for("auto", cpu.cpu_flags(), 1 << 40)]
    assert [row["variant"] for row in choice["candidates"]] == allowed
    assert choice["cpu_flags"] == cpu.relevant_flags() and choice["cpu_kind"] == cpu.cpu_kind()
    assert manifest.variant == spec.variant == choice["chosen"]
    rows = {row["variant"]: row for row in choice["candidates"]}
    passing = [row for row in rows.values() if row["passed"]
               and (row["variant"] == "onnxruntime-fp32" or row["ms"] * builder.variants.FASTER_BY
                    <= rows["onnxruntime-fp32"]["ms"])]
    assert choice["chosen"] == min(passing, key=lambda row: row["ms"])["variant"]
    # What is served passes the gate again, from the repository's own files.
    folder = tmp_path / "out" / "t_engine" / "1"
    ids, types, expected, _ = load_gate(folder / GATE_FILE)
    assert len(ids) >= 200
    report = variant_gate(manifest, variant(spec.variant), expected, served_engine(manifest, folder).run(ids, types))
    assert report.passed


def test_a_variant_that_fails_the_gate_is_never_served(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(TOLERANCES, "reduced", Tolerance(min_cosine=1.0 + 1e-9))  # no reduced precision can pass
    with pytest.raises(BuildError, match=r"no variant passed the gate.*nothing was written"):
        built(tiny, tmp_path / "forced", REDUCED)
    assert not (tmp_path / "forced" / "t").exists()
    monkeypatch.setattr(builder.variants, "AUTO_MIN_ENGINE_BYTES", 0)
    spec = built(tiny, tmp_path / "auto", "auto")
    assert variant(spec.variant).precision == "fp32"
    assert all(not row["passed"] for row in spec.variant_choice["candidates"] if row["variant"].endswith("8")
               or row["variant"].endswith("bf16"))


@pytest.fixture(scope="module")
def int8_build(tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("int8")
    built(tiny, out, "onnxruntime-int8")
    return out


def _load(repository: Path) -> tuple[ModelSpec, Path]:
    return ModelSpec.load(repository / "t" / "manifest.json"), repository / "t_engine" / "1"


def another_cpu(spec: ModelSpec) -> frozenset[str]:
    """An AVX2 CPU without bf16 whose relevant flags differ from those the build recorded (on an AVX2-only
    build machine: one with AVX-512 but no bf16)."""
    flags = frozenset(AVX2_ONLY.split())
    if cpu.relevant_flags(flags) == spec.variant_choice["cpu_flags"]:
        flags |= {"avx512f", "avx512bw"}
    return flags


def test_served_on_the_cpu_kind_it_was_chosen_on_it_is_trusted(int8_build, caplog):
    spec, folder = _load(int8_build)
    with caplog.at_level(logging.WARNING, "trident.precision"):
        engine = served_engine(spec, folder)
    assert isinstance(engine, OnnxEngine) and engine.session._model_path.endswith("int8/model.onnx")
    assert not caplog.records


def test_on_another_cpu_kind_the_variant_is_re_checked_before_it_is_served(int8_build, caplog):
    spec, folder = _load(int8_build)
    with caplog.at_level(logging.WARNING, "trident.precision"):
        engine = served_engine(spec, folder, flags=another_cpu(spec))
    assert engine.session._model_path.endswith("int8/model.onnx")
    assert "re-checked here" in caplog.text and "kept" in caplog.text


def test_a_variant_failing_the_re_check_falls_back_to_float32(int8_build, tmp_path, caplog):
    spec, folder = _load(int8_build)
    ids, types, expected, labels = load_gate(folder / GATE_FILE)
    tampered = tmp_path / "engine"
    shutil.copytree(folder, tampered)
    save_gate(tampered / GATE_FILE, ids, types, [-e for e in expected], labels)  # float32 "said" the opposite
    with caplog.at_level(logging.WARNING, "trident.precision"):
        engine = served_engine(spec, tampered, flags=another_cpu(spec))
    assert engine.session._model_path.endswith(f"{tampered.name}/model.onnx")
    assert "serving onnxruntime-fp32 instead of onnxruntime-int8" in caplog.text and "fails the gate" in caplog.text


def test_a_variant_this_cpu_lacks_is_not_served(int8_build, caplog):
    spec, folder = _load(int8_build)
    spec.variant = "openvino-bf16"  # as a build on an AVX512_BF16 / AMX CPU records it
    with caplog.at_level(logging.WARNING, "trident.precision"):
        engine = served_engine(spec, folder, flags=another_cpu(spec))
    assert isinstance(engine, OnnxEngine) and engine.session._model_path.endswith("1/model.onnx")
    assert "needs a CPU with avx512_bf16 or amx_bf16" in caplog.text


def test_an_openvino_variant_where_openvino_is_not_installed_serves_float32(int8_build, caplog, monkeypatch):
    spec, folder = _load(int8_build)
    spec.variant = "openvino-fp32"
    monkeypatch.setattr("trident.precision.openvino_installed", lambda: False)
    with caplog.at_level(logging.WARNING, "trident.precision"):
        engine = served_engine(spec, folder, flags=cpu.cpu_flags())  # the very CPU it was built on
    assert isinstance(engine, OnnxEngine) and engine.session._model_path.endswith("1/model.onnx")
    assert "needs the openvino package" in caplog.text


# --- served by the real Triton ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def variant_stack(tiny, minilm_dir, tmp_path_factory):
    """A tiny model on OpenVINO float32 (a repository), and all-MiniLM-L6-v2 built by `serve --precision bf16`
    (fp32 without bf16)."""
    repository = tmp_path_factory.mktemp("ov-fp32")
    built(tiny, repository, "openvino-fp32")
    # A build cache of its own: the serve must build MiniLM (the tests read its variant table in the serve log),
    # which a warm test-home cache from an earlier run would skip.
    server = Stack(["--repository", str(repository), "--model", f"minilm-reduced={minilm_dir}",
                    "--precision", MINILM_PRECISION],
                   tmp_path_factory.mktemp("variants") / "serve.log",
                   env={"TRIDENT_HOME": str(tmp_path_factory.mktemp("home"))}).start(timeout=900)
    yield server
    server.stop()


def _maps_openvino(session_leader: int) -> bool:
    """Whether a process of the stack (its session) has OpenVINO's runtime library mapped."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.getsid(int(entry.name)) == session_leader \
                    and "libopenvino" in (entry / "maps").read_text():
                return True
        except (OSError, ProcessLookupError):
            continue
    return False


def test_openvino_runs_inside_the_python_stub_at_float32_parity(variant_stack, tiny):
    texts = gate_texts()[:64]
    served = embed(variant_stack, "t", texts)
    reference = SentenceTransformer(str(tiny), device="cpu").encode(texts)
    np.testing.assert_allclose(served, reference, atol=1e-4)
    assert _maps_openvino(variant_stack.process.pid)


def test_served_minilm_in_reduced_precision_stays_within_the_gate_of_sentence_transformers(variant_stack, minilm_dir):
    log = variant_stack.log_path.read_text()
    assert "serving onnxruntime-fp32 instead" not in log
    info = [json.loads(line) for line in log.splitlines() if line.startswith("{") and "<- chosen" in line]
    assert info, "the build's variant table is in the serve log"
    texts = gate_texts()
    served = embed(variant_stack, "minilm-reduced", texts)
    reference = SentenceTransformer(str(minilm_dir), device="cpu").encode(texts, batch_size=32)
    cosines = (served * reference).sum(1) / np.linalg.norm(served, axis=1) / np.linalg.norm(reference, axis=1)
    print(f"\nminilm --precision {MINILM_PRECISION}: {info[-1]['message'] if info else ''}\nmin cosine to "
          f"sentence-transformers "
          f"fp32 over {len(texts)} texts: {cosines.min():.5f}")
    assert cosines.min() >= TOLERANCES["reduced"].min_cosine
    chosen = next(line.split()[0] for line in info[-1]["message"].splitlines() if "<- chosen" in line)
    assert variant(chosen).precision == MINILM_PRECISION  # served in the reduced precision, not float32


def test_openvino_engine_keeps_the_engine_contract(int8_build):
    spec, folder = _load(int8_build)
    ids, types, expected, _ = load_gate(folder / GATE_FILE)
    rows = OpenVinoEngine(folder / "model.onnx", spec, "fp32", 1, spec.pad_token_id).run(ids[:20], types[:20])
    assert [r.shape for r in rows] == [e.shape for e in expected[:20]]
    np.testing.assert_allclose(np.stack(rows), np.stack(expected[:20]), atol=1e-4)
