"""Shaping answers: orjson with numpy, and base64 straight from float32 bytes."""

from __future__ import annotations

import base64

import numpy as np
import orjson
from starlette.responses import Response


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json", headers=headers)


def base64_rows(embeddings: np.ndarray) -> list[str]:
    little_endian = np.ascontiguousarray(embeddings, dtype="<f4")
    return [base64.b64encode(row.tobytes()).decode("ascii") for row in little_endian]
