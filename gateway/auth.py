"""API-key check: `Authorization: Bearer KEY` or `Api-Key KEY`, compared in constant time."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import ApiError, ErrorKind, error_response
from gateway.paths import gates


def presented_key(authorization: str) -> str:
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() if scheme.lower() in ("bearer", "api-key") else ""


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.api_key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not gates(scope["path"]).key:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        key = presented_key(headers.get(b"authorization", b"").decode("latin-1")).encode()
        if not hmac.compare_digest(key, self.api_key):
            error = ApiError(ErrorKind.UNAUTHENTICATED, "missing or wrong API key (send Authorization: Bearer KEY)",
                             headers={"WWW-Authenticate": "Bearer"})
            await error_response(error, scope["path"])(scope, receive, send)
            return
        await self.app(scope, receive, send)
