"""A gateway given the id of the Triton it started counts only that server as ready."""

from __future__ import annotations

import asyncio

from gateway.triton import TritonBackend


def ready(url: str, server_id: str | None) -> bool:
    async def ask() -> bool:
        backend = TritonBackend(url, 5.0, server_id)
        try:
            return await backend.ready()
        finally:
            await backend.close()

    return asyncio.run(ask())


def test_only_the_server_with_our_id_is_ready(fake):
    assert ready(fake.url, None)
    assert ready(fake.url, "triton")  # the fake's server metadata name
    assert not ready(fake.url, "trident-someone-else")
