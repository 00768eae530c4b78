"""`POST /rerank` (TEI), `/v1/rerank` (Cohere / Jina), `/predict` (TEI), `/predict_tokens` (BEI NER),
and `POST /`, which answers as the model's default route."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import orjson
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from gateway.embedding import check_texts
from gateway.errors import ApiError
from gateway.observe import note_usage
from gateway.responses import json_response
from gateway.routes import embeddings
from gateway.schemas import (
    CohereRerankRequest,
    EmbedRequest,
    OpenAIEmbeddingRequest,
    PredictRequest,
    PredictTokensRequest,
    RerankRequest,
)
from gateway.scoring import NerJob, ScoreJob, parse_ner_inputs, parse_predict_inputs
from trident.spec import ModelSpec

router = APIRouter()


def _truncate(request: Request, value: bool | None) -> bool:
    return request.app.state.gateway.settings.auto_truncate if value is None else value


async def _rerank(request: Request, spec: ModelSpec, query: str, documents: list[str], param: str,
                  truncate: bool, direction: str, raw_scores: bool) -> tuple[list[tuple[int, float]], int]:
    """(index, score) of every document, best first, and the tokens processed."""
    check_texts([query], "query")
    check_texts(documents, param)
    job = ScoreJob([query] * len(documents), list(documents), truncate, direction.lower() == "left", raw_scores)
    result = await request.app.state.gateway.scoring.score(spec, job, param=param)
    scores = result.scores[:, 0].tolist()
    note_usage(model=spec.name, inputs=len(documents), tokens=result.num_tokens,
               characters=len(query) * len(documents) + sum(len(d) for d in documents))
    ranked = sorted(enumerate(scores), key=lambda item: item[1], reverse=True)  # stable: ties keep input order
    return ranked, result.num_tokens


@router.post("/rerank", tags=["TEI"])
async def tei_rerank(body: RerankRequest, request: Request) -> Response:
    spec = request.app.state.gateway.registry.pick(body.model, route="/rerank")
    ranked, _ = await _rerank(request, spec, body.query, body.texts, "texts", _truncate(request, body.truncate),
                              body.truncation_direction, body.raw_scores)
    return json_response([{"index": index, "score": score, **({"text": body.texts[index]} if body.return_text else {})}
                          for index, score in ranked])


@router.post("/v1/rerank", tags=["Cohere"])
async def cohere_rerank(body: CohereRerankRequest, request: Request) -> Response:
    spec = request.app.state.gateway.registry.pick(body.model, route="/v1/rerank")
    documents = [d if isinstance(d, str) else d.text for d in body.documents]
    ranked, num_tokens = await _rerank(request, spec, body.query, documents, "documents", body.truncate,
                                       body.truncation_direction, raw_scores=False)
    top = ranked[: body.top_n] if body.top_n is not None else ranked
    results = [{"index": index, "relevance_score": score,
                **({"document": {"text": documents[index]}} if body.return_documents else {})}
               for index, score in top]
    return json_response({"id": uuid.uuid4().hex, "results": results, "model": spec.name,
                          "usage": {"total_tokens": num_tokens}})


@router.post("/predict", tags=["TEI"])
async def tei_predict(body: PredictRequest, request: Request) -> Response:
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model, route="/predict")
    items, batched = parse_predict_inputs(body.inputs)
    texts, pairs = [text for text, _ in items], [pair for _, pair in items]
    check_texts(texts, "inputs")
    check_texts([p for p in pairs if p is not None], "inputs")
    job = ScoreJob(texts, pairs, _truncate(request, body.truncate), body.truncation_direction.lower() == "left",
                   body.raw_scores)
    result = await gateway.scoring.score(spec, job)
    note_usage(model=spec.name, inputs=len(items), tokens=result.num_tokens,
               characters=sum(len(t) + len(p or "") for t, p in items))
    labels = spec.labels()
    predictions = [sorted(({"label": label, "score": score} for label, score in zip(labels, row.tolist(), strict=True)),
                          key=lambda p: p["score"], reverse=True)
                   for row in result.scores]
    return json_response(predictions if batched else predictions[0])


@router.post("/predict_tokens", tags=["BEI"])
async def predict_tokens(body: PredictTokensRequest, request: Request) -> Response:
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model, route="/predict_tokens")
    texts = parse_ner_inputs(body.inputs)
    check_texts(texts, "inputs")
    job = NerJob(texts, _truncate(request, body.truncate), body.truncation_direction.lower() == "left",
                 body.aggregation_strategy or "none", body.raw_scores)
    result = await gateway.scoring.entities(spec, job)
    note_usage(model=spec.name, inputs=len(texts), tokens=result.num_tokens, characters=sum(map(len, texts)))
    # Each text's entities arrive as JSON from Triton: joined as they are, never parsed again.
    return Response(b"[" + b",".join(result.entities) + b"]", media_type="application/json")


Handler = Callable[[BaseModel, Request], Awaitable[Response]]
DEFAULT_ROUTES: dict[str, tuple[type[BaseModel], Handler]] = {
    "/v1/embeddings": (OpenAIEmbeddingRequest, embeddings.openai_embeddings),
    "/embed": (EmbedRequest, embeddings.tei_embed),
    "/rerank": (RerankRequest, tei_rerank),
    "/v1/rerank": (CohereRerankRequest, cohere_rerank),
    "/predict": (PredictRequest, tei_predict),
    "/predict_tokens": (PredictTokensRequest, predict_tokens),
}


@router.post("/", tags=["BEI"])
async def default_route(request: Request) -> Response:
    """The model's default route (`webserver_default_route` at build time, else its task's own)."""
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(422, "request body must be a JSON object")
    name = data.get("model") if isinstance(data.get("model"), str) else None
    spec = request.app.state.gateway.registry.pick(name)
    if spec.default_route not in DEFAULT_ROUTES:
        raise ApiError(404, f"model {spec.name!r} has default route {spec.default_route!r}, which this gateway "
                       f"does not serve; use one of {', '.join(DEFAULT_ROUTES)}")
    schema, handler = DEFAULT_ROUTES[spec.default_route]
    try:
        body = schema.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
    return await handler(body, request)
