"""What a validated request asks of a model (a job), and the one fan-out that runs any job on Triton.

A job names the ensemble it goes to and builds the input tensors of any slice of its inputs: it is
the gateway's whole knowledge of the ensembles' inputs (tensor names: `trident.tensors`; outputs: the
task's row in `trident.tasks`). `run` answers what the response cache holds, splits the rest into
Triton-sized sub-requests, sends them at the job's priority (a bulk job to the bulk lane, a few at a time)
and gathers the outputs in order; Triton's dynamic batcher merges them again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Hashable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gateway import metrics
from gateway.cache import ResponseCache, Row, own_row
from gateway.observe import note_dispatch, note_usage
from trident import tensors as T
from trident.model_names import bulk_twin, hybrid_model, ids_model, tokens_model
from trident.priorities import BULK_IN_FLIGHT, BULK_MAX_BATCH, Priority
from trident.spec import ModelSpec
from trident.tasks import TOKENIZER_OUTPUTS, hybrid_outputs

Tensors = dict[str, np.ndarray]


def text_column(texts: list[str]) -> np.ndarray:
    return np.array([text.encode("utf-8") for text in texts], dtype=np.object_).reshape(-1, 1)


def column(value: bool | int, n: int, dtype: type) -> np.ndarray:
    return np.full((n, 1), value, dtype=dtype)


def option_tensors(n: int, values: dict[str, tuple[object, type]], defaults: dict[str, object] = T.DEFAULTS) -> Tensors:
    """The option columns whose value differs from what the steps assume when it is not sent: each tensor
    left out is one less through gRPC, Triton and every step's inputs."""
    return {name: column(value, n, dtype) for name, (value, dtype) in values.items() if value != defaults[name]}


@dataclass(kw_only=True)
class Job:
    param: str  # the request field the inputs came from: errors name it
    truncate: bool
    truncate_left: bool
    max_tokens: int | None = None  # a cap below the model's maximum, per input (per document of a pair)
    characters: int = 0  # characters as the client sent them, before any prompt (x-compute-characters)

    def __len__(self) -> int:
        raise NotImplementedError

    def model(self, spec: ModelSpec) -> str:
        return spec.name

    def outputs(self, spec: ModelSpec) -> tuple[str, ...]:
        """What the ensemble `model` answers."""
        return spec.task_row.ensemble_outputs

    def spans(self, step: int) -> list[tuple[int, int]]:
        """[start, end) of the sub-requests: contiguous, at most `step` inputs each; one for a `whole` job."""
        if self.whole:
            return [(0, len(self))]
        return [(start, min(start + step, len(self))) for start in range(0, len(self), step)]

    @property
    def whole(self) -> bool:
        """Whether the job's inputs are one thing (a late-chunked document): one Triton request, which no other
        lane's smaller batches cut, and no input answered from the response cache on its own."""
        return False

    def tensors(self, start: int, end: int) -> Tensors:
        raise NotImplementedError

    def row_key(self, index: int) -> Hashable:
        """What of input `index` its tensors carry besides the options every input of the job shares."""
        return self.texts[index]

    def truncation(self, n: int) -> Tensors:
        return option_tensors(n, {T.TRUNCATE: (self.truncate, np.bool_),
                                  T.TRUNCATE_LEFT: (self.truncate_left, np.bool_),
                                  T.MAX_TOKENS: (self.max_tokens or 0, np.int32)})


def vector_options(n: int, normalize: bool, dimensions: int | None, model_normalizes: bool) -> Tensors:
    """A dense vector's postprocess options; NORMALIZE is sent only where it differs from the model's own head."""
    return option_tensors(n, {T.NORMALIZE: (normalize, np.bool_), T.DIMENSIONS: (dimensions or 0, np.int32)},
                          {**T.DEFAULTS, T.NORMALIZE: model_normalizes})


@dataclass(kw_only=True)
class EmbeddingJob(Job):
    """Texts or token ids to embed, and the postprocess options of its kind of embedding (`postprocess_options`).
    Token ids go to the model's `<name>_ids` ensemble, which truncates them (or refuses them as too long) as
    the tokenizer does text."""

    texts: list[str] | None = None  # prompt already applied
    token_ids: list[list[int]] | None = None  # each non-empty, inside the vocabulary
    adapter: int = 0  # a model with LoRA adapters (ModelSpec.adapters): index + 1; 0 none

    def __len__(self) -> int:
        return len(self.texts if self.texts is not None else self.token_ids)

    def model(self, spec: ModelSpec) -> str:
        return spec.name if self.texts is not None else ids_model(spec.name)

    def row_key(self, index: int) -> Hashable:
        return self.texts[index] if self.texts is not None else tuple(self.token_ids[index])

    def inputs(self, start: int, end: int) -> Tensors:
        if self.texts is not None:
            return {T.TEXT: text_column(self.texts[start:end])}
        rows = self.token_ids[start:end]
        ids = np.full((len(rows), max(map(len, rows))), T.PAD_SENTINEL, dtype=np.int64)  # transport padding
        for row, values in enumerate(rows):
            ids[row, : len(values)] = values
        return {T.TOKEN_IDS: ids}

    def tensors(self, start: int, end: int) -> Tensors:
        n = end - start
        adapter = option_tensors(n, {T.ADAPTER: (self.adapter, np.int32)})
        return {**self.inputs(start, end), **self.truncation(n), **self.postprocess_options(n), **adapter}

    def postprocess_options(self, n: int) -> Tensors:
        raise NotImplementedError


