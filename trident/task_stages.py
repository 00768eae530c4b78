"""The postprocess steps of the logits tasks, as plain Python over numpy (like `trident.stages`).

- Rerankers and classifiers: logits -> scores as TEI computes them (sigmoid for one logit, softmax
  for several, the logits themselves with RAW_SCORES).
- NER: per-token logits + the tokenizer's offsets and word ids -> entities (`trident.ner.aggregate`),
  one JSON list per text.
- Sparse (SPLADE): the pooled vocabulary vector -> its non-zero entries (or the k largest), in index order.
- Multi-vector (ColBERT-style): each token's projected vector -> normalized, only the tokens that score.
- Hybrid (BGE-M3): whichever of dense, sparse and ColBERT outputs the request's ensemble asked the engine for.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from trident import heads, multi_vector
from trident import tensors as T
from trident.errors import StageError, StageErrorKind
from trident.postprocess import l2_normalize, sigmoid, softmax
from trident.spec import ModelSpec
from trident.stages import (
    EmbeddingPostprocessStage,
    PerRequestStage,
    Request,
    StageResult,
    decode_texts,
    invalid_input,
    option,
)


def scores_from_logits(logits: np.ndarray, raw: bool) -> np.ndarray:
    """TEI's rule over the last axis: one logit -> sigmoid, several -> softmax; `raw` keeps the logits."""
    values = np.asarray(logits, dtype=np.float64)
    if raw:
        return values.astype(np.float32)
    return (sigmoid(values) if values.shape[-1] == 1 else softmax(values)).astype(np.float32)


class ScoresStage(PerRequestStage):
    """Reranker / classifier postprocess: LOGITS [n, labels] (+ RAW_SCORES) -> SCORES [n, labels]."""

    def _one(self, request: Request) -> StageResult:
        logits = request[T.LOGITS]
        raw = np.array(option(request, T.RAW_SCORES, len(logits)), dtype=bool)
        scores = np.where(raw[:, None], scores_from_logits(logits, True), scores_from_logits(logits, False))
        return {T.SCORES: scores.astype(np.float32)}


def nonzero_entries(vector: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, values) of a vector's non-zero entries in index order; `top_k` > 0 keeps the k largest
    values (equal values: the lower index first)."""
    indices = np.flatnonzero(vector)
    if 0 < top_k < len(indices):
        largest = np.argsort(-vector[indices], kind="stable")[:top_k]
        indices = np.sort(indices[largest])
    return indices.astype(np.int32), vector[indices].astype(np.float32)


def padded_entries(entries: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """SPARSE_INDICES / SPARSE_VALUES: each row's (indices, values), padded with index -1 and value 0."""
    width = max((len(indices) for indices, _ in entries), default=0)
    indices = np.full((len(entries), width), -1, dtype=np.int32)
    values = np.zeros((len(entries), width), dtype=np.float32)
    for row, (ids, vals) in enumerate(entries):
        indices[row, : len(ids)], values[row, : len(vals)] = ids, vals
    return {T.SPARSE_INDICES: indices, T.SPARSE_VALUES: values}


def padded_vectors(kept: list[np.ndarray], width: int) -> dict[str, np.ndarray]:
    """VECTORS / NUM_VECTORS: each row's vectors, zero-padded to the most of any row."""
    out = np.zeros((len(kept), max((len(v) for v in kept), default=0), width), dtype=np.float32)
    for row, vectors in enumerate(kept):
        out[row, : len(vectors)] = vectors
    return {T.VECTORS: out, T.NUM_VECTORS: np.array([[len(v)] for v in kept], dtype=np.int32).reshape(-1, 1)}


class SparseStage(PerRequestStage):
    """Sparse postprocess: POOLED [n, vocab] (+ TOP_K) -> SPARSE_INDICES / SPARSE_VALUES [n, most entries],
    each row padded with index -1 and value 0: the vocabulary-wide vectors stop here."""

    def _one(self, request: Request) -> StageResult:
        pooled = request[T.POOLED]
        top_k = option(request, T.TOP_K, len(pooled))
        if min(top_k, default=0) < 0:
            return StageError(StageErrorKind.INVALID_INPUT, f"TOP_K must be 0 (all) or positive, got {min(top_k)}")
        return padded_entries([nonzero_entries(vector, int(k)) for vector, k in zip(pooled, top_k, strict=True)])


class MultiVectorStage(PerRequestStage):
    """Multi-vector postprocess: TOKEN_EMBEDDINGS [n, longest, dim] (+ INPUT_IDS, NUM_TOKENS, SIDE) ->
    VECTORS [n, most kept, dim] and NUM_VECTORS: each input's scoring tokens (trident.multi_vector), each
    vector normalized when the model's head ends with Normalize."""

    def __init__(self, spec: ModelSpec, files: Path) -> None:
        self.spec = spec
        self.mask = heads.token_mask(spec.head)
        self.normalize = spec.normalize

    def _one(self, request: Request) -> StageResult:
        embeddings, ids = request[T.TOKEN_EMBEDDINGS], request[T.INPUT_IDS]
        lengths = request[T.NUM_TOKENS].reshape(-1)
        try:
            sides = [multi_vector.check_side(side) for side in decode_texts(request[T.SIDE])] \
                if request.get(T.SIDE) is not None else [""] * len(lengths)
        except (ValueError, UnicodeDecodeError) as exc:
            return invalid_input(exc)
        kept = []
        for row, length in enumerate(lengths):
            vectors = embeddings[row, :length][multi_vector.scoring_tokens(ids[row, :length], sides[row], self.mask)]
            kept.append(l2_normalize(vectors) if self.normalize else vectors.astype(np.float32))
        return padded_vectors(kept, embeddings.shape[-1])


