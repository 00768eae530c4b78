"""`POST /v1/embeddings` (OpenAI) and `POST /embed` (TEI)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.embedding import EmbedJob, apply_prompt, check_texts, split_inputs
from gateway.responses import base64_rows, json_response
from gateway.schemas import EmbedRequest, OpenAIEmbeddingRequest

router = APIRouter()


@router.post("/v1/embeddings", tags=["OpenAI"])
async def openai_embeddings(body: OpenAIEmbeddingRequest, request: Request) -> Response:
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model)
    texts, token_ids = split_inputs(body.input, "input")
    if texts is not None:
        check_texts(texts, "input")
        texts = apply_prompt(texts, spec, body.prompt_name)
    job = EmbedJob(texts, token_ids, body.truncate, body.truncation_direction.lower() == "left",
                   normalize=spec.normalize or body.dimensions is not None, dimensions=body.dimensions)
    result = await gateway.embeddings.embed(spec, job)
    vectors = base64_rows(result.embeddings) if body.encoding_format == "base64" else result.embeddings
    return json_response({
        "object": "list",
        "data": [{"object": "embedding", "embedding": vector, "index": i} for i, vector in enumerate(vectors)],
        "model": spec.name,
        "usage": {"prompt_tokens": result.num_tokens, "total_tokens": result.num_tokens},
    })


@router.post("/embed", tags=["TEI"])
async def tei_embed(body: EmbedRequest, request: Request) -> Response:
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model)
    texts, token_ids = split_inputs(body.inputs, "inputs")
    if texts is not None:
        check_texts(texts, "inputs")
        texts = apply_prompt(texts, spec, body.prompt_name)
    truncate = gateway.settings.auto_truncate if body.truncate is None else body.truncate
    job = EmbedJob(texts, token_ids, truncate, body.truncation_direction.lower() == "left",
                   normalize=body.normalize, dimensions=body.dimensions)
    result = await gateway.embeddings.embed(spec, job)
    return json_response(result.embeddings)
