"""Reading a multi-vector (ColBERT-style) checkpoint in sentence-transformers' MultiVectorEncoder layout:

    modules.json   Transformer -> Dense (on token_embeddings)* -> Normalize? -> MultiVectorMask
    sentence_bert_config.json   query_length, document_length, query_expansion (the Transformer's knobs)
    <n>_MultiVectorMask/config.json   skiplist_words, skiplist_tasks, keep_only_token_ids

into the head (trident.heads) and the spec's `sides` (trident.multi_vector). PyLate's and Stanford's own
layouts (query_prefix, artifact.metadata) are not read: load them once with MultiVectorEncoder and save.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builder.errors import BuildError
from trident import heads

TOKEN_LEVEL = "token_embeddings"  # the features key a multi-vector model's Dense and Normalize work on


def is_multi_vector(modules: list[tuple[str, str]], st_config: dict[str, Any]) -> bool:
    return any(kind == "MultiVectorMask" for _, kind in modules) or st_config.get("model_type") == "MultiVectorEncoder"


def multi_vector_head(model_dir: Path, modules: list[tuple[str, str]], tokenizer: Any) -> heads.Head:
    """Dense and Normalize modules working token by token, then the MultiVectorMask with its skiplist as ids."""
    from builder.inspect import dense_module, read_json  # inspect calls here: imported when needed

    head: heads.Head = []
    masks = []
    for path, kind in modules:
        config = (read_json(model_dir / path / "config.json") or {}) if path else {}
        if kind in ("Dense", "Normalize") and config.get("module_input_name", TOKEN_LEVEL) != TOKEN_LEVEL:
            raise BuildError(f"{model_dir / path}: a multi-vector model's {kind} must work on {TOKEN_LEVEL}, "
                             f"not {config['module_input_name']}")
        if kind == "Dense":
            head.append(dense_module(model_dir, path))
        elif kind == "Normalize":
            head.append({"type": "Normalize"})
        elif kind == "MultiVectorMask":
            masks.append(config)
        elif kind not in ("Transformer",):
            raise BuildError(f"{model_dir}/modules.json: module {kind} cannot be part of a multi-vector model")
    if len(masks) != 1:
        raise BuildError(f"{model_dir}/modules.json: a multi-vector model ends with one MultiVectorMask, "
                         f"found {len(masks)}")
    if masks[0].get("keep_only_token_ids"):
        raise BuildError(f"{model_dir}: MultiVectorMask keep_only_token_ids (image-patch documents) is not supported")
    try:
        return heads.check([*head, heads.multi_vector_mask(skiplist_ids(masks[0].get("skiplist_words") or [],
                                                                        tokenizer),
                                                           masks[0].get("skiplist_tasks") or ["document"])])
    except heads.HeadError as exc:
        raise BuildError(f"{model_dir}/modules.json: {exc}") from None


def skiplist_ids(words: list[str], tokenizer: Any) -> list[int]:
    """The skiplist's single-token words as ids; words the vocabulary lacks (they would be [UNK]) are dropped,
    as sentence-transformers drops them."""
    unk = tokenizer.unk_token_id
    ids = []
    for word in words:
        token_id = tokenizer.convert_tokens_to_ids(word)
        if token_id is not None and (token_id != unk or word == tokenizer.unk_token):
            ids.append(int(token_id))
    return ids


def read_sides(st_config: dict[str, Any], tokenizer: Any, padding_side: str) -> dict[str, Any]:
    """query_length, document_length and the query expansion (its token as an id: [MASK], else EOS)."""
    expansion = st_config.get("query_expansion")
    sides: dict[str, Any] = {"query_length": st_config.get("query_length"),
                             "document_length": st_config.get("document_length"), "expansion": None}
    if expansion:
        strategy, length = expansion.get("strategy"), expansion.get("length")
        if strategy not in ("fixed", "min") or not isinstance(length, int) or length < 1:
            raise BuildError(f"query_expansion {expansion} needs strategy fixed or min and a positive length")
        token = expansion.get("token")
        token_id = tokenizer.convert_tokens_to_ids(token) if token else tokenizer.mask_token_id
        token_id = tokenizer.eos_token_id if token_id is None else token_id
        if token_id is None:
            raise BuildError("query_expansion has no token and the tokenizer has neither a mask nor an EOS token")
        attend = bool(expansion.get("attend", False))
        if not attend and padding_side == "left":
            raise BuildError("query_expansion without attend needs a right-padded tokenizer: the expansion tokens "
                             "keep their positions while nothing attends to them")
        sides["expansion"] = {"strategy": strategy, "attend": attend, "length": length, "token_id": int(token_id)}
    return sides