@dataclass(kw_only=True)
class EmbedJob(EmbeddingJob):
    """Dense vectors: normalized or not, Matryoshka-cut; with `late_chunking` or `chunk_long`, mean-pooled over
    token ranges the tokenizer lays out (trident.spans), the prompt sent apart from the texts."""

    normalize: bool
    dimensions: int | None
    model_normalizes: bool  # what the postprocess does when NORMALIZE is not sent: the model's own head
    late_chunking: bool = False  # the texts are the chunks of one document: one sub-request
    chunk_long: bool = False  # inputs past the maximum in windows, not cut
    prompt: str = ""  # with either: the prompt, which the texts then do not carry

    @property
    def whole(self) -> bool:
        return self.late_chunking

    def postprocess_options(self, n: int) -> Tensors:
        layout = option_tensors(n, {T.LATE_CHUNKING: (self.late_chunking, np.bool_),
                                    T.CHUNK_LONG: (self.chunk_long, np.bool_)})
        if layout and self.prompt:
            layout[T.PROMPT] = text_column([self.prompt] * n)
        return {**layout, **vector_options(n, self.normalize, self.dimensions, self.model_normalizes)}


@dataclass(kw_only=True)
class HybridJob(EmbeddingJob):
    """A hybrid (BGE-M3) model's outputs of `kinds` (dense, sparse, colbert), all from one engine pass per input:
    the ensemble that answers exactly those (trident.model_names.hybrid_model)."""

    kinds: tuple[str, ...]
    normalize: bool = True
    dimensions: int | None = None
    model_normalizes: bool = True
    top_k: int | None = None

    def model(self, spec: ModelSpec) -> str:
        name = hybrid_model(spec.name, self.kinds)
        return name if self.texts is not None else ids_model(name)

    def outputs(self, spec: ModelSpec) -> tuple[str, ...]:
        return (*hybrid_outputs(self.kinds), *TOKENIZER_OUTPUTS)

    def postprocess_options(self, n: int) -> Tensors:
        wants_dense = "dense" in self.kinds
        dense = vector_options(n, self.normalize, self.dimensions, self.model_normalizes) if wants_dense else {}
        return {**dense, **option_tensors(n, {T.TOP_K: (self.top_k or 0, np.int32)})}


@dataclass(kw_only=True)
class SparseJob(EmbeddingJob):
    """Sparse (SPLADE) vectors: their non-zero entries, or the `top_k` largest."""

    top_k: int | None = None

    def postprocess_options(self, n: int) -> Tensors:
        return option_tensors(n, {T.TOP_K: (self.top_k or 0, np.int32)})


@dataclass(kw_only=True)
class TokensJob(Job):
    """Every token's last hidden state (TEI's /embed_all): the `<name>_tokens` ensemble, no pooling."""

    texts: list[str]  # prompt already applied

    def __len__(self) -> int:
        return len(self.texts)

    def model(self, spec: ModelSpec) -> str:
        return tokens_model(spec.name)

    def outputs(self, spec: ModelSpec) -> tuple[str, ...]:
        return (T.TOKEN_EMBEDDINGS, *TOKENIZER_OUTPUTS)

    def tensors(self, start: int, end: int) -> Tensors:
        return {T.TEXT: text_column(self.texts[start:end]), **self.truncation(end - start)}


@dataclass(kw_only=True)
class MultiVectorJob(Job):
    """A multi-vector model's token vectors for one side ("query", "document" or ""), each input's scoring
    tokens only (trident.multi_vector)."""

    texts: list[str]  # prompt already applied
    side: str

    def __len__(self) -> int:
        return len(self.texts)

    def tensors(self, start: int, end: int) -> Tensors:
        n = end - start
        return {T.TEXT: text_column(self.texts[start:end]), **self.truncation(n), T.SIDE: text_column([self.side] * n)}


