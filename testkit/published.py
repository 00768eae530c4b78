"""Tiny random checkpoints in the layouts families publish on the hub (config keys, weight names, auto_map
to code that is not there), each beside its reference: the same weights in the layout of the transformers
class that runs them natively, saved by transformers itself.

The published names are written here from the families' published descriptions (model cards, their
configs and weight files as listed on the hub), not from Trident's conversions: a conversion that reads
them wrong fails its test. Where transformers itself loads the original weight names
(`conversion_mapping.py`), `loads_published_weights` checks these writers against it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from testkit.factories import FAMILIES, _randomize_norms, make_tiny_model

Weights = dict[str, Tensor]
EMBEDDINGGEMMA_PROMPTS = {
    "query": "task: search result | query: ",
    "document": "title: none | text: ",
    "Clustering": "task: clustering | query: ",
    "Classification": "task: classification | query: ",
    "STS": "task: sentence similarity | query: ",
    "CodeRetrieval": "task: code retrieval | query: ",
}
NEMOTRON_PROMPTS = {"query": "Instruct: Given a question, retrieve passages that answer the question\nQuery: ",
                    "document": ""}


@dataclass(frozen=True)
class PublishedModel:
    published: Path  # what a user downloads: the family's own layout
    native: Path  # the same model as transformers' native class saves it (the reference)


def read_config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "config.json").read_text())


def write_config(folder: Path, config: dict[str, Any]) -> None:
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def native_weights(folder: Path) -> Weights:
    return load_file(str(folder / "model.safetensors"))


def write_weights(folder: Path, weights: Weights) -> None:
    save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})


def _copy_as_published(native: Path, published: Path) -> None:
    """Everything but the weights, which each family writes under its own names."""
    shutil.copytree(native, published, ignore=shutil.ignore_patterns("model.safetensors"))


def _set_pooling(folder: Path, mode: str) -> None:
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": mode}) + "\n")


def _set_prompts(folder: Path, prompts: dict[str, str]) -> None:
    config = {"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"}
    (folder / "config_sentence_transformers.json").write_text(json.dumps(config, indent=2) + "\n")


# --- bidirectional decoders ---


def make_llama_bidirec(root: Path, *, seed: int = 0, sentence_transformers: bool = True) -> PublishedModel:
    """nvidia/llama-embed-nemotron-8b's layout: `llama_bidirec`, Llama weights, its code absent, mean pooling,
    the query instruction as a prompt (without sentence-transformers files: only the config's `pooling`)."""
    native = make_tiny_model(root / "native", "llama", max_seq_length=64, seed=seed)
    _set_pooling(native, "mean")
    _set_prompts(native, NEMOTRON_PROMPTS)
    published = root / "published"
    shutil.copytree(native, published)
    config = read_config(published)
    config.update(model_type="llama_bidirec", architectures=["LlamaBidirectionalModel"], pooling="avg",
                  auto_map={"AutoConfig": "llama_bidirectional_model.LlamaBidirectionalConfig",
                            "AutoModel": "llama_bidirectional_model.LlamaBidirectionalModel"})
    write_config(published, config)
    if not sentence_transformers:
        for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"):
            (published / name).unlink()
        shutil.rmtree(published / "1_Pooling")
        shutil.rmtree(published / "2_Normalize")
    return PublishedModel(published, native)


def make_bidirectional_flag(root: Path, family: str, *, seed: int = 0) -> PublishedModel:
    """A Llama / Mistral / Qwen2 / Qwen3 config that says `use_bidirectional_attention: true` (TEI's key)."""
    native = make_tiny_model(root / "native", family, max_seq_length=64, seed=seed)
    _set_pooling(native, "mean")
    published = root / "published"
    shutil.copytree(native, published)
    write_config(published, {**read_config(published), "use_bidirectional_attention": True})
    return PublishedModel(published, native)


# --- EmbeddingGemma: Gemma3TextModel, bidirectional, Pooling(mean) -> Dense -> Dense -> Normalize ---


def make_embedding_gemma(root: Path, *, seed: int = 0) -> Path:
    """EmbeddingGemma's shape at hidden 32: Dense 32 -> 128 -> 32 without bias, its prompts, saved by
    sentence-transformers itself (this is a native layout: no conversion, the reference is the folder)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as st
    from torch import nn
    from transformers import Gemma3TextConfig, Gemma3TextModel

    base = root / "base"
    base.mkdir(parents=True)
    ids = FAMILIES["gemma3_text"].tokenizer(base, 64)
    config = Gemma3TextConfig(**{**_tiny_decoder(), "sliding_window": 8, "query_pre_attn_scalar": 8,
                                 "layer_types": ["sliding_attention", "full_attention"],
                                 "use_bidirectional_attention": True, **ids})
    torch.manual_seed(seed)
    model = Gemma3TextModel(config).eval()
    _randomize_norms(model, seed)
    model.save_pretrained(base)
    modules = [st.Transformer(str(base), max_seq_length=64), st.Pooling(32, "mean"),
               st.Dense(32, 128, bias=False, activation_function=nn.Identity()),
               st.Dense(128, 32, bias=False, activation_function=nn.Identity()), st.Normalize()]
    folder = root / "embeddinggemma"
    model = SentenceTransformer(modules=modules, device="cpu", prompts=EMBEDDINGGEMMA_PROMPTS)
    model.save(str(folder))
    return folder


def _tiny_decoder() -> dict[str, Any]:
    return {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "head_dim": 8, "intermediate_size": 64, "max_position_embeddings": 32768, "initializer_range": 0.2}
