"""Decoders run bidirectionally: every token sees every other, the attention mask is the padding mask only.

- nvidia/llama-embed-nemotron-8b's layout: `model_type: llama_bidirec`, `LlamaBidirectionalModel`,
  Llama weights, an auto_map to its own code, and `pooling` (`avg`, the default, `last` or `cls`).
- any Llama / Mistral / Qwen2 / Qwen3 config with `use_bidirectional_attention: true` (as TEI reads them).
  transformers' classes of these ignore that key and would run them causally.

Both become the native class with `is_causal: false`, which transformers' mask functions honour (a padding
mask in eager and SDPA alike). Gemma 2 / 3 (EmbeddingGemma) need nothing: their configs honour
`use_bidirectional_attention` natively. The weights are not touched.
"""

from __future__ import annotations

import json
from pathlib import Path

from builder.families import Family, Published
from builder.families.staging import copy_side_files, link_weights, write_config

NATIVE_TYPES = {"llama_bidirec": "llama", "llama": "llama", "mistral": "mistral", "qwen2": "qwen2", "qwen3": "qwen3"}
# The `pooling` key of llama_bidirec configs, in sentence-transformers' names.
POOLINGS = {"avg": "mean", "mean": "mean", "last": "lasttoken", "cls": "cls"}
DROPPED_KEYS = ("auto_map", "use_bidirectional_attention", "pooling")


def matches(published: Published) -> bool:
    model_type = published.config.get("model_type")
    if model_type == "llama_bidirec":
        return True
    return model_type in NATIVE_TYPES and published.config.get("use_bidirectional_attention") is True


def convert(published: Published, dest: Path) -> None:
    config = dict(published.config)
    native_type = NATIVE_TYPES[config["model_type"]]
    pooling = POOLINGS.get(str(config.get("pooling", "avg")), "mean")
    # LlamaBidirectionalModel -> LlamaModel, LlamaBidirectionalForSequenceClassification -> LlamaFor...
    architectures = config.get("architectures") or ["LlamaBidirectionalModel"]
    config.update(model_type=native_type, is_causal=False,
                  architectures=[name.replace("Bidirectional", "") for name in architectures])
    for key in DROPPED_KEYS:
        config.pop(key, None)
    copy_side_files(published.folder, dest)
    write_config(dest, config)
    link_weights(published.folder, dest)
    if not (dest / "modules.json").is_file():
        _write_pooling(dest, pooling)


def _write_pooling(dest: Path, pooling: str) -> None:
    """Without sentence-transformers files the pooling is the config's (mean by default), then normalized,
    as the published model code does; a causal decoder's last-token guess would be wrong here."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (dest / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    (dest / "1_Pooling").mkdir()
    (dest / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": pooling}) + "\n")


FAMILY = Family("a bidirectional decoder (llama_bidirec / use_bidirectional_attention)",
                "the native decoder class with is_causal false", matches, convert)
