"""Nomic-BERT as published (nomic-embed-text-v1, v1.5): GPT-2-style config keys, flash-attn weight names.

    config                      -> NomicBertConfig
    n_embd, n_head, n_layer     -> hidden_size, num_attention_heads, num_hidden_layers
    n_inner, n_positions        -> intermediate_size, max_position_embeddings
    layer_norm_epsilon          -> layer_norm_eps
    rotary_emb_base             -> rope_parameters.rope_theta
    rotary_scaling_factor       -> dynamic NTK past max_trained_positions (Trident's per-sequence class)

    weights                     -> NomicBertModel
    emb_ln                      -> embeddings.LayerNorm
    encoder.layers.N.attn.Wqkv  -> layers.N.self_attn.{q,k,v}_proj (split in three on dim 0)
    attn.out_proj               -> self_attn.o_proj
    mlp.fc11 / fc12 / fc2       -> mlp.up_proj / gate_proj / down_proj   (y = fc2(fc11(x) * silu(fc12(x))))
    norm1 / norm2               -> post_attention_layernorm / post_mlp_layernorm

The native class has no biases in attention or MLP, post-norm layers, full rotate-half rotary: published
settings that leave that shape (biases, prenorm, partial or interleaved rotary, the v2 mixture of experts)
are refused by name. A folder already in the native layout (hidden_size, no auto_map) needs no conversion.
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

ACTIVATIONS = {"swiglu": "silu"}
# Published settings the native class has no room for, and the only value it reproduces.
FIXED = {"rotary_emb_fraction": 1.0, "rotary_emb_interleaved": False, "qkv_proj_bias": False,
         "mlp_fc1_bias": False, "mlp_fc2_bias": False, "prenorm": False, "use_rms_norm": False,
         "parallel_block": False, "rotary_emb_scale_base": None, "moe_every_n_layers": 0}
RENAMES = [
    (r"^emb_ln\.", "embeddings.LayerNorm."),
    (r"^encoder\.layers\.(\d+)\.attn\.out_proj\.", r"layers.\1.self_attn.o_proj."),
    (r"^encoder\.layers\.(\d+)\.mlp\.fc11\.", r"layers.\1.mlp.up_proj."),
    (r"^encoder\.layers\.(\d+)\.mlp\.fc12\.", r"layers.\1.mlp.gate_proj."),
    (r"^encoder\.layers\.(\d+)\.mlp\.fc2\.", r"layers.\1.mlp.down_proj."),
    (r"^encoder\.layers\.(\d+)\.norm1\.", r"layers.\1.post_attention_layernorm."),
    (r"^encoder\.layers\.(\d+)\.norm2\.", r"layers.\1.post_mlp_layernorm."),
    (r"^(embeddings\.(word|token_type)_embeddings\.)", r"\1"),
]
FUSED_QKV = re.compile(r"^encoder\.layers\.(\d+)\.attn\.Wqkv\.weight$")
# Heads of pretraining checkpoints that an embedder does not run.
UNUSED = re.compile(r"^(pooler\.|cls\.|lm_head\.)")


def matches(published: Published) -> bool:
    return published.config.get("model_type") == "nomic_bert" and "n_embd" in published.config


def native_config(config: dict[str, Any]) -> dict[str, Any]:
    for key, expected in FIXED.items():
        require(config, key, expected, "Nomic-BERT")
    activation = config.get("activation_function", "swiglu")
    if activation not in ACTIVATIONS:
        raise BuildError(f"Nomic-BERT: activation_function {activation!r} is not served; Trident serves "
                         f"{', '.join(ACTIVATIONS)}")
    native = {
        "model_type": "nomic_bert", "architectures": ["NomicBertModel"],
        "hidden_size": config["n_embd"], "num_attention_heads": config["n_head"],
        "num_hidden_layers": config["n_layer"], "intermediate_size": config["n_inner"],
        "max_position_embeddings": config["n_positions"], "vocab_size": config["vocab_size"],
        "type_vocab_size": config.get("type_vocab_size", 2), "hidden_act": ACTIVATIONS[activation],
        "layer_norm_eps": config.get("layer_norm_epsilon", 1e-12), "pad_token_id": config.get("pad_token_id") or 0,
        "rope_parameters": {"rope_type": "default", "rope_theta": float(config.get("rotary_emb_base", 10000))},
        "initializer_range": config.get("initializer_range", 0.02),
    }
    factor = config.get("rotary_scaling_factor")
    if factor:  # dynamic NTK past the trained length: Trident's class computes it per sequence
        native["model_type"] = "trident_nomic_bert"
        native["architectures"] = ["TridentNomicBertModel"]
        native["rope_parameters"].update(rope_type="dynamic", factor=float(factor))
        native["max_trained_positions"] = int(config["max_trained_positions"])
    return native


def native_weights(weights: Weights) -> Weights:
    converted: Weights = {}
    for name, tensor in strip_prefix(weights, ("bert.", "model.")).items():
        if (fused := FUSED_QKV.match(name)) is not None:
            for part, chunk in zip("qkv", tensor.chunk(3, dim=0), strict=True):
                converted[f"layers.{fused[1]}.self_attn.{part}_proj.weight"] = chunk
            continue
        if UNUSED.match(name):
            continue
        for pattern, replacement in RENAMES:
            renamed, count = re.subn(pattern, replacement, name)
            if count:
                converted[renamed] = tensor
                break
        else:
            raise BuildError(f"Nomic-BERT: unexpected weight {name!r} in the published checkpoint")
    return converted


def convert(published: Published, dest: Path) -> None:
    config = native_config(published.config)
    copy_side_files(published.folder, dest)
    write_config(dest, config)
    weights = native_weights(read_weights(published.folder))
    check_names(dest, weights, "Nomic-BERT")
    write_weights(dest, weights)


FAMILY = Family("Nomic-BERT (nomic_bert, n_embd / Wqkv)",
                "NomicBertModel (with rotary_scaling_factor: Trident's per-sequence TridentNomicBertModel)",
                matches, convert)
