"""Alibaba GTE "new" as published (gte-base/large-en-v1.5, gte-multilingual-base and its reranker):
`model_type: new`, an auto_map to Alibaba-NLP/new-impl, weights with an optional `new.` prefix.

    weights                               -> GteModel / GteForSequenceClassification
    embeddings.*                          -> embeddings.*  (no token-type table when type_vocab_size is 0)
    encoder.layer.N.attention.qkv_proj    -> layers.N.self_attn.{q,k,v}_proj  (split in three on dim 0)
    attention.o_proj                      -> self_attn.o_proj
    mlp.up_gate_proj                      -> mlp.up_proj, mlp.gate_proj  (first half up, second half gate)
    mlp.down_proj                         -> mlp.down_proj
    attn_ln / mlp_ln                      -> post_attention_layernorm / post_mlp_layernorm
    pooler.dense, classifier              -> pooler.dense, classifier  (the reranker: tanh pooler on [CLS])

Rotary scaling `{"type": "ntk", "factor": f}` is fixed, not dynamic: new-impl builds its table once with
inverse frequencies 1 / (base * f) ** (2i / d), divided by f ** (2 / d). That is transformers' `linear`
rope over base * f with factor f ** (2 / d), which GteModel runs natively.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from builder.errors import BuildError
from builder.families import Family, Published
from builder.families.staging import (
    Weights,
    check_names,
    copy_side_files,
    read_weights,
    require,
    strip_prefix,
    write_config,
    write_weights,
)

FIXED = {"position_embedding_type": "rope", "layer_norm_type": "layer_norm", "logn_attention_scale": False}
ARCHITECTURES = {"NewModel": ("GteModel", "AutoModel", ""),
                 "NewForSequenceClassification": ("GteForSequenceClassification",
                                                  "AutoModelForSequenceClassification", "gte.")}
RENAMES = [
    (r"^encoder\.layer\.(\d+)\.attention\.o_proj\.", r"layers.\1.self_attn.o_proj."),
    (r"^encoder\.layer\.(\d+)\.attention\.([qkv])_proj\.", r"layers.\1.self_attn.\2_proj."),  # pack_qkv: false
    (r"^encoder\.layer\.(\d+)\.mlp\.down_proj\.", r"layers.\1.mlp.down_proj."),
    (r"^encoder\.layer\.(\d+)\.attn_ln\.", r"layers.\1.post_attention_layernorm."),
    (r"^encoder\.layer\.(\d+)\.mlp_ln\.", r"layers.\1.post_mlp_layernorm."),
    (r"^(embeddings\.(word_embeddings|token_type_embeddings|LayerNorm)\.)", r"\1"),
    (r"^(pooler\.dense\.)", r"\1"),
]
FUSED = {re.compile(r"^encoder\.layer\.(\d+)\.attention\.qkv_proj\.(weight|bias)$"):
         ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
         re.compile(r"^encoder\.layer\.(\d+)\.mlp\.up_gate_proj\.(weight|bias)$"): ("mlp.up_proj", "mlp.gate_proj")}
UNUSED = re.compile(r"^lm_head\.")


def matches(published: Published) -> bool:
    return published.config.get("model_type") == "new"


def _architecture(config: dict[str, Any]) -> tuple[str, str, str]:
    architecture = (config.get("architectures") or ["NewModel"])[0]
    if architecture not in ARCHITECTURES:
        raise BuildError(f"GTE: {architecture} is not served; Trident serves {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture]


def rope_parameters(config: dict[str, Any]) -> dict[str, Any]:
    base = float(config.get("rope_theta", 10000.0))
    scaling = config.get("rope_scaling")
    if not scaling:
        return {"rope_type": "default", "rope_theta": base}
    if scaling.get("type") != "ntk" or scaling.get("mixed_b") is not None:
        raise BuildError(f"GTE: rope_scaling {scaling} is not served; Trident serves {{'type': 'ntk', 'factor': f}}")
    factor = float(scaling["factor"])
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    return {"rope_type": "linear", "rope_theta": base * factor, "factor": factor ** (2 / head_dim)}


def native_config(config: dict[str, Any]) -> dict[str, Any]:
    for key, expected in FIXED.items():
        require(config, key, expected, "GTE")
    native_class = _architecture(config)[0]
    kept = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
            "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "vocab_size", "pad_token_id",
            "num_labels", "id2label", "label2id", "initializer_range", "classifier_dropout")
    native = {key: config[key] for key in kept if key in config}
    native.update(model_type="gte", architectures=[native_class], rope_parameters=rope_parameters(config),
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return native


def native_weights(weights: Weights, prefix: str) -> Weights:
    converted: Weights = {}
    for name, tensor in strip_prefix(weights, ("new.",)).items():
        if name.startswith("classifier."):
            converted[name] = tensor
            continue
        fused = next(((match, parts) for pattern, parts in FUSED.items() if (match := pattern.match(name))), None)
        if fused is not None:
            match, parts = fused
            for part, chunk in zip(parts, tensor.chunk(len(parts), dim=0), strict=True):
                converted[f"{prefix}layers.{match[1]}.{part}.{match[2]}"] = chunk
            continue
        if UNUSED.match(name):
            continue
        for pattern, replacement in RENAMES:
            renamed, count = re.subn(pattern, replacement, name)
            if count:
                converted[prefix + renamed] = tensor
                break
        else:
            raise BuildError(f"GTE: unexpected weight {name!r} in the published checkpoint")
    return converted


def convert(published: Published, dest: Path) -> None:
    config = native_config(published.config)
    _, auto_class, prefix = _architecture(published.config)
    copy_side_files(published.folder, dest)
    write_config(dest, config)
    weights = native_weights(read_weights(published.folder), prefix)
    if not prefix:  # an embedder checkpoint may still carry its pretraining pooler: GteModel has none
        weights = {name: tensor for name, tensor in weights.items() if not name.startswith("pooler.")}
    check_names(dest, weights, "GTE", auto_class)
    write_weights(dest, weights)


FAMILY = Family('Alibaba GTE "new" (model_type new)', "GteModel / GteForSequenceClassification", matches, convert)
