"""`POST /rerank` (TEI), `/v1/rerank` (Cohere / Jina), `/v2/rerank` (Cohere), `/predict` (TEI),
`/predict_tokens` (BEI NER), `POST /`, which answers as the model's default route, and SageMaker's
`POST /invocations`, which answers as TEI's route for the model's task."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import numpy as np
import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from gateway.errors import ApiError, ErrorKind
from gateway.jobs import Result
from gateway.responses import json_response
from gateway.routes import embeddings
from gateway.schemas import (
    CohereRerankRequest,
    CohereV2RerankRequest,
    PredictRequest,
    PredictTokensRequest,
    RerankRequest,
)
from gateway.validation import body_schema, check_modes, parse_body
from trident import tensors as T
from trident.spec import ModelSpec
from trident.tasks import INFERENCE_ROUTES

router = APIRouter()


RerankBody = RerankRequest | CohereRerankRequest | CohereV2RerankRequest


async def _rank(request: Request, spec: ModelSpec, body: RerankBody
                ) -> tuple[list[tuple[int, float]], int, list[dict[str, float]]]:
    """(index, score) of every document, best first, the tokens processed, and a hybrid model's scores of each
    mode per document when `scores` asks for them: a reranker's scores, a multi-vector model's MaxSim, or a hybrid
    model's weighted dense + sparse + ColBERT scores."""
    gateway = request.app.state.gateway
    weights, modes = check_modes(spec, body.weights, body.scores), []
    if spec.task_row.hybrid:
        query, documents = await _query_and_documents(gateway, spec, body, body.to_hybrid_jobs)
        by_mode = hybrid_scores(query, documents)
        scores = [sum(w * by_mode[mode][i] for w, mode in zip(weights, by_mode, strict=True)) / sum(weights)
                  for i in range(len(by_mode["dense"]))]
        if body.scores:
            modes = [{mode: values[i] for mode, values in by_mode.items()} for i in range(len(scores))]
        num_tokens = query.num_tokens + documents.num_tokens
    elif spec.task_row.multi_vector:
        query, documents = await _query_and_documents(gateway, spec, body, body.to_maxsim_jobs)
        scores = maxsim(query.token_rows(T.VECTORS, T.NUM_VECTORS)[0], documents.token_rows(T.VECTORS, T.NUM_VECTORS))
        num_tokens = query.num_tokens + documents.num_tokens
    else:
        job = body.to_job(spec, gateway.settings)
        result = await gateway.infer(spec, job, body.priority)
        scores, num_tokens = result[T.SCORES].reshape(len(job), -1)[:, 0].tolist(), result.num_tokens
    ranked = sorted(enumerate(scores), key=lambda item: item[1], reverse=True)  # stable: ties keep input order
    return ranked, num_tokens, modes


async def _query_and_documents(gateway, spec: ModelSpec, body: RerankBody, to_jobs: Callable) -> tuple[Result, Result]:
    """The query's job and the documents' (`to_jobs`), run together, both at the priority of the client's
    batch: its documents."""
    query_job, documents_job = to_jobs(spec, gateway.settings)
    size = len(documents_job)
    return await asyncio.gather(gateway.infer(spec, query_job, body.priority, size),
                                gateway.infer(spec, documents_job, body.priority, size))


def hybrid_scores(query: Result, documents: Result) -> dict[str, list[float]]:
    """FlagEmbedding's compute_score of each (query, document) pair alone, per mode: the dense dot product, the
    sparse one over shared token ids, and ColBERT's mean over query vectors of their best dot product."""
    lexical = dict(query.sparse_rows()[0])
    vectors = query.token_rows(T.VECTORS, T.NUM_VECTORS)[0]
    return {
        "dense": (documents[T.EMBEDDINGS] @ query[T.EMBEDDINGS][0]).tolist(),
        "sparse": [sum(value * lexical.get(index, 0.0) for index, value in row) for row in documents.sparse_rows()],
        "colbert": [float((vectors @ document.T).max(axis=1).sum()) / len(vectors)
                    for document in documents.token_rows(T.VECTORS, T.NUM_VECTORS)],
    }


def with_modes(item: dict, index: int, modes: list[dict[str, float]]) -> dict:
    """A ranked item, with its `scores` per mode where the request asked for them."""
    return {**item, "scores": modes[index]} if modes else item


def maxsim(query: np.ndarray, documents: list[np.ndarray]) -> list[float]:
    """ColBERT's late interaction, as sentence-transformers scores it: for each query vector its best dot
    product with the document's vectors, summed (raw, not divided by the query's length)."""
    return [float((query @ document.T).max(axis=1).sum()) if len(document) else 0.0 for document in documents]


