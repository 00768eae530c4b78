"""The body routes are called directly when the body is well formed; anything else takes FastAPI's path, with
the body replayed as it came (gateway/direct.py)."""

from __future__ import annotations

import asyncio

import orjson
from fastapi import FastAPI, Request
from pydantic import BaseModel, StrictInt
from starlette.responses import Response

from gateway.app import create_app
from gateway.direct import DirectRoutes, direct_handlers
from gateway.settings import GatewaySettings


class Body(BaseModel):
    n: StrictInt


def test_every_hot_route_is_served_directly():
    routes = direct_handlers(create_app(GatewaySettings()).routes)
    hot = {"/v1/embeddings", "/embed", "/v2/embed", "/rerank", "/v1/rerank", "/predict", "/embed_sparse"}
    assert hot <= set(routes)
    assert all(schema is not None for _, schema in routes.values())


def call(direct: DirectRoutes, app: FastAPI, body: bytes) -> tuple[int, bytes]:
    sent: list[dict] = []
    chunks = [{"type": "http.request", "body": body[:3], "more_body": True},
              {"type": "http.request", "body": body[3:], "more_body": False}]

    async def receive() -> dict:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/double", "app": app, "headers": [], "query_string": b""}
    asyncio.run(direct(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_well_formed_bodies_skip_fastapi_and_the_rest_fall_back_with_the_body_intact():
    app = FastAPI()
    seen_by_fallback: list[bytes] = []

    @app.post("/double")
    async def double(body: Body, request: Request) -> Response:
        return Response(orjson.dumps({"twice": body.n * 2}), media_type="application/json")

    async def fallback(scope, receive, send) -> None:
        seen_by_fallback.append((await receive())["body"])
        await Response(b"fallback", status_code=422)(scope, receive, send)

    direct = DirectRoutes(fallback)
    assert call(direct, app, b'{"n": 21}') == (200, b'{"twice":42}')
    assert seen_by_fallback == []
    for body in (b'{"n": "21"}', b'{"n": 21', b'[1, 2]', b'{"n": NaN}'):
        assert call(direct, app, body) == (422, b"fallback")
    assert seen_by_fallback == [b'{"n": "21"}', b'{"n": 21', b'[1, 2]', b'{"n": NaN}']
