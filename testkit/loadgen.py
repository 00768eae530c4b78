"""A closed-loop HTTP load generator: N workers, each sends its next request when the last returns.

Bounded by time and by request count; returns throughput and latency percentiles. The same generator
drives Trident and every HTTP baseline, so the numbers compare like with like.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import aiohttp
import numpy as np


@dataclass
class LoadResult:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    inputs: int
    tokens: int
    requests_per_s: float
    inputs_per_s: float
    tokens_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float

    def to_dict(self) -> dict:
        return asdict(self)


async def run_load(
    url: str,
    make_body: Callable[[int], dict],
    inputs_per_request: int,
    tokens_per_input: int,
    concurrency: int,
    duration_s: float,
    max_requests: int = 1_000_000,
    warmup_requests: int = 0,
    on_answer: Callable[[int, bytes], None] | None = None,
) -> LoadResult:
    """`on_answer(i, body)` sees the body of each successful answer to request i (to check it)."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        for i in range(warmup_requests):
            async with session.post(url, json=make_body(i)) as response:
                await response.read()
        deadline = time.perf_counter() + duration_s

        async def worker() -> None:
            nonlocal errors, sent
            while time.perf_counter() < deadline and sent < max_requests:
                index = sent
                body = make_body(index)
                sent += 1
                started = time.perf_counter()
                async with session.post(url, json=body) as response:
                    answer = await response.read()
                    ok = response.status == 200
                if ok:
                    latencies.append(time.perf_counter() - started)
                    if on_answer is not None:
                        on_answer(index, answer)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    done = len(latencies)
    ms = np.array(latencies or [float("nan")]) * 1000
    return LoadResult(
        concurrency=concurrency, requests=done, errors=errors, seconds=seconds,
        inputs=done * inputs_per_request, tokens=done * inputs_per_request * tokens_per_input,
        requests_per_s=done / seconds, inputs_per_s=done * inputs_per_request / seconds,
        tokens_per_s=done * inputs_per_request * tokens_per_input / seconds,
        p50_ms=float(np.percentile(ms, 50)), p90_ms=float(np.percentile(ms, 90)), p99_ms=float(np.percentile(ms, 99)),
        p999_ms=float(np.percentile(ms, 99.9)),
    )
