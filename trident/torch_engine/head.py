"""The Dense modules of an embedding head (trident.heads) in torch: the one implementation that both
the exported ONNX graph and the torch engine run after pooling.

Weights load from where sentence-transformers' Dense saved them: `<checkpoint>/<path>/model.safetensors`
(or `pytorch_model.bin`), keys `linear.weight` and `linear.bias`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from trident.heads import Head, dense_modules


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
