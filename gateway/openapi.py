"""`GET /openapi.json` as the gateway really behaves: every error status a route can answer, with the
body it really has (OpenAI's on `/v1/*`, TEI's elsewhere) instead of FastAPI's default 422 schema."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gateway.errors import ErrorKind
from gateway.paths import OPEN_PATHS

OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["message", "type", "param", "code"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": ["string", "null"]}, "code": {"type": "integer"}},
    }},
}
TEI_ERROR = {
    "type": "object",
    "required": ["error", "error_type"],
    "properties": {"error": {"type": "string"}, "error_type": {"type": "string"}},
}
STATUS_MEANINGS = {kind.status: kind.description for kind in ErrorKind}
# Which errors each kind of operation can answer, beyond those a route declares itself.
INFERENCE_ERRORS = (400, 401, 404, 413, 415, 422, 424, 429, 503)
GET_ERRORS = (401, 404, 422, 429, 503)


def error_schema(path: str) -> dict[str, Any]:
    return OPENAI_ERROR if path.startswith("/v1/") else TEI_ERROR


def errors_for(path: str, method: str) -> tuple[int, ...]:
    if path in OPEN_PATHS:  # only the gates it passes can refuse it (/health answers 503 when not ready too)
        path_gates = OPEN_PATHS[path]
        return tuple(status for status, gate in ((401, path_gates.key), (429, path_gates.admitted),
                                                 (503, path_gates.drains)) if gate)
    return INFERENCE_ERRORS if method == "post" else GET_ERRORS


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's HTTPValidationError: not what we send
            declared = {int(code) for code in responses if code.isdigit() and int(code) >= 400}
            for status in sorted(set(errors_for(path, method)) | declared):
                responses[str(status)] = {
                    "description": STATUS_MEANINGS.get(status, "Error"),
                    "content": {"application/json": {"schema": error_schema(path)}},
                }
    schema.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
    schema.get("components", {}).get("schemas", {}).pop("ValidationError", None)
    return schema


def install(app: FastAPI) -> None:
    """Replace `app.openapi` with one that documents the real error answers (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi
