"""One error type for the gateway, rendered in one place as the client's API expects it.

`/v1/*` answers OpenAI's `{"error": {"message", "type", "param", "code"}}`; every other route
answers TEI's `{"error": str, "error_type": str}`.
"""

from __future__ import annotations

import orjson
from starlette.responses import Response

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    424: "backend_error",
    429: "overloaded",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, param: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.headers = headers or {}

    @property
    def error_type(self) -> str:
        return ERROR_TYPES.get(self.status, "error")


def error_response(error: ApiError, path: str) -> Response:
    if path.startswith("/v1/"):
        body = {"error": {"message": error.message, "type": error.error_type, "param": error.param,
                          "code": error.status}}
    else:
        body = {"error": error.message, "error_type": error.error_type}
    return Response(orjson.dumps(body), status_code=error.status, media_type="application/json",
                    headers=error.headers)
