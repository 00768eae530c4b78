"""The postprocess steps of the logits tasks, as plain Python over numpy (like `trident.stages`).

- Rerankers and classifiers: logits -> scores as TEI computes them (sigmoid for one logit, softmax
  for several, the logits themselves with RAW_SCORES).
- NER: per-token logits + the tokenizer's offsets and word ids -> entities (`trident.ner.aggregate`),
  one JSON list per text.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from trident import tensors as T
from trident.postprocess import sigmoid, softmax
from trident.spec import ModelSpec
from trident.stages import PerRequestStage, Request, Result, column, decode_texts, invalid_input


def scores_from_logits(logits: np.ndarray, raw: bool) -> np.ndarray:
    """TEI's rule over the last axis: one logit -> sigmoid, several -> softmax; `raw` keeps the logits."""
    values = np.asarray(logits, dtype=np.float64)
    if raw:
        return values.astype(np.float32)
    return (sigmoid(values) if values.shape[-1] == 1 else softmax(values)).astype(np.float32)


class ScoresStage(PerRequestStage):
    """Reranker / classifier postprocess: LOGITS [n, labels] (+ RAW_SCORES) -> SCORES [n, labels]."""

    def _one(self, request: Request) -> Result:
        logits = request[T.LOGITS]
        raw = np.array(column(request.get(T.RAW_SCORES), len(logits), False), dtype=bool)
        scores = np.where(raw[:, None], scores_from_logits(logits, True), scores_from_logits(logits, False))
        return {T.SCORES: scores.astype(np.float32)}


class NerStage(PerRequestStage):
    """NER postprocess: one JSON list of entities (BEI's shape) per text."""

    def __init__(self, spec: ModelSpec, files: Path) -> None:
        from tokenizers import Tokenizer

        from trident.ner import SubwordRule

        self.spec = spec
        self.vocab = Tokenizer.from_file(str(files / "tokenizer.json"))
        self.rule = SubwordRule.from_tokenizer(self.vocab)  # how the pipeline tells subwords apart

    def _one(self, request: Request) -> Result:
        from trident.ner import aggregate

        try:
            texts = decode_texts(request[T.TEXT])
            n = len(texts)
            strategies = [s.decode() if isinstance(s, bytes) else str(s)
                          for s in column(request.get(T.AGGREGATION_STRATEGY), n, b"none")]
            raw = column(request.get(T.RAW_SCORES), n, False)
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
