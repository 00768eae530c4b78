"""Limits applied before any parsing: request body size and requests in flight (per process, or shared by
the gateway workers of one server)."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.disconnect import serve_until_disconnect
from gateway.errors import ApiError, ErrorKind, error_response
from gateway.paths import gates


class BodyLimitMiddleware:
    """413 for a body over the limit, judged by Content-Length or, when chunked, while it arrives. The
    one reader of the body: it then runs the request, cancelled if the client hangs up."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        error = ApiError(ErrorKind.PAYLOAD_TOO_LARGE, f"request body is larger than the limit of {self.max_bytes} "
                         "bytes")
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"application/json").lower()
        if scope["method"] == "POST" and b"json" not in content_type:
            got = content_type.decode("latin-1")
            media = ApiError(ErrorKind.UNSUPPORTED_MEDIA_TYPE,
                             f"request body must be JSON (Content-Type: application/json), got {got!r}")
            await error_response(media, scope["path"])(scope, receive, send)
            return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await error_response(error, scope["path"])(scope, receive, send)
            return
        body = await self._read_body(receive)
        if body is None:
            await error_response(error, scope["path"])(scope, receive, send)
            return
        await serve_until_disconnect(self.app, scope, body, receive, send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it grows past the limit (the rest is never read)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class SharedSlots:
    """A limit on requests in flight shared by the gateway worker processes of one server: slot k is a
    POSIX record lock on byte k of one file. Taking a slot is one non-blocking `fcntl` call, exact across
    processes, and the kernel drops a process's locks when it dies, so a killed worker's slots come back
    by themselves. Each worker starts looking at its own share of the bytes (`first`), so workers seldom
    try a byte another one holds."""

    def __init__(self, path: Path, limit: int, first: int = 0) -> None:
        # Opened once and never closed while serving: closing any descriptor of the file would drop
        # every lock this process holds on it (POSIX record-lock semantics).
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        start = first % limit if limit > 0 else 0
        self._order = [*range(start, limit), *range(start)]
        self._held: set[int] = set()

    def take(self) -> bool:
        for slot in self._order:
            if slot in self._held:
                continue
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, slot, os.SEEK_SET)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                continue  # held by another worker
            self._held.add(slot)
            return True
        return False

    def give_back(self) -> None:
        fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, self._held.pop(), os.SEEK_SET)


class Admission:
    """What the gateway admits: at most `max_in_flight` requests, and none once it is draining.

    Draining (SIGTERM) answers new requests 503 at once while the admitted ones finish; the process
    exits when nothing is in flight (or at the drain deadline), then Triton is stopped. With several
    gateway workers (`--workers`), `shared` holds the whole server's slots (each worker sets it; see
    cli/workers.py); `in_flight` stays this process's own count, what its drain waits for.
    """

    def __init__(self, max_in_flight: int, shared: SharedSlots | None = None) -> None:
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.draining = False
        self.shared = shared

    def enter(self) -> bool:
        """Take a slot if one is free (False: over the limit)."""
        if self.shared is not None:
            if not self.shared.take():
                return False
        elif self.in_flight >= self.max_in_flight:
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1
        if self.shared is not None:
            self.shared.give_back()


class ConcurrencyLimitMiddleware:
    """At most N requests in flight; beyond that 429 with Retry-After at once, never a queue.

    The queue is bounded at zero on purpose: a request waiting behind others would only add latency
    the client cannot see or cancel, while a 429 lets it back off or go to another replica.
    """

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        admission, path_gates = self.admission, gates(scope["path"])
        if admission.draining and path_gates.drains:
            error = ApiError(ErrorKind.UNAVAILABLE, "the server is shutting down; retry on another replica",
                             headers={"Retry-After": "1", "Connection": "close"})
            await error_response(error, scope["path"])(scope, receive, send)
            return
        if not path_gates.admitted:
            await self.app(scope, receive, send)
            return
        if not admission.enter():
            error = ApiError(ErrorKind.OVERLOADED,
                             f"too many requests in flight (limit {admission.max_in_flight}); retry shortly",
                             headers={"Retry-After": "1"})
            await error_response(error, scope["path"])(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            admission.leave()