@dataclass(kw_only=True)
class ScoreJob(Job):
    """Texts to score, each alone (pair None) or as a (text, pair) pair, e.g. (query, document)."""

    texts: list[str]
    pairs: list[str | None]
    raw_scores: bool = False
    batched: bool = True  # TEI's /predict: a batch answers a list per item, a single input one list

    def __len__(self) -> int:
        return len(self.texts)

    def row_key(self, index: int) -> Hashable:
        return self.texts[index], self.pairs[index]

    def spans(self, step: int) -> list[tuple[int, int]]:
        """Contiguous, at most `step` inputs, each all single texts or all pairs: a Triton request carries
        TEXT_PAIR for every item or for none."""
        spans: list[tuple[int, int]] = []
        start = 0
        for i in range(1, len(self.texts) + 1):
            if i == len(self.texts) or i - start == step or (self.pairs[i] is None) != (self.pairs[start] is None):
                spans.append((start, i))
                start = i
        return spans

    def tensors(self, start: int, end: int) -> Tensors:
        n = end - start
        tensors = {T.TEXT: text_column(self.texts[start:end]), **self.truncation(n),
                   **option_tensors(n, {T.RAW_SCORES: (self.raw_scores, np.bool_)})}
        if self.pairs[start] is not None:
            tensors[T.TEXT_PAIR] = text_column(self.pairs[start:end])
        return tensors


@dataclass(kw_only=True)
class NerJob(Job):
    texts: list[str]
    strategy: str
    raw_scores: bool

    def __len__(self) -> int:
        return len(self.texts)

    def tensors(self, start: int, end: int) -> Tensors:
        n = end - start
        return {T.TEXT: text_column(self.texts[start:end]), **self.truncation(n),
                T.RAW_SCORES: column(self.raw_scores, n, np.bool_),
                T.AGGREGATION_STRATEGY: text_column([self.strategy] * n)}


@dataclass
class TokenizeJob:
    """`/tokenize`, run by the gateway itself with the model's tokenizer."""

    texts: list[str]  # prompt already applied
    add_special_tokens: bool
    characters: int


@dataclass
class DecodeJob:
    """`/decode`, run by the gateway itself; the ids are checked against the tokenizer's vocabulary."""

    sequences: list[list[int]]
    skip_special_tokens: bool


@dataclass
class Result:
    outputs: Tensors  # the task's outputs, one row per input, in the job's order

    def __getitem__(self, name: str) -> np.ndarray:
        return self.outputs[name]

    def sparse_rows(self) -> list[list[tuple[int, float]]]:
        """Each input's sparse (index, value) entries, in index order (SPARSE_INDICES' -1 padding left out)."""
        rows = zip(self.outputs[T.SPARSE_INDICES].tolist(), self.outputs[T.SPARSE_VALUES].tolist(), strict=True)
        return [[(index, value) for index, value in zip(indices, values, strict=True) if index >= 0]
                for indices, values in rows]

    def token_rows(self, name: str = T.TOKEN_EMBEDDINGS, counts: str = T.NUM_TOKENS) -> list[np.ndarray]:
        """A per-token output, each input's own rows (the rest is padding)."""
        return [matrix[:count] for matrix, count in zip(self.outputs[name], self.outputs[counts].reshape(-1),
                                                         strict=True)]

    @property
    def num_tokens(self) -> int:
        return int(self.outputs[T.NUM_TOKENS].sum())

    @property
    def tokenization_s(self) -> float:
        """What the tokenizer (or ids) steps of all sub-requests spent, as they measured it themselves."""
        return int(self.outputs[T.TOKENIZE_NS].sum()) / 1e9


class Backend(Protocol):
    async def infer(self, model: str, tensors: Tensors, outputs: tuple[str, ...], offset: int = 0,
                    param: str = "input", priority: int = 0) -> Tensors: ...


def gather(parts: list[np.ndarray], name: str) -> np.ndarray:
    """Sub-requests' outputs in order, one array. Ragged ones (token embeddings, sparse entries) are padded
    to the widest part as each part already is: zeros, -1 for SPARSE_INDICES."""
    widest = tuple(max(sizes) for sizes in zip(*(part.shape[1:] for part in parts), strict=True))
    if all(part.shape[1:] == widest for part in parts):
        return np.concatenate(parts)
    padded = np.full((sum(len(part) for part in parts), *widest), -1 if name == T.SPARSE_INDICES else 0,
                     dtype=parts[0].dtype)
    start = 0
    for part in parts:
        padded[(slice(start, start + len(part)), *(slice(0, size) for size in part.shape[1:]))] = part
        start += len(part)
    return padded


@dataclass(frozen=True)
class Dispatch:
    """How a job goes to Triton: which ensemble, sub-requests of at most `step` inputs, at which priority, and
    how many of them in flight at once (None: all)."""

    model: str
    step: int
    priority: Priority
    in_flight: int | None = None


