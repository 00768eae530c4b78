"""What each hop of a request costs: CPU per request of every process, and Triton's per-model times.

Starts the stack on the default model, drives ~5-token requests at a fixed concurrency for a while, and
reports for the gateway, tritonserver (gRPC + ensemble scheduling), each Python-backend stub (tokenizer,
engine instances, postprocess) and this load generator: share of a core and CPU milliseconds per request
(from /proc), then Triton's statistics per model: executions, average batch, and queue / compute
microseconds per request.

    .venv/bin/python bench/hops.py --concurrency 64 --seconds 10 [--quantization int8] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import short_texts  # noqa: E402
from testkit import procfs  # noqa: E402
from testkit.loadgen import run_load  # noqa: E402
from testkit.stack import Stack  # noqa: E402
from trident.model_names import STEP_SUFFIXES  # noqa: E402

STAGES = tuple(STEP_SUFFIXES[role] for role in ("tokenizer", "engine", "postprocess"))


def label(pid: int) -> str:
    command = " ".join(procfs.cmdline(pid))
    if not command:
        return "gone"
    if "triton_python_backend_stub" in command:
        return "stub" + next((stage for stage in STAGES if stage in command), " (other)") + f" [{pid}]"
    if "tritonserver" in command:
        return "tritonserver"
    if "cli.gateway_worker" in command:
        return f"gateway worker [{pid}]"
    return "gateway (trident serve)"


def triton_stats(stack: Stack) -> dict[str, dict]:
    stats = httpx.get(f"http://127.0.0.1:{stack.triton_http_port}/v2/models/stats", timeout=10).json()
    return {model["name"]: model for model in stats["model_stats"]}


def per_model(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    lines = []
    for name, now in sorted(after.items()):
        then = before[name]
        stats, old = now["inference_stats"], then["inference_stats"]
        requests = stats["success"]["count"] - old["success"]["count"]
        if not requests:
            continue
        executions = now["execution_count"] - then["execution_count"]
        inferences = now["inference_count"] - then["inference_count"]
        times = ", ".join(f"{key} {(stats[key]['ns'] - old[key]['ns']) / requests / 1e3:,.0f}"
                          for key in ("queue", "compute_input", "compute_infer", "compute_output"))
        lines.append(f"  {name}: {requests} requests, {executions} executions, average batch "
                     f"{inferences / max(executions, 1):.1f}; us per request: {times}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--quantization", default="no_quant")
    parser.add_argument("--workers", type=int, default=1, help="trident serve --workers")
    args = parser.parse_args()

    from cli.main import _build_options
    from cli.main import parser as cli_parser
    from cli.models import DEFAULT_MODEL_NAME, default_model_dir
    from cli.serve import ModelArg, prepare_model

    options = _build_options(cli_parser().parse_args(["serve", "--quantization", args.quantization]))
    repository = prepare_model(ModelArg(str(default_model_dir()), DEFAULT_MODEL_NAME), options, progress=print)
    texts = short_texts(2048)
    stack = Stack(["--repository", str(repository), "--workers", str(args.workers)],
                  ROOT / "bench" / "results" / "hops-serve.log").start()
    try:
        pids = procfs.descendants(stack.process.pid)
        cpu_before, stats_before = {pid: procfs.cpu_seconds(pid) for pid in pids}, triton_stats(stack)
        own_before, started = time.process_time(), time.perf_counter()
        result = asyncio.run(run_load(f"{stack.base_url}/v1/embeddings",
                                      lambda i: {"input": texts[i % len(texts)], "model": DEFAULT_MODEL_NAME},
                                      1, 0, args.concurrency, args.seconds, warmup_requests=8))
        elapsed = time.perf_counter() - started
        spent = {label(pid): procfs.cpu_seconds(pid) - cpu_before[pid] for pid in pids}
        spent["load generator (this process)"] = time.process_time() - own_before
        print(f"~5-token requests, concurrency {args.concurrency}: {result.requests_per_s:.0f} requests/s, "
              f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, {result.errors} errors")
        for name, seconds in sorted(spent.items(), key=lambda item: -item[1]):
            print(f"  {100 * seconds / elapsed:5.1f}% of a core  {1000 * seconds / max(result.requests, 1):6.3f} "
                  f"ms CPU per request  {name}")
        print("Triton, per model:")
        print("\n".join(per_model(stats_before, triton_stats(stack))))
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
