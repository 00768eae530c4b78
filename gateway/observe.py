"""What happened to each HTTP request: one record per request, kept in a context variable.

The Triton client marks when its calls start and end (`triton_call`), routes say how many inputs and
tokens they handled (`note_usage`), and the middleware turns the record into Prometheus metrics,
TEI's timing headers and one JSON access-log line, all under the request's id.

Timing headers, in whole milliseconds as TEI sends them (only on answers that did model work):
- x-total-time, x-compute-time: arrival of the request -> start of the answer (TEI sends both, equal).
- x-queue-time: arrival -> first Triton call sent (body read, validation, batching into sub-requests).
- x-inference-time: first Triton call sent -> last Triton answer received (the sub-requests run
  concurrently, so this is wall time, not a sum). Tokenization inside the Triton ensemble is part of it.
- x-tokenization-time: time the tokenizer step inside Triton spent on the request, as the step measured it
  (TOKENIZE_NS, summed over the sub-requests: they run concurrently, so it can exceed x-inference-time
  only when several ran at once); for token ids, the ids step's (well under a millisecond); for /tokenize,
  the gateway's own tokenizing.
- x-compute-tokens, x-compute-characters: tokens the model processed, characters the client sent.
- x-cache: `hit` when every input was answered from the response cache (`gateway.cache`), else `miss`;
  x-cache-hits: how many inputs were (when any).
- x-trident-priority: the priority the request ran at, `interactive` or `bulk` (`trident.priorities`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import metrics
from gateway.disconnect import CLIENT_GONE
from gateway.errors import ApiError, ErrorKind, error_response

access_log = logging.getLogger("trident.access")
log = logging.getLogger("trident.gateway")
REQUEST_ID_HEADER = "x-request-id"
PRIORITY_HEADER = "x-trident-priority"  # asked for in the request, said in the answer
CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")  # anything else is replaced, never echoed


@dataclass
class RequestRecord:
    request_id: str
    method: str
    path: str
    route: str
    arrived: float  # time.perf_counter()
    first_call: float | None = None
    last_answer: float | None = None
    tokenization_s: float | None = None
    model: str | None = None
    inputs: int = 0
    tokens: int = 0
    characters: int = 0
    error: str | None = None
    priority_asked: str | None = None  # the request's x-trident-priority header, as sent
    priority: str | None = None  # what it ran at
    cache_hits: int = 0  # inputs answered from the response cache
    cache_misses: int = 0

    def did_model_work(self) -> bool:
        return self.first_call is not None or self.tokenization_s is not None or self.cache_hits > 0

    def timing_headers(self, now: float) -> dict[str, str]:
        def ms(seconds: float) -> str:
            return str(int(seconds * 1000))

        total = ms(now - self.arrived)
        headers = {"x-total-time": total, "x-compute-time": total,
                   "x-compute-tokens": str(self.tokens), "x-compute-characters": str(self.characters)}
        if self.first_call is not None:
            headers["x-queue-time"] = ms(self.first_call - self.arrived)
            headers["x-inference-time"] = ms((self.last_answer or now) - self.first_call)
        if self.tokenization_s is not None:
            headers["x-tokenization-time"] = ms(self.tokenization_s)
        if self.cache_hits or self.cache_misses:
            headers["x-cache"] = "miss" if self.cache_misses else "hit"
        if self.cache_hits:
            headers["x-cache-hits"] = str(self.cache_hits)  # inputs answered from the cache, of a batch too
        if self.priority is not None:
            headers[PRIORITY_HEADER] = self.priority
        return headers


CURRENT: ContextVar[RequestRecord | None] = ContextVar("trident_request", default=None)


def current_request_id() -> str | None:
    record = CURRENT.get()
    return record.request_id if record else None


def note_usage(
    model: str | None = None, inputs: int = 0, tokens: int = 0, characters: int = 0,
    tokenization_s: float | None = None,
) -> None:
    """Called by routes once they know what the request cost; adds to what sub-calls noted."""
    record = CURRENT.get()
    if record is None:
        return
    record.model = model or record.model
    record.inputs += inputs
    record.tokens += tokens
    record.characters += characters
    if tokenization_s is not None:
        record.tokenization_s = (record.tokenization_s or 0.0) + tokenization_s


def note_dispatch(priority: str, hits: int, misses: int) -> None:
    """How a job ran: its priority, and how many of its inputs the response cache answered."""
    record = CURRENT.get()
    if record is not None:
        record.priority = priority
        record.cache_hits += hits
        record.cache_misses += misses


def asked_priority() -> str | None:
    record = CURRENT.get()
    return record.priority_asked if record else None


def note_error(message: str) -> None:
    record = CURRENT.get()
    if record is not None:
        record.error = message


@contextlib.contextmanager
def triton_call(model: str) -> Iterator[None]:
    """Time one Triton call: for the request's headers and for the per-model Triton histogram."""
    started = time.perf_counter()
    record = CURRENT.get()
    if record is not None and (record.first_call is None or started < record.first_call):
        record.first_call = started
    outcome = "error"
    try:
        yield
        outcome = "ok"
    finally:
        ended = time.perf_counter()
        metrics.TRITON_CALL_SECONDS.labels(model, outcome).observe(ended - started)
        if record is not None and (record.last_answer is None or ended > record.last_answer):
            record.last_answer = ended


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key == name:
            return value.decode("latin-1")
    return None


