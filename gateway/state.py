"""What every route shares: settings, the Triton backend, the served models, the services."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.embedding import EmbeddingService
from gateway.registry import ModelRegistry
from gateway.settings import GatewaySettings
from gateway.triton import TritonBackend

log = logging.getLogger("trident.gateway")


class Gateway:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.backend = TritonBackend(settings.triton_urls[0], settings.request_timeout_s)
        self.registry = ModelRegistry(settings.default_model)
        self.embeddings = EmbeddingService(self.backend, settings)
        self._watcher: asyncio.Task | None = None

    async def refresh_models(self) -> None:
        specs = await self.backend.discover()
        if specs:
            self.registry.replace(specs)

    async def watch_models(self, interval_s: float = 0.5) -> None:
        """Discover models until Triton answers, then re-check now and then (Triton may restart)."""
        while True:
            with contextlib.suppress(Exception):
                await self.refresh_models()
            await asyncio.sleep(interval_s if not self.registry else 10 * interval_s)

    async def start(self) -> None:
        self._watcher = asyncio.create_task(self.watch_models())

    async def stop(self) -> None:
        if self._watcher:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self.backend.close()
