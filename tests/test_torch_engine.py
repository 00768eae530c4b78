"""The GPU engines' logic, on the CPU: packing, pooling, varlen attention, FP8 maths, refusals, TensorRT config.

TorchEngine runs float32 on the CPU here and must equal transformers (each text alone, unpadded) within
1e-4, in both batch layouts; FP8 is checked against float references, and on real weights
(all-MiniLM-L6-v2 with the FP8 path forced on) against the float32 model.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from builder.errors import BuildError
from builder.quantization import Fp8Report, check_fp8_accuracy, check_quantization, fp8_accuracy
from builder.tensorrt_plan import build_plan, length_bands, optimization_profiles, plan_config
from testkit.factories import make_tiny_model
from trident.engines.tensorrt import TensorRTEngine
from trident.engines.torch import fp8
from trident.engines.torch.engine import EngineOptions, TorchEngine, choose_attention
from trident.engines.torch.packing import bucket, pack, pad, plan_batches, plan_packed
from trident.gate import TOLERANCES, gate
from trident.head_layers import pool_packed, pool_padded
from trident.spec import ModelSpec

FLOAT32_TOLERANCE = 1e-4
ROOT = Path(__file__).resolve().parent.parent


def spec_of(**fields: object) -> ModelSpec:
    base = {"name": "m", "task": "embedding", "architecture": "AutoModel", "model_type": "bert", "max_length": 64,
            "dim": 32, "pooling": "mean"}
    return ModelSpec.from_dict({**base, **fields})  # pooling= becomes the head


# --- packing -------------------------------------------------------------------------------------------------


def test_plan_packed_respects_the_token_budget_and_keeps_every_input_once() -> None:
    rng = np.random.default_rng(0)
    lengths = [int(n) for n in rng.integers(1, 300, size=200)] + [900]  # one input longer than the budget
    groups = plan_packed(lengths, max_num_tokens=512, max_sequences=40)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert groups[0] == [200]  # the oversize input alone, first (longest first)
    for group in groups[1:]:
        assert sum(lengths[i] for i in group) <= 512 and len(group) <= 40
    # Packing wastes nothing, where padding to the longest would: fewer batches than padded planning.
    assert len(groups) < len(plan_batches(lengths, 512))


def test_bucket_sizes_grow_by_at_most_half() -> None:
    assert [bucket(n) for n in (1, 16, 17, 24, 25, 33, 100, 1000)] == [16, 16, 24, 24, 32, 48, 128, 1024]
    for n in range(1, 5000, 37):
        assert n <= bucket(n) < max(16, 1.5 * n) + 1


def test_pack_lays_out_tokens_positions_and_boundaries() -> None:
    ids = [np.array([5, 6, 7]), np.array([8]), np.array([9, 10])]
    types = [np.array([0, 0, 1]), np.array([0]), np.array([1, 1])]
    batch = pack(ids, types, position_offset=2)
    assert batch.input_ids.tolist() == [5, 6, 7, 8, 9, 10]
    assert batch.token_type_ids.tolist() == [0, 0, 1, 0, 1, 1]
    assert batch.position_ids.tolist() == [2, 3, 4, 2, 2, 3]  # restart per sequence, RoBERTa-style offset
    assert batch.cu_seqlens.tolist() == [0, 3, 4, 6] and batch.cu_seqlens.dtype == torch.int32
    assert (batch.max_seqlen, batch.num_sequences) == (3, 3)


def test_pack_with_static_shapes_pads_to_buckets_with_dummy_sequences() -> None:
    ids = [np.arange(1, 11), np.arange(1, 4)]
    batch = pack(ids, pad_id=0, static_shapes=True)
    assert len(batch.input_ids) == 64 and len(batch.cu_seqlens) == 8 + 1  # token and segment buckets
    assert batch.input_ids[:13].tolist() == [*range(1, 11), 1, 2, 3]
    assert (batch.input_ids[13:] == 0).all() and batch.num_sequences == 2
    lengths = (batch.cu_seqlens[1:] - batch.cu_seqlens[:-1]).tolist()
    assert lengths[:2] == [10, 3] and min(lengths) >= 1 and sum(lengths) == 64


# --- pooling -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["cls", "mean", "lasttoken"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_pooling_packed_equals_pooling_padded(pooling: str, side: str) -> None:
    generator = torch.Generator().manual_seed(1)
    lengths = [7, 1, 4]
    rows = [torch.randn(n, 16, generator=generator) for n in lengths]
    packed = pool_packed(torch.cat(rows), pack([np.ones(n, dtype=np.int64) for n in lengths]).cu_seqlens, pooling)
    _, mask = pad([np.ones(n, dtype=np.int64) for n in lengths], 0, side)
    hidden = torch.full((3, 7, 16), 1e6)  # padding positions must not count
    for i, row in enumerate(rows):
        hidden[i, slice(7 - len(row), 7) if side == "left" else slice(0, len(row))] = row
    padded = pool_padded(hidden, torch.from_numpy(mask), pooling)
    expected = torch.stack([{"cls": r[0], "lasttoken": r[-1], "mean": r.mean(0)}[pooling] for r in rows])
    torch.testing.assert_close(packed, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(padded, expected, rtol=0, atol=1e-6)


# --- TorchEngine vs transformers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-torch")
    return {
        "bert": make_tiny_model(root / "bert", "bert"),  # cls pooling, token types
        "roberta": make_tiny_model(root / "roberta", "roberta"),  # mean pooling, positions from padding_idx + 1
        "qwen3": make_tiny_model(root / "qwen3", "qwen3"),  # causal, GQA, left padding, last token
        "mistral": make_tiny_model(root / "mistral", "mistral"),  # causal, sliding window of 8 tokens
        "bert-ner": make_tiny_model(root / "bert-ner", "bert", head="token-cls"),
        "qwen3-reranker": make_tiny_model(root / "qwen3-reranker", "qwen3", head="seq-cls"),
    }


@functools.cache
def reference(model_dir: Path, name: str) -> tuple[ModelSpec, list, list | None, list[np.ndarray]]:
    """The spec, the parity texts' ids and transformers' outputs (each text alone), once per checkpoint."""
    from transformers import AutoTokenizer

    from builder.inspect import inspect_checkpoint
    from builder.parity import default_texts, tokenize, torch_reference

    spec = inspect_checkpoint(model_dir, name)
    spec.max_num_tokens = 96  # several batches, and packed batches that mix lengths
    ids, types = tokenize(AutoTokenizer.from_pretrained(model_dir), spec, default_texts(spec))
    return spec, ids, types, torch_reference(model_dir, spec, ids, types)


@pytest.mark.parametrize(("family", "attention"), [
    ("bert", "varlen"), ("bert", "padded"), ("roberta", "varlen"), ("qwen3", "varlen"), ("qwen3", "padded"),
    ("mistral", "varlen"), ("bert-ner", "padded"), ("qwen3-reranker", "padded"),
])
def test_torch_engine_matches_transformers(tiny: dict[str, Path], family: str, attention: str) -> None:
    spec, ids, types, expected = reference(tiny[family], family)
    spec = copy.deepcopy(spec)
    engine = TorchEngine.load(tiny[family], spec, device="cpu", options=EngineOptions(attention=attention))
    assert engine.attn == attention
    actual = engine.run(ids, types)
    assert max(len(s) for s in ids) > 8  # longer than mistral's window: the window is exercised
    for want, got in zip(expected, actual, strict=True):
        assert got.shape == want.shape and got.dtype == np.float32
        assert np.abs(got - want).max() <= FLOAT32_TOLERANCE


def test_compile_targets_each_transformer_block(tiny: dict[str, Path]) -> None:
    """Regional compilation: every block of the layer list, not the whole model (compiling is lazy: this
    traces nothing; tracing costs a minute on these CPUs, so the GPU benchmark is where it runs)."""
    spec = reference(tiny["qwen3"], "qwen3")[0]
    options = EngineOptions(attention="varlen", compile=True, compile_backend="eager")
    engine = TorchEngine.load(tiny["qwen3"], spec, device="cpu", options=options)
    assert engine.compile() == engine.model.config.num_hidden_layers
    assert all(getattr(layer, "_compiled_call_impl", None) is not None for layer in engine.model.layers)


def test_engine_stage_serves_spec_engine_torch(tiny: dict[str, Path], tmp_path: Path) -> None:
    from trident import tensors as T
    from trident.stages import EngineStage

    spec, ids, types, expected = reference(tiny["bert"], "bert")
    spec = copy.deepcopy(spec)
    spec.engine = "torch"
    (tmp_path / "checkpoint").symlink_to(tiny["bert"])
    stage = EngineStage(spec, tmp_path)
    assert isinstance(stage.engine, TorchEngine)
    rows = ids[:3]
    padded = np.zeros((3, max(len(r) for r in rows)), dtype=np.int64)
    for i, row in enumerate(rows):
        padded[i, : len(row)] = row
    types_padded = np.zeros_like(padded)
    for i, row in enumerate(types[:3]):
        types_padded[i, : len(row)] = row
    request = {T.INPUT_IDS: padded, T.TOKEN_TYPE_IDS: types_padded,
               T.NUM_TOKENS: np.array([[len(r)] for r in rows], dtype=np.int32)}
    (result,) = stage.process([request])
    assert np.abs(result[T.POOLED] - np.stack(expected[:3])).max() <= FLOAT32_TOLERANCE


def test_varlen_is_refused_where_it_cannot_serve_the_model() -> None:
    cpu = torch.device("cpu")
    with pytest.raises(ValueError, match="padded"):
        choose_attention(spec_of(model_type="gemma2"), object(), cpu, "varlen")  # soft-capping
    with pytest.raises(ValueError, match="padded"):
        choose_attention(spec_of(task="ner", pooling=None), object(), cpu, "varlen")
    assert choose_attention(spec_of(), object(), cpu, "auto") == "padded"  # no flash kernel on a CPU


def test_flash_call_adapts_to_each_torch_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    """varlen_attn's parameters changed across torch versions: stand-ins with the old and the new signature
    (computing through the reference) must give what the reference gives with the model's scale, GQA and window."""
    import inspect

    from trident.engines.torch import attention

    generator = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(10, heads, 8, generator=generator) for heads in (4, 2, 2))
    cu = torch.tensor([0, 6, 10], dtype=torch.int32)

    def old_kernel(q, k, v, cu_q, cu_k, max_q, max_k, is_causal=False):  # no scale, no GQA, no window
        assert q.shape[1] == k.shape[1] and max_q == 6
        return attention._reference(q, k, v, cu_q, 1 / math.sqrt(q.shape[-1]), is_causal, None)

    def new_kernel(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1), enable_gqa=False):
        left, right = window_size
        return attention._reference(q, k, v, cu_q, scale, right == 0, left + 1 if left >= 0 else None)

    for kernel, windows in ((old_kernel, [None]), (new_kernel, [None, 3])):
        signature = frozenset(inspect.signature(kernel).parameters)
        monkeypatch.setattr(attention, "flash_kernel", lambda kernel=kernel, signature=signature: (kernel, signature))
        for causal in (True, False):
            for window in windows:
                want = attention._reference(q, k, v, cu, 0.3, causal, window)
                got = attention._flash(q, k, v, cu, 6, 0.3, causal, window)
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    old = frozenset(inspect.signature(old_kernel).parameters)
    monkeypatch.setattr(attention, "flash_kernel", lambda: (old_kernel, old))
    with pytest.raises(ValueError, match="padded"):
        attention._flash(q, k, v, cu, 6, 0.3, True, 3)  # a window the old kernel cannot express
    assert attention.kernel_available(torch.device("cuda"), causal=True)
    assert not attention.kernel_available(torch.device("cuda"), causal=True, sliding_window=4)
    assert not attention.kernel_available(torch.device("cpu"), causal=False)


