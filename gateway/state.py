"""What every route shares: settings, the Triton backend, the served models, and running a job."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway import jobs
from gateway.cache import ResponseCache
from gateway.endpoints import EndpointPool
from gateway.priority import request_priority
from gateway.registry import ModelRegistry
from gateway.settings import GatewaySettings
from trident.spec import ModelSpec

log = logging.getLogger("trident.gateway")


class Gateway:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        # Every --triton-url; quacks like TritonBackend (infer, ready, discover, close).
        self.backend = EndpointPool(settings.triton_urls, settings.request_timeout_s,
                                    server_id=settings.triton_server_id)
        self.registry = ModelRegistry(settings.default_model)
        cache_bytes = int(settings.cache_size_mib * 2**20) // max(1, settings.workers)  # each worker its share
        self.cache = ResponseCache(cache_bytes) if cache_bytes > 0 else None
        self._watcher: asyncio.Task | None = None

    async def infer(self, spec: ModelSpec, job: jobs.Job, priority: str | None = None,
                    inputs: int | None = None) -> jobs.Result:
        """Any task's job, in sub-requests of at most --triton-batch-size inputs, at the request's priority:
        `priority` as the body said it (or None), `inputs` the size of the client's batch (default the job's)."""
        level = request_priority(priority, len(job) if inputs is None else inputs, self.settings.bulk_threshold)
        plan = jobs.dispatch(spec, job, level, self.registry.has_bulk_lane(job.model(spec)),
                             self.settings.triton_batch_size)
        return await jobs.run(self.backend, spec, job, plan, self.cache, (self.registry.fingerprint(spec),))

    async def refresh_models(self) -> None:
        found = await self.backend.discover()
        if found.specs:
            self.registry.replace(found)

    async def watch_models(self, interval_s: float = 0.5) -> None:
        """Discover models until Triton answers, then re-check now and then (Triton may restart)."""
        while True:
            with contextlib.suppress(Exception):
                await self.refresh_models()
            await asyncio.sleep(interval_s if not self.registry else 10 * interval_s)

    async def start(self) -> None:
        self._watcher = asyncio.create_task(self.watch_models())
        await self.backend.start()

    async def stop(self) -> None:
        if self._watcher:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self.backend.close()
