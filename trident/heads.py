"""The embedding head as sentence-transformers writes it: the modules after the Transformer, in order.

A head is a list of plain dicts, carried in the manifest:

    {"type": "Pooling", "mode": "mean" | "cls" | "lasttoken"}
    {"type": "Dense", "path": "2_Dense", "in_features": 768, "out_features": 256, "bias": true,
     "activation": "Tanh"}                       # weights in <checkpoint>/<path>/, as the module saved them
    {"type": "Normalize"}                        # last only: normalization stays a per-request choice

Pooling and the Dense modules run inside the engine (exported into the graph, or in the torch engine:
`trident.torch_engine.head`); a final Normalize runs in the postprocess stage, where a request may turn
it off (TEI's `normalize=false`).

A sparse (SPLADE) model's head is its SpladePooling alone, over the masked-language-model logits:

    {"type": "SpladePooling", "strategy": "max" | "sum", "activation": "relu" | "log1p_relu"}
"""

from __future__ import annotations

from typing import Any

POOLINGS = ("cls", "mean", "lasttoken")
# sentence-transformers' SpladePooling: log1p(activation(logits)) pooled over the tokens.
SPLADE_STRATEGIES = ("max", "sum")
SPLADE_ACTIVATIONS = ("relu", "log1p_relu")  # log1p_relu: one more log1p (OpenSearch's SPLADE models)
# torch.nn activations a Dense module may name (sentence-transformers saves the class's import path).
DENSE_ACTIVATIONS = ("Identity", "Tanh", "ReLU", "GELU", "Sigmoid", "SiLU")

Head = list[dict[str, Any]]


class HeadError(ValueError):
    """A module list the engines cannot reproduce."""


def pooling(mode: str) -> dict[str, Any]:
    if mode not in POOLINGS:
        raise HeadError(f"unknown pooling {mode!r}; expected one of {', '.join(POOLINGS)}")
    return {"type": "Pooling", "mode": mode}


def simple_head(mode: str, normalize: bool = False) -> Head:
    """Pooling, then Normalize if asked: the head of most embedding checkpoints."""
    return [pooling(mode), *([{"type": "Normalize"}] if normalize else [])]


def splade_pooling(strategy: str, activation: str) -> dict[str, Any]:
    if strategy not in SPLADE_STRATEGIES:
        raise HeadError(f"unknown SpladePooling strategy {strategy!r}; expected one of {', '.join(SPLADE_STRATEGIES)}")
    if activation not in SPLADE_ACTIVATIONS:
        raise HeadError(f"unknown SpladePooling activation {activation!r}; expected one of "
                        f"{', '.join(SPLADE_ACTIVATIONS)}")
    return {"type": "SpladePooling", "strategy": strategy, "activation": activation}


def check(head: Head) -> Head:
    """Pooling first, then Dense modules, then at most one Normalize, last: what the engines run. Or a
    SpladePooling alone."""
    if head and head[0].get("type") == "SpladePooling":
        if len(head) != 1:
            raise HeadError("SpladePooling must be the only module after the encoder")
        splade_pooling(head[0].get("strategy"), head[0].get("activation"))
        return head
    if not head or head[0].get("type") != "Pooling":
        raise HeadError("an embedding head starts with a Pooling module")
    pooling(head[0]["mode"])
    for index, module in enumerate(head[1:], start=1):
        kind = module.get("type")
        if kind == "Normalize" and index != len(head) - 1:
            raise HeadError("Normalize must be the last module of the head")
        if kind == "Dense" and module.get("activation") not in DENSE_ACTIVATIONS:
            raise HeadError(f"Dense activation {module.get('activation')!r} is not supported; "
                            f"supported: {', '.join(DENSE_ACTIVATIONS)}")
        if kind not in ("Dense", "Normalize"):
            raise HeadError(f"module {kind!r} cannot follow Pooling; supported: Dense, Normalize")
    return head


def is_sparse(head: Head) -> bool:
    return bool(head) and head[0].get("type") == "SpladePooling"


def pooling_mode(head: Head) -> str | None:
    """"cls", "mean", "lasttoken", or "splade" (TEI's name for SPLADE pooling)."""
    if is_sparse(head):
        return "splade"
    return head[0]["mode"] if head else None


def normalizes(head: Head) -> bool:
    return bool(head) and head[-1].get("type") == "Normalize"


def dense_modules(head: Head) -> Head:
    return [module for module in head if module.get("type") == "Dense"]


def output_dim(head: Head, hidden_size: int) -> int:
    """The width of the head's output: the last Dense module's, else the encoder's."""
    dense = dense_modules(head)
    return int(dense[-1]["out_features"]) if dense else hidden_size
