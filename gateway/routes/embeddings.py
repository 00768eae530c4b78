"""`POST /v1/embeddings` (OpenAI) and `POST /embed` (TEI)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from gateway.embedding import EmbedJob, apply_prompt, check_texts, split_inputs
from gateway.observe import note_usage
from gateway.responses import base64_rows, json_response
from gateway.schemas import EmbedRequest, OpenAIEmbeddingRequest

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


def note_embed_usage(model: str, sent: object, job: EmbedJob, num_tokens: int) -> None:
    """For metrics and timing headers: characters as the client sent them (before any prompt);
    token ids need no tokenizing, so their tokenization time is a true 0."""
    characters = len(sent) if isinstance(sent, str) else sum(len(s) for s in sent if isinstance(s, str))
    note_usage(model=model, inputs=job.size, tokens=num_tokens, characters=characters,
               tokenization_s=0.0 if job.token_ids is not None else None)


@router.post("/v1/embeddings", tags=["OpenAI"], responses={200: {"model": EmbeddingList}})
async def openai_embeddings(body: OpenAIEmbeddingRequest, request: Request) -> Response:
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model, route="/v1/embeddings")
    texts, token_ids = split_inputs(body.input, "input")
    if texts is not None:
        check_texts(texts, "input")
        texts = apply_prompt(texts, spec, body.prompt_name)
    job = EmbedJob(texts, token_ids, body.truncate, body.truncation_direction.lower() == "left",
                   normalize=spec.normalize or body.dimensions is not None, dimensions=body.dimensions)
    result = await gateway.embeddings.embed(spec, job)
    note_embed_usage(spec.name, body.input, job, result.num_tokens)
    vectors = base64_rows(result.embeddings) if body.encoding_format == "base64" else result.embeddings
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
    texts, token_ids = split_inputs(body.inputs, "inputs")
    if texts is not None:
        check_texts(texts, "inputs")
        texts = apply_prompt(texts, spec, body.prompt_name)
    truncate = gateway.settings.auto_truncate if body.truncate is None else body.truncate
    job = EmbedJob(texts, token_ids, truncate, body.truncation_direction.lower() == "left",
                   normalize=body.normalize, dimensions=body.dimensions)
    result = await gateway.embeddings.embed(spec, job)
    note_embed_usage(spec.name, body.inputs, job, result.num_tokens)
    return json_response(result.embeddings)