# --- FP8 -----------------------------------------------------------------------------------------------------


def test_fp8_weight_quantization_is_per_channel_and_within_e4m3_rounding() -> None:
    generator = torch.Generator().manual_seed(2)
    weight = torch.randn(48, 64, generator=generator) * torch.logspace(-3, 1, 48).unsqueeze(1)  # rows of any scale
    q, scale = fp8.quantize_weight(weight)
    assert q.dtype == torch.float8_e4m3fn and scale.shape == (48,)
    assert torch.allclose(q.float().abs().amax(dim=1), torch.full((48,), fp8.FP8_MAX))  # each row uses the range
    error = (fp8.dequantize(q, scale) - weight).abs()
    # e4m3: 3 mantissa bits, so rounding is within 2^-4 of the value; tiny values within half the subnormal step.
    bound = torch.maximum(weight.abs() * 2**-4, scale.unsqueeze(1) * 2**-10)
    assert (error <= bound * (1 + 1e-6)).all()


def test_fp8_activation_scales_are_per_token_and_dynamic() -> None:
    x = torch.tensor([[1.0, -2.0, 0.5], [100.0, 3.0, -7.0], [0.0, 0.0, 0.0]])
    q, scale = fp8.quantize_activation(x)
    assert scale.shape == (3, 1)
    torch.testing.assert_close(scale[:2, 0], torch.tensor([2.0, 100.0]) / fp8.FP8_MAX)
    assert torch.isfinite(fp8.dequantize(q, scale)).all() and (fp8.dequantize(q, scale)[2] == 0).all()


