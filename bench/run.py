"""`make bench`: Trident against sentence-transformers (in-process) and infinity-emb, same inputs, one run.

Workloads (the seed's): tokens/s with ~500-token inputs (truncated to the model's maximum; effective
tokens reported), 32 inputs per request, concurrency 8; requests/s with ~5-token inputs, one per
request, concurrency 64, with p50/p99. Also the engine alone against a matmul microbenchmark.
Writes bench/results/<time>.json and a PNG chart; prints ratios Trident/baseline from this run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cli.ports import free_port  # noqa: E402
from testkit.loadgen import run_load  # noqa: E402
from testkit.stack import Stack  # noqa: E402

WORDS = (
    "search vector model server triton token batch embedding fast text query document "
    "retrieval ranking relevant passage answer question neural network inference latency "
    "throughput cluster memory"
).split()
PEERS = ROOT / ".venv-peers"


def long_texts(count: int, words: int = 500, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) for _ in range(count)]


def short_texts(count: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(3)) for _ in range(count)]


def effective_tokens(model_dir: Path, texts: list[str], max_length: int) -> int:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    return int(np.mean([len(tokenizer(t, truncation=True, max_length=max_length)["input_ids"]) for t in texts]))


def load_workloads(url: str, model: str, long: list[str], short: list[str], tokens_long: int, tokens_short: int,
                   seconds: float, sweep: list[int]) -> dict:
    """The two workloads, then requests/s against concurrency (`sweep`, half as long each)."""
    def long_body(i: int) -> dict:
        start = (i * 32) % (len(long) - 32)
        return {"input": long[start:start + 32], "model": model}

    def short_body(i: int) -> dict:
        return {"input": short[i % len(short)], "model": model}

    tokens = asyncio.run(run_load(url, long_body, 32, tokens_long, 8, seconds, warmup_requests=4))
    results = {"tokens": tokens.to_dict()}
    results["requests"] = asyncio.run(run_load(url, short_body, 1, tokens_short, 64, seconds,
                                               warmup_requests=32)).to_dict()
    results["sweep"] = [asyncio.run(run_load(url, short_body, 1, tokens_short, c, seconds / 2)).to_dict()
                        for c in sweep]
    return results


def sentence_transformers_baseline(model_dir: Path, long: list[str], tokens_long: int, count: int) -> dict:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    model.encode(long[:32], batch_size=32, normalize_embeddings=True)
    started = time.perf_counter()
    model.encode(long[:count], batch_size=32, normalize_embeddings=True)
    seconds = time.perf_counter() - started
    return {"inputs": count, "seconds": seconds, "tokens_per_s": count * tokens_long / seconds}


def start_infinity(model_dir: Path, engine: str, log: Path) -> tuple[subprocess.Popen, int] | None:
    executable = PEERS / "bin" / "infinity_emb"
    if not executable.exists():
        return None
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
    process = subprocess.Popen(
        [str(executable), "v2", "--model-id", str(model_dir), "--served-model-name", "peer", "--engine", engine,
         "--device", "cpu", "--port", str(port), "--batch-size", "32",
         # optimum (installed for the optimum engine) makes the torch engine try BetterTransformer, which
         # fails on this transformers; without optimum infinity skips it anyway
         *(["--no-bettertransformer"] if engine == "torch" else [])],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process, port
        except httpx.HTTPError:
            pass
        time.sleep(1)
    process.kill()
    return None


def infinity_model_dir(model_dir: Path, out: Path) -> Path:
    """The checkpoint plus `onnx/model.onnx` (last_hidden_state, exported by the same torch exporter Trident
    uses): infinity's optimum engine only loads ONNX files shipped in the model folder, as hub repos do."""
    import shutil

    import torch
    from transformers import AutoModel

    if (out / "onnx" / "model.onnx").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(model_dir, out)
    (out / "onnx").mkdir()

    class LastHiddenState(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    model = AutoModel.from_pretrained(out, attn_implementation="eager").eval()
    ids = torch.randint(1000, 2000, (2, 16))
    feeds = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", max=512)
    torch.onnx.export(LastHiddenState(model), (), str(out / "onnx" / "model.onnx"), kwargs=feeds,
                      input_names=list(feeds), output_names=["last_hidden_state"], opset_version=18, dynamo=True,
                      dynamic_shapes={name: {0: batch, 1: seq} for name in feeds})
    return out


def best_infinity(model_dir: Path, long: list[str], short: list[str], tokens_long: int, tokens_short: int,
                  args: argparse.Namespace, logs: Path) -> dict:
    """infinity-emb with each engine that starts here; the one with the most tokens/s is the baseline."""
    runs = {}
    for engine in ("torch", "optimum"):
        print(f"... infinity-emb --engine {engine}", flush=True)
        folder = model_dir if engine == "torch" else infinity_model_dir(model_dir, args.out / "infinity-model")
        started = start_infinity(folder, engine, logs / f"infinity-{engine}.log")
        if started is None:
            runs[engine] = {"error": f"did not start; see {logs / f'infinity-{engine}.log'}"}
            continue
        process, port = started
        try:
            runs[engine] = load_workloads(f"http://127.0.0.1:{port}/embeddings", "peer", long, short,
                                          tokens_long, tokens_short, args.seconds, args.sweep)
        finally:
            process.terminate()
            process.wait(30)
    ran = {engine: run for engine, run in runs.items() if "tokens" in run}
    if not ran:
        return {"error": "infinity-emb is not available (make peers)", "engines": runs}
    # The baseline of each workload is infinity's best engine for that workload.
    tokens = max(ran, key=lambda engine: ran[engine]["tokens"]["tokens_per_s"])
    requests = max(ran, key=lambda engine: ran[engine]["requests"]["requests_per_s"])
    return {"tokens": ran[tokens]["tokens"], "requests": ran[requests]["requests"], "sweep": ran[requests]["sweep"],
            "engine": {"tokens": tokens, "requests": requests}, "engines": runs}


def matmul_flops(seconds: float = 3.0, size: int = 1024) -> float:
    """Float32 GEMM throughput of this CPU through the same runtime family (torch/oneDNN), 2 threads."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        runs += 1
    return 2 * size**3 * runs / (time.perf_counter() - started)


def engine_flops(repository: Path, name: str, tokens: int) -> dict:
    """The ONNX engine alone on 32 x max_length tokens, in FLOP/s from the model's shape."""
    from bench.precision import engine_tokens_per_s, flops_per_token
    from trident.engines.onnxruntime import OnnxEngine
    from trident.model_names import step_files
    from trident.spec import ModelSpec

    spec = ModelSpec.load(repository / name / "manifest.json")
    engine = OnnxEngine(step_files(repository, name, "engine") / "model.onnx", spec, pad_id=spec.pad_token_id)
    tokens_per_s = engine_tokens_per_s(engine, tokens, seconds=5.0)
    return {"tokens_per_s": tokens_per_s, "flops": tokens_per_s * flops_per_token(Path(spec.source), tokens)}


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name in ("trident", "infinity"):
        sweep = results.get(name, {}).get("sweep")
        if sweep:
            c = [p["concurrency"] for p in sweep]
            left.plot(c, [p["requests_per_s"] for p in sweep], marker="o", label=name)
            right.plot(c, [p["p99_ms"] for p in sweep], marker="o", label=name)
    left.set(xscale="log", xlabel="concurrency", ylabel="requests/s (5-token inputs)", title="throughput")
    right.set(xscale="log", xlabel="concurrency", ylabel="p99 latency (ms)", title="p99 latency")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend()
    fig.suptitle(f"Trident vs baselines, {results['model']}, {results['cpu']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of each load phase")
    parser.add_argument("--sweep", type=int, nargs="*", default=[1, 4, 16, 64])
    parser.add_argument("--skip-infinity", action="store_true")
    parser.add_argument("--skip-int8", action="store_true", help="skip the --quantization int8 build's run")
    parser.add_argument("--skip-precision", action="store_true", help="skip bench/precision.py's variants and peers")
    parser.add_argument("--skip-bert-base", action="store_true",
                        help="the precision table of the default model only (not the BERT-base-sized one)")
    parser.add_argument("--skip-request-path", action="store_true", help="skip bench/request_path.py's figures")
    parser.add_argument("--skip-priorities", action="store_true", help="skip bench/priorities.py's mixed load")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    from cli.models import DEFAULT_MODEL_NAME, default_model_dir
    from cli.serve import ModelArg, prepare_model

    model_dir = default_model_dir()
    from cli.main import _build_options
    from cli.main import parser as cli_parser

    options = _build_options(cli_parser().parse_args(["serve"]))  # `make serve`'s build, reused
    repository = prepare_model(ModelArg(str(model_dir), DEFAULT_MODEL_NAME), options, progress=print)
    int8_repository = None if args.skip_int8 else prepare_model(
        ModelArg(str(model_dir), DEFAULT_MODEL_NAME), {**options, "quantization": "int8"}, progress=print)
    long, short = long_texts(512), short_texts(2048)
    tokens_long, tokens_short = effective_tokens(model_dir, long[:64], 256), effective_tokens(model_dir, short, 256)
    results: dict = {"model": DEFAULT_MODEL_NAME, "cpu": f"{os.cpu_count()} cores", "time": time.strftime("%FT%T"),
                     "effective_tokens": {"long": tokens_long, "short": tokens_short}, "seconds": args.seconds}
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / "logs"
    logs.mkdir(exist_ok=True)

    print("... Trident", flush=True)
    stack = Stack(["--repository", str(repository)], logs / "trident.log").start()
    try:
        results["trident"] = load_workloads(f"{stack.base_url}/v1/embeddings", DEFAULT_MODEL_NAME, long, short,
                                            tokens_long, tokens_short, args.seconds, args.sweep)
    finally:
        stack.stop()
    if int8_repository is not None:
        print("... Trident, int8 build", flush=True)
        stack = Stack(["--repository", str(int8_repository)], logs / "trident-int8.log").start()
        try:
            results["trident_int8"] = load_workloads(f"{stack.base_url}/v1/embeddings", DEFAULT_MODEL_NAME, long,
                                                     short, tokens_long, tokens_short, args.seconds, [])
        finally:
            stack.stop()

    print("... sentence-transformers in-process", flush=True)
    results["sentence_transformers"] = sentence_transformers_baseline(model_dir, long, tokens_long, 256)

    if not args.skip_infinity:
        results["infinity"] = best_infinity(model_dir, long, short, tokens_long, tokens_short, args, logs)

    if not args.skip_precision:  # every engine variant this CPU allows, and the peers a user would pick on it
        from bench.precision import bench_models

        tables = bench_models(model_dir, long, tokens_long, results, args.seconds, args.out, logs,
                              bert_base=not args.skip_bert_base)
        results["precision"], results["precision_bert_base"] = tables["default"], tables.get("bert_base")
    if not args.skip_request_path:  # the server's own cost around the engine, --workers 1 and 2
        from bench.request_path import print_table, request_path_table

        print("... request path (--workers 1, 2)", flush=True)
        results["request_path"] = request_path_table(
            repository, DEFAULT_MODEL_NAME, short, long, min(args.seconds, 8.0), logs,
            infinity_requests_per_s=results.get("infinity", {}).get("requests", {}).get("requests_per_s"))
    if not args.skip_priorities:  # search queries beside bulk indexing, with and without priorities; the cache
        from bench.priorities import priorities_table

        print("... queries beside bulk indexing", flush=True)
        results["priorities"] = priorities_table(repository, DEFAULT_MODEL_NAME, tokens_long, args.seconds, logs)
    print("... engine vs matmul", flush=True)
    results["engine"] = engine_flops(repository, DEFAULT_MODEL_NAME, 256)
    results["matmul_flops"] = matmul_flops()

    trident, infinity, int8 = results["trident"], results.get("infinity", {}), results.get("trident_int8", {})
    results["ratios"] = {
        "tokens_vs_sentence_transformers": ratio(trident["tokens"]["tokens_per_s"],
                                                 results["sentence_transformers"]["tokens_per_s"]),
        "tokens_vs_infinity": ratio(trident["tokens"]["tokens_per_s"], infinity.get("tokens", {}).get("tokens_per_s")),
        "int8_tokens_vs_sentence_transformers": ratio(int8.get("tokens", {}).get("tokens_per_s"),
                                                      results["sentence_transformers"]["tokens_per_s"]),
        "int8_requests_vs_infinity": ratio(int8.get("requests", {}).get("requests_per_s"),
                                           infinity.get("requests", {}).get("requests_per_s")),
        "requests_vs_infinity": ratio(trident["requests"]["requests_per_s"],
                                      infinity.get("requests", {}).get("requests_per_s")),
        "engine_flops_vs_matmul": ratio(results["engine"]["flops"], results["matmul_flops"]),
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"{stamp}.json").write_text(json.dumps(results, indent=2))
    chart(results, args.out / f"{stamp}.png")
    summary = {
        "trident_tokens_per_s": round(trident["tokens"]["tokens_per_s"]),
        "trident_requests_per_s": round(trident["requests"]["requests_per_s"]),
        "trident_p50_ms": round(trident["requests"]["p50_ms"], 1),
        "trident_p99_ms": round(trident["requests"]["p99_ms"], 1),
        "trident_int8_tokens_per_s": round(int8["tokens"]["tokens_per_s"]) if int8 else None,
        "trident_int8_requests_per_s": round(int8["requests"]["requests_per_s"]) if int8 else None,
        "sentence_transformers_tokens_per_s": round(results["sentence_transformers"]["tokens_per_s"]),
        "infinity_engine": infinity.get("engine"),
        "infinity_tokens_per_s": round(infinity["tokens"]["tokens_per_s"]) if "tokens" in infinity else None,
        "infinity_requests_per_s": round(infinity["requests"]["requests_per_s"]) if "requests" in infinity else None,
        "infinity_p99_ms": round(infinity["requests"]["p99_ms"], 1) if "requests" in infinity else None,
        "engine_flops": round(results["engine"]["flops"] / 1e9, 1),
        "matmul_flops": round(results["matmul_flops"] / 1e9, 1),
        **results["ratios"],
    }
    print(json.dumps(summary, indent=2))
    for table in (results.get("precision"), results.get("precision_bert_base")):
        if table:
            from bench.precision import render

            print(render(table))
    if "request_path" in results:
        print_table(results["request_path"])
    if "priorities" in results:
        from bench.priorities import print_table as print_priorities

        print_priorities(results["priorities"])
    print(f"results: {args.out / stamp}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
