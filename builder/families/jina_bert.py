"""Jina-BERT v2 as published (jina-embeddings-v2-small/base-*, -code, jina-reranker-v1): `model_type: bert`,
`position_embedding_type: alibi`, an auto_map to jinaai/jina-bert-implementation (or -v2-qk-post-norm).

transformers has no class for it: the converted checkpoint is Trident's own `trident_jina_bert`
(trident/models/jina_bert.py), which keeps the published weight names. The conversion only writes the
config, tells the qk-post-norm layout from its weight names (`mlp.up_gated_layer`), drops what an embedder
does not run (the MLM head, the pooler) and settles the `bert.` prefix: none for embedders, `bert.` under a
JinaBertForSequenceClassification's classifier.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from builder.errors import BuildError
from builder.families import Family, Published
from builder.families.staging import (
    Weights,
    check_names,
    copy_side_files,
    read_weights,
    strip_prefix,
    write_config,
    write_weights,
)
from trident.models.jina_bert import ACTIVATIONS

CLASSIFIER = "JinaBertForSequenceClassification"
KEPT = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
        "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id", "initializer_range",
        "num_labels", "id2label", "label2id")


def matches(published: Published) -> bool:
    return published.config.get("model_type") == "bert" and published.config.get("position_embedding_type") == "alibi"


def is_classifier(config: dict[str, Any]) -> bool:
    return (config.get("architectures") or [""])[0] == CLASSIFIER


def native_config(config: dict[str, Any], qk_post_norm: bool) -> dict[str, Any]:
    feed_forward = config.get("feed_forward_type", "geglu")
    if feed_forward not in ACTIVATIONS:
        raise BuildError(f"Jina-BERT: feed_forward_type {feed_forward!r} is not served; Trident serves "
                         f"{', '.join(ACTIVATIONS)}")
    native = {key: config[key] for key in KEPT if key in config}
    native.update(model_type="trident_jina_bert", feed_forward_type=feed_forward, qk_post_norm=qk_post_norm,
                  architectures=["TridentJinaBertForSequenceClassification" if is_classifier(config)
                                 else "TridentJinaBertModel"],
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return native


def native_weights(weights: Weights, classifier: bool) -> Weights:
    base = strip_prefix(weights, ("bert.",))
    if classifier:
        return {name if name.startswith("classifier.") else f"bert.{name}": tensor for name, tensor in base.items()}
    return {name: tensor for name, tensor in base.items() if not name.startswith(("cls.", "pooler."))}


def convert(published: Published, dest: Path) -> None:
    weights = read_weights(published.folder)
    qk_post_norm = any(".mlp.up_gated_layer." in name for name in weights)
    classifier = is_classifier(published.config)
    copy_side_files(published.folder, dest)
    write_config(dest, native_config(published.config, qk_post_norm))
    weights = native_weights(weights, classifier)
    check_names(dest, weights, "Jina-BERT", "AutoModelForSequenceClassification" if classifier else "AutoModel")
    write_weights(dest, weights)


FAMILY = Family("Jina-BERT v2 (bert with ALiBi)", "Trident's own TridentJinaBertModel (trident/models/jina_bert.py)",
                matches, convert)