def _cpu_scaled_mm_available() -> bool:
    a = torch.ones(16, 16).to(torch.float8_e4m3fn)
    try:
        torch._scaled_mm(a, a.t(), scale_a=torch.ones(16, 1), scale_b=torch.ones(1, 16), out_dtype=torch.float32)
    except (RuntimeError, NotImplementedError):
        return False
    return True


@pytest.mark.parametrize("use_kernel", [False, True])
def test_fp8_linear_against_float(use_kernel: bool) -> None:
    """Per-layer relative error vs the float layer (a few %); the kernel call equals the dequantized reference."""
    if use_kernel and not _cpu_scaled_mm_available():
        pytest.skip("this torch has no CPU torch._scaled_mm")
    generator = torch.Generator().manual_seed(3)
    linear = torch.nn.Linear(256, 128)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(128, 256, generator=generator) / 16)
    x = torch.randn(4, 10, 256, generator=generator) * torch.logspace(-2, 2, 10).unsqueeze(1)  # tokens of any size
    layer = fp8.FP8Linear.from_linear(linear, use_kernel=use_kernel)
    with torch.no_grad():
        want, got = linear(x), layer(x)
    assert got.shape == want.shape
    assert float((got - want).norm() / want.norm()) < 0.05
    x_q, x_scale = fp8.quantize_activation(x.reshape(-1, 256))
    reference = fp8.reference_mm(x_q, x_scale, layer.weight_q, layer.weight_scale, torch.float32) + linear.bias
    torch.testing.assert_close(got.reshape(-1, 128), reference, rtol=1e-5, atol=1e-5)