def request_id_from(scope: Scope) -> str:
    text = header(scope, REQUEST_ID_HEADER.encode())
    return text if text is not None and CLIENT_REQUEST_ID.fullmatch(text) else uuid.uuid4().hex


def app_routes(routes: list, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(path, route) for every route the app answers, looking into included routers (FastAPI keeps them
    nested)."""
    for route in routes:
        if isinstance(getattr(route, "path", None), str):
            yield prefix + route.path, route
        elif hasattr(route, "original_router"):
            context = getattr(route, "include_context", None)
            yield from app_routes(route.original_router.routes, prefix + getattr(context, "prefix", ""))


def route_paths(routes: list) -> Iterator[str]:
    return (path for path, _ in app_routes(routes))


def route_label(path: str, known: frozenset[str]) -> str:
    """The route's path, or "unmatched": metrics never get one label per random URL."""
    return path if path in known else "unmatched"


class ObservabilityMiddleware:
    """Outermost middleware: request id, timing headers, metrics and the access log for every request,
    including those that the limits or the API-key check turn away."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.known_paths: frozenset[str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.known_paths is None:
            self.known_paths = frozenset(route_paths(getattr(scope.get("app"), "routes", [])))
        record = RequestRecord(request_id_from(scope), scope["method"], scope["path"],
                               route_label(scope["path"], self.known_paths), arrived=time.perf_counter(),
                               priority_asked=header(scope, PRIORITY_HEADER.encode()))
        token = CURRENT.set(record)
        status = 500  # stays so if the app raises before answering (499 if the client hung up first)
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message["headers"] = list(message.get("headers", []))
                headers = MutableHeaders(raw=message["headers"])
                headers[REQUEST_ID_HEADER] = record.request_id
                if status < 400 and record.did_model_work():
                    for name, value in record.timing_headers(time.perf_counter()).items():
                        headers[name] = value
            await send(message)

        metrics.IN_FLIGHT.labels(record.route).inc()
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:  # a bug: answer 500 in the route's error format and log it under the request id
            log.exception("unhandled error in %s %s", record.method, record.path)
            if started:
                raise
            record.error = f"{type(exc).__name__}: {exc}"
            error = ApiError(ErrorKind.INTERNAL, f"internal error (request id {record.request_id}); see the server log")
            await error_response(error, scope["path"])(scope, receive, send_with_headers)
        finally:
            metrics.IN_FLIGHT.labels(record.route).dec()
            CURRENT.reset(token)
            if not started and scope.get(CLIENT_GONE):
                status, record.error = 499, "the client closed the connection before the answer"
            finish(record, status)


def finish(record: RequestRecord, status: int) -> None:
    duration = time.perf_counter() - record.arrived
    metrics.record_request(record.route, record.method, status, duration)
    if status < 400 and record.did_model_work():
        queue = record.first_call - record.arrived if record.first_call is not None else None
        inference = (record.last_answer - record.first_call
                     if record.first_call is not None and record.last_answer is not None else None)
        metrics.record_work(record.route, record.inputs, record.tokens, queue, inference)
    if record.priority is not None:
        metrics.PRIORITY_REQUESTS.labels(record.priority).inc()
    fields = {"request_id": record.request_id, "method": record.method, "path": record.path,
              "status": status, "duration_ms": round(duration * 1000, 3), "model": record.model,
              "inputs": record.inputs or None, "tokens": record.tokens or None, "priority": record.priority,
              "cache_hits": record.cache_hits or None, "error": record.error}
    level = logging.WARNING if status >= 500 else logging.INFO
    access_log.log(level, "%s %s %d", record.method, record.path, status, extra=fields)
