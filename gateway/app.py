"""The gateway application: middleware (limits, auth), routes, and errors rendered in one place."""

from __future__ import annotations

import gc
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp

from gateway.auth import ApiKeyMiddleware
from gateway.direct import DirectRoutes
from gateway.errors import ApiError, ErrorKind, error_response, status_response
from gateway.limits import Admission, BodyLimitMiddleware, ConcurrencyLimitMiddleware
from gateway.metrics import router as metrics_router
from gateway.observe import ObservabilityMiddleware, note_error
from gateway.openapi import install as install_openapi
from gateway.routes import embeddings, meta, tasks, tokens
from gateway.settings import GatewaySettings
from gateway.state import Gateway
from gateway.tokenize import TokenizerStore
from gateway.validation import body_schema, describe_validation
from trident import __version__

UNPARSABLE = "There was an error parsing the body"


class TridentApp(FastAPI):
    """FastAPI with Trident's middleware (added with `add_middleware`) outside all of FastAPI's own layers,
    and `DirectRoutes` between the two: a well-formed request to a body route is answered without entering
    FastAPI at all; docs, GETs and malformed bodies go through FastAPI as usual."""

    def build_middleware_stack(self) -> ASGIApp:
        ours, self.user_middleware = self.user_middleware, []
        try:
            fastapi = super().build_middleware_stack()
        finally:
            self.user_middleware = ours
        # Without FastAPI's outermost layer, which answers a bug with a plain-text 500: ObservabilityMiddleware
        # answers it in the route's JSON error format, with the request id.
        app: ASGIApp = DirectRoutes(fastapi.app if isinstance(fastapi, ServerErrorMiddleware) else fastapi)
        for middleware in reversed(ours):
            app = middleware.cls(app, *middleware.args, **middleware.kwargs)
        return app


def freeze_startup_heap() -> None:
    """Put what is alive once the server is up out of the garbage collector's reach (`gc.freeze`).

    A full collection walks every object: in `trident serve`, whose process also ran the builder, that is
    torch's and transformers' millions, and one walk stalled the event loop, and every request in flight,
    for up to 0.3 s (measured with gc.callbacks under 5-token load at concurrency 64): the unfair tail.
    Frozen, a collection walks only the objects requests create."""
    gc.collect()
    gc.freeze()


def create_app(settings: GatewaySettings) -> FastAPI:
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await gateway.start()
        freeze_startup_heap()
        yield
        await gateway.stop()

    # FastAPI's own OpenTelemetry off: Trident has its metrics and logs, and the check costs every request.
    app = TridentApp(title="Trident", version=__version__, lifespan=lifespan,
                     telemetry={"tracing": False, "metrics": False, "logs": False},
                     description="Embeddings, reranking, classification and NER on NVIDIA Triton.")
    app.state.gateway = gateway
    app.state.tokenizers = TokenizerStore(settings.repositories)
    app.include_router(embeddings.router)
    app.include_router(meta.router)
    app.include_router(tokens.router)
    app.include_router(tasks.router)
    app.include_router(metrics_router)
    install_openapi(app)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        note_error(exc.message)
        return error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        route = request.scope.get("route")
        schema = body_schema(route.endpoint) if route is not None else None
        error = describe_validation(exc.errors(), getattr(schema, "shapes", {}))
        note_error(error.message)
        return error_response(error, request.url.path)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 400 and exc.detail == UNPARSABLE:  # FastAPI's words for a non-UTF-8 body
            error = ApiError(ErrorKind.INVALID_REQUEST, "request body is not valid JSON: it must be UTF-8 encoded")
            return error_response(error, request.url.path)
        return status_response(exc.status_code, str(exc.detail), request.url.path, exc.headers)

    app.state.admission = Admission(settings.max_concurrent_requests)  # `trident serve` drains it on SIGTERM
    app.add_middleware(ConcurrencyLimitMiddleware, admission=app.state.admission)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_payload_bytes)
    app.add_middleware(ObservabilityMiddleware)  # outermost: sees every answer, the limits' too
    return app
