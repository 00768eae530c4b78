"""The CPU engine's variants without building anything: CPU flags (and their override), which variants a CPU
allows and why not, the choice among measured candidates, the gate's texts, and the manifest fields (the gate
itself: tests/unit/test_gate.py). Builds, the serve-time re-check and served variants: tests/test_precision.py.
"""

from __future__ import annotations

import pytest

from builder.errors import BuildError
from builder.gate_texts import GATE_TEXT_COUNT, MAX_WORDS, PAIR_LIST_SIZE, gate_pairs, gate_texts, pair_lists
from builder.variants import (
    AUTO_MIN_ENGINE_BYTES,
    FASTER_BY,
    Candidate,
    candidates_for,
    fastest_passing,
    resolve_precision,
    table,
)
from trident import cpu
from trident.gate import GateReport
from trident.precision import int8_format, missing, variant
from trident.spec import ModelSpec

AVX2 = frozenset("fpu sse4_2 avx avx2 fma".split())  # AMD Zen 3
EPYC_AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}  # AMD Zen 4: no AMX
SAPPHIRE_RAPIDS = EPYC_AVX512 | {"avx512_fp16", "amx_tile", "amx_bf16", "amx_int8"}
BIG = 10 * AUTO_MIN_ENGINE_BYTES


def spec(task: str = "embedding", **fields) -> ModelSpec:
    labels = {"reranker": {"0": "score"}, "classifier": {"0": "a", "1": "b"}, "ner": {"0": "O", "1": "B-PER"}}
    return ModelSpec(name="m", task=task, architecture="BertModel", model_type="bert", max_length=128, dim=8,
                     id2label=labels.get(task, {}), **fields)


def test_flags_come_from_the_override_then_cpuinfo(monkeypatch, tmp_path):
    monkeypatch.setenv(cpu.FLAGS_ENV, "avx2, fma avx512_bf16")
    assert cpu.cpu_flags() == {"avx2", "fma", "avx512_bf16"}
    monkeypatch.delenv(cpu.FLAGS_ENV)
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 amx_int8\n")
    monkeypatch.setattr(cpu, "CPUINFO", info)
    assert cpu.cpu_flags() == {"fpu", "avx2", "amx_int8"}
    assert cpu.relevant_flags() == ["amx_int8", "avx2"]  # only the flags that decide a variant
    assert cpu.cpu_name() == "Test CPU"


@pytest.mark.parametrize(("flags", "kind"), [(AVX2, "avx2"), (EPYC_AVX512, "avx512_bf16"),
                                              (SAPPHIRE_RAPIDS, "amx"), (frozenset({"sse2"}), "baseline")])
def test_cpu_kind(flags, kind):
    assert cpu.cpu_kind(flags) == kind


def test_bf16_needs_the_flags_and_says_so():
    reason = missing(variant("openvino-bf16"), AVX2)
    assert "avx512_bf16 or amx_bf16" in reason and "(avx2)" in reason
    assert missing(variant("openvino-bf16"), EPYC_AVX512) is None
    assert missing(variant("onnxruntime-fp32"), frozenset()) is None


def test_a_forced_precision_the_cpu_lacks_is_refused_before_any_work():
    with pytest.raises(BuildError, match="--precision bf16: openvino-bf16 needs a CPU with avx512_bf16"):
        resolve_precision("bf16", flags=AVX2)
    with pytest.raises(BuildError, match="needs a CPU with"):
        resolve_precision("openvino-bf16", flags=AVX2)
    assert resolve_precision("bf16", flags=SAPPHIRE_RAPIDS) == "bf16"
    with pytest.raises(BuildError, match="unknown --precision"):
        resolve_precision("fp16", flags=SAPPHIRE_RAPIDS)


