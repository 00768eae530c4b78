"""The gateway application: middleware (limits, auth), routes, and errors rendered in one place."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

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


def create_app(settings: GatewaySettings) -> FastAPI:
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await gateway.start()
        yield
        await gateway.stop()

    app = FastAPI(title="Trident", version=__version__, lifespan=lifespan,
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

    app.add_middleware(DirectRoutes)  # innermost: well-formed bodies skip FastAPI's routing and parsing
    app.state.admission = Admission(settings.max_concurrent_requests)  # `trident serve` drains it on SIGTERM
    app.add_middleware(ConcurrencyLimitMiddleware, admission=app.state.admission)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_payload_bytes)
    app.add_middleware(ObservabilityMiddleware)  # outermost: sees every answer, the limits' too
    return app
