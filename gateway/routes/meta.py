"""`GET /health` (and SageMaker's `GET /ping`), `/v1/models`, `/info`."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from gateway.errors import ApiError, ErrorKind
from gateway.responses import json_response
from gateway.validation import lays_out
from trident import __version__

router = APIRouter()
STARTED = int(time.time())


class Health(BaseModel):
    status: str
    models: list[str]


class ModelCard(BaseModel):
    id: str
    object: str
    created: int
    owned_by: str
    task: str
    dimensions: int | None


class ModelList(BaseModel):
    object: str
    data: list[ModelCard]


class Info(BaseModel):
    """`GET /info`, TEI's fields plus Trident's (documentation only)."""

    model_id: str
    model_sha: str
    model_type: str
    task: str
    architecture: str
    pooling: str | None
    dimensions: int | None
    labels: list[str]
    max_input_length: int
    max_num_tokens: int
    max_client_batch_size: int
    max_concurrent_requests: int
    max_payload_bytes: int
    request_timeout_s: float
    auto_truncate: bool
    prompts: dict[str, str]
    default_route: str
    routes: list[str]  # the inference routes this model answers
    quantization_ranges: list[list[float]] | None  # int8 / uint8: [[min per dimension], [max per dimension]]
    embed_hybrid: list[str]  # what /embed_hybrid answers: dense, sparse, colbert (all three: a hybrid model)
    late_chunking: bool  # whether `late_chunking` / `chunk_long_inputs` apply (mean-pooled embedding models)
    chunk_long_inputs: bool  # the default of `chunk_long_inputs` for this model (`--chunk-long-inputs`)
    version: str
    engine: str
    models: list[str]


@router.get("/health", tags=["Meta"], responses={200: {"model": Health}})
@router.get("/ping", tags=["SageMaker"], responses={200: {"model": Health}})
async def health(request: Request) -> Response:
    """200 when Triton is ready and the models are known; 503 otherwise. `/ping` is SageMaker's name for it."""
    gateway = request.app.state.gateway
    if not await gateway.backend.ready():
        raise ApiError(ErrorKind.UNAVAILABLE, "the inference server is not ready")
    if not gateway.registry:
        raise ApiError(ErrorKind.UNAVAILABLE, "no model is loaded yet")
    return json_response({"status": "ok", "models": sorted(gateway.registry.models)})


@router.get("/v1/models", tags=["OpenAI"], responses={200: {"model": ModelList}})
async def list_models(request: Request) -> Response:
    models = request.app.state.gateway.registry.models
    data = [{"id": name, "object": "model", "created": STARTED, "owned_by": "trident",
             "task": spec.task, "dimensions": spec.dim if spec.task_row.vectors else None}
            for name, spec in sorted(models.items())]
    return json_response({"object": "list", "data": data})


@router.get("/info", tags=["TEI"], responses={200: {"model": Info}})
async def info(request: Request, model: str | None = None) -> Response:
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(model)
    settings = gateway.settings
    laid_out = lays_out(spec)
    return json_response({
        "model_id": spec.name, "model_sha": spec.content_hash, "model_type": spec.task,
        "task": spec.task, "architecture": spec.architecture, "pooling": spec.pooling,
        "dimensions": spec.dim if spec.task_row.vectors else None, "labels": spec.labels(),
        "max_input_length": spec.max_length, "max_num_tokens": spec.max_num_tokens,
        "max_client_batch_size": settings.max_client_batch_size,
        "max_concurrent_requests": settings.max_concurrent_requests,
        "max_payload_bytes": settings.max_payload_bytes, "request_timeout_s": settings.request_timeout_s,
        "auto_truncate": settings.auto_truncate, "prompts": spec.prompts,
        "bulk_threshold": settings.bulk_threshold, "bulk_lane": gateway.registry.has_bulk_lane(spec.name),
        "cache_size_mib": settings.cache_size_mib,
        "default_route": spec.default_route, "routes": list(spec.task_row.routes),
        "quantization_ranges": spec.quantization_ranges or None,
        "embed_hybrid": list(spec.task_row.vector_kinds), "late_chunking": laid_out,
        "chunk_long_inputs": laid_out and settings.chunk_long_inputs,
        "version": __version__, "engine": spec.engine,
        "models": sorted(gateway.registry.models),
    })