def test_quantize_linears_touches_only_the_transformer_blocks(tiny: dict[str, Path]) -> None:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny["qwen3-reranker"])
    names = fp8.quantize_linears(model, use_kernel=False)
    assert names and all(".layers." in n for n in names)
    assert len(names) == 7 * model.config.num_hidden_layers  # q k v o, gate up down
    assert isinstance(model.score, torch.nn.Linear)  # the head stays in full precision


def test_fp8_on_real_weights_minilm(minilm_dir: Path) -> None:
    """all-MiniLM-L6-v2 with every encoder Linear in FP8 (forced: BERT models are refused FP8 in builds),
    against float32, on the parity texts, through the dequantized reference (the CPU kernel gives the same
    numbers, test_fp8_linear_against_float checks it, at twice the time)."""
    from transformers import AutoTokenizer

    from builder.inspect import inspect_checkpoint
    from builder.parity import default_texts, tokenize

    spec = inspect_checkpoint(minilm_dir, "all-MiniLM-L6-v2")
    spec.max_num_tokens = 256  # on a CPU, padding ten short texts to the long one's 256 tokens costs seconds
    ids, _ = tokenize(AutoTokenizer.from_pretrained(minilm_dir), spec, default_texts(spec))
    report = fp8_accuracy(minilm_dir, spec, ids, device="cpu", fp8_kernel=False)
    print(f"FP8 MiniLM: min cosine {report.gate.min_cosine:.5f}, mean {report.gate.mean_cosine:.5f} over "
          f"{report.gate.num_texts} texts, {report.quantized_layers} layers, kernel={report.kernel}")
    assert report.quantized_layers == 6 * 6  # q k v, attention output, intermediate, output per layer
    assert report.gate.passed and report.gate.min_cosine >= TOLERANCES["fp8"].min_cosine
    check_fp8_accuracy(report)


