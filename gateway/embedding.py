"""Embedding requests: validate, split into Triton-sized sub-requests, run them concurrently,
reassemble in order.

Text goes through the ensemble (tokenizer -> engine -> postprocess). Token ids skip the tokenizer:
the gateway calls the engine and the postprocess models itself, so ids reach the model unchanged.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from gateway.errors import ApiError
from gateway.settings import GatewaySettings
from gateway.triton import TritonBackend, array_input, bytes_input, column_input
from trident import tensors as T
from trident.spec import ModelSpec


@dataclass
class EmbedJob:
    texts: list[str] | None
    token_ids: list[list[int]] | None
    truncate: bool
    truncate_left: bool
    normalize: bool
    dimensions: int | None

    @property
    def size(self) -> int:
        return len(self.texts if self.texts is not None else self.token_ids)


@dataclass
class EmbedResult:
    embeddings: np.ndarray  # float32 [n, d]
    num_tokens: int


def split_inputs(value: object, param: str) -> tuple[list[str] | None, list[list[int]] | None]:
    """OpenAI/TEI `input`: str | [str] | [int] | [[int]] -> (texts, token id lists)."""
    if isinstance(value, str):
        return [value], None
    if not value:
        raise ApiError(400, f"`{param}` must not be empty", param=param)
    if isinstance(value[0], str):
        return list(value), None
    if isinstance(value[0], int):
        return None, [list(value)]
    return None, [list(ids) for ids in value]


def check_texts(texts: list[str], param: str) -> None:
    for index, text in enumerate(texts):
        if not text:
            raise ApiError(400, f"`{param}` item {index} is an empty string", param=param)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, f"`{param}` item {index} is not valid Unicode (lone surrogate)",
                           param=param) from None


def check_token_ids(token_ids: list[list[int]], spec: ModelSpec, truncate: bool, param: str) -> None:
    for index, ids in enumerate(token_ids):
        if not ids:
            raise ApiError(400, f"`{param}` item {index} has no token ids", param=param)
        bad = next((i for i in ids if not 0 <= i < spec.vocab_size), None)
        if bad is not None:
            raise ApiError(422, f"`{param}` item {index} has token id {bad}, outside the vocabulary "
                           f"[0, {spec.vocab_size})", param=param)
        if len(ids) > spec.max_length and not truncate:
            raise ApiError(422, f"input {index} has {len(ids)} tokens, more than the model's maximum of "
                           f"{spec.max_length}; send truncate=true to cut it", param=param)


def check_dimensions(dimensions: int | None, spec: ModelSpec) -> None:
    if dimensions is not None and not 1 <= dimensions <= spec.dim:
        raise ApiError(422, f"`dimensions` must be between 1 and {spec.dim} for {spec.name}, got {dimensions}",
                       param="dimensions")


def apply_prompt(texts: list[str], spec: ModelSpec, prompt_name: str | None) -> list[str]:
    name = prompt_name or spec.default_prompt_name
    if name is None:
        return texts
    if name not in spec.prompts:
        known = ", ".join(sorted(spec.prompts)) or "none"
        raise ApiError(422, f"unknown prompt_name {name!r}; {spec.name} has: {known}", param="prompt_name")
    return [spec.prompts[name] + text for text in texts]


class EmbeddingService:
    def __init__(self, backend: TritonBackend, settings: GatewaySettings) -> None:
        self.backend = backend
        self.settings = settings

    async def embed(self, spec: ModelSpec, job: EmbedJob) -> EmbedResult:
        if job.size > self.settings.max_client_batch_size:
            raise ApiError(413, f"{job.size} inputs in one request; the limit is "
                           f"{self.settings.max_client_batch_size} (--max-client-batch-size)", param="input")
        check_dimensions(job.dimensions, spec)
        step = self.settings.triton_batch_size
        if job.texts is not None:
            calls = [self._embed_texts(spec, job, start, job.texts[start : start + step])
                     for start in range(0, job.size, step)]
        else:
            check_token_ids(job.token_ids, spec, job.truncate, "input")
            calls = [self._embed_ids(spec, job, job.token_ids[start : start + step])
                     for start in range(0, job.size, step)]
        parts = await asyncio.gather(*calls)
        embeddings = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        return EmbedResult(embeddings, sum(p[1] for p in parts))

    def _shaping(self, spec: ModelSpec, job: EmbedJob, n: int) -> list:
        return [column_input(T.NORMALIZE, job.normalize, n, "BOOL"),
                column_input(T.DIMENSIONS, job.dimensions or 0, n, "INT32")]

    async def _embed_texts(self, spec: ModelSpec, job: EmbedJob, offset: int, texts: list[str]):
        n = len(texts)
        inputs = [bytes_input(T.TEXT, texts), column_input(T.TRUNCATE, job.truncate, n, "BOOL"),
                  column_input(T.TRUNCATE_LEFT, job.truncate_left, n, "BOOL"), *self._shaping(spec, job, n)]
        out = await self.backend.infer(spec.name, inputs, [T.EMBEDDINGS, T.NUM_TOKENS], offset=offset)
        return out[T.EMBEDDINGS], int(out[T.NUM_TOKENS].sum())

    async def _embed_ids(self, spec: ModelSpec, job: EmbedJob, token_ids: list[list[int]]):
        n = len(token_ids)
        kept = [ids[-spec.max_length:] if job.truncate_left else ids[: spec.max_length] for ids in token_ids]
        lengths = np.array([len(ids) for ids in kept], dtype=np.int32).reshape(-1, 1)
        padded = np.full((n, int(lengths.max())), spec.pad_token_id, dtype=np.int64)
        for row, ids in enumerate(kept):
            padded[row, : len(ids)] = ids
        inputs = [array_input(T.INPUT_IDS, padded, "INT64"),
                  array_input(T.TOKEN_TYPE_IDS, np.zeros_like(padded), "INT64"),
                  array_input(T.NUM_TOKENS, lengths, "INT32")]
        pooled = (await self.backend.infer(f"{spec.name}_engine", inputs, [T.POOLED]))[T.POOLED]
        shaped = [array_input(T.POOLED, pooled, "FP32"), *self._shaping(spec, job, n)]
        out = await self.backend.infer(f"{spec.name}_postprocess", shaped, [T.EMBEDDINGS])
        return out[T.EMBEDDINGS], int(lengths.sum())
