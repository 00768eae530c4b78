"""Unpadded sequences -> engine batches, within a token budget, in two layouts.

- Packed (varlen): the sequences of a batch are concatenated into one row of `sum(lengths)` tokens and
  `cu_seqlens` marks where each starts; attention runs per sequence, so no token is padding.
- Padded: a batch is `rows x longest`, padded on one side; used where varlen attention is not available.
  Grouping by length (`trident.batching.plan_batches`) keeps that padding small.

With CUDA graphs, shapes must repeat: `bucket` rounds the token count (and the sequence count) up to a few
fixed sizes, and the padding becomes extra dummy sequences whose outputs are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from trident.batching import pad, plan_batches, position_ids_from_mask

if TYPE_CHECKING:  # torch is imported where tensors are made: the TensorRT engine step pads without it
    import torch

__all__ = ["PackedBatch", "bucket", "pack", "pad", "padded_position_ids", "plan_batches", "plan_packed"]


@dataclass
class PackedBatch:
    """One varlen batch. The first `num_sequences` segments are the caller's; any after are padding."""

    input_ids: torch.Tensor  # [tokens] int64
    position_ids: torch.Tensor  # [tokens] int64, restarting at each sequence
    token_type_ids: torch.Tensor | None  # [tokens] int64
    cu_seqlens: torch.Tensor  # [segments + 1] int32: segment i is tokens cu[i]:cu[i+1]
    max_seqlen: int
    num_sequences: int

    def to(self, device: torch.device | str) -> PackedBatch:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return PackedBatch(move(self.input_ids), move(self.position_ids), move(self.token_type_ids),
                           move(self.cu_seqlens), self.max_seqlen, self.num_sequences)


def plan_packed(lengths: list[int], max_num_tokens: int, max_sequences: int | None = None) -> list[list[int]]:
    """Group input indices, longest first, so that each group's total tokens <= max_num_tokens.

    Longest first packs well (first-fit decreasing) and keeps similar lengths together, which helps the
    attention kernel balance its work. An input longer than the budget gets a group of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    groups: list[list[int]] = []
    tokens = 0
    for index in order:
        full = max_sequences is not None and groups and len(groups[-1]) >= max_sequences
        if groups and not full and tokens + lengths[index] <= max_num_tokens:
            groups[-1].append(index)
            tokens += lengths[index]
        else:
            groups.append([index])
            tokens = lengths[index]
    return groups


def bucket(n: int, minimum: int = 16) -> int:
    """The smallest of minimum * {1, 1.5, 2, 3, 4, 6, ...} that holds n: at most 50% waste, few distinct sizes."""
    size = minimum
    while size < n:
        size = size * 3 // 2 if (size & (size - 1)) == 0 else size * 4 // 3
    return size


def pack(
    ids: list[np.ndarray],
    types: list[np.ndarray] | None = None,
    *,
    position_offset: int = 0,
    pad_id: int = 0,
    static_shapes: bool = False,
) -> PackedBatch:
    """Concatenate sequences into one varlen batch; `static_shapes` pads tokens and segments to `bucket` sizes."""
    import torch

    lengths = [len(s) for s in ids]
    if not lengths or min(lengths) == 0:
        raise ValueError("pack needs at least one sequence, none of them empty")
    segments = list(lengths)
    if static_shapes:
        # Extra segments of one token each, then one that takes the rest of the bucket's tokens.
        num_segments = bucket(len(lengths) + 1, minimum=8)
        extra = [1] * (num_segments - len(lengths) - 1)
        total = bucket(sum(lengths) + len(extra) + 1, minimum=64)
        segments += [*extra, total - sum(lengths) - len(extra)]
    total_tokens = sum(segments)
    input_ids = np.full(total_tokens, pad_id, dtype=np.int64)
    token_type_ids = np.zeros(total_tokens, dtype=np.int64)
    input_ids[: sum(lengths)] = np.concatenate(ids)
    if types is not None:
        token_type_ids[: sum(lengths)] = np.concatenate(types)
    cu_seqlens = np.zeros(len(segments) + 1, dtype=np.int32)
    cu_seqlens[1:] = np.cumsum(segments)
    starts = np.repeat(cu_seqlens[:-1], segments)
    position_ids = np.arange(total_tokens, dtype=np.int64) - starts + position_offset
    return PackedBatch(
        input_ids=torch.from_numpy(input_ids),
        position_ids=torch.from_numpy(position_ids),
        token_type_ids=torch.from_numpy(token_type_ids) if types is not None else None,
        cu_seqlens=torch.from_numpy(cu_seqlens),
        max_seqlen=bucket(max(segments)) if static_shapes else max(segments),
        num_sequences=len(lengths),
    )


def padded_position_ids(mask: np.ndarray, offset: int = 0) -> np.ndarray:
    """Positions over real tokens only (left padding must not shift them), plus the model's offset."""
    return position_ids_from_mask(mask) + offset