def test_quantization_int8_is_onnxruntime_int8():
    assert resolve_precision(None, "int8", flags=AVX2) == "onnxruntime-int8"
    assert resolve_precision("int8", "int8", flags=AVX2) == "onnxruntime-int8"
    with pytest.raises(BuildError, match="cannot go with --precision bf16"):
        resolve_precision("bf16", "int8", flags=SAPPHIRE_RAPIDS)
    with pytest.raises(BuildError, match="the torch engine has its own precision"):
        resolve_precision("bf16", engine="torch", flags=SAPPHIRE_RAPIDS)


def test_the_default_precision_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("TRIDENT_PRECISION", "fp32")
    assert resolve_precision(None, flags=AVX2) == "fp32"
    monkeypatch.delenv("TRIDENT_PRECISION")
    assert resolve_precision(None, flags=AVX2) == "auto"


def test_candidates_follow_the_cpu(monkeypatch):
    monkeypatch.setattr("trident.precision.openvino_installed", lambda: True)
    names = lambda precision, flags, size=BIG: [row.name for row in candidates_for(precision, flags, size)]  # noqa: E731
    assert "openvino-bf16" not in names("auto", AVX2)
    assert "openvino-bf16" in names("auto", EPYC_AVX512)
    assert names("auto", SAPPHIRE_RAPIDS, AUTO_MIN_ENGINE_BYTES - 1) == ["onnxruntime-fp32"]  # test-sized models
    assert names("fp32", AVX2) == ["onnxruntime-fp32", "openvino-fp32"]
    assert names("int8", AVX2) == ["onnxruntime-int8"]  # OpenVINO's int8 only where int8 dot products are native
    assert names("int8", EPYC_AVX512) == ["onnxruntime-int8", "openvino-int8"]
    assert "openvino-int8 needs a CPU with avx512_vnni or avx_vnni or amx_int8" in \
        missing(variant("openvino-int8"), AVX2)
    monkeypatch.setattr("trident.precision.openvino_installed", lambda: False)
    assert names("auto", SAPPHIRE_RAPIDS) == ["onnxruntime-fp32", "onnxruntime-int8"]
    with pytest.raises(BuildError, match="needs the openvino package"):
        candidates_for("bf16", SAPPHIRE_RAPIDS, BIG)


def test_int8_format_follows_vnni():
    assert int8_format(AVX2) == {"weights": "s8", "reduce_range": True}  # 7-bit weights: vpmaddubsw cannot saturate
    assert int8_format(EPYC_AVX512) == {"weights": "s8", "reduce_range": False}


def gate_only(passing: set[str], gated: list[str]):
    """A gate run that passes the named variants, recording the order it was asked in."""
    def check(candidate: Candidate) -> GateReport:
        gated.append(candidate.variant)
        return GateReport(passed=candidate.variant in passing, num_texts=1)

    return check


def test_the_fastest_passing_variant_wins_only_by_a_margin():
    reference = Candidate("onnxruntime-fp32", 100)
    slightly = Candidate("openvino-fp32", 100 / FASTER_BY + 1)
    gated: list[str] = []
    chosen = fastest_passing([reference, slightly], 100, gate_only({"onnxruntime-fp32", "openvino-fp32"}, gated))
    assert chosen.variant == "onnxruntime-fp32" and gated == ["onnxruntime-fp32"]  # too slow to win: not gated
    fast_fail, fast = Candidate("openvino-int8", 20), Candidate("openvino-bf16", 30)
    gated = []
    everything = [Candidate("onnxruntime-fp32", 100), Candidate("openvino-fp32", 100 / FASTER_BY + 1), fast_fail, fast]
    chosen = fastest_passing(everything, 100, gate_only({"onnxruntime-fp32", "openvino-bf16"}, gated))
    assert chosen.variant == "openvino-bf16" and gated == ["openvino-int8", "openvino-bf16"]  # fastest first
    assert [c.report is not None for c in everything] == [False, False, True, True]  # slower ones: no gate run
    assert fastest_passing([Candidate("openvino-int8", 20)], float("inf"), gate_only(set(), [])) is None  # forced


