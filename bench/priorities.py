"""Queries beside bulk indexing, for `make bench`: what a search query waits while an index is being built.

all-MiniLM-L6-v2, the default build, `/embed`:
- queries: 5-word single-input requests at concurrency 1 (each text new: nothing is answered from a cache);
- bulk: 32 x ~500-word inputs per request (truncated to the model's 256 tokens) at concurrency 8.
Runs: queries on the idle server; bulk alone; both at once with priorities (the defaults: a 32-input request
is bulk) and without (`--bulk-threshold` above any batch: every request interactive, first come first served,
one lane, as every peer serves them). Each run's server has `--cache-size 0`: the bulk texts repeat.
From Triton's statistics of the mixed runs: how long one bulk engine execution takes, and how long queries
waited in the engine's queue. Then the response cache (`--cache-size 64`): a 5-word query answered from the
cache against the same query computed, and a batch with half of its inputs cached.

    .venv/bin/python bench/priorities.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.precision import cpu_report  # noqa: E402
from bench.run import WORDS, long_texts  # noqa: E402
from testkit.loadgen import LoadResult, run_load  # noqa: E402
from testkit.stack import Stack  # noqa: E402

BULK_BATCH, BULK_CONCURRENCY = 32, 8
NO_PRIORITIES = ["--bulk-threshold", "1000000"]  # every request interactive: first come, first served


def queries(seed: int, count: int = 20000) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(4)) + f" q{seed}x{i}" for i in range(count)]


def summary(result: LoadResult, tokens_per_input: int | None = None) -> dict:
    figures = {"requests": result.requests, "errors": result.errors, "p50_ms": round(result.p50_ms, 1),
               "p99_ms": round(result.p99_ms, 1)}
    if tokens_per_input:
        figures["tokens_per_s"] = round(result.inputs_per_s * tokens_per_input)
    return figures


def engine_stats(stack: Stack, model: str) -> dict[str, dict]:
    stats = httpx.get(f"http://127.0.0.1:{stack.triton_http_port}/v2/models/stats", timeout=10).json()
    return {m["name"]: m for m in stats["model_stats"] if m["name"].startswith(f"{model}_engine")}


def engine_figures(before: dict, after: dict) -> dict:
    """Per engine model over a run: executions, mean execution (compute) and mean queue wait per request, ms."""
    figures = {}
    for name, now in after.items():
        was = before.get(name, {"execution_count": 0, "inference_stats": {}})
        executions = int(now["execution_count"]) - int(was["execution_count"])
        stats, old = now["inference_stats"], was["inference_stats"]
        requests = int(stats["success"]["count"]) - int(old.get("success", {}).get("count", 0))
        if not executions or not requests:
            continue

        def spent(key: str, stats: dict = stats, old: dict = old) -> float:
            return (int(stats[key]["ns"]) - int(old.get(key, {}).get("ns", 0))) / 1e6

        figures[name] = {"executions": executions, "requests": requests,
                         "execution_ms": round(spent("compute_infer") / executions, 1),
                         "queue_ms_per_request": round(spent("queue") / requests, 1)}
    return figures


async def mixed(url: str, model: str, long: list[str], tokens: int, seconds: float, seed: int) -> tuple[dict, dict]:
    """Bulk from the start, queries once it has filled the server; both stop together."""
    texts = queries(seed)

    async def later() -> LoadResult:
        await asyncio.sleep(3.0)
        return await run_load(url, lambda i: {"inputs": texts[i], "model": model}, 1, 0, 1, seconds - 3.0)

    bulk, query = await asyncio.gather(
        run_load(url, bulk_body(long, model), BULK_BATCH, tokens, BULK_CONCURRENCY, seconds), later())
    return summary(bulk, tokens), summary(query)


def bulk_body(long: list[str], model: str):
    return lambda i: {"inputs": [long[(BULK_BATCH * i + k) % len(long)] for k in range(BULK_BATCH)], "model": model,
                      "truncate": True}


def one_server(repository: Path, model: str, long: list[str], tokens: int, seconds: float, logs: Path,
               extra: list[str], label: str, seed: int) -> dict:
    stack = Stack(["--repository", str(repository), *extra], logs / f"priorities-{label}.log").start()
    url = f"{stack.base_url}/embed"
    try:
        texts = queries(seed + 100)
        idle = asyncio.run(run_load(url, lambda i: {"inputs": texts[i], "model": model}, 1, 0, 1,
                                    min(seconds, 10.0), warmup_requests=20))
        alone = asyncio.run(run_load(url, bulk_body(long, model), BULK_BATCH, tokens, BULK_CONCURRENCY, seconds,
                                     warmup_requests=2))
        before = engine_stats(stack, model)
        bulk, query = asyncio.run(mixed(url, model, long, tokens, seconds, seed))
        engines = engine_figures(before, engine_stats(stack, model))
    finally:
        stack.stop()
    return {"idle_query": summary(idle), "bulk_alone": summary(alone, tokens), "mixed_bulk": bulk,
            "mixed_query": query, "engines_mixed": engines}


def cache_figures(repository: Path, model: str, logs: Path, rounds: int = 200) -> dict:
    """A 5-word query computed (first time) and answered from the cache (second time), alternating, p50."""
    stack = Stack(["--repository", str(repository), "--cache-size", "64"], logs / "priorities-cache.log").start()
    try:
        with httpx.Client(base_url=stack.base_url, timeout=30) as client:
            texts = queries(7, rounds + 20)
            for text in texts[rounds:]:  # warm up
                client.post("/embed", json={"inputs": text, "model": model})
            miss_ms, hit_ms, same = [], [], True
            for text in texts[:rounds]:
                for times in (miss_ms, hit_ms):
                    started = time.perf_counter()
                    response = client.post("/embed", json={"inputs": text, "model": model})
                    times.append((time.perf_counter() - started) * 1000)
                    same = same and response.status_code == 200
                    if times is miss_ms:
                        first = response.content
                same = same and response.content == first and response.headers["x-cache"] == "hit"
            half = queries(8, 64)
            client.post("/embed", json={"inputs": half[:32], "model": model})
            batch = client.post("/embed", json={"inputs": half, "model": model})
            metrics = client.get("/metrics").text
    finally:
        stack.stop()
    miss, hit = statistics.median(miss_ms), statistics.median(hit_ms)
    cached_bytes = next((line.split()[-1] for line in metrics.splitlines() if line.startswith("trident_cache_bytes ")),
                        None)
    half_cached = {"inputs": len(half), "x-cache": batch.headers.get("x-cache"),
                   "x-cache-hits": batch.headers.get("x-cache-hits")}
    return {"miss_p50_ms": round(miss, 2), "hit_p50_ms": round(hit, 2), "hit_speedup": round(miss / hit, 1),
            "hits_byte_identical": same, "half_cached_batch": half_cached, "cache_bytes": cached_bytes}


def priorities_table(repository: Path, model: str, tokens: int, seconds: float, logs: Path) -> dict:
    long = long_texts(512)
    table = {"cpu": cpu_report(),
             "with_priorities": one_server(repository, model, long, tokens, seconds, logs, [], "on", 1),
             "without_priorities": one_server(repository, model, long, tokens, seconds, logs, NO_PRIORITIES, "off", 2),
             "cache": cache_figures(repository, model, logs)}
    on = table["with_priorities"]
    idle, query = on["idle_query"], on["mixed_query"]
    table["targets"] = {
        "mixed query p50 / idle p50 (<= 3)": round(query["p50_ms"] / idle["p50_ms"], 2),
        "mixed query p99 / idle p99 (<= 5)": round(query["p99_ms"] / idle["p99_ms"], 2),
        "mixed bulk tokens/s / alone (>= 0.85)": round(on["mixed_bulk"]["tokens_per_s"]
                                                       / on["bulk_alone"]["tokens_per_s"], 3),
        "cache hit speedup on a 5-word query (>= 5)": table["cache"]["hit_speedup"],
    }
    return table


def print_table(table: dict) -> None:
    cpu = table["cpu"]
    print(f"queries beside bulk indexing: {cpu['name']}, {cpu['cores']} cores, flags "
          f"{' '.join(cpu['relevant_flags'])}, load {', '.join(f'{x:.2f}' for x in cpu['load'])}")
    print(f"  {'':20} {'idle query p50/p99':>20} {'mixed query p50/p99':>20} {'bulk tok/s alone':>17} "
          f"{'mixed':>8}")
    for label in ("with_priorities", "without_priorities"):
        run = table[label]
        idle, query = run["idle_query"], run["mixed_query"]
        print(f"  {label:20} {idle['p50_ms']:>9.1f} / {idle['p99_ms']:<8.1f} {query['p50_ms']:>9.1f} / "
              f"{query['p99_ms']:<8.1f} {run['bulk_alone']['tokens_per_s']:>17} {run['mixed_bulk']['tokens_per_s']:>8}"
              f"   ({query['requests']} queries)")
        for engine, figures in run["engines_mixed"].items():
            print(f"      {engine}: {figures['executions']} executions of {figures['execution_ms']} ms on average, "
                  f"{figures['queue_ms_per_request']} ms in its queue per request")
    cache = table["cache"]
    print(f"  cache: 5-word query miss p50 {cache['miss_p50_ms']} ms, hit p50 {cache['hit_p50_ms']} ms "
          f"({cache['hit_speedup']}x), byte-identical: {cache['hits_byte_identical']}; a batch with 32 of 64 inputs "
          f"cached: x-cache {cache['half_cached_batch']['x-cache']}, x-cache-hits "
          f"{cache['half_cached_batch']['x-cache-hits']}")
    for name, value in table["targets"].items():
        print(f"  {name}: {value}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()

    from bench.run import effective_tokens
    from cli.main import _build_options
    from cli.main import parser as cli_parser
    from cli.models import DEFAULT_MODEL_NAME, default_model_dir
    from cli.serve import ModelArg, prepare_model

    options = _build_options(cli_parser().parse_args(["serve"]))
    repository = prepare_model(ModelArg(str(default_model_dir()), DEFAULT_MODEL_NAME), options, progress=print)
    logs = ROOT / "bench" / "results" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    tokens = effective_tokens(default_model_dir(), long_texts(64), 256)
    table = priorities_table(repository, DEFAULT_MODEL_NAME, tokens, args.seconds, logs)
    print_table(table)
    print(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
