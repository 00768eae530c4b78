"""Prometheus metrics of the gateway, and `GET /metrics`, which also carries Triton's own metrics.

Gateway metrics are named `trident_*`; Triton's (`nv_*`: per-model request counts, queue and compute
durations, batch sizes) are fetched from its metrics port at scrape time and appended, so one scrape
target sees both. If Triton's port does not answer, `trident_triton_metrics_up` is 0.

With several gateway workers (`trident serve --workers N`), PROMETHEUS_MULTIPROC_DIR is set in each
worker's environment: every process writes its values to files there and any worker's `/metrics` reads
them all (prometheus_client's multiprocess mode), so counters and histograms are the whole server's, summed
over workers, a dead worker's included; each gauge says how its workers' values combine (`multiprocess_mode`,
ignored with one process).
"""

from __future__ import annotations

import asyncio
import os
from urllib.error import URLError
from urllib.request import urlopen

from fastapi import APIRouter, Request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.responses import Response

from trident import __version__

REGISTRY = CollectorRegistry()
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
COUNTS = tuple(2.0**k for k in range(12))  # 1 .. 2048 inputs
TOKENS = tuple(4.0**k for k in range(1, 11))  # 4 .. ~1M tokens

REQUESTS = Counter("trident_requests", "HTTP requests answered, by route and status",
                   ["route", "method", "status"], registry=REGISTRY)
DURATION = Histogram("trident_request_duration_seconds", "Time from arrival to the end of the answer",
                     ["route"], buckets=SECONDS, registry=REGISTRY)
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
IN_FLIGHT = Gauge("trident_requests_in_flight", "HTTP requests being handled now", ["route"], registry=REGISTRY,
                  multiprocess_mode="livesum")
INPUTS = Histogram("trident_request_inputs", "Inputs (texts, pairs or token-id lists) per successful request",
                   ["route"], buckets=COUNTS, registry=REGISTRY)
TOKENS_PER_REQUEST = Histogram("trident_request_tokens", "Tokens the model processed per successful request",
                               ["route"], buckets=TOKENS, registry=REGISTRY)
QUEUE = Histogram("trident_request_queue_seconds", "Arrival -> first Triton call sent (x-queue-time)",
                  ["route"], buckets=SECONDS, registry=REGISTRY)
INFERENCE = Histogram("trident_request_inference_seconds", "First Triton call -> last answer (x-inference-time)",
                      ["route"], buckets=SECONDS, registry=REGISTRY)
TRITON_CALL_SECONDS = Histogram("trident_triton_call_duration_seconds", "One gRPC call to Triton, by model",
                                ["model", "outcome"], buckets=SECONDS, registry=REGISTRY)
TRITON_METRICS_UP = Gauge("trident_triton_metrics_up", "1 if Triton's own metrics were read for this scrape",
                          registry=REGISTRY, multiprocess_mode="mostrecent")
CACHE_HITS = Counter("trident_cache_hits", "Inputs answered from the response cache", ["model"], registry=REGISTRY)
CACHE_MISSES = Counter("trident_cache_misses", "Inputs the response cache did not hold (computed by Triton)",
                       ["model"], registry=REGISTRY)
CACHE_BYTES = Gauge("trident_cache_bytes", "Bytes the response cache holds (every worker's)", registry=REGISTRY,
                    multiprocess_mode="livesum")
CACHE_ENTRIES = Gauge("trident_cache_entries", "Inputs the response cache holds (every worker's)", registry=REGISTRY,
                      multiprocess_mode="livesum")
PRIORITY_REQUESTS = Counter("trident_priority_requests", "Requests that ran the model, by priority (interactive, bulk)",
                            ["priority"], registry=REGISTRY)
INFO = Gauge("trident_info", "Trident version", ["version"], registry=REGISTRY, multiprocess_mode="max")
INFO.labels(__version__).set(1)


def record_request(route: str, method: str, status: int, duration_s: float) -> None:
    REQUESTS.labels(route, method, str(status)).inc()
    DURATION.labels(route).observe(duration_s)


def record_work(route: str, inputs: int, tokens: int, queue_s: float | None, inference_s: float | None) -> None:
    if inputs:
        INPUTS.labels(route).observe(inputs)
    if tokens:
        TOKENS_PER_REQUEST.labels(route).observe(tokens)
    if queue_s is not None:
        QUEUE.labels(route).observe(queue_s)
    if inference_s is not None:
        INFERENCE.labels(route).observe(inference_s)


def gateway_metrics() -> bytes:
    """The `trident_*` text: this process's, or every worker's when the server runs several."""
    directory = os.environ.get(MULTIPROCESS_DIR_ENV)
    if not directory:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return generate_latest(registry)


def _read(url: str, timeout_s: float) -> bytes:
    with urlopen(url, timeout=timeout_s) as response:
        return response.read()


async def triton_metrics(url: str | None, timeout_s: float = 2.0) -> bytes | None:
    """Triton's Prometheus text, or None if there is no URL or it does not answer in time."""
    if not url:
        return None
    try:
        return await asyncio.wait_for(asyncio.to_thread(_read, url, timeout_s), timeout_s + 0.5)
    except (URLError, OSError, TimeoutError, ValueError):
        return None


router = APIRouter()


@router.get("/metrics", tags=["Meta"], response_class=Response,
            responses={200: {"description": "Prometheus text: gateway `trident_*` metrics, then Triton's `nv_*`",
                             "content": {"text/plain": {"schema": {"type": "string"}}}}})
async def prometheus_metrics(request: Request) -> Response:
    triton_text = await triton_metrics(request.app.state.gateway.settings.triton_metrics_url)
    TRITON_METRICS_UP.set(0 if triton_text is None else 1)
    body = gateway_metrics()
    if triton_text:
        body += b"\n" + triton_text
    return Response(body, media_type=CONTENT_TYPE_LATEST)