def test_a_candidate_that_could_not_be_made_is_never_gated():
    broken = Candidate("onnxruntime-int8", error="int8 outputs differ from float32")
    gated: list[str] = []
    assert fastest_passing([broken, Candidate("onnxruntime-fp32", 100)], 100,
                           gate_only({"onnxruntime-fp32"}, gated)).variant == "onnxruntime-fp32"
    assert gated == ["onnxruntime-fp32"] and broken.row()["passed"] is None


def test_gate_texts_are_many_varied_and_fixed():
    texts = gate_texts()
    assert len(texts) == GATE_TEXT_COUNT >= 200 and texts == gate_texts()
    lengths = [len(t.split()) for t in texts]
    assert min(lengths) == 1 and max(lengths) <= MAX_WORDS and max(lengths) > 300
    assert sum(n <= 5 for n in lengths) >= 20 and sum(n >= 100 for n in lengths) >= 40
    assert len(set(texts)) > 0.9 * len(texts)
    pairs = gate_pairs()
    assert len(pairs) == GATE_TEXT_COUNT and len(set(pairs)) == len(pairs)
    lists = pair_lists(7)  # placed after 7 parity texts
    assert lists[0] == (7, 7 + PAIR_LIST_SIZE) and lists[-1][1] == 7 + GATE_TEXT_COUNT
    for start, stop in lists:  # one query per list, each with other documents, longer than it
        queries = {pairs[i - 7][0] for i in range(start, stop)}
        documents = [pairs[i - 7][1] for i in range(start, stop)]
        assert len(queries) == 1 and len(set(documents)) == PAIR_LIST_SIZE
        assert all(len(d) >= len(next(iter(queries))) for d in documents)


def test_the_table_prints_the_angle_and_the_ranking_figures():
    passed = Candidate("openvino-bf16", 30.0, GateReport(passed=True, num_texts=211, min_cosine=0.99991,
                                                         recall_at_10=0.9871, worst_recall_at_10=0.8))
    failed = Candidate("openvino-int8", 20.0, GateReport(passed=False, num_texts=211, min_cosine=0.99412,
                                                         recall_at_10=0.9123, worst_recall_at_10=0.5))
    text = table([Candidate("onnxruntime-fp32", 100.0), failed, passed], passed)
    header, _, int8_row, bf16_row = text.splitlines()
    assert "min cos" in header and "recall@10" in header
    assert "0.99412" in int8_row and "0.9123" in int8_row and "FAIL" in int8_row
    assert "0.99991" in bf16_row and "0.9871" in bf16_row and bf16_row.endswith("<- chosen")
    reranker = Candidate("openvino-bf16", 30.0, GateReport(passed=True, num_texts=213, max_score_diff=0.0021,
                                                           min_kendall_tau=0.9778, pair_lists=20))
    row = table([reranker], reranker).splitlines()[1]
    assert "0.00210" in row and "0.9778" in row and "min Kendall tau 0.9778 over 20 pair lists" in row


def test_the_variant_round_trips_through_the_manifest():
    built = spec(variant="openvino-bf16", variant_choice={"cpu_kind": "amx", "cpu_flags": ["amx_bf16"], "ms": 1.5})
    again = ModelSpec.from_json(built.to_json())
    assert again.variant == "openvino-bf16" and again.variant_choice == built.variant_choice
    assert ModelSpec.from_dict({k: v for k, v in built.__dict__.items() if k != "variant"}).variant == \
        "onnxruntime-fp32"  # a manifest from before variants: ONNX Runtime float32, as it was built


def test_the_gate_file_keeps_the_pair_lists_for_the_re_check(tmp_path):
    import numpy as np

    from trident.precision import load_gate, load_pair_lists, save_gate

    ids = [np.arange(3), np.arange(4)]
    save_gate(tmp_path / "gate.npz", ids, None, [np.ones(1), np.zeros(1)], 0, [(0, 2)])
    assert load_pair_lists(tmp_path / "gate.npz") == [(0, 2)] and len(load_gate(tmp_path / "gate.npz")[0]) == 2
    save_gate(tmp_path / "vectors.npz", ids, None, [np.ones(4), np.zeros(4)], 0)
    assert load_pair_lists(tmp_path / "vectors.npz") == []
    np.savez(tmp_path / "old.npz", label_texts=np.array(0), ids_0=ids[0], expected_0=np.ones(1))  # before the lists
    assert load_pair_lists(tmp_path / "old.npz") == []


