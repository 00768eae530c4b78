"""What a validated request asks of a model (a job), and the one fan-out that runs any job on Triton.

A job names the ensemble it goes to and builds the input tensors of any slice of its inputs: it is
the gateway's whole knowledge of the ensembles' inputs (tensor names: `trident.tensors`; outputs: the
task's row in `trident.tasks`). `run` splits a job into Triton-sized sub-requests, sends them
concurrently and gathers the outputs in order; Triton's dynamic batcher merges them again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gateway.observe import note_usage
from trident import tensors as T
from trident.spec import ModelSpec
from trident.tasks import TOKENIZER_OUTPUTS, ids_model, tokens_model

Tensors = dict[str, np.ndarray]


def text_column(texts: list[str]) -> np.ndarray:
    return np.array([text.encode("utf-8") for text in texts], dtype=np.object_).reshape(-1, 1)


def column(value: bool | int, n: int, dtype: type) -> np.ndarray:
    return np.full((n, 1), value, dtype=dtype)


def options(n: int, values: dict[str, tuple[object, type]], defaults: dict[str, object] = T.DEFAULTS) -> Tensors:
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
        """[start, end) of the sub-requests: contiguous, at most `step` inputs each."""
        return [(start, min(start + step, len(self))) for start in range(0, len(self), step)]

    def tensors(self, start: int, end: int) -> Tensors:
        raise NotImplementedError

    def truncation(self, n: int) -> Tensors:
        return options(n, {T.TRUNCATE: (self.truncate, np.bool_), T.TRUNCATE_LEFT: (self.truncate_left, np.bool_),
                           T.MAX_TOKENS: (self.max_tokens or 0, np.int32)})


@dataclass(kw_only=True)
class EmbeddingJob(Job):
    """Texts or token ids to embed, and the postprocess options of the model's kind of embedding (`options`).
    Token ids go to the model's `<name>_ids` ensemble, which truncates them (or refuses them as too long) as
    the tokenizer does text."""

    texts: list[str] | None = None  # prompt already applied
    token_ids: list[list[int]] | None = None  # each non-empty, inside the vocabulary
    adapter: int = 0  # a model with LoRA adapters (ModelSpec.adapters): index + 1; 0 none

    def __len__(self) -> int:
        return len(self.texts if self.texts is not None else self.token_ids)

    def model(self, spec: ModelSpec) -> str:
        return spec.name if self.texts is not None else ids_model(spec.name)

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
        adapter = options(n, {T.ADAPTER: (self.adapter, np.int32)})
        return {**self.inputs(start, end), **self.truncation(n), **self.options(n), **adapter}

    def options(self, n: int) -> Tensors:
        raise NotImplementedError


@dataclass(kw_only=True)
class EmbedJob(EmbeddingJob):
    """Dense vectors: normalized or not, Matryoshka-cut."""

    normalize: bool
    dimensions: int | None
    model_normalizes: bool  # what the postprocess does when NORMALIZE is not sent: the model's own head

    def options(self, n: int) -> Tensors:
        return options(n, {T.NORMALIZE: (self.normalize, np.bool_), T.DIMENSIONS: (self.dimensions or 0, np.int32)},
                       {**T.DEFAULTS, T.NORMALIZE: self.model_normalizes})


@dataclass(kw_only=True)
class SparseJob(EmbeddingJob):
    """Sparse (SPLADE) vectors: their non-zero entries, or the `top_k` largest."""

    top_k: int | None = None

    def options(self, n: int) -> Tensors:
        return options(n, {T.TOP_K: (self.top_k or 0, np.int32)})


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
                   **options(n, {T.RAW_SCORES: (self.raw_scores, np.bool_)})}
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
                    param: str = "input") -> Tensors: ...


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


async def run(backend: Backend, spec: ModelSpec, job: Job, step: int) -> Result:
    """The job as sub-requests of at most `step` inputs, run concurrently, gathered in order."""
    outputs, model = job.outputs(spec), job.model(spec)
    calls = [backend.infer(model, job.tensors(start, end), outputs, offset=start, param=job.param)
             for start, end in job.spans(step)]
    parts = [await calls[0]] if len(calls) == 1 else await asyncio.gather(*calls)  # one: no task to schedule
    result = Result({name: parts[0][name] if len(parts) == 1 else gather([part[name] for part in parts], name)
                     for name in outputs})
    note_usage(model=spec.name, inputs=len(job), tokens=result.num_tokens, characters=job.characters,
               tokenization_s=result.tokenization_s)
    return result
