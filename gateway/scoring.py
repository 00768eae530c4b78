"""Reranking, classification and NER requests: validate, split into Triton-sized sub-requests, run
them concurrently, reassemble in order (like gateway.embedding does for vectors).

The scores come out of the ensemble already shaped (sigmoid / softmax / raw, see
trident.task_stages); NER entities come out as one JSON list per text, passed through untouched.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from gateway.errors import ApiError
from gateway.settings import GatewaySettings
from gateway.triton import TritonBackend, bytes_input, column_input
from trident import tensors as T
from trident.spec import ModelSpec

PREDICT_SHAPES = "a string, a pair [text, text_pair], or a batch [[text], [text, text_pair], ...]"
PREDICT_TOKENS_SHAPES = "a batch [[text, ...]], a list of texts or one text"


@dataclass
class ScoreJob:
    """Texts to score, each alone (pair None) or as a (text, pair) pair, e.g. (query, document)."""

    texts: list[str]
    pairs: list[str | None]
    truncate: bool
    truncate_left: bool
    raw_scores: bool = False


@dataclass
class ScoreResult:
    scores: np.ndarray  # float32 [n, labels]
    num_tokens: int


@dataclass
class NerJob:
    texts: list[str]
    truncate: bool
    truncate_left: bool
    strategy: str
    raw_scores: bool


@dataclass
class NerResult:
    entities: list[bytes]  # per text, its entities as a JSON list
    num_tokens: int


def parse_predict_inputs(value: object) -> tuple[list[tuple[str, str | None]], bool]:
    """TEI's `/predict` inputs -> ([(text, pair or None)], batched).

    `"s"` is one text, `["a", "b"]` one pair (`["s"]` one text), `[["s"], ["a", "b"]]` a batch.
    """
    if isinstance(value, str):
        return [(value, None)], False
    if not isinstance(value, list) or not value:
        raise ApiError(400 if value == [] else 422, f"`inputs` must be {PREDICT_SHAPES}", param="inputs")
    if all(isinstance(v, str) for v in value):
        return [_sequence(value, 0)], False
    if all(isinstance(v, list) for v in value):
        return [_sequence(v, i) for i, v in enumerate(value)], True
    raise ApiError(422, f"`inputs` must be {PREDICT_SHAPES}; do not mix strings and lists", param="inputs")


def _sequence(value: list, index: int) -> tuple[str, str | None]:
    if not 1 <= len(value) <= 2 or not all(isinstance(v, str) for v in value):
        raise ApiError(422, f"`inputs` item {index} must be [text] or [text, text_pair], got {len(value)} items",
                       param="inputs")
    return (value[0], value[1] if len(value) == 2 else None)


def parse_ner_inputs(value: object) -> list[str]:
    """BEI's `/predict_tokens` inputs -> texts, in order (the batch's inner lists are flattened)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        texts = [text for inner in value for text in inner]
        if texts and all(isinstance(t, str) for t in texts):
            return texts
    raise ApiError(400 if value in ([], [[]]) else 422, f"`inputs` must be {PREDICT_TOKENS_SHAPES}",
                   param="inputs")


def runs(job: ScoreJob, step: int) -> list[tuple[int, int]]:
    """[start, end) spans of at most `step` inputs, each all single texts or all pairs: a Triton
    request carries TEXT_PAIR for every item or for none."""
    spans: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(job.texts) + 1):
        if i == len(job.texts) or i - start == step or (job.pairs[i] is None) != (job.pairs[start] is None):
            spans.append((start, i))
            start = i
    return spans


class ScoringService:
    def __init__(self, backend: TritonBackend, settings: GatewaySettings) -> None:
        self.backend = backend
        self.settings = settings

    def _check_size(self, n: int, param: str) -> None:
        if n == 0:
            raise ApiError(400, f"`{param}` must not be empty", param=param)
        if n > self.settings.max_client_batch_size:
            raise ApiError(413, f"{n} inputs in one request; the limit is {self.settings.max_client_batch_size} "
                           "(--max-client-batch-size)", param=param)

    async def score(self, spec: ModelSpec, job: ScoreJob, param: str = "inputs") -> ScoreResult:
        self._check_size(len(job.texts), param)
        parts = await asyncio.gather(*(self._score(spec, job, start, end)
                                       for start, end in runs(job, self.settings.triton_batch_size)))
        return ScoreResult(np.concatenate([p[0] for p in parts]), sum(p[1] for p in parts))

    async def _score(self, spec: ModelSpec, job: ScoreJob, start: int, end: int) -> tuple[np.ndarray, int]:
        n = end - start
        inputs = [bytes_input(T.TEXT, job.texts[start:end]),
                  column_input(T.TRUNCATE, job.truncate, n, "BOOL"),
                  column_input(T.TRUNCATE_LEFT, job.truncate_left, n, "BOOL"),
                  column_input(T.RAW_SCORES, job.raw_scores, n, "BOOL")]
        if job.pairs[start] is not None:
            inputs.append(bytes_input(T.TEXT_PAIR, job.pairs[start:end]))
        out = await self.backend.infer(spec.name, inputs, [T.SCORES, T.NUM_TOKENS], offset=start)
        return out[T.SCORES].reshape(n, -1), int(out[T.NUM_TOKENS].sum())

    async def entities(self, spec: ModelSpec, job: NerJob) -> NerResult:
        self._check_size(len(job.texts), "inputs")
        step = self.settings.triton_batch_size
        parts = await asyncio.gather(*(self._entities(spec, job, start, job.texts[start : start + step])
                                       for start in range(0, len(job.texts), step)))
        return NerResult([item for p in parts for item in p[0]], sum(p[1] for p in parts))

    async def _entities(self, spec: ModelSpec, job: NerJob, offset: int, texts: list[str]):
        n = len(texts)
        inputs = [bytes_input(T.TEXT, texts),
                  column_input(T.TRUNCATE, job.truncate, n, "BOOL"),
                  column_input(T.TRUNCATE_LEFT, job.truncate_left, n, "BOOL"),
                  column_input(T.RAW_SCORES, job.raw_scores, n, "BOOL"),
                  bytes_input(T.AGGREGATION_STRATEGY, [job.strategy] * n)]
        out = await self.backend.infer(spec.name, inputs, [T.RESULT, T.NUM_TOKENS], offset=offset)
        return [bytes(item) for item in out[T.RESULT].reshape(-1)], int(out[T.NUM_TOKENS].sum())
