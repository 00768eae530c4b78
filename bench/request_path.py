"""The request path's own figures, for `make bench`: what the server costs around the engine.

For `--workers 1` and `--workers 2`, with ~5-token requests (one input each) to `/v1/embeddings`:
- p50 / p99 / p99.9 and requests/s at concurrency 1, 16, 64 and 256;
- at concurrency 64, CPU milliseconds per request of each hop (gateway processes, tritonserver, and the
  tokenizer / engine / postprocess stubs), from /proc: what is spent outside the engine, per request;
- every answer under load checked against the same input sent alone (max |difference|).
And the tail of big requests: 32 x ~256-token inputs per request at concurrency 8 (p50 / p99).
Also the engine alone on one 5-token input (the served variant, in this process, its threads as served):
"one request alone" is compared with it.

    .venv/bin/python bench/request_path.py [--seconds 8] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.hops import label  # noqa: E402
from testkit import procfs  # noqa: E402
from testkit.loadgen import run_load  # noqa: E402
from testkit.stack import Stack  # noqa: E402

CONCURRENCY = (1, 16, 64, 256)
CPU_AT = 64  # the concurrency whose CPU per hop is reported
CHECKED = 256  # distinct texts whose answers under load are compared with the answer alone
HOPS = ("gateway", "tritonserver", "tokenizer", "engine", "postprocess")


def hop_of(pid: int) -> str | None:
    name = label(pid)
    if name.startswith("gateway"):
        return "gateway"
    if name == "tritonserver":
        return name
    return next((hop for hop in ("tokenizer", "engine", "postprocess") if f"_{hop}" in name), None)


def cpu_by_hop(pids: list[int]) -> dict[str, float]:
    seconds = dict.fromkeys(HOPS, 0.0)
    for pid in pids:
        if (hop := hop_of(pid)) is not None:
            seconds[hop] += procfs.cpu_seconds(pid)
    return seconds


def served_pids(stack: Stack) -> list[int]:
    return [stack.process.pid, *procfs.descendants(stack.process.pid)]


def embedding(body: bytes) -> np.ndarray:
    return np.asarray(json.loads(body)["data"][0]["embedding"], dtype=np.float32)


def alone(base_url: str, model: str, texts: list[str]) -> list[np.ndarray]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        return [embedding(client.post("/v1/embeddings", json={"input": text, "model": model}).content)
                for text in texts]


def one_setting(repository: Path, model: str, texts: list[str], long: list[str], workers: int, seconds: float,
                logs: Path) -> dict:
    stack = Stack(["--repository", str(repository), "--workers", str(workers)], logs / f"request-path-{workers}.log")
    stack.start()
    try:
        reference = alone(stack.base_url, model, texts[:CHECKED])
        url, runs, worst = f"{stack.base_url}/v1/embeddings", {}, 0.0

        def check(i: int, body: bytes) -> None:
            nonlocal worst
            if i % len(texts) < CHECKED:
                worst = max(worst, float(np.abs(embedding(body) - reference[i % len(texts)]).max()))

        for concurrency in CONCURRENCY:
            pids = served_pids(stack)
            before = cpu_by_hop(pids)
            result = asyncio.run(run_load(url, lambda i: {"input": texts[i % len(texts)], "model": model}, 1, 0,
                                          concurrency, seconds, warmup_requests=8, on_answer=check))
            spent = cpu_by_hop(pids)
            run = {key: round(getattr(result, key), 2) for key in ("requests_per_s", "p50_ms", "p99_ms", "p999_ms")}
            run.update(requests=result.requests, errors=result.errors)
            if concurrency == CPU_AT:
                per_request = {hop: 1000 * (spent[hop] - before[hop]) / max(result.requests, 1) for hop in HOPS}
                run["cpu_ms_per_request"] = {hop: round(ms, 3) for hop, ms in per_request.items()}
                run["cpu_ms_outside_engine"] = round(sum(ms for hop, ms in per_request.items() if hop != "engine"), 3)
            runs[str(concurrency)] = run
        big = asyncio.run(run_load(url, lambda i: {"input": [long[(32 * i + k) % len(long)] for k in range(32)],
                                                   "model": model}, 32, 0, 8, seconds, warmup_requests=2))
        return {"workers": workers, "concurrency": runs, "max_abs_diff_vs_alone": worst,
                "32x256_concurrency_8": {key: round(getattr(big, key), 2)
                                         for key in ("requests_per_s", "p50_ms", "p99_ms", "p999_ms")}}
    finally:
        stack.stop()


def engine_alone(repository: Path, model: str, texts: list[str], seconds: float = 4.0) -> dict:
    """The served engine variant on one input at a time, the same texts in the same order as the load (token
    counts vary, as they do for the server), as its Triton instance runs it (same threads): p50."""
    from trident.engines import load_engine
    from trident.model_names import step_files
    from trident.spec import ModelSpec
    from trident.tokenization import TextTokenizer

    spec = ModelSpec.load(repository / model / "manifest.json")
    engine = load_engine(spec, step_files(repository, model, "engine"))
    tokenizer = TextTokenizer(step_files(repository, model, "tokenizer") / "tokenizer.json", spec.max_length,
                              spec.pad_token_id)
    inputs = [tokenizer.encode([text]) for text in texts]
    for batch in inputs[:50]:
        engine.run([batch.input_ids[0]], [batch.token_type_ids[0]])
    times, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        batch = inputs[len(times) % len(inputs)]
        started = time.perf_counter()
        engine.run([batch.input_ids[0]], [batch.token_type_ids[0]])
        times.append(time.perf_counter() - started)
    return {"tokens_mean": round(float(np.mean([b.lengths[0] for b in inputs])), 1),
            "p50_ms": round(1000 * float(np.median(times)), 3),
            "engine": getattr(spec, "variant", "") or spec.engine}


def request_path_table(repository: Path, model: str, texts: list[str], long: list[str], seconds: float, logs: Path,
                       workers: tuple[int, ...] = (1, 2), infinity_requests_per_s: float | None = None) -> dict:
    table = {"engine_alone": engine_alone(repository, model, texts),
             "settings": [one_setting(repository, model, texts, long, n, seconds, logs) for n in workers]}
    first, big = table["settings"][0]["concurrency"], table["settings"][0]["32x256_concurrency_8"]
    best = max((s["concurrency"][str(c)]["requests_per_s"], s["workers"], c)
               for s in table["settings"] for c in CONCURRENCY)
    table["targets"] = {
        "cpu_ms_outside_engine (<= 1.0)": first[str(CPU_AT)]["cpu_ms_outside_engine"],
        "alone_p50_ms - engine_p50_ms (<= 1.5)": round(first["1"]["p50_ms"] - table["engine_alone"]["p50_ms"], 3),
        "p99 / p50 at concurrency 64 (<= 2)": round(first["64"]["p99_ms"] / first["64"]["p50_ms"], 2),
        "p99 / p50, 32 x 256 tokens at concurrency 8 (<= 2)": round(big["p99_ms"] / big["p50_ms"], 2),
        "best requests/s (workers, concurrency)": best,
        "best requests/s / infinity's best (>= 2)": round(best[0] / infinity_requests_per_s, 2)
        if infinity_requests_per_s else None,
        "max |answer under load - answer alone| (<= 1e-6)": max(s["max_abs_diff_vs_alone"] for s in table["settings"]),
    }
    return table


def print_table(table: dict) -> None:
    engine = table["engine_alone"]
    print(f"request path: engine alone ({engine['engine']}, {engine['tokens_mean']} tokens on average) "
          f"p50 {engine['p50_ms']} ms")
    for setting in table["settings"]:
        for concurrency, run in setting["concurrency"].items():
            print(f"  --workers {setting['workers']} concurrency {concurrency:>3}: {run['requests_per_s']:7.1f} req/s  "
                  f"p50 {run['p50_ms']:7.2f}  p99 {run['p99_ms']:7.2f}  p99.9 {run['p999_ms']:7.2f} ms  "
                  f"({run['requests']} requests, {run['errors']} errors)")
            if "cpu_ms_per_request" in run:
                hops = ", ".join(f"{hop} {ms:.3f}" for hop, ms in run["cpu_ms_per_request"].items())
                print(f"      CPU ms per request: {hops}; outside the engine {run['cpu_ms_outside_engine']:.3f}")
        big = setting["32x256_concurrency_8"]
        print(f"  --workers {setting['workers']} 32 x 256 tokens, concurrency 8: {big['requests_per_s']:.2f} req/s  "
              f"p50 {big['p50_ms']:.1f}  p99 {big['p99_ms']:.1f} ms")
        print(f"      max |answer under load - alone|: {setting['max_abs_diff_vs_alone']:.2e}")
    for name, value in table["targets"].items():
        print(f"  {name}: {value}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    args = parser.parse_args()

    from bench.run import long_texts, short_texts
    from cli.main import _build_options
    from cli.main import parser as cli_parser
    from cli.models import DEFAULT_MODEL_NAME, default_model_dir
    from cli.serve import ModelArg, prepare_model

    options = _build_options(cli_parser().parse_args(["serve"]))
    repository = prepare_model(ModelArg(str(default_model_dir()), DEFAULT_MODEL_NAME), options, progress=print)
    logs = ROOT / "bench" / "results" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    table = request_path_table(repository, DEFAULT_MODEL_NAME, short_texts(2048), long_texts(512), args.seconds,
                               logs, tuple(args.workers))
    print_table(table)
    print(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
