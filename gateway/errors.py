"""One error type for the gateway, rendered in one place as the client's API expects it.

`ErrorKind` is the table of every way the gateway refuses a request: its HTTP status, the `type`
string of the body (OpenAI's `type` and TEI's `error_type` carry the same string) and when it
happens. `/openapi.json` describes the statuses from it and a test holds the HTTP API page's table
(docs/http-api.md) to it.

`/v1/*` answers OpenAI's `{"error": {"message", "type", "param", "code"}}`; every other route
answers TEI's `{"error": str, "error_type": str}`.
"""

from __future__ import annotations

from enum import Enum

import orjson
from starlette.responses import Response


class ErrorKind(Enum):
    INVALID_REQUEST = (400, "invalid_request_error", "malformed JSON, empty input list, empty string, invalid "
                       "Unicode, a route the model does not serve")
    UNAUTHENTICATED = (401, "authentication_error", "`--api-key` set and the key is missing or wrong "
                       "(`Authorization: Bearer KEY` or `Api-Key KEY`); `/health` and `/ping` stay open")
    NOT_FOUND = (404, "not_found_error", "several models served and `model` names none of them")
    PAYLOAD_TOO_LARGE = (413, "payload_too_large", "body over `--max-payload-bytes` (2 MB, judged before "
                         "parsing), or more inputs than `--max-client-batch-size` (2048)")
    UNSUPPORTED_MEDIA_TYPE = (415, "unsupported_media_type", "body not sent as JSON")
    VALIDATION = (422, "validation_error", "wrong types; input longer than the model's maximum without "
                  "truncation (names the input and its token count); `dimensions` out of range; token id "
                  "outside the vocabulary; unknown `prompt_name` or `aggregation_strategy`; int8 / uint8 for vectors "
                  "their calibrated ranges do not describe")
    BACKEND_FAILED = (424, "backend_error", "the engine failed on the request (an ONNX Runtime, torch or "
                      "TensorRT error, named in the message)")
    OVERLOADED = (429, "overloaded", "more than `--max-concurrent-requests` in flight (with `Retry-After`)")
    INTERNAL = (500, "internal_error", "a bug: JSON body naming the request id")
    NOT_IMPLEMENTED = (501, "not_implemented", "`/tokenize`, `/decode` with `--triton-url` and no "
                       "`--repository` to read tokenizers from")
    UNAVAILABLE = (503, "unavailable", "Triton not reachable, not ready, restarting (a dead Python stub, models "
                   "unloading) or failing itself; the server draining; every Triton call has a deadline, "
                   "`--request-timeout`")

    def __init__(self, status: int, type_: str, description: str) -> None:
        self.status = status
        self.type = type_
        self.description = description


BY_STATUS = {kind.status: kind for kind in ErrorKind}
ERROR_TYPES = {kind.status: kind.type for kind in ErrorKind}


class ApiError(Exception):
    def __init__(
        self, kind: ErrorKind, message: str, param: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.param = param
        self.headers = headers or {}

    @property
    def status(self) -> int:
        return self.kind.status

    @property
    def error_type(self) -> str:
        return self.kind.type


def error_response(error: ApiError, path: str) -> Response:
    return render(path, error.status, error.error_type, error.message, error.param, error.headers)


def render(path: str, status: int, error_type: str, message: str, param: str | None = None,
           headers: dict[str, str] | None = None) -> Response:
    """The error body as the route's clients expect it; `status_response` for statuses outside the table."""
    if path.startswith("/v1/"):
        body = {"error": {"message": message, "type": error_type, "param": param, "code": status}}
    else:
        body = {"error": message, "error_type": error_type}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def status_response(status: int, message: str, path: str, headers: dict[str, str] | None = None) -> Response:
    """Starlette's own refusals (404 no such path, 405 wrong method, with its Allow header): typed from the
    table when it has the status, else the generic "error"."""
    kind = BY_STATUS.get(status)
    return render(path, status, kind.type if kind else "error", message, headers=headers)
