"""Padded batches for the engines: token-budget grouping, padding, feeds, and unpadding of rows.

Plain numpy, shared by every engine (ONNX Runtime, TensorRT, the padded path of torch) so that each
pads, positions and unpads exactly the same way.
"""

from __future__ import annotations

import numpy as np


def position_ids_from_mask(attention_mask: np.ndarray) -> np.ndarray:
    """Positions counted over real tokens only, so left padding does not shift them."""
    return np.clip(np.cumsum(attention_mask, axis=1) - 1, 0, None).astype(np.int64)


def plan_batches(lengths: list[int], max_num_tokens: int) -> list[list[int]]:
    """Group input indices, longest first, so each group's rows * longest <= max_num_tokens.

    A single input longer than the budget still gets a group of its own: it cannot be split.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    for index in order:
        # Sorted longest first, so the first row of a group sets its padded length.
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_num_tokens:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def pad(rows: list[np.ndarray], value: int, side: str) -> tuple[np.ndarray, np.ndarray]:
    """Pad rows to the longest on `side` ("left" | "right"); returns (padded int64, attention mask int64)."""
    longest = max(len(r) for r in rows)
    padded = np.full((len(rows), longest), value, dtype=np.int64)
    mask = np.zeros((len(rows), longest), dtype=np.int64)
    for i, row in enumerate(rows):
        span = slice(longest - len(row), longest) if side == "left" else slice(0, len(row))
        padded[i, span] = row
        mask[i, span] = 1
    return padded, mask


def padded_feeds(
    ids: list[np.ndarray], types: list[np.ndarray] | None, input_names: set[str] | list[str], pad_id: int, side: str,
    attention: list[np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """The engine graph's inputs for one padded sub-batch: only those the graph declares. `attention`: per
    sequence, which of its tokens may be attended to (default all; a ColBERT query's expansion tokens are
    not); positions still count every token of the sequence."""
    input_ids, present = pad(ids, pad_id, side)
    mask = present if attention is None else pad(attention, 0, side)[0]
    feeds = {"input_ids": input_ids, "attention_mask": mask}
    if "token_type_ids" in input_names:
        feeds["token_type_ids"] = np.zeros_like(input_ids) if types is None else pad(types, 0, side)[0]
    if "position_ids" in input_names:
        feeds["position_ids"] = position_ids_from_mask(present)
    return feeds


def unpad_rows(output: np.ndarray, lengths: list[int], side: str) -> list[np.ndarray]:
    """Per-token rows (NER) without their padding: each input keeps its own `length` rows."""
    if side == "left":
        return [row[len(row) - n :] for row, n in zip(output, lengths, strict=True)]
    return [row[:n] for row, n in zip(output, lengths, strict=True)]