def test_fp8_gate_refuses_low_or_nan_cosine() -> None:
    expected = [np.array([1.0, 0.0], dtype=np.float32)]
    for actual in (np.array([1.0, 0.2], dtype=np.float32), np.array([math.nan, 0.0], dtype=np.float32)):  # 0.98, NaN
        report = Fp8Report(gate(expected, [actual], "fp8", logits=False), 36, "torch bfloat16 on cuda", True)
        with pytest.raises(BuildError, match=r"FP8 outputs differ.*nothing was written"):
            check_fp8_accuracy(report)


# --- refusals ------------------------------------------------------------------------------------------------


def test_quantization_refusals_say_why() -> None:
    from builder.config_file import BERT_NO_QUANT, check_settings

    with pytest.raises(BuildError, match="BEI-Bert"):
        check_settings(spec_of(), "encoder", "fp8", None, engine="torch")
    assert "FP16/BF16 only" in BERT_NO_QUANT
    causal = spec_of(model_type="qwen3", pooling="lasttoken")
    hopper, ada, blackwell = (9, 0), (8, 9), (10, 0)
    with pytest.raises(BuildError, match=r"Blackwell.*compute capability 9\.0"):
        check_quantization(causal, "fp4", "torch", hopper)
    with pytest.raises(BuildError, match=r"Blackwell.*no CUDA GPU"):
        check_quantization(causal, "fp4_mlp_only", "torch", None)
    with pytest.raises(BuildError, match="not implemented"):
        check_quantization(causal, "fp4", "torch", blackwell)
    with pytest.raises(BuildError, match="--engine torch"):
        check_quantization(causal, "fp8", "onnxruntime", hopper)
    with pytest.raises(BuildError, match=r"FP8 tensor cores.*no CUDA GPU"):
        check_quantization(causal, "fp8", "torch", None)
    with pytest.raises(BuildError, match=r"compute capability 8\.6"):
        check_quantization(causal, "fp8", "torch", (8, 6))
    for capability in (ada, hopper, blackwell):
        check_quantization(causal, "fp8", "torch", capability)  # allowed: the accuracy gate decides
    check_quantization(causal, "no_quant", "onnxruntime", None)


def test_build_with_the_torch_engine(tiny: dict[str, Path], tmp_path: Path) -> None:
    """`--engine torch` on a CPU: checked against transformers, the checkpoint beside the engine model;
    fp8 is refused before any work on a machine without FP8."""
    from builder.build import BuildOptions, build

    result = build(BuildOptions(model=str(tiny["qwen3"]), out=tmp_path / "repo", name="q", engine="torch"),
                   progress=lambda _: None)
    manifest = json.loads((tmp_path / "repo" / "q" / "manifest.json").read_text())
    assert manifest["engine"] == "torch" and manifest["dtype"] == "float32"
    assert result.spec.parity["max_abs_diff"] <= FLOAT32_TOLERANCE
    assert (tmp_path / "repo" / "q_engine" / "1" / "checkpoint" / "config.json").is_file()
    assert not (tmp_path / "repo" / "q_engine" / "1" / "model.onnx").exists()
    if not torch.cuda.is_available():
        with pytest.raises(BuildError, match="FP8 tensor cores"):
            build(BuildOptions(model=str(tiny["qwen3"]), out=tmp_path / "fp8", engine="torch", quantization="fp8"),
                  progress=lambda _: None)


# --- TensorRT (never run: no TensorRT here) -------------------------------------------------------------------


