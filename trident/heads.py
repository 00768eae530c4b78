"""The embedding head as sentence-transformers writes it: the modules after the Transformer, in order.

A head is a list of plain dicts, carried in the manifest:

    {"type": "Pooling", "mode": "mean" | "cls" | "lasttoken"}
    {"type": "Dense", "path": "2_Dense", "in_features": 768, "out_features": 256, "bias": true,
     "activation": "Tanh"}                       # weights in <checkpoint>/<path>/, as the module saved them
    {"type": "Normalize"}                        # last only: normalization stays a per-request choice

Pooling and the Dense modules run inside the engine (exported into the graph, or in the torch engine:
`trident.head_layers`); a final Normalize runs in the postprocess stage, where a request may turn
it off (TEI's `normalize=false`).

A sparse (SPLADE) model's head is its SpladePooling alone, over the masked-language-model logits:

    {"type": "SpladePooling", "strategy": "max" | "sum", "activation": "relu" | "log1p_relu"}

A multi-vector (ColBERT-style) model's head works token by token: Dense modules (in the engine), at most
one Normalize (in postprocess), and last the MultiVectorMask, which says which tokens score:

    {"type": "MultiVectorMask", "skiplist_ids": [ids], "skiplist_tasks": ["document"]}
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


def multi_vector_mask(skiplist_ids: list[int], skiplist_tasks: list[str]) -> dict[str, Any]:
    unknown = sorted(set(skiplist_tasks) - {"query", "document"})
    if unknown:
        raise HeadError(f"MultiVectorMask skiplist_tasks {unknown} are not query or document")
    return {"type": "MultiVectorMask", "skiplist_ids": sorted({int(i) for i in skiplist_ids}),
            "skiplist_tasks": sorted(set(skiplist_tasks))}


def check(head: Head) -> Head:
    """Pooling first, then Dense modules, then at most one Normalize, last: what the engines run. Or a
    SpladePooling alone; or, token by token, Dense modules and at most one Normalize before a MultiVectorMask."""
    if is_multi_vector(head):
        kinds = [module.get("type") for module in head[:-1]]
        if any(kind not in ("Dense", "Normalize") for kind in kinds) or "Normalize" in kinds[:-1]:
            raise HeadError(f"a multi-vector head is Dense modules, at most one Normalize, then MultiVectorMask; "
                            f"got {' -> '.join(map(str, [*kinds, 'MultiVectorMask']))}")
        _check_dense(head[:-1])
        multi_vector_mask(head[-1].get("skiplist_ids", []), head[-1].get("skiplist_tasks", []))
        return head
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
        if kind not in ("Dense", "Normalize"):
            raise HeadError(f"module {kind!r} cannot follow Pooling; supported: Dense, Normalize")
    _check_dense(head)
    return head


def _check_dense(head: Head) -> None:
    for module in dense_modules(head):
        if module.get("activation") not in DENSE_ACTIVATIONS:
            raise HeadError(f"Dense activation {module.get('activation')!r} is not supported; "
                            f"supported: {', '.join(DENSE_ACTIVATIONS)}")


def is_sparse(head: Head) -> bool:
    return bool(head) and head[0].get("type") == "SpladePooling"


def is_multi_vector(head: Head) -> bool:
    return bool(head) and head[-1].get("type") == "MultiVectorMask"


def token_mask(head: Head) -> dict[str, Any] | None:
    """A multi-vector head's MultiVectorMask."""
    return head[-1] if is_multi_vector(head) else None


def pooling_mode(head: Head) -> str | None:
    """"cls", "mean", "lasttoken", or "splade" (TEI's name for SPLADE pooling); None: no pooling."""
    if is_sparse(head):
        return "splade"
    return head[0]["mode"] if head and head[0].get("type") == "Pooling" else None


def normalizes(head: Head) -> bool:
    """The head ends with Normalize (before a multi-vector head's mask)."""
    modules = head[:-1] if is_multi_vector(head) else head
    return bool(modules) and modules[-1].get("type") == "Normalize"


def dense_modules(head: Head) -> Head:
    return [module for module in head if module.get("type") == "Dense"]


def output_dim(head: Head, hidden_size: int) -> int:
    """The width of the head's output: the last Dense module's, else the encoder's."""
    dense = dense_modules(head)
    return int(dense[-1]["out_features"]) if dense else hidden_size