CASCADE_LAKE = AVX2 | {"avx512f", "avx512bw", "avx512_vnni"}  # VNNI, no bf16


@pytest.mark.parametrize(("flags", "hint"), [(EPYC_AVX512, "bf16"), (SAPPHIRE_RAPIDS, "bf16"), (CASCADE_LAKE, "f32")])
def test_openvino_int8_runs_bf16_around_its_int8_matmuls_where_the_cpu_has_it(flags, hint):
    from trident.engines.openvino import DYNAMIC_GROUP, compile_options

    options = compile_options("int8", 2, flags)
    assert options["INFERENCE_PRECISION_HINT"] == hint and options["DYNAMIC_QUANTIZATION_GROUP_SIZE"] == DYNAMIC_GROUP
    assert "DYNAMIC_QUANTIZATION_GROUP_SIZE" not in compile_options("bf16", 2, flags)
    assert compile_options("fp32", None, flags)["INFERENCE_PRECISION_HINT"] == "f32"


def test_auto_chooses_openvino_int8_only_where_it_passes_and_wins():
    def measured(int8_ms: float) -> list[Candidate]:
        return [Candidate("onnxruntime-fp32", 100), Candidate("openvino-fp32", 60), Candidate("openvino-bf16", 30),
                Candidate("onnxruntime-int8", 70), Candidate("openvino-int8", int8_ms)]

    everything = {"onnxruntime-fp32", "openvino-fp32", "openvino-bf16", "onnxruntime-int8", "openvino-int8"}
    gated: list[str] = []
    assert fastest_passing(measured(20), 100, gate_only(everything, gated)).variant == "openvino-int8"
    assert gated == ["openvino-int8"]
    gated = []  # int8 fails the gate (e.g. its recall@10): bf16 is served
    assert fastest_passing(measured(20), 100, gate_only(everything - {"openvino-int8"}, gated)).variant == \
        "openvino-bf16"
    assert gated == ["openvino-int8", "openvino-bf16"]
    gated = []  # int8 passes but is slower than bf16 on this CPU: bf16 wins, int8 is not gated
    assert fastest_passing(measured(40), 100, gate_only(everything, gated)).variant == "openvino-bf16"
    assert gated == ["openvino-bf16"]
    assert [row.name for row in candidates_for("auto", AVX2, BIG)] == ["onnxruntime-fp32", "openvino-fp32",
                                                                       "onnxruntime-int8"]


def test_the_int8_matmuls_no_layernorm_feeds_are_the_dynamic_ones(tmp_path):
    """q / k / v and FFN up read a LayerNorm (SmoothQuant folds into it): static; FFN down reads the GELU: dynamic."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from builder.openvino_int8 import dynamic_matmuls

    weights = [numpy_helper.from_array(np.ones(shape, dtype=np.float32), name)
               for name, shape in (("scale", (4,)), ("bias", (4,)), ("up", (4, 8)), ("down", (8, 4)))]
    nodes = [helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["normed"], name="ln"),
             helper.make_node("MatMul", ["normed", "up"], ["hidden"], name="ffn_up"),
             helper.make_node("Relu", ["hidden"], ["active"], name="act"),
             helper.make_node("MatMul", ["active", "down"], ["out"], name="ffn_down"),
             helper.make_node("MatMul", ["out", "x_t"], ["scores"], name="activations_only")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
                                           helper.make_tensor_value_info("x_t", TensorProto.FLOAT, [4, 1])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1])], weights)
    onnx.save(helper.make_model(graph), str(tmp_path / "model.onnx"))
    assert dynamic_matmuls(tmp_path / "model.onnx") == ["ffn_down"]