def dispatch(spec: ModelSpec, job: Job, priority: Priority, bulk_lane: bool, step: int) -> Dispatch:
    """A bulk job goes to its ensemble's bulk twin when Triton serves one, in sub-requests that twin batches one
    at a time, and keeps only BULK_IN_FLIGHT of them in flight: enough to keep the lane's engine busy, never the
    whole job in Triton's queues, so bulk jobs share the lane among themselves."""
    model = job.model(spec)
    if priority is Priority.INTERACTIVE:
        return Dispatch(model, step, priority)
    if bulk_lane and (not job.whole or len(job) <= BULK_MAX_BATCH):  # a twin batches at most BULK_MAX_BATCH
        model, step = bulk_twin(model), min(step, BULK_MAX_BATCH)
    return Dispatch(model, step, priority, in_flight=BULK_IN_FLIGHT)


async def paced(calls: list[Awaitable[Tensors]], limit: int | None) -> list[Tensors]:
    """Every call's answer in order, at most `limit` awaited at once."""
    if len(calls) == 1:
        return [await calls[0]]  # no task to schedule
    if limit is None or len(calls) <= limit:
        return await asyncio.gather(*calls)
    slots = asyncio.Semaphore(limit)

    async def one(call: Awaitable[Tensors]) -> Tensors:
        async with slots:
            return await call

    return await asyncio.gather(*(one(call) for call in calls))


def cache_keys(job: Job, prefix: tuple) -> list[Hashable]:
    """Each input's key: the model and ensemble (`prefix`), the options every input shares, the input."""
    shared = tuple((name, array.dtype.str, array.shape[1:], tuple(array[:1].reshape(-1).tolist()))
                   for name, array in sorted(job.tensors(0, 1).items()) if name not in PER_INPUT)
    return [(*prefix, shared, job.row_key(i)) for i in range(len(job))]


PER_INPUT = (T.TEXT, T.TEXT_PAIR, T.TOKEN_IDS)  # the tensors whose rows differ between a job's inputs (Job.row_key)


def missing_spans(spans: list[tuple[int, int]], cached: list[Row | None]) -> list[tuple[int, int]]:
    """The parts of `spans` whose inputs the cache does not hold, each cut where a cached input sits."""
    runs = []
    for start, end in spans:
        run_start = None
        for i in range(start, end + 1):
            if i < end and cached[i] is None:
                run_start = i if run_start is None else run_start
            elif run_start is not None:
                runs.append((run_start, i))
                run_start = None
    return runs


async def run(backend: Backend, spec: ModelSpec, job: Job, plan: Dispatch, cache: ResponseCache | None = None,
              prefix: tuple = ()) -> Result:
    """The job's inputs the cache does not hold as sub-requests (`plan`), gathered in order with those it holds;
    `prefix` starts every cache key (the model's fingerprint)."""
    outputs = job.outputs(spec)
    cache = None if job.whole else cache
    keys = cache_keys(job, (*prefix, job.model(spec))) if cache is not None else []
    cached = [cache.get(key) for key in keys] if cache is not None else [None] * len(job)
    spans = missing_spans(job.spans(plan.step), cached)
    calls = [backend.infer(plan.model, job.tensors(start, end), outputs, offset=start, param=job.param,
                           priority=plan.priority.value) for start, end in spans]
    parts = await paced(calls, plan.in_flight) if calls else []
    if cache is not None:
        for (start, end), part in zip(spans, parts, strict=True):
            for i in range(start, end):
                cache.put(keys[i], own_row(part, i - start))
    result = Result(assemble(outputs, spans, parts, cached))
    hits = len(job) - sum(end - start for start, end in spans)
    note_dispatch(plan.priority.label, hits, len(job) - hits)
    if cache is not None:
        metrics.CACHE_HITS.labels(spec.name).inc(hits)
        metrics.CACHE_MISSES.labels(spec.name).inc(len(job) - hits)
    note_usage(model=spec.name, inputs=len(job), tokens=result.num_tokens, characters=job.characters,
               tokenization_s=result.tokenization_s)
    return result


def assemble(outputs: tuple[str, ...], spans: list[tuple[int, int]], parts: list[Tensors],
             cached: list[Row | None]) -> Tensors:
    """Computed parts and cached rows, in the job's order, one array per output."""
    pieces: list[tuple[int, Tensors]] = list(zip((start for start, _ in spans), parts, strict=True))
    pieces += [(i, row) for i, row in enumerate(cached) if row is not None]
    pieces.sort(key=lambda piece: piece[0])
    if len(pieces) == 1:
        return {name: pieces[0][1][name] for name in outputs}
    return {name: gather([piece[name] for _, piece in pieces], name) for name in outputs}
