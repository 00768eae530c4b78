"""Variable-length attention for packed batches, plugged into transformers' attention interface.

A model loaded with `attn_implementation=VARLEN` and called on one packed row (`[1, tokens]`, positions
restarting per sequence) with `cu_seq_lens_q` / `max_length_q` in its kwargs attends within each sequence
only: no padding, no mask tensor. transformers passes those kwargs down to every attention layer.

- CUDA: `torch.nn.attention.varlen.varlen_attn` (FlashAttention inside PyTorch), when this torch has it.
- Elsewhere (CPU tests): scaled_dot_product_attention sequence by sequence, the reference.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

VARLEN = "trident_varlen"
# Model types whose transformers code routes attention through the interface, takes explicit position ids
# and has no attention feature the kernels lack (Gemma 2's soft-capping, MPNet's relative bias):
# each is checked against padded SDPA in tests/test_torch_engine.py.
VARLEN_MODEL_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "qwen2", "qwen3", "llama", "mistral"})


@functools.cache
def flash_kernel() -> tuple[Callable[..., Tensor] | None, frozenset[str]]:
    """torch's varlen_attn and the names of its parameters, which changed between torch versions.
    Imported on first use: the module pulls in torch._dynamo, seconds that CPU-only callers need not pay."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None, frozenset()
    return varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)


def kernel_available(device: torch.device, causal: bool, sliding_window: int | None = None) -> bool:
    """True when packed attention can run on `device` with the flash kernel (not the per-sequence loop):
    older torch versions' varlen_attn take `is_causal` and no window, newer ones `window_size`."""
    if device.type != "cuda":
        return False
    kernel, parameters = flash_kernel()
    if kernel is None:
        return False
    if sliding_window is not None:
        return "window_size" in parameters
    return not causal or bool({"window_size", "is_causal"} & parameters)


def register() -> None:
    """Make VARLEN a valid `attn_implementation` (idempotent). The mask function returns None: the
    sequence boundaries travel as cu_seqlens instead of a mask tensor."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(VARLEN, varlen_attention)
    AttentionMaskInterface.register(VARLEN, _no_mask)


def _no_mask(*args: Any, **kwargs: Any) -> None:
    return None


def varlen_attention(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """transformers' attention signature: q/k/v `[1, heads, tokens, head_dim]` -> `[1, tokens, heads, head_dim]`."""
    cu_seqlens = kwargs.get("cu_seq_lens_q")
    if cu_seqlens is None or query.shape[0] != 1:
        raise ValueError(f"{VARLEN} attention needs one packed row and cu_seq_lens_q (TorchEngine passes both)")
    if kwargs.get("softcap") is not None:
        raise ValueError(f"{VARLEN} attention has no logit soft-capping; serve this model with padded attention")
    causal = bool(getattr(module, "is_causal", False) if is_causal is None else is_causal)
    # A decoder served bidirectionally says so in its config (is_causal false); its layers still say causal.
    causal = causal and getattr(getattr(module, "config", None), "is_causal", True) is not False
    scale = scaling if scaling is not None else 1.0 / math.sqrt(query.shape[-1])
    window = kwargs.get("sliding_window")
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # [tokens, heads, head_dim]
    if query.is_cuda and flash_kernel()[0] is not None:
        out = _flash(q, k, v, cu_seqlens, int(kwargs.get("max_length_q") or 0), scale, causal, window)
    else:
        out = _reference(q, k, v, cu_seqlens, scale, causal, window)
    return out.unsqueeze(0), None


def _flash(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_len: int, scale: float, causal: bool,
           window: int | None) -> Tensor:
    """Call varlen_attn with what this torch version's signature takes; emulate what it lacks."""
    kernel, params = flash_kernel()
    extra: dict[str, Any] = {}
    if q.shape[1] != k.shape[1]:
        if "enable_gqa" in params:
            extra["enable_gqa"] = True
        else:
            k, v = (t.repeat_interleave(q.shape[1] // k.shape[1], dim=1) for t in (k, v))
    if "scale" in params:
        extra["scale"] = scale
    else:  # the kernel scales by 1/sqrt(head_dim): fold the difference into q
        q = q * (scale * math.sqrt(q.shape[-1]))
    if "window_size" in params:
        extra["window_size"] = (window - 1 if window else -1, 0 if causal else (window - 1 if window else -1))
    elif window is not None or (causal and "is_causal" not in params):
        raise ValueError("this torch's varlen_attn cannot mask this model's attention; use padded attention")
    elif causal:
        extra["is_causal"] = True
    cu = cu_seqlens.to(torch.int32)
    max_len = max_len or int((cu[1:] - cu[:-1]).max())
    return kernel(q.contiguous(), k.contiguous(), v.contiguous(), cu, cu, max_len, max_len, **extra)


def _reference(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, scale: float, causal: bool,
               window: int | None) -> Tensor:
    """SDPA one sequence at a time: slow, exact, runs anywhere. Sliding window as transformers defines it:
    query i sees keys j with i - j < window (and j <= i when causal)."""
    groups = q.shape[1] // k.shape[1]
    out = torch.empty_like(q)
    bounds = cu_seqlens.tolist()
    for start, end in itertools.pairwise(bounds):
        qs, ks, vs = (t[start:end].transpose(0, 1) for t in (q, k, v))  # [heads, len, head_dim]
        if groups > 1:
            ks, vs = ks.repeat_interleave(groups, dim=0), vs.repeat_interleave(groups, dim=0)
        mask = None
        if window is not None:
            i = torch.arange(end - start, device=q.device)
            distance = i.unsqueeze(1) - i.unsqueeze(0)
            mask = (distance < window) & ((distance >= 0) if causal else (distance > -window))
        out[start:end] = F.scaled_dot_product_attention(
            qs, ks, vs, attn_mask=mask, is_causal=causal and mask is None, scale=scale
        ).transpose(0, 1)
    return out