def test_tensorrt_profiles_cover_every_batch_the_engine_sends() -> None:
    assert length_bands(512) == [16, 64, 256, 512] and length_bands(16) == [16] and length_bands(8) == [8]
    profiles = optimization_profiles(max_length=512, max_num_tokens=16384)
    assert [p.max[1] for p in profiles] == [16, 64, 256, 512]
    for p in profiles:
        assert p.min <= p.opt <= p.max and p.min[0] == 1
        assert p.max[0] * p.min[1] <= 16384  # widest batch at the band's shortest length fits the budget
    rng = np.random.default_rng(4)
    for _ in range(20):
        lengths = [int(n) for n in rng.integers(1, 513, size=rng.integers(1, 400))]
        for group in plan_batches(lengths, 16384):
            rows, longest = min(len(group), 4096), max(lengths[i] for i in group)
            assert any(p.min[0] <= rows <= p.max[0] and p.min[1] <= longest <= p.max[1] for p in profiles)
    with pytest.raises(ValueError):
        optimization_profiles(max_length=1024, max_num_tokens=512)


def test_tensorrt_plan_config() -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    from builder.repository import render

    spec = spec_of(name="bge", dim=768, uses_token_type_ids=True)
    config = text_format.Parse(render(plan_config(spec, optimization_profiles(512, 16384))), pb.ModelConfig())
    assert (config.name, config.platform, config.max_batch_size) == ("bge_trt", "tensorrt_plan", 0)
    assert [(i.name, pb.DataType.Name(i.data_type), list(i.dims)) for i in config.input] == [
        (name, "TYPE_INT64", [-1, -1]) for name in ("input_ids", "attention_mask", "token_type_ids")]
    assert [(o.name, pb.DataType.Name(o.data_type), list(o.dims)) for o in config.output] == [
        ("embeddings", "TYPE_FP32", [-1, 768]), ("token_embeddings", "TYPE_FP32", [-1, -1, -1])]  # /embed_all
    (group,) = config.instance_group
    assert (pb.ModelInstanceGroup.Kind.Name(group.kind), group.count, list(group.profile)) == (
        "KIND_GPU", 1, ["0", "1", "2", "3"])
    ner = plan_config(spec_of(task="ner", pooling=None, id2label={"0": "O", "1": "B-PER"}, padding_side="left"), [])
    assert [(o.name, list(o.dims)) for o in ner.output] == [("logits", [-1, -1, 2])]
    assert "position_ids" in [i.name for i in ner.input]


def test_tensorrt_build_without_tensorrt_says_what_is_missing(tmp_path: Path) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    with pytest.raises(BuildError, match="needs TensorRT"):
        build_plan(tmp_path / "model.onnx", spec_of(), tmp_path / "model.plan", optimization_profiles(64, 1024))


def test_the_plan_is_fed_the_inputs_the_exporter_declares() -> None:
    from builder.export import _example_inputs

    for spec in (spec_of(), spec_of(uses_token_type_ids=True), spec_of(model_type="qwen3", padding_side="left")):
        assert list(_example_inputs(spec, 10, 2, [3, 2])) == TensorRTEngine(spec, infer=None).input_names


def test_tensorrt_engine_pads_splits_and_restores_order() -> None:
    """A stand-in for the plan model: each row's output is (sum of real ids, real length, first position id)."""
    calls = []

    def infer(feeds: dict[str, np.ndarray], output: str) -> np.ndarray:
        assert output == "embeddings"
        calls.append({k: v.shape for k, v in feeds.items()})
        mask = feeds["attention_mask"]
        first = (feeds["position_ids"] * mask).max(axis=1)  # left padding: positions must count real tokens only
        return np.stack([(feeds["input_ids"] * mask).sum(axis=1), mask.sum(axis=1), first], axis=1)

    spec = spec_of(model_type="qwen3", padding_side="left", max_num_tokens=64, dim=3)
    engine = TensorRTEngine(spec, infer=infer, max_rows=4)
    sequences = [np.arange(1, n + 1) for n in (3, 9, 1, 5, 2, 2, 2, 2, 2, 7)]
    outputs = engine.run(sequences)
    for seq, out in zip(sequences, outputs, strict=True):
        assert out.tolist() == [seq.sum(), len(seq), len(seq) - 1]
    assert all(shape["input_ids"][0] <= 4 and shape["input_ids"][0] * shape["input_ids"][1] <= 64
               for shape in calls)


