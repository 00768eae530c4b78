"""`POST /v1/embeddings` (OpenAI), `POST /embed`, `/embed_all`, `/embed_sparse` and `/similarity` (TEI),
`POST /v2/embed` (Cohere), `POST /embed_hybrid` (Trident: BGE-M3's three outputs from one pass)."""

from __future__ import annotations

import uuid
from typing import Literal

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from gateway import embedding_types
from gateway.jobs import Result
from gateway.responses import base64_rows, json_response
from gateway.schemas import (
    CohereEmbedRequest,
    EmbedAllRequest,
    EmbedHybridRequest,
    EmbedRequest,
    EmbedSparseRequest,
    OpenAIEmbeddingRequest,
    SimilarityRequest,
)
from trident import tensors as T
from trident.spec import ModelSpec

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
    result = await gateway.infer(spec, body.to_job(spec, gateway.settings), body.priority)
    vectors = base64_rows(result[T.EMBEDDINGS]) if body.encoding_format == "base64" else result[T.EMBEDDINGS]
    return json_response({
        "object": "list",
        "data": [{"object": "embedding", "embedding": vector, "index": i} for i, vector in enumerate(vectors)],
        "model": spec.name,
        "usage": {"prompt_tokens": result.num_tokens, "total_tokens": result.num_tokens},
    })


def typed(vectors: np.ndarray, kind: str, spec: ModelSpec) -> np.ndarray | list[str]:
    ranges = np.asarray(spec.quantization_ranges, dtype=np.float32) if spec.quantization_ranges else None
    return embedding_types.encode(vectors, kind, ranges)


@router.post("/embed", tags=["TEI"], responses={200: {"model": list[list[float]] | list[list[int]] | list[str]}})
async def tei_embed(body: EmbedRequest, request: Request) -> Response:
    """`[[f32]]`; with `embedding_type` int8 / uint8 / binary / ubinary rows of integers, with base64 strings."""
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model, route="/embed")
    result = await gateway.infer(spec, body.to_job(spec, gateway.settings), body.priority)
    return json_response(typed(result[T.EMBEDDINGS], body.embedding_type, spec))


@router.post("/embed_all", tags=["TEI"], responses={200: {"model": list[list[list[float]]]}})
async def tei_embed_all(body: EmbedAllRequest, request: Request) -> Response:
    """Per input, one vector per token (special tokens included): the encoder's last hidden state; for a
    multi-vector model, the normalized vectors of the tokens that score (`prompt_name` query / document: that
    side's, as encode_query / encode_document give them)."""
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model, route="/embed_all")
    result = await gateway.infer(spec, body.to_job(spec, gateway.settings), body.priority)
    scoring = "colbert" in spec.task_row.vector_kinds  # multi-vector and hybrid models: their ColBERT vectors
    return json_response(result.token_rows(T.VECTORS, T.NUM_VECTORS) if scoring else result.token_rows())


class SparseValue(BaseModel):
    index: int
    value: float


@router.post("/embed_sparse", tags=["TEI"], responses={200: {"model": list[list[SparseValue]]}})
async def tei_embed_sparse(body: EmbedSparseRequest, request: Request) -> Response:
    """Per input, its non-zero vocabulary entries in index order (with `top_k`, only the k largest)."""
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model, route="/embed_sparse")
    result = await gateway.infer(spec, body.to_job(spec, gateway.settings), body.priority)
    return json_response(sparse_entries(result))


def sparse_entries(result: Result) -> list[list[dict[str, float]]]:
    return [[{"index": index, "value": value} for index, value in row] for row in result.sparse_rows()]


class HybridItem(BaseModel):
    dense: list[float] | None = None
    sparse: list[SparseValue] | None = None
    colbert: list[list[float]] | None = None


@router.post("/embed_hybrid", tags=["Trident"], responses={200: {"model": list[HybridItem]}})
async def embed_hybrid(body: EmbedHybridRequest, request: Request) -> Response:
    """Per input, the outputs asked for: `dense` (normalized), `sparse` (the lexical weights in index order),
    `colbert` (each token's normalized vector after CLS); a hybrid (BGE-M3) model computes them in one engine
    pass per input. Other embedding models answer the one output they have."""
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model, route="/embed_hybrid")
    job = body.to_job(spec, gateway.settings)
    result = await gateway.infer(spec, job, body.priority)
    columns = {"dense": lambda: result[T.EMBEDDINGS], "sparse": lambda: sparse_entries(result),
               "colbert": lambda: result.token_rows(T.VECTORS, T.NUM_VECTORS)}
    asked = {kind: columns[kind]() for kind, wanted in (("dense", body.return_dense), ("sparse", body.return_sparse),
                                                         ("colbert", body.return_colbert)) if wanted}
    return json_response([{kind: values[i] for kind, values in asked.items()} for i in range(len(job))])


@router.post("/similarity", tags=["TEI"], responses={200: {"model": list[float]}})
async def tei_similarity(body: SimilarityRequest, request: Request) -> Response:
    """The cosine of `source_sentence` with each of `sentences`, in their order."""
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model, route="/similarity")
    job = body.to_job(spec, gateway.settings)
    result = await gateway.infer(spec, job, body.priority, inputs=len(job) - 1)  # the client's batch: `sentences`
    vectors = result[T.EMBEDDINGS]  # normalized: the dot product is the cosine
    return json_response((vectors[1:] @ vectors[0]).astype(np.float32))


class BilledUnits(BaseModel):
    input_tokens: int


class ApiVersion(BaseModel):
    version: str


class CohereMeta(BaseModel):
    api_version: ApiVersion
    billed_units: BilledUnits


class CohereEmbeddings(BaseModel):
    """The answer of `POST /v2/embed` (documentation only)."""

    id: str
    embeddings: dict[embedding_types.EmbeddingType, list[list[float]] | list[list[int]] | list[str]]
    texts: list[str]
    meta: CohereMeta
    response_type: Literal["embeddings_by_type"]


@router.post("/v2/embed", tags=["Cohere"], responses={200: {"model": CohereEmbeddings}})
async def cohere_embed(body: CohereEmbedRequest, request: Request) -> Response:
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model, route="/v2/embed")
    job = body.to_job(spec, gateway.settings)
    result = await gateway.infer(spec, job, body.priority)
    vectors = result[T.EMBEDDINGS]
    return json_response({
        "id": uuid.uuid4().hex,
        "embeddings": {kind: typed(vectors, kind, spec) for kind in dict.fromkeys(body.embedding_types)},
        "texts": body.input_texts()[0],
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": result.num_tokens}},
        "response_type": "embeddings_by_type",
    })
