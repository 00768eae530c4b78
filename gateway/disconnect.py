"""A client that hangs up stops costing work: its request's handler is cancelled, and with it every
Triton call the handler is waiting on. gRPC carries the cancellation to Triton, which runs no further
step of the ensemble (measured on Triton 2.51, tests/test_cancellation.py: requests given up while queued
at a busy engine never reach the postprocess; the engine step they were queued at still runs)."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CLIENT_GONE = "trident.client_gone"  # set in the scope when the handler was cancelled for a hang-up


def replay(body: bytes, then: Receive) -> Receive:
    """`receive` for an app reading a body already read: the body once, then what `then` says."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await then()

    return again


async def serve_until_disconnect(app: ASGIApp, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
    """Run `app` on an already read `body` while watching the connection; cancel it if the client leaves."""
    gone = asyncio.Event()

    async def disconnected() -> Message:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    handler = asyncio.ensure_future(app(scope, replay(body, disconnected), send))
    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait((handler, watcher), return_when=asyncio.FIRST_COMPLETED)
        if not handler.done():
            scope[CLIENT_GONE] = True
            handler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await handler
    finally:
        watcher.cancel()
        handler.cancel()  # no-op when done; stops it if we ourselves are cancelled (shutdown)
