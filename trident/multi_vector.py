"""Multi-vector (ColBERT-style) models, the way sentence-transformers' MultiVectorEncoder treats each side:

- tokenizing (`Transformer.preprocess`): a query is cut at `query_length`, a document at `document_length`;
  with query expansion, a query is padded with the expansion token (ColBERT's [MASK]) up to the expansion
  length ("fixed" also cuts it there), and those tokens are not attended to unless `attend`;
- scoring (`MultiVectorMask`): a query's expansion tokens score; on the sides in `skiplist_tasks` (documents,
  and inputs of no side, by default) the skiplist's tokens (punctuation, for PyLate's models) do not.

`encode_query` / `encode_document` are the sides "query" / "document"; `encode` with no task is side "".
"""

from __future__ import annotations

from typing import Any

import numpy as np

SIDES = ("", "query", "document")


def check_side(side: str) -> str:
    if side not in SIDES:
        raise ValueError(f"SIDE must be query, document or empty, got {side!r}")
    return side


def side_limit(sides: dict[str, Any], side: str) -> int:
    """The side's own token limit (0: the model's maximum): a fixed expansion's length is the query's."""
    expansion = sides.get("expansion")
    if side == "query":
        if expansion and expansion["strategy"] == "fixed":
            return int(expansion["length"])
        return int(sides.get("query_length") or 0)
    if side == "document":
        return int(sides.get("document_length") or 0)
    return 0


def tighter(limit: int, other: int) -> int:
    """The lower of two limits, 0 meaning none."""
    return min(limit, other) if limit and other else limit or other


def expand_queries(input_ids: np.ndarray, token_type_ids: np.ndarray, lengths: np.ndarray, sides: list[str],
                   expansion: dict[str, Any] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Queries shorter than the expansion length padded to it with the expansion token (type 0); returns the
    ids, token types, lengths and ATTENTION_MASK (0 at expansion tokens unless `attend`)."""
    n = len(sides)
    targets = lengths.copy()
    if expansion:
        for row in range(n):
            if sides[row] == "query":
                targets[row] = max(int(lengths[row]), int(expansion["length"]))
    longest = int(targets.max()) if n else 0
    ids = np.zeros((n, longest), dtype=np.int64)
    types = np.zeros((n, longest), dtype=np.int64)
    attention = np.zeros((n, longest), dtype=np.int32)
    for row in range(n):
        length, target = int(lengths[row]), int(targets[row])
        ids[row, :length], types[row, :length], attention[row, :length] = input_ids[row, :length], \
            token_type_ids[row, :length], 1
        if target > length:
            ids[row, length:target] = expansion["token_id"]
            attention[row, length:target] = 1 if expansion["attend"] else 0
    return ids, types, targets.astype(np.int32), attention


def scoring_tokens(ids: np.ndarray, side: str, mask: dict[str, Any]) -> np.ndarray:
    """Which of an input's tokens score (its expansion tokens included): all but the skiplist's, on the sides
    it applies to (an input of no side counts as a document, as sentence-transformers counts it)."""
    keep = np.ones(len(ids), dtype=bool)
    if (side or "document") in mask["skiplist_tasks"] and mask["skiplist_ids"]:
        keep &= ~np.isin(ids, mask["skiplist_ids"])
    return keep
