"""FP8 (e4m3) linear layers: per-output-channel weight scales, dynamic per-token activation scales.

    y = (x_q * s_x) @ (W_q * s_w)^T + b,   x_q = fp8(x / s_x),  s_x = max|x_row| / 448,  s_w = max|W_row| / 448

On GPUs with FP8 tensor cores (compute capability >= 8.9: Ada, Hopper, Blackwell) the product is one
`torch._scaled_mm` with row-wise scales; elsewhere `reference_mm` computes the same function from the
dequantized operands in float32, which is what the CPU tests compare against.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)  # 448
_MIN_SCALE = 1e-12  # an all-zero row still gets a finite scale
# torch._scaled_mm needs both matrix dimensions of the weight to be multiples of 16.
_ALIGNMENT = 16
# Linear layers inside numbered blocks ("layers.3.mlp.up_proj", "encoder.layer.0.attention.self.query"):
# the repeated transformer blocks, not task heads, poolers or embeddings.
_IN_BLOCK = re.compile(r"(^|\.)\d+\.")


def fp8_supported(device: torch.device | str) -> bool:
    """True where torch._scaled_mm runs FP8 on tensor cores (compute capability >= 8.9)."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available() or not hasattr(torch, "_scaled_mm"):
        return False
    return torch.cuda.get_device_capability(device) >= (8, 9)


def quantize_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """`[out, in]` -> (fp8 `[out, in]`, float32 scale `[out]`), one scale per output channel."""
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / FP8_MAX).clamp(min=_MIN_SCALE)
    return (w / scale.unsqueeze(1)).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale


def quantize_activation(x: Tensor) -> tuple[Tensor, Tensor]:
    """`[tokens, in]` -> (fp8 `[tokens, in]`, float32 scale `[tokens, 1]`), one scale per token, from the data."""
    xf = x.float()
    scale = (xf.abs().amax(dim=1, keepdim=True) / FP8_MAX).clamp(min=_MIN_SCALE)
    return (xf / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale


def dequantize(q: Tensor, scale: Tensor) -> Tensor:
    """fp8 values times their scales (broadcast: `[out]` weight scales or `[tokens, 1]` activation scales)."""
    return q.float() * (scale.unsqueeze(1) if scale.ndim == 1 else scale)


def reference_mm(x_q: Tensor, x_scale: Tensor, w_q: Tensor, w_scale: Tensor, out_dtype: torch.dtype) -> Tensor:
    """What the FP8 kernel computes, in float32 from the dequantized operands."""
    return (dequantize(x_q, x_scale) @ dequantize(w_q, w_scale).t()).to(out_dtype)


def scaled_mm(x_q: Tensor, x_scale: Tensor, w_q: Tensor, w_scale: Tensor, out_dtype: torch.dtype) -> Tensor:
    """`torch._scaled_mm` with row-wise scales: A is `[tokens, in]` row-major, B the weight viewed column-major.

    CUDA's row-wise FP8 GEMM writes bfloat16 only, so other output types are cast from it.
    """
    kernel_dtype = torch.bfloat16 if x_q.is_cuda else out_dtype
    out = torch._scaled_mm(x_q, w_q.t(), scale_a=x_scale, scale_b=w_scale.view(1, -1), out_dtype=kernel_dtype)
    return out.to(out_dtype)


class FP8Linear(nn.Module):
    """A drop-in for nn.Linear holding FP8 weights. `use_kernel` picks torch._scaled_mm over the reference."""

    def __init__(self, weight_q: Tensor, weight_scale: Tensor, bias: Tensor | None, use_kernel: bool) -> None:
        super().__init__()
        self.in_features, self.out_features = weight_q.shape[1], weight_q.shape[0]
        self.weight_q = nn.Parameter(weight_q, requires_grad=False)
        self.weight_scale = nn.Parameter(weight_scale, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)
        self.use_kernel = use_kernel

    @classmethod
    def from_linear(cls, linear: nn.Linear, use_kernel: bool) -> FP8Linear:
        weight_q, scale = quantize_weight(linear.weight)
        return cls(weight_q, scale, linear.bias, use_kernel)

    def forward(self, x: Tensor) -> Tensor:
        rows = x.reshape(-1, self.in_features)
        x_q, x_scale = quantize_activation(rows)
        mm = scaled_mm if self.use_kernel else reference_mm
        out = mm(x_q, x_scale, self.weight_q, self.weight_scale, x.dtype)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, kernel={self.use_kernel}"


def quantizable(name: str, module: nn.Module) -> bool:
    """Linear layers of the repeated blocks whose shapes the FP8 kernel takes."""
    return (isinstance(module, nn.Linear) and bool(_IN_BLOCK.search(name))
            and module.in_features % _ALIGNMENT == 0 and module.out_features % _ALIGNMENT == 0)


def quantize_linears(model: nn.Module, use_kernel: bool) -> list[str]:
    """Replace, in place, every quantizable nn.Linear of `model` by an FP8Linear; returns their names."""
    names = [name for name, module in model.named_modules() if quantizable(name, module)]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        linear = getattr(parent, child)
        setattr(parent, child, FP8Linear.from_linear(linear, use_kernel))
        del linear  # drop the high-precision copy as we go: an 8B model must not hold both at once
    return names
