"""Pooling, as sentence-transformers' Pooling module does it, over packed or padded hidden states.

Sums run in float32 whatever the model's dtype: a mean over hundreds of fp16 tokens loses digits otherwise.
"""

from __future__ import annotations

import torch
from torch import Tensor


def pool_packed(hidden: Tensor, cu_seqlens: Tensor, pooling: str, num_sequences: int | None = None) -> Tensor:
    """`[tokens, dim]` hidden states of concatenated sequences -> `[sequences, dim]` float32.

    Sequence i is rows cu_seqlens[i]:cu_seqlens[i + 1]; only the first `num_sequences` are pooled
    (the rest are padding segments).
    """
    n = (len(cu_seqlens) - 1) if num_sequences is None else num_sequences
    starts, ends = cu_seqlens[:n].long(), cu_seqlens[1 : n + 1].long()
    if pooling == "cls":
        return hidden.index_select(0, starts).float()
    if pooling == "lasttoken":
        return hidden.index_select(0, ends - 1).float()
    if pooling != "mean":
        raise ValueError(f"unsupported pooling {pooling!r}")
    lengths = ends - starts
    segment = torch.repeat_interleave(torch.arange(n, device=hidden.device), lengths)
    sums = torch.zeros(n, hidden.shape[1], dtype=torch.float32, device=hidden.device)
    sums.index_add_(0, segment, hidden[: int(ends[-1])].float())
    return sums / lengths.unsqueeze(1).to(torch.float32)


def pool_padded(hidden: Tensor, attention_mask: Tensor, pooling: str) -> Tensor:
    """`[batch, seq, dim]` with a `[batch, seq]` mask (either padding side) -> `[batch, dim]` float32."""
    mask = attention_mask > 0
    if pooling == "mean":
        weights = mask.unsqueeze(-1).to(torch.float32)
        return (hidden.float() * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    positions = torch.arange(hidden.shape[1], device=hidden.device).expand_as(mask)
    if pooling == "cls":  # first real token: position 0 under right padding, still [CLS] under left padding
        index = torch.where(mask, positions, hidden.shape[1] - 1).amin(dim=1)
    elif pooling == "lasttoken":  # last real token, whichever side the padding is on
        index = torch.where(mask, positions, 0).amax(dim=1)
    else:
        raise ValueError(f"unsupported pooling {pooling!r}")
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index].float()


def splade_pool_padded(logits: Tensor, attention_mask: Tensor, strategy: str, activation: str) -> Tensor:
    """sentence-transformers' SpladePooling: `[batch, seq, vocab]` masked-LM logits -> `[batch, vocab]`, each
    token's log1p(relu(logit)) (log1p once more for "log1p_relu"), its max or sum over the real tokens.
    Padding is zeroed before the relu, as the library does, so it adds nothing to either."""
    values = torch.log1p(torch.relu(logits.float() * (attention_mask > 0).unsqueeze(-1).to(torch.float32)))
    if activation == "log1p_relu":
        values = torch.log1p(values)
    if strategy == "max":
        return values.amax(dim=1)
    if strategy == "sum":
        return values.sum(dim=1)
    raise ValueError(f"unsupported SpladePooling strategy {strategy!r}")
