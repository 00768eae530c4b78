"""jina-embeddings-v3 as published: `model_type: xlm-roberta` with rotary positions and LoRA task adapters
(jinaai/xlm-roberta-flash-implementation), weights under `roberta.` in torch parametrization form.

    roberta.embeddings.word_embeddings.parametrizations.weight.original   -> word_embeddings.weight
    ...parametrizations.weight.0.lora_A / lora_B                          -> word_embeddings.lora_A / lora_B
    roberta.emb_ln                                                        -> emb_ln
    roberta.encoder.layers.N.mixer.Wqkv / mixer.out_proj                  -> layers.N.qkv / out_proj
    roberta.encoder.layers.N.mlp.fc1 / fc2, norm1 / norm2                 -> layers.N.fc1 / fc2, norm1 / norm2

into Trident's `trident_jina_v3` (trident/models/jina_v3.py), which runs the adapters at run time. Adapter
index 0 is none (the base weights), i the published `lora_adaptations[i - 1]`; B is stored scaled by
lora_alpha / lora_rank. The adapter index travels as the input's token type ids, so the served tokenizer
declares them. The task instructions (`task_instructions`) become the prompts of the same names when the
sentence-transformers config has none.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from builder.errors import BuildError
from builder.families import Family, Published, write_spec_fields
from builder.families.staging import Weights, check_names, copy_side_files, read_weights, write_config, write_weights

PARAMETRIZED = re.compile(r"^(?P<module>.+)\.parametrizations\.weight\.(?P<part>original|0\.lora_A|0\.lora_B)$")
RENAMES = [
    (r"^embeddings\.(word_embeddings|token_type_embeddings)$", r"\1"),
    (r"^emb_ln$", "emb_ln"),
    (r"^encoder\.layers\.(\d+)\.mixer\.Wqkv$", r"layers.\1.qkv"),
    (r"^encoder\.layers\.(\d+)\.mixer\.out_proj$", r"layers.\1.out_proj"),
    (r"^encoder\.layers\.(\d+)\.mlp\.(fc1|fc2)$", r"layers.\1.\2"),
    (r"^encoder\.layers\.(\d+)\.(norm1|norm2)$", r"layers.\1.\2"),
]


def matches(published: Published) -> bool:
    config = published.config
    return config.get("model_type") == "xlm-roberta" and config.get("position_embedding_type") == "rotary"


def native_config(config: dict[str, Any]) -> dict[str, Any]:
    kept = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "hidden_act", "layer_norm_eps", "max_position_embeddings", "pad_token_id", "bos_token_id", "eos_token_id",
            "initializer_range")
    native = {key: config[key] for key in kept if key in config}
    native.update(model_type="trident_jina_v3", architectures=["TridentJinaV3Model"], type_vocab_size=1,
                  rope_parameters={"rope_type": "default", "rope_theta": float(config.get("rotary_emb_base", 10000))},
                  adapters=list(config.get("lora_adaptations") or []), lora_rank=int(config.get("lora_rank", 4)),
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return native


def _module_name(published_module: str) -> str:
    for pattern, replacement in RENAMES:
        renamed, count = re.subn(pattern, replacement, published_module)
        if count:
            return renamed
    raise BuildError(f"jina-embeddings-v3: unexpected weight {published_module!r} in the published checkpoint")


def _with_base_adapter(stacked: torch.Tensor) -> torch.Tensor:
    """Adapter 0 is none: a zero slice in front of the published ones."""
    return torch.cat([torch.zeros_like(stacked[:1]), stacked], dim=0)


def native_weights(weights: Weights, scaling: float) -> Weights:
    converted: Weights = {}
    for name, tensor in weights.items():
        name = name.removeprefix("roberta.")
        if name.startswith("pooler."):
            continue
        if (parametrized := PARAMETRIZED.match(name)) is not None:
            module, part = _module_name(parametrized["module"]), parametrized["part"]
            if part == "original":
                converted[f"{module}.weight"] = tensor
            elif part == "0.lora_A":
                converted[f"{module}.lora_A"] = _with_base_adapter(tensor)
            else:
                converted[f"{module}.lora_B"] = _with_base_adapter(tensor.float() * scaling)
            continue
        module, kind = name.rsplit(".", 1)
        converted[f"{_module_name(module)}.{kind}"] = tensor
    return converted


def _declare_token_types(dest: Path) -> None:
    """The adapter index travels as token type ids: the served tokenizer must hand them to the engine."""
    path = dest / "tokenizer_config.json"
    settings = json.loads(path.read_text()) if path.is_file() else {}
    settings["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
    path.write_text(json.dumps(settings, indent=2) + "\n")


def _task_prompts(dest: Path, instructions: dict[str, str]) -> None:
    """Jina's `task_instructions` as sentence-transformers prompts, unless the checkpoint defines its own."""
    path = dest / "config_sentence_transformers.json"
    settings = json.loads(path.read_text()) if path.is_file() else {}
    if not settings.get("prompts") and instructions:
        settings["prompts"] = dict(instructions)
        path.write_text(json.dumps(settings, indent=2) + "\n")


def convert(published: Published, dest: Path) -> None:
    config = native_config(published.config)
    scaling = float(published.config.get("lora_alpha", 1)) / config["lora_rank"]
    copy_side_files(published.folder, dest)
    write_config(dest, config)
    weights = native_weights(read_weights(published.folder), scaling)
    check_names(dest, weights, "jina-embeddings-v3")
    write_weights(dest, weights)
    _declare_token_types(dest)
    _task_prompts(dest, published.config.get("task_instructions") or {})
    write_spec_fields(dest, {"adapters": config["adapters"]})


FAMILY = Family("jina-embeddings-v3 (xlm-roberta with rotary and LoRA adapters)",
                "Trident's own TridentJinaV3Model, adapters chosen per input (trident/models/jina_v3.py)",
                matches, convert)
