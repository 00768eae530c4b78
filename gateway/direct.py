"""The body routes' handlers called directly, without FastAPI's per-request machinery.

FastAPI spends more of a short request's CPU than the handler does: its exception and exit-stack
layers, the router's match over every route, dependency solving, then the body parsed with `json` and
validated. For a `POST` to a route whose handler takes `(body, request)`, this middleware (the
innermost) parses the body with orjson, validates it with the route's own wire schema and calls the
same handler. A body that fails either step goes the usual way through FastAPI, so every error a client
can see is still written once (`gateway/app.py`'s handlers); only well-formed requests take the short
path. Routes, schemas and the OpenAPI document stay FastAPI's.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.disconnect import replay
from gateway.errors import ApiError, error_response
from gateway.observe import app_routes, note_error
from gateway.validation import body_schema

Handler = tuple[Callable, type[BaseModel]]


def direct_handlers(routes: list) -> dict[str, Handler]:
    """path -> (handler, wire schema) for every POST route whose handler is `(body: Schema, request)`."""
    table: dict[str, Handler] = {}
    for path, route in app_routes(routes):
        if isinstance(route, APIRoute) and "POST" in route.methods and (schema := body_schema(route.endpoint)):
            table[path] = (route.endpoint, schema)
    return table


class DirectRoutes:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.handlers: dict[str, Handler] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if self.handlers is None:
            self.handlers = direct_handlers(scope["app"].routes)
        handler = self.handlers.get(scope["path"])
        if handler is None:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        endpoint, schema = handler
        try:
            parsed = schema.model_validate(orjson.loads(body))
        except (orjson.JSONDecodeError, ValidationError):  # FastAPI's path words the error
            await self.app(scope, replay(body, receive), send)
            return
        try:
            response = await endpoint(parsed, Request(scope, receive, send))
        except ApiError as exc:
            note_error(exc.message)
            response = error_response(exc, scope["path"])
        await response(scope, receive, send)


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            return b"".join(chunks)
