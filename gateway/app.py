"""The gateway application: middleware (limits, auth), routes, and errors rendered in one place."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from gateway.auth import ApiKeyMiddleware
from gateway.errors import ApiError, error_response
from gateway.limits import Admission, BodyLimitMiddleware, ConcurrencyLimitMiddleware
from gateway.metrics import router as metrics_router
from gateway.observe import ObservabilityMiddleware, note_error
from gateway.openapi import install as install_openapi
from gateway.routes import embeddings, meta, tasks, tokens
from gateway.settings import GatewaySettings
from gateway.state import Gateway
from gateway.tokenize import TokenizerStore
from trident import __version__

INPUT_SHAPES = {
    "input": "a string, a list of strings, a list of token ids or a list of token-id lists",
    "inputs": "a string, a list of strings, a list of token ids or a list of token-id lists",
}

UNPARSABLE = "There was an error parsing the body"


def describe_validation(exc: RequestValidationError) -> ApiError:
    """pydantic's first complaint, said in the request's own terms."""
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return ApiError(400, f"request body is not valid JSON: {first.get('ctx', {}).get('error', '')}".rstrip(": "))
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    if not loc:
        return ApiError(422, "request body must be a JSON object")
    field = loc[0]
    if field in INPUT_SHAPES and first.get("type") != "missing":
        return ApiError(422, f"`{field}` must be {INPUT_SHAPES[field]}", param=field)
    return ApiError(422, f"invalid request: `{'.'.join(loc)}`: {first.get('msg', 'invalid value')}", param=field)


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
        error = describe_validation(exc)
        note_error(error.message)
        return error_response(error, request.url.path)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 400 and exc.detail == UNPARSABLE:  # FastAPI's words for a non-UTF-8 body
            return error_response(ApiError(400, "request body is not valid JSON: it must be UTF-8 encoded"),
                                  request.url.path)
        return error_response(ApiError(exc.status_code, str(exc.detail)), request.url.path)

    app.state.admission = Admission(settings.max_concurrent_requests)  # `trident serve` drains it on SIGTERM
    app.add_middleware(ConcurrencyLimitMiddleware, admission=app.state.admission)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_payload_bytes)
    app.add_middleware(ObservabilityMiddleware)  # outermost: sees every answer, the limits' too
    return app
