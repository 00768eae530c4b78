"""Cold start of `trident serve` (empty build cache, then warm restart) and p50 of one short request.

    .venv/bin/python bench/cold_start.py

Each start is timed from launching the process to the first `/health` 200 (model built or reused,
tritonserver ready, gateway up). Then 300 sequential single-text `/v1/embeddings` requests.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testkit.stack import free_port  # noqa: E402


def start(home: str) -> tuple[subprocess.Popen, int, float]:
    port = free_port()
    command = [sys.executable, "-m", "cli", "serve", "--port", str(port),
               "--triton-http-port", str(free_port()), "--triton-grpc-port", str(free_port()),
               "--triton-metrics-port", str(free_port())]
    started = time.perf_counter()
    with Path(home, "serve.log").open("ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "TRIDENT_HOME": home}, start_new_session=True)
    while process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process, port, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(Path(home, "serve.log").read_text()[-3000:])


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(60)


def main() -> None:
    home = tempfile.mkdtemp(prefix="trident-home-")
    process, _, cold = start(home)
    print(f"first start (build + Triton + gateway) to /health 200: {cold:.1f} s")
    stop(process)
    process, port, warm = start(home)
    print(f"warm restart (cached build) to /health 200: {warm:.1f} s")
    body = {"input": "A man is playing a guitar.", "model": "all-MiniLM-L6-v2"}
    latencies = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(20):
            client.post("/v1/embeddings", json=body).raise_for_status()
        for _ in range(300):
            started = time.perf_counter()
            client.post("/v1/embeddings", json=body).raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
    stop(process)
    latencies.sort()
    print(f"/v1/embeddings, one short text, 300 sequential requests: p50 {statistics.median(latencies):.2f} ms, "
          f"p90 {latencies[269]:.2f} ms, p99 {latencies[296]:.2f} ms")


if __name__ == "__main__":
    main()