# --- the benchmark script -------------------------------------------------------------------------------------


def test_gpu_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    """bench/gpu.py end to end at toy sizes on the CPU (the 8B-size section: baseline, engine, FP8)."""
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "bench" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--smoke", "--sections", "qwen3_8b"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("bf16_ratio_bert", "bf16_ratio_8b", "fp8_ratio_8b", "fp8_cosine_real", "short_seq_ratio", "device"):
        assert key in result
    assert result["device"] == "cpu" and result["bf16_ratio_8b"] > 0 and result["fp8_ratio_8b"] > 0
    assert result["qwen3_8b"]["fp8_layer_rel_error"] < 0.05


# --- the torch engine's other outputs: SPLADE, token embeddings, multi-vector ------------------------------------


def test_torch_engine_splade_and_token_embeddings_match_sentence_transformers(tmp_path: Path) -> None:
    """SpladePooling (sum, log1p_relu) vs SparseEncoder; an embedding model's hidden states (varlen and padded)
    vs SentenceTransformer's token_embeddings."""
    from sentence_transformers import SentenceTransformer, SparseEncoder
    from transformers import AutoTokenizer

    from builder.inspect import inspect_checkpoint
    from testkit.factories import make_tiny_bert, make_tiny_splade
    from trident import tensors as T

    texts = ["hello world", "the quick brown fox jumps over the lazy dog", "a"]
    splade = make_tiny_splade(tmp_path / "splade", layout="5", strategy="sum", activation="log1p_relu", seed=31)
    spec = inspect_checkpoint(splade, "splade")
    ids = [np.array(AutoTokenizer.from_pretrained(splade)(t)["input_ids"]) for t in texts]
    served = np.stack(TorchEngine.load(splade, spec, device="cpu").run(ids))
    reference = SparseEncoder(str(splade), device="cpu").encode(texts).to_dense().numpy()
    assert ((served != 0) == (reference != 0)).all()
    np.testing.assert_allclose(served, reference, atol=FLOAT32_TOLERANCE)

    dense = make_tiny_bert(tmp_path / "dense", pooling="mean", seed=32)
    spec = inspect_checkpoint(dense, "dense")
    ids = [np.array(AutoTokenizer.from_pretrained(dense)(t)["input_ids"]) for t in texts]
    expected = SentenceTransformer(str(dense), device="cpu").encode(texts, output_value="token_embeddings")
    for attention in ("padded", "varlen"):
        engine = TorchEngine.load(dense, spec, device="cpu", options=EngineOptions(attention=attention))
        for served, want in zip(engine.run(ids, output=T.TOKEN_EMBEDDINGS), expected, strict=True):
            np.testing.assert_allclose(served, want.numpy(), atol=FLOAT32_TOLERANCE)


def test_torch_engine_multi_vector_query_expansion_matches_multi_vector_encoder(tmp_path: Path) -> None:
    """Projected token vectors with the query's [MASK] expansion not attended to, vs the library's forward."""
    from sentence_transformers import MultiVectorEncoder

    from builder.inspect import inspect_checkpoint
    from testkit.factories import make_tiny_colbert
    from trident import tensors as T
    from trident.postprocess import l2_normalize

    colbert = make_tiny_colbert(tmp_path / "colbert", seed=33)
    spec = inspect_checkpoint(colbert, "colbert")
    encoder = MultiVectorEncoder(str(colbert), device="cpu")
    queries = ["where is the fox?", "dogs"]
    features = encoder.preprocess(queries, prompt="[Q] ", task="query")
    with torch.inference_mode():
        expected = encoder.forward(dict(features), task="query")["token_embeddings"].numpy()
    ids = [row.numpy() for row in features["input_ids"]]
    attention = [row.numpy() for row in features["attention_mask"]]
    assert min(int(a.sum()) for a in attention) < len(ids[0])  # expansion tokens present, not attended
    served = TorchEngine.load(colbert, spec, device="cpu").run(ids, None, T.TOKEN_EMBEDDINGS, attention)
    for row, want in zip(served, expected, strict=True):
        np.testing.assert_allclose(l2_normalize(row), want, atol=FLOAT32_TOLERANCE)
