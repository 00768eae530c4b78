"""Shared by tests/test_reliability.py and soak/run.py: load generation, answer checking, process facts.

Everything here works on a real `trident serve` (testkit/stack.py): the load is real HTTP, the processes
are read from /proc, and the answers are compared with the answers to the same inputs sent alone.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import numpy as np

from testkit import procfs
from testkit.stack import SHM, Stack

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu the quick brown fox jumps").split()


def distinct_texts(n: int, seed: int = 7) -> list[str]:
    """n different texts of varied length (1 to ~40 words), so sub-batches mix short and long."""
    rng = random.Random(seed)
    return [f"{i} " + " ".join(rng.choices(WORDS, k=rng.randint(1, 40))) for i in range(n)]


# --- processes ------------------------------------------------------------------------------------


def triton_pid(stack: Stack) -> int:
    pids = [pid for pid in procfs.children(stack.process.pid) if procfs.command_name(pid) == "tritonserver"]
    assert pids, "no tritonserver under trident serve"
    return pids[0]


def shm_prefix(triton: int) -> str:
    flag = next(arg for arg in procfs.cmdline(triton) if "shm-region-prefix-name=" in arg)
    return flag.split("shm-region-prefix-name=")[1]


def shm_regions_with(prefix: str) -> list[str]:
    return [p.name for p in SHM.glob(prefix + "*")]


def stack_rss(stack: Stack) -> int:
    """Resident memory of the gateway, tritonserver and its stubs together."""
    pids = [stack.process.pid]
    for triton in (p for p in procfs.children(stack.process.pid) if procfs.command_name(p) == "tritonserver"):
        pids += [triton, *procfs.children(triton)]
    return sum(procfs.rss_bytes(pid) for pid in pids)


def kill(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    os.kill(pid, sig)


def wait_for(predicate, timeout: float, interval: float = 0.1) -> float:
    """Seconds until predicate() is true; AssertionError after `timeout`."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"not true after {timeout} s"
        time.sleep(interval)
    return time.monotonic() - started


def healthy(stack: Stack) -> bool:
    try:
        return httpx.get(f"{stack.base_url}/health", timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


# --- answers ----------------------------------------------------------------------------------------


def embed_alone(stack: Stack, model: str, texts: list[str]) -> dict[str, np.ndarray]:
    """The reference: each text in a request of its own, one at a time."""
    reference = {}
    with httpx.Client(base_url=stack.base_url, timeout=60) as client:
        for text in texts:
            response = client.post("/v1/embeddings", json={"input": text, "model": model})
            assert response.status_code == 200, response.text
            reference[text] = np.array(response.json()["data"][0]["embedding"], dtype=np.float32)
    return reference


@dataclass
class LoadReport:
    """What a load run saw: statuses, wrong answers, latencies of admitted requests."""

    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # "429 overloaded", "503 unavailable", "timeout", ...
    wrong: int = 0
    unexplained: list[str] = field(default_factory=list)  # errors without an explicit JSON error body
    ok_latencies: list[float] = field(default_factory=list)
    rejected_latencies: list[float] = field(default_factory=list)
    retry_after: Counter = field(default_factory=Counter)  # Retry-After values of the 429s

    def summary(self) -> dict[str, object]:
        ok = sorted(self.ok_latencies)
        return {
            "requests_sent": self.sent, "ok": self.statuses.get(200, 0), "errors_by_kind": dict(self.errors),
            "wrong_answers": self.wrong, "unexplained_errors": len(self.unexplained),
            "admitted_latency_p50_s": round(ok[len(ok) // 2], 3) if ok else None,
            "admitted_latency_max_s": round(ok[-1], 3) if ok else None,
            "rejected_latency_max_s": round(max(self.rejected_latencies), 3) if self.rejected_latencies else None,
        }


def _error_kind(response: httpx.Response) -> str | None:
    """'STATUS type' for an explicit JSON error, None for anything else."""
    try:
        body = response.json()
        error = body["error"]
        kind = error["type"] if isinstance(error, dict) else body["error_type"]
    except (ValueError, KeyError, TypeError):
        return None
    return f"{response.status_code} {kind}"


async def _one(client: httpx.AsyncClient, model: str, batch: list[str], reference: dict[str, np.ndarray] | None,
               report: LoadReport, atol: float) -> None:
    report.sent += 1
    started = time.monotonic()
    try:
        response = await client.post("/v1/embeddings", json={"input": batch, "model": model})
    except httpx.TimeoutException:
        report.errors["client timeout"] += 1
        report.unexplained.append("client timeout")
        return
    except httpx.TransportError as exc:
        report.errors[f"connection: {type(exc).__name__}"] += 1
        report.unexplained.append(repr(exc))
        return
    seconds = time.monotonic() - started
    report.statuses[response.status_code] += 1
    if response.status_code != 200:
        report.rejected_latencies.append(seconds)
        kind = _error_kind(response)
        report.errors[kind or f"{response.status_code} (no JSON error)"] += 1
        if response.status_code == 429:
            report.retry_after[response.headers.get("retry-after")] += 1
        if kind is None:
            report.unexplained.append(response.text[:200])
        return
    report.ok_latencies.append(seconds)
    if reference is None:
        return
    data = response.json()["data"]
    if len(data) != len(batch):
        report.wrong += 1
        return
    for item, text in zip(sorted(data, key=lambda d: d["index"]), batch, strict=True):
        if not np.allclose(np.array(item["embedding"], dtype=np.float32), reference[text], atol=atol, rtol=0):
            report.wrong += 1


def run_load(stack: Stack, model: str, batches: list[list[str]], concurrency: int,
             reference: dict[str, np.ndarray] | None = None, atol: float = 1e-6, timeout: float = 120.0,
             report: LoadReport | None = None) -> LoadReport:
    """Send every batch as one request, `concurrency` at a time; check each answer against the reference."""
    report = report or LoadReport()

    async def main() -> None:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=timeout, limits=limits) as client:
            queue: asyncio.Queue[list[str]] = asyncio.Queue()
            for batch in batches:
                queue.put_nowait(batch)

            async def worker() -> None:
                while not queue.empty():
                    await _one(client, model, queue.get_nowait(), reference, report, atol)

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    asyncio.run(main())
    return report


def run_for(stack: Stack, model: str, texts: list[str], seconds: float, concurrency: int,
            reference: dict[str, np.ndarray] | None = None, timeout: float = 120.0,
            on_tick=None) -> LoadReport:
    """Keep `concurrency` clients busy for `seconds` (texts cycled); on_tick() runs every 0.5 s meanwhile."""
    report = LoadReport()

    async def main() -> None:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        deadline = time.monotonic() + seconds
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=timeout, limits=limits) as client:
            async def worker(offset: int) -> None:
                i = offset
                while time.monotonic() < deadline:
                    await _one(client, model, [texts[i % len(texts)]], reference, report, 1e-6)
                    i += concurrency

            async def ticker() -> None:
                while time.monotonic() < deadline:
                    if on_tick:
                        await asyncio.to_thread(on_tick)
                    await asyncio.sleep(0.5)

            await asyncio.gather(ticker(), *(worker(k) for k in range(concurrency)))

    asyncio.run(main())
    return report