@router.post("/rerank", tags=["TEI"])
async def tei_rerank(body: RerankRequest, request: Request) -> Response:
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model, route="/rerank")
    ranked, _, modes = await _rank(request, spec, body)
    return json_response([with_modes({"index": index, "score": score,
                                      **({"text": body.texts[index]} if body.return_text else {})}, index, modes)
                          for index, score in ranked])


@router.post("/v1/rerank", tags=["Cohere"])
async def cohere_rerank(body: CohereRerankRequest, request: Request) -> Response:
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model, route="/v1/rerank")
    ranked, num_tokens, modes = await _rank(request, spec, body)
    documents = body.document_texts()
    top = ranked[: body.top_n] if body.top_n is not None else ranked
    results = [with_modes({"index": index, "relevance_score": score,
                           **({"document": {"text": documents[index]}} if body.return_documents else {})}, index, modes)
               for index, score in top]
    return json_response({"id": uuid.uuid4().hex, "results": results, "model": spec.name,
                          "usage": {"total_tokens": num_tokens}})


@router.post("/v2/rerank", tags=["Cohere"])
async def cohere_v2_rerank(body: CohereV2RerankRequest, request: Request) -> Response:
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model, route="/v2/rerank")
    ranked, _, modes = await _rank(request, spec, body)
    top = ranked[: body.top_n] if body.top_n is not None else ranked
    return json_response({
        "results": [with_modes({"index": index, "relevance_score": score}, index, modes) for index, score in top],
        "id": uuid.uuid4().hex,
        # Cohere bills a search unit per query and up to 100 documents.
        "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": -(-len(body.documents) // 100)}},
    })


@router.post("/predict", tags=["TEI"])
async def tei_predict(body: PredictRequest, request: Request) -> Response:
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model, route="/predict")
    job = body.to_job(spec, gateway.settings)
    result = await gateway.infer(spec, job, body.priority)
    labels = spec.labels()
    predictions = [sorted(({"label": label, "score": score} for label, score in zip(labels, row.tolist(), strict=True)),
                          key=lambda p: p["score"], reverse=True)
                   for row in result[T.SCORES].reshape(len(job), -1)]
    return json_response(predictions if job.batched else predictions[0])


@router.post("/predict_tokens", tags=["BEI"])
async def predict_tokens(body: PredictTokensRequest, request: Request) -> Response:
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model, route="/predict_tokens")
    result = await gateway.infer(spec, body.to_job(spec, gateway.settings), body.priority)
    # Each text's entities arrive as JSON from Triton: joined as they are, never parsed again.
    return Response(b"[" + b",".join(bytes(item) for item in result[T.RESULT].reshape(-1)) + b"]",
                    media_type="application/json")


Handler = Callable[[BaseModel, Request], Awaitable[Response]]


def route_handlers() -> dict[str, Handler]:
    """The handler of every inference route of the task table (`trident.tasks`), in its order."""
    posts = {route.path: route.endpoint for module_router in (embeddings.router, router)
             for route in module_router.routes if "POST" in getattr(route, "methods", ())}
    missing = [path for path in INFERENCE_ROUTES if path not in posts]
    if missing:
        raise RuntimeError(f"trident.tasks names routes the gateway does not serve: {', '.join(missing)}")
    return {path: posts[path] for path in INFERENCE_ROUTES}


ROUTE_HANDLERS = route_handlers()  # what `POST /` can answer as


async def json_object(request: Request) -> dict:
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise ApiError(ErrorKind.INVALID_REQUEST, f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(ErrorKind.VALIDATION, "request body must be a JSON object")
    return data


async def answer_as(route_of: Callable[[ModelSpec], str], request: Request) -> Response:
    """The body, read once, answered by the handler of the route that `route_of` picks for its model."""
    data = await json_object(request)
    name = data.get("model") if isinstance(data.get("model"), str) else None
    spec = request.app.state.gateway.registry.pick(name)
    route = route_of(spec)
    if route not in ROUTE_HANDLERS:
        raise ApiError(ErrorKind.NOT_FOUND, f"model {spec.name!r} would answer as {route!r}, which this "
                       f"gateway does not serve; use one of {', '.join(ROUTE_HANDLERS)}")
    handler = ROUTE_HANDLERS[route]
    return await handler(parse_body(body_schema(handler), data), request)


@router.post("/", tags=["BEI"])
async def default_route(request: Request) -> Response:
    """The model's default route (`webserver_default_route` at build time, else its task's own)."""
    return await answer_as(lambda spec: spec.default_route, request)


@router.post("/invocations", tags=["SageMaker"])
async def invocations(request: Request) -> Response:
    """SageMaker's inference call: TEI's route for the model's task (`/embed`, `/rerank`, `/predict`, ...)."""
    return await answer_as(lambda spec: spec.task_row.invocations_route, request)
