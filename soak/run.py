"""`make soak`: the longer, still bounded, version of tests/test_reliability.py, printing its figures as JSON.

One `trident serve` (a tiny BERT built and cached like the tests' own) goes through, in order:
  1. correctness: many concurrent requests with distinct inputs, each checked against the same input
     sent alone (within 1e-6);
  2. overload: `--overload-seconds` at 6x `--max-concurrent-requests`, RSS of gateway + tritonserver +
     stubs sampled every 0.5 s (plateau: the last third's peak vs the first third's);
  3. SIGKILL of tritonserver under load, `--kill-cycles` times: recovery time and /dev/shm cleanup;
  4. SIGKILL of a Python backend stub: recovery time;
  5. SIGTERM: the drain and the exit status.
Run: `.venv/bin/python -m soak.run [--overload-seconds 120 --requests 5000 --kill-cycles 3]`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TRIDENT_HOME", str(ROOT / ".trident" / "test-home"))  # reuse the tests' builds

from cli.supervisor import stub_pids  # noqa: E402
from testkit.factories import make_tiny_bert  # noqa: E402
from testkit.reliability import (  # noqa: E402
    LoadReport,
    distinct_texts,
    embed_alone,
    healthy,
    kill,
    run_for,
    run_load,
    shm_prefix,
    shm_regions_with,
    stack_rss,
    triton_pid,
    wait_for,
)
from testkit.stack import Stack  # noqa: E402

MODEL = "tiny-bert-cls"
MIB = 2**20


def build_model(work: Path) -> Path:
    from cli.main import _build_options, parser
    from cli.serve import ModelArg, prepare_model

    checkpoint = make_tiny_bert(work / MODEL, pooling="cls")
    options = _build_options(parser().parse_args(["serve"]))
    return prepare_model(ModelArg(str(checkpoint), MODEL), options, progress=lambda _: None)


def merge(total: dict[str, object], report: LoadReport) -> None:
    total["requests_sent"] += report.sent
    total["wrong_answers"] += report.wrong
    total["unexplained_errors"] += len(report.unexplained)
    for kind, count in report.errors.items():
        total["errors_by_kind"][kind] = total["errors_by_kind"].get(kind, 0) + count


def correctness(stack: Stack, n_texts: int, n_requests: int) -> LoadReport:
    texts = distinct_texts(n_texts)
    reference = embed_alone(stack, MODEL, texts)
    batches = [[texts[i % n_texts], *([texts[(i * 7 + 3) % n_texts]] if i % 3 == 0 else [])]
               for i in range(n_requests)]
    return run_load(stack, MODEL, batches, concurrency=64, reference=reference)


def overload(stack: Stack, seconds: float, limit: int, reference: dict) -> tuple[LoadReport, list[int]]:
    samples: list[int] = []
    report = run_for(stack, MODEL, list(reference), seconds, concurrency=6 * limit, reference=reference,
                     on_tick=lambda: samples.append(stack_rss(stack)))
    return report, samples


def sigkill_cycle(stack: Stack, reference: dict, limit: int) -> tuple[LoadReport, dict[str, object]]:
    triton = triton_pid(stack)
    prefix = shm_prefix(triton)
    regions = set(shm_regions_with(prefix))  # the restarted server reuses the prefix, with new names
    killed: dict[str, float] = {}

    def kill_triton() -> None:
        kill(triton)
        killed["at"] = time.monotonic()

    timer = threading.Timer(2.0, kill_triton)
    timer.start()
    report = run_for(stack, MODEL, list(reference), 6, concurrency=limit, reference=reference, timeout=60)
    timer.join()
    wait_for(lambda: healthy(stack), 300, interval=0.1)
    recovered = time.monotonic() - killed["at"]
    stale = regions & set(shm_regions_with(prefix))
    return report, {"recovery_s": round(recovered, 2), "stale_shm_regions_left": len(stale),
                    "new_triton": triton_pid(stack) != triton,
                    "max_failed_request_s": round(max(report.rejected_latencies, default=0), 2)}


def stub_crash(stack: Stack, text: str) -> dict[str, object]:
    import httpx

    triton = triton_pid(stack)
    kill(stub_pids(triton)[0])
    started = time.monotonic()
    statuses: set[int] = set()

    def answered() -> bool:
        response = httpx.post(f"{stack.base_url}/v1/embeddings", json={"input": text, "model": MODEL}, timeout=60)
        statuses.add(response.status_code)
        return response.status_code == 200

    wait_for(answered, 300, interval=0.1)
    return {"recovery_s": round(time.monotonic() - started, 2), "statuses_seen": sorted(statuses)}


def sigterm(stack: Stack) -> dict[str, object]:
    triton = triton_pid(stack)
    prefix = shm_prefix(triton)
    started = time.monotonic()
    stack.process.send_signal(signal.SIGTERM)
    code = stack.process.wait(120)
    return {"exit_code": code, "stop_s": round(time.monotonic() - started, 2),
            "shm_regions_left": len(shm_regions_with(prefix))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=2000, help="distinct inputs for the correctness phase")
    parser.add_argument("--requests", type=int, default=5000, help="requests in the correctness phase")
    parser.add_argument("--overload-seconds", type=float, default=120.0)
    parser.add_argument("--kill-cycles", type=int, default=3)
    parser.add_argument("--max-concurrent-requests", type=int, default=16)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="trident-soak-"))
    repository = build_model(work)
    stack = Stack(["--repository", str(repository), "--max-concurrent-requests", str(args.max_concurrent_requests),
                   "--request-timeout", "10"], work / "serve.log")
    started = time.monotonic()
    total: dict[str, object] = {"requests_sent": 0, "errors_by_kind": {}, "wrong_answers": 0, "unexplained_errors": 0}
    result: dict[str, object] = {"command": " ".join([sys.executable, "-m", "soak.run", *(argv or sys.argv[1:])]),
                                 "totals": total}
    stack.start()
    try:
        report = correctness(stack, args.texts, args.requests)
        merge(total, report)
        result["correctness"] = report.summary()

        reference = embed_alone(stack, MODEL, distinct_texts(64, seed=5))
        report, samples = overload(stack, args.overload_seconds, args.max_concurrent_requests, reference)
        merge(total, report)
        third = max(1, len(samples) // 3)
        result["overload"] = {**report.summary(), "rss_samples": len(samples),
                              "rss_first_third_peak_mib": round(max(samples[:third]) / MIB, 1),
                              "rss_last_third_peak_mib": round(max(samples[-third:]) / MIB, 1),
                              "rss_peak_mib": round(max(samples) / MIB, 1),
                              "healthy_right_after": healthy(stack)}

        cycles = []
        for _ in range(args.kill_cycles):
            report, figures = sigkill_cycle(stack, reference, args.max_concurrent_requests)
            merge(total, report)
            cycles.append({**figures, "errors_by_kind": dict(report.errors), "wrong_answers": report.wrong})
        result["sigkill_tritonserver"] = cycles
        result["stub_crash"] = stub_crash(stack, next(iter(reference)))
        result["sigterm"] = sigterm(stack)
    finally:
        stack.stop()
        result["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, indent=2))
    ok = total["wrong_answers"] == 0 and total["unexplained_errors"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
