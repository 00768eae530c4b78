"""Several Triton endpoints behind TritonBackend's API: round-robin over the healthy ones, failover.

`trident serve --triton-url A --triton-url B` spreads sub-requests over A and B. An endpoint that
does not answer (connection refused or reset: gRPC UNAVAILABLE) is marked down and the same
sub-request goes to the next endpoint; inference has no side effects, so running it twice is safe.
A background probe asks every endpoint `is_server_ready` each second: a down endpoint that answers
again is re-admitted, a frozen one (ready times out) is taken out. When every endpoint is down the
pool still tries them all, so one endpoint behaves exactly like a bare TritonBackend.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging

import numpy as np
from prometheus_client import Gauge

from gateway.metrics import REGISTRY
from gateway.registry import Discovery
from gateway.triton import TritonBackend, TritonUnreachable

log = logging.getLogger("trident.gateway")
# With several gateway workers: 0 when any live worker skips the endpoint.
ENDPOINT_UP = Gauge("trident_triton_endpoint_up", "1 while this Triton endpoint gets requests, 0 while it is skipped",
                    ["url"], registry=REGISTRY, multiprocess_mode="livemin")


class Endpoint:
    def __init__(self, backend: TritonBackend) -> None:
        self.backend = backend
        self.up = True  # optimistic: the first call or probe tells
        ENDPOINT_UP.labels(backend.url).set(1)

    @property
    def url(self) -> str:
        return self.backend.url

    def mark(self, up: bool, reason: str = "") -> None:
        if up != self.up:
            log.warning("triton endpoint %s is %s%s", self.url, "up" if up else "down", f": {reason}" if reason else "")
        self.up = up
        ENDPOINT_UP.labels(self.url).set(int(up))


class EndpointPool:
    def __init__(self, urls: list[str], timeout_s: float, probe_interval_s: float = 1.0,
                 server_id: str | None = None) -> None:
        if not urls:
            raise ValueError("at least one Triton URL is needed")
        self.endpoints = [Endpoint(TritonBackend(url, timeout_s, server_id)) for url in urls]
        self.timeout_s = timeout_s
        self.probe_interval_s = probe_interval_s
        self._turn = itertools.count()
        self._prober: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return ",".join(e.url for e in self.endpoints)

    def candidates(self) -> list[Endpoint]:
        """Healthy endpoints first, starting at the next in turn; the down ones last, as a last resort."""
        start = next(self._turn) % len(self.endpoints)
        rotated = self.endpoints[start:] + self.endpoints[:start]
        return [e for e in rotated if e.up] + [e for e in rotated if not e.up]

    async def infer(
        self, model: str, tensors: dict[str, np.ndarray], outputs: tuple[str, ...], offset: int = 0,
        param: str = "input", priority: int = 0,
    ) -> dict[str, np.ndarray]:
        failure: TritonUnreachable | None = None
        for endpoint in self.candidates():
            try:
                result = await endpoint.backend.infer(model, tensors, outputs, offset, param, priority)
            except TritonUnreachable as exc:
                endpoint.mark(False, exc.message)
                failure = exc
                continue
            endpoint.mark(True)
            return result
        raise failure

    async def ready(self) -> bool:
        """Ready when any endpoint is; asks them all, which also refreshes their state."""
        answers = await asyncio.gather(*(e.backend.ready() for e in self.endpoints))
        for endpoint, ready in zip(self.endpoints, answers, strict=True):
            endpoint.mark(ready, "not ready")
        return any(answers)

    async def discover(self) -> Discovery:
        """The models, from the first endpoint that answers (every endpoint serves the same repository)."""
        failure: Exception | None = None
        for endpoint in self.candidates():
            try:
                return await endpoint.backend.discover()
            except Exception as exc:  # any failure: ask the next endpoint
                failure = exc
        raise failure

    async def probe_forever(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.ready()
            await asyncio.sleep(self.probe_interval_s)

    async def start(self) -> None:
        if len(self.endpoints) > 1:  # one endpoint: nothing to fail over to, no probing needed
            self._prober = asyncio.create_task(self.probe_forever())

    async def close(self) -> None:
        if self._prober:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        for endpoint in self.endpoints:
            await endpoint.backend.close()
