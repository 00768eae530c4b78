"""BGE-M3 as FlagEmbedding publishes it: an encoder folder (XLM-RoBERTa, or any BERT-family model) with two
torch Linear layers saved beside it,

    colbert_linear.pt   hidden -> colbert dim (BGE-M3: hidden): each token's ColBERT vector, CLS left out
    sparse_linear.pt    hidden -> 1: each token's lexical weight, relu(w . h + b)

and the dense vector the CLS hidden state, normalized (FlagEmbedding's `BGEM3FlagModel`, whatever the
sentence-transformers files beside them say). The three come out of one engine graph (builder.export); the
postprocess turns them into FlagEmbedding's answers (trident.task_stages.HybridStage).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builder.errors import BuildError

COLBERT_FILE = "colbert_linear.pt"
SPARSE_FILE = "sparse_linear.pt"
# The special tokens FlagEmbedding drops from the lexical weights (`_process_token_weights`), where the
# tokenizer has them.
SKIPPED_TOKENS = ("cls_token", "eos_token", "pad_token", "unk_token")


def is_hybrid(model_dir: Path) -> bool:
    return (model_dir / COLBERT_FILE).is_file() and (model_dir / SPARSE_FILE).is_file()


def linear_weights(model_dir: Path, name: str) -> dict[str, Any]:
    """A saved Linear's state dict (`weight` [out, in], `bias` [out])."""
    import torch

    try:
        weights = torch.load(model_dir / name, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle that is not a plain state dict, a truncated file
        raise BuildError(f"{model_dir / name} is not a saved Linear state dict: {exc}") from None
    if not isinstance(weights, dict) or weights.get("weight") is None or weights["weight"].ndim != 2:
        raise BuildError(f"{model_dir / name} must hold a Linear's `weight` [out, in] (and `bias`)")
    return weights


def linear(model_dir: Path, name: str):
    """The saved Linear as a torch module, float32."""
    from torch import nn

    weights = linear_weights(model_dir, name)
    out_features, in_features = weights["weight"].shape
    layer = nn.Linear(in_features, out_features, bias=weights.get("bias") is not None)
    layer.load_state_dict({key: value.float() for key, value in weights.items() if key in ("weight", "bias")})
    return layer.eval()


def hybrid_fields(model_dir: Path, tokenizer: Any, hidden_size: int) -> dict[str, Any]:
    """ModelSpec.hybrid: the ColBERT width (from its weights) and the ids that carry no lexical weight."""
    colbert, sparse = (linear_weights(model_dir, name)["weight"].shape for name in (COLBERT_FILE, SPARSE_FILE))
    if colbert[1] != hidden_size or tuple(sparse) != (1, hidden_size):
        raise BuildError(f"{model_dir}: {COLBERT_FILE} must take the encoder's {hidden_size} features and "
                         f"{SPARSE_FILE} map them to 1; got {tuple(colbert)} and {tuple(sparse)}")
    skip = {getattr(tokenizer, f"{name}_id", None) for name in SKIPPED_TOKENS}
    return {"colbert_dim": int(colbert[0]), "sparse_skip_ids": sorted(int(i) for i in skip if i is not None)}