def lexical_weights(weights: np.ndarray, ids: np.ndarray, skip_ids: list[int]) -> np.ndarray:
    """FlagEmbedding's lexical weights of one input as a vocabulary-indexed vector: each id's largest token
    weight, the skipped ids (CLS, EOS, PAD, UNK) left out (non-positive weights never count)."""
    vector = np.zeros(int(ids.max()) + 1 if len(ids) else 0, dtype=np.float32)
    keep = ~np.isin(ids, skip_ids)
    np.maximum.at(vector, ids[keep], weights[keep])
    return vector


class HybridStage(PerRequestStage):
    """Hybrid (BGE-M3) postprocess, FlagEmbedding's `BGEM3FlagModel` semantics, for the outputs its ensemble
    maps (each optional): POOLED -> EMBEDDINGS (normalized, Matryoshka-cut as an embedding model's);
    TOKEN_WEIGHTS (+ INPUT_IDS, NUM_TOKENS, TOP_K) -> SPARSE_INDICES / SPARSE_VALUES, the lexical weights
    in index order; TOKEN_EMBEDDINGS -> VECTORS / NUM_VECTORS, every real token after CLS, normalized."""

    def __init__(self, spec: ModelSpec, files: Path) -> None:
        self.spec = spec
        self.dense = EmbeddingPostprocessStage(spec, files)
        self.skip_ids = list(spec.hybrid.get("sparse_skip_ids", []))

    def _one(self, request: Request) -> StageResult:
        result: dict[str, np.ndarray] = {}
        if request.get(T.POOLED) is not None:
            dense = self.dense._one(request)
            if isinstance(dense, Exception):
                return dense
            result.update(dense)
        lengths = request[T.NUM_TOKENS].reshape(-1) if request.get(T.NUM_TOKENS) is not None else None
        if request.get(T.TOKEN_WEIGHTS) is not None:
            top_k = option(request, T.TOP_K, len(lengths))
            if min(top_k, default=0) < 0:
                return StageError(StageErrorKind.INVALID_INPUT, f"TOP_K must be 0 (all) or positive, got {min(top_k)}")
            weights, ids = request[T.TOKEN_WEIGHTS][..., 0], request[T.INPUT_IDS]
            result.update(padded_entries([
                nonzero_entries(lexical_weights(weights[row, :length], ids[row, :length], self.skip_ids), int(k))
                for row, (length, k) in enumerate(zip(lengths, top_k, strict=True))]))
        if request.get(T.TOKEN_EMBEDDINGS) is not None:
            embeddings = request[T.TOKEN_EMBEDDINGS]
            kept = [l2_normalize(embeddings[row, 1:length]) for row, length in enumerate(lengths)]
            result.update(padded_vectors(kept, embeddings.shape[-1]))
        return result


class NerStage(PerRequestStage):
    """NER postprocess: one JSON list of entities (BEI's shape) per text."""

    def __init__(self, spec: ModelSpec, files: Path) -> None:
        from tokenizers import Tokenizer

        from trident.ner import SubwordRule

        self.spec = spec
        self.vocab = Tokenizer.from_file(str(files / "tokenizer.json"))
        self.rule = SubwordRule.from_tokenizer(self.vocab)  # how the pipeline tells subwords apart

    def _one(self, request: Request) -> StageResult:
        from trident.ner import aggregate

        try:
            texts = decode_texts(request[T.TEXT])
            n = len(texts)
            strategies = [s.decode() if isinstance(s, bytes) else str(s)
                          for s in option(request, T.AGGREGATION_STRATEGY, n)]
            raw = option(request, T.RAW_SCORES, n)
            lengths = request[T.NUM_TOKENS].reshape(-1)
            results = []
            for i, text in enumerate(texts):
                length = int(lengths[i])
                ids = request[T.INPUT_IDS][i, :length].astype(np.int64)
                word_ids = request[T.WORD_IDS][i, :length].astype(np.int64)
                entities = aggregate(
                    text, ids, request[T.OFFSETS][i, :length].astype(np.int64), word_ids, word_ids < 0,
                    request[T.LOGITS][i, :length].astype(np.float32), self.spec.id2label,
                    strategies[i].lower(), bool(raw[i]), tokens=[self.vocab.id_to_token(int(t)) for t in ids],
                    rule=self.rule,
                )
                results.append(json.dumps(entities, ensure_ascii=False, default=_plain).encode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            return invalid_input(exc)
        return {T.RESULT: np.array(results, dtype=np.object_).reshape(-1, 1)}


def _plain(value: object) -> object:
    """numpy scalars (np.float32 scores, np.int64 ids) as the Python numbers json understands."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
