"""`POST /v1/embeddings` (OpenAI) and `POST /embed` (TEI)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from gateway.responses import base64_rows, json_response
from gateway.schemas import EmbedRequest, OpenAIEmbeddingRequest
from trident import tensors as T

router = APIRouter()


class EmbeddingItem(BaseModel):
    object: Literal["embedding"]
    embedding: list[float] | str  # a string with encoding_format=base64: little-endian float32 bytes
    index: int


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    """The answer of `POST /v1/embeddings` (documentation only: routes write JSON themselves)."""

    object: Literal["list"]
    data: list[EmbeddingItem]
    model: str
    usage: Usage


@router.post("/v1/embeddings", tags=["OpenAI"], responses={200: {"model": EmbeddingList}})
async def openai_embeddings(body: OpenAIEmbeddingRequest, request: Request) -> Response:
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model, route="/v1/embeddings")
    result = await gateway.infer(spec, body.to_job(spec, gateway.settings))
    vectors = base64_rows(result[T.EMBEDDINGS]) if body.encoding_format == "base64" else result[T.EMBEDDINGS]
    return json_response({
        "object": "list",
        "data": [{"object": "embedding", "embedding": vector, "index": i} for i, vector in enumerate(vectors)],
        "model": spec.name,
        "usage": {"prompt_tokens": result.num_tokens, "total_tokens": result.num_tokens},
    })


@router.post("/embed", tags=["TEI"], responses={200: {"model": list[list[float]]}})
async def tei_embed(body: EmbedRequest, request: Request) -> Response:
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model, route="/embed")
    result = await gateway.infer(spec, body.to_job(spec, gateway.settings))
    return json_response(result[T.EMBEDDINGS])
