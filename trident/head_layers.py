"""The embedding head after the encoder, in torch: pooling (cls / mean / last token, over packed or padded
hidden states), SpladePooling and the Dense modules. The one implementation that both the exported ONNX graph
(builder/export.py folds it in) and the torch engine run.

Sums run in float32 whatever the model's dtype: a mean over hundreds of fp16 tokens loses digits otherwise.
Dense weights load from where sentence-transformers saved them: `<checkpoint>/<path>/model.safetensors` (or
`pytorch_model.bin`), keys `linear.weight` and `linear.bias`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from trident.heads import Head, dense_modules


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


def _dense_weights(folder: Path) -> dict[str, Tensor]:
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        return load_file(str(folder / "model.safetensors"))
    return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)


def dense_layer(module: dict, checkpoint: Path) -> nn.Sequential:
    linear = nn.Linear(module["in_features"], module["out_features"], bias=module["bias"])
    weights = _dense_weights(checkpoint / module["path"])
    linear.load_state_dict({name.removeprefix("linear."): value for name, value in weights.items()})
    return nn.Sequential(linear, getattr(nn, module["activation"])())


class DenseStack(nn.Module):
    """Pooled `[batch, dim]` -> the head's Dense modules in order (none: the identity), in float32."""

    def __init__(self, head: Head, checkpoint: Path) -> None:
        super().__init__()
        self.layers = nn.ModuleList(dense_layer(module, checkpoint) for module in dense_modules(head))

    def forward(self, pooled: Tensor) -> Tensor:
        for layer in self.layers:
            pooled = layer(pooled)
        return pooled
