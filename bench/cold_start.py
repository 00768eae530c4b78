"""Cold start of `trident serve` (empty build cache, then warm restart) and p50 of one short request.

    .venv/bin/python bench/cold_start.py [--source CHECKOUT] [--no-requests] [--wait-refinement]

Each start is timed from launching the process to the first `/health` 200 (model built or reused,
tritonserver ready, gateway up); the first start is split into phases from the server's own log lines.
Then 300 sequential single-text `/v1/embeddings` requests, each text a different one. `--source` runs another
checkout's `trident serve` (with this venv), e.g. an older commit's, for a before / after comparison on the same
machine.
`--wait-refinement` lets the first server run until its background refinement (cli/refine.py) has written the
build every later start serves, and notes how long that took and which variant it chose. Writes
bench/results/cold-start-<time>.json (with the CPU, its flags and the load average) and prints it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cli.ports import free_port  # noqa: E402
from trident import cpu  # noqa: E402

# The first log line of each phase of a first start (cli/main.py, builder/build.py, builder/variants.py).
PHASES = (("startup", None), ("export", "exporting to ONNX"), ("parity", "checking the engine against"),
          ("variants", "CPU "), ("calibration and writing", "calibrating "),
          ("Triton and gateway", "starting tritonserver"))


def start(home: str, source: Path) -> tuple[subprocess.Popen, int, float, float]:
    """(process, port, wall-clock launch time, seconds to the first /health 200)."""
    port = free_port()
    command = [sys.executable, "-m", "cli", "serve", "--port", str(port),
               "--triton-http-port", str(free_port()), "--triton-grpc-port", str(free_port()),
               "--triton-metrics-port", str(free_port())]
    launched, started = time.time(), time.perf_counter()
    with Path(home, "serve.log").open("ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=source,
                                   env={**os.environ, "TRIDENT_HOME": home}, start_new_session=True)
    while process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process, port, launched, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(Path(home, "serve.log").read_text()[-3000:])


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(60)


def phases(log: Path, launched: float, seconds: float) -> dict[str, float]:
    """Seconds per phase of the first start, from the first log line of each (JSON lines, ISO times)."""
    marks = {}
    for line in log.read_text().splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        for name, prefix in PHASES:
            if prefix and name not in marks and entry.get("message", "").startswith(prefix):
                marks[name] = datetime.fromisoformat(entry["time"]).timestamp()
    times = [(name, launched if prefix is None else marks.get(name)) for name, prefix in PHASES]
    present = [(name, at) for name, at in times if at is not None] + [("healthy", launched + seconds)]
    return {name: round(end - at, 1) for (name, at), (_, end) in itertools.pairwise(present)}


def wait_for_refinement(home: Path, healthy: float, timeout_s: float = 1800) -> dict[str, object]:
    """Seconds from the first /health 200 until the refined build exists, and the variant it chose."""
    while time.time() - healthy < timeout_s:
        manifests = list(home.glob("builds/*-refined/*/manifest.json"))
        if manifests:
            choice = json.loads(manifests[0].read_text())
            return {"after_healthy_s": round(time.time() - healthy, 1), "variant": choice["variant"],
                    "candidates": {row["variant"]: row["passed"] for row in choice["variant_choice"]["candidates"]}}
        time.sleep(1)
    return {"after_healthy_s": None, "variant": None}


def short_request_latencies(port: int) -> dict[str, float]:
    """A different short text each time: what a response cache holds is not what this measures."""
    latencies = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        for i in range(320):
            body = {"input": f"A man is playing a guitar, take {i}.", "model": "all-MiniLM-L6-v2"}
            started = time.perf_counter()
            client.post("/v1/embeddings", json=body).raise_for_status()
            if i >= 20:  # the first ones warm up
                latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    return {"p50_ms": round(statistics.median(latencies), 2), "p90_ms": round(latencies[269], 2),
            "p99_ms": round(latencies[296], 2)}


def commit(source: Path) -> str:
    done = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> dict:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--source", type=Path, default=ROOT, help="the checkout whose `trident serve` runs")
    args.add_argument("--no-requests", action="store_true", help="skip the 300 short requests")
    args.add_argument("--wait-refinement", action="store_true",
                      help="before the restart, wait for the first server's background refinement to finish")
    options = args.parse_args(argv)
    home = tempfile.mkdtemp(prefix="trident-home-")
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "commit": commit(options.source), "cores": os.cpu_count(),
              "cpu": cpu.cpu_name(), "cpu_flags": cpu.relevant_flags(), "load_average_before": os.getloadavg()}
    process, _, launched, cold = start(home, options.source)
    result["first_start_s"] = round(cold, 1)
    result["phases_s"] = phases(Path(home, "serve.log"), launched, cold)
    if options.wait_refinement:
        result["refinement"] = wait_for_refinement(Path(home), launched + cold)
    stop(process)
    process, port, _, warm = start(home, options.source)
    result["warm_restart_s"] = round(warm, 1)
    if not options.no_requests:
        result["short_request"] = short_request_latencies(port)
    stop(process)
    result["load_average_after"] = os.getloadavg()
    out = ROOT / "bench" / "results" / f"cold-start-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
