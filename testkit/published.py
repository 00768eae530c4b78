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


# --- Nomic-BERT ---

NOMIC_PROMPTS = {"query": "search_query: ", "document": "search_document: ", "classification": "classification: ",
                 "clustering": "clustering: "}
NOMIC_AUTO_MAP = {"AutoConfig": "nomic-ai/nomic-bert-2048--configuration_hf_nomic_bert.NomicBertConfig",
                  "AutoModel": "nomic-ai/nomic-bert-2048--modeling_hf_nomic_bert.NomicBertModel",
                  "AutoModelForMaskedLM": "nomic-ai/nomic-bert-2048--modeling_hf_nomic_bert.NomicBertForPreTraining"}
NOMIC_TRAINED_POSITIONS = 2048


def make_nomic(root: Path, *, seed: int = 0, rotary_scaling_factor: float | None = None,
               native_config_only: bool = False) -> PublishedModel:
    """nomic-embed-text-v1.5's layout: GPT-2-style keys, fused Wqkv, fc11/fc12/fc2, emb_ln / norm1 / norm2,
    bert-base-uncased's tokenizer kind, mean pooling, 8192 positions, its task prefixes as prompts.

    `rotary_scaling_factor` (dynamic NTK past 2048 tokens): the reference is transformers' own `dynamic`
    rope, whose trained length is max_position_embeddings. `native_config_only`: the converted config that
    transformers reads natively, over the original weight names (transformers renames them at load)."""
    from transformers import NomicBertConfig, NomicBertModel

    from testkit.factories import _write_sentence_transformers, make_tokenizer

    native = root / "native"
    native.mkdir(parents=True)
    vocab_size = len(make_tokenizer(native, model_max_length=8192))
    rope = {"rope_type": "default", "rope_theta": 1000.0}
    positions = 8192
    if rotary_scaling_factor:
        rope = {**rope, "rope_type": "dynamic", "factor": rotary_scaling_factor}
        positions = NOMIC_TRAINED_POSITIONS
    config = NomicBertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=64, max_position_embeddings=positions, type_vocab_size=2,
                             rope_parameters=rope, initializer_range=0.2, layer_norm_eps=1e-12)
    torch.manual_seed(seed)
    model = NomicBertModel(config).eval()
    _randomize_norms(model, seed)
    model.save_pretrained(native)
    _write_sentence_transformers(native, dim=32, pooling="mean", normalize=True, max_seq_length=8192)
    _set_prompts(native, NOMIC_PROMPTS)
    published = root / "published"
    _copy_as_published(native, published)
    write_weights(published, nomic_published_weights(model.state_dict()))
    if native_config_only:
        write_config(published, {**read_config(native), "max_position_embeddings": 8192})
        return PublishedModel(published, native)
    write_config(published, {
        "model_type": "nomic_bert", "architectures": ["NomicBertModel"], "auto_map": NOMIC_AUTO_MAP,
        "activation_function": "swiglu", "n_embd": 32, "n_head": 4, "n_layer": 2, "n_inner": 64,
        "n_positions": 8192, "max_trained_positions": NOMIC_TRAINED_POSITIONS, "vocab_size": vocab_size,
        "type_vocab_size": 2, "layer_norm_epsilon": 1e-12, "rotary_emb_base": 1000, "rotary_emb_fraction": 1.0,
        "rotary_emb_interleaved": False, "rotary_emb_scale_base": None, "rotary_scaling_factor": rotary_scaling_factor,
        "qkv_proj_bias": False, "mlp_fc1_bias": False, "mlp_fc2_bias": False, "prenorm": False,
        "use_rms_norm": False, "parallel_block": False, "causal": False, "pad_vocab_size_multiple": 64,
        "initializer_range": 0.02, "use_flash_attn": True, "fused_bias_fc": True, "torch_dtype": "float32",
    })
    return PublishedModel(published, native)


def nomic_published_weights(native: Weights) -> Weights:
    """NomicBertModel's names -> the names in nomic-embed-text-v1.5's model.safetensors."""
    out: Weights = {}
    layers = {int(name.split(".")[1]) for name in native if name.startswith("layers.")}
    for i in sorted(layers):
        source, target = f"layers.{i}.", f"encoder.layers.{i}."
        out[target + "attn.Wqkv.weight"] = torch.cat(
            [native[source + f"self_attn.{p}_proj.weight"] for p in "qkv"], dim=0)
        out[target + "attn.out_proj.weight"] = native[source + "self_attn.o_proj.weight"]
        for published_name, native_name in (("mlp.fc11", "mlp.up_proj"), ("mlp.fc12", "mlp.gate_proj"),
                                            ("mlp.fc2", "mlp.down_proj")):
            out[f"{target}{published_name}.weight"] = native[f"{source}{native_name}.weight"]
        for published_name, native_name in (("norm1", "post_attention_layernorm"), ("norm2", "post_mlp_layernorm")):
            for kind in ("weight", "bias"):
                out[f"{target}{published_name}.{kind}"] = native[f"{source}{native_name}.{kind}"]
    for kind in ("weight", "bias"):
        out[f"emb_ln.{kind}"] = native[f"embeddings.LayerNorm.{kind}"]
    for table in ("word_embeddings", "token_type_embeddings"):
        out[f"embeddings.{table}.weight"] = native[f"embeddings.{table}.weight"]
    return out


def loads_published_weights(model: PublishedModel, auto_class: str = "AutoModel") -> torch.nn.Module:
    """transformers' own renaming (conversion_mapping.py) of the published weights under the native config:
    a check of the writers above against transformers, independent of Trident's conversion."""
    import tempfile

    import transformers

    with tempfile.TemporaryDirectory() as folder:
        shutil.copyfile(model.native / "config.json", Path(folder) / "config.json")
        shutil.copyfile(model.published / "model.safetensors", Path(folder) / "model.safetensors")
        loaded = getattr(transformers, auto_class).from_pretrained(folder, dtype=torch.float32)
    return loaded.eval()


# --- Alibaba GTE "new" ---

GTE_AUTO_MAP = {"AutoConfig": "Alibaba-NLP/new-impl--configuration.NewConfig",
                "AutoModel": "Alibaba-NLP/new-impl--modeling.NewModel",
                "AutoModelForMaskedLM": "Alibaba-NLP/new-impl--modeling.NewForMaskedLM",
                "AutoModelForSequenceClassification": "Alibaba-NLP/new-impl--modeling.NewForSequenceClassification"}
GTE_NTK_FACTOR = 2.0
GTE_ROPE_THETA = 500000.0


def make_gte(root: Path, *, seed: int = 0, reranker: bool = False) -> PublishedModel:
    """gte-base-en-v1.5's layout (BERT tokenizer, no token-type table, NTK factor 2, CLS pooling), or with
    `reranker` gte-multilingual-reranker-base's (XLM-R tokenizer, one token type, `new.` prefix, tanh pooler and
    classifier). The native reference has default rope: its NTK frequencies are the test's to set
    (`gte_ntk_inv_freq`)."""
    from transformers import GteConfig, GteForSequenceClassification, GteModel

    from testkit.factories import make_tokenizer

    native = root / "native"
    native.mkdir(parents=True)
    if reranker:
        ids = FAMILIES["xlm-roberta"].tokenizer(native, 8192)
        vocab_size, pad, type_vocab_size = ids["vocab_size"], ids["pad_token_id"], 1
    else:
        vocab_size, pad, type_vocab_size = len(make_tokenizer(native, model_max_length=8192)), 0, 0
    config = GteConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, max_position_embeddings=8192, type_vocab_size=type_vocab_size,
                       pad_token_id=pad, hidden_act="gelu", layer_norm_eps=1e-12, initializer_range=0.2,
                       rope_parameters={"rope_type": "default", "rope_theta": GTE_ROPE_THETA},
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                       num_labels=1, id2label={0: "LABEL_0"}, label2id={"LABEL_0": 0})
    torch.manual_seed(seed)
    model = (GteForSequenceClassification(config) if reranker else GteModel(config)).eval()
    _randomize_norms(model, seed)
    model.save_pretrained(native)
    if not reranker:
        from testkit.factories import _write_sentence_transformers

        _write_sentence_transformers(native, dim=32, pooling="cls", normalize=True, max_seq_length=8192)
    published = root / "published"
    _copy_as_published(native, published)
    write_weights(published, gte_published_weights(model.state_dict(), reranker))
    published_config = {
        "model_type": "new", "architectures": ["NewForSequenceClassification" if reranker else "NewModel"],
        "auto_map": GTE_AUTO_MAP, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 64, "hidden_act": "gelu", "max_position_embeddings": 8192,
        "type_vocab_size": type_vocab_size, "vocab_size": vocab_size, "pad_token_id": pad,
        "layer_norm_eps": 1e-12, "layer_norm_type": "layer_norm", "position_embedding_type": "rope",
        "rope_theta": GTE_ROPE_THETA, "rope_scaling": None if reranker else {"type": "ntk", "factor": GTE_NTK_FACTOR},
        "logn_attention_scale": False, "logn_attention_clip1": False, "pack_qkv": True, "unpad_inputs": False,
        "use_memory_efficient_attention": False, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02, "classifier_dropout": None, "torch_dtype": "float32",
    }
    if reranker:
        published_config.update(num_labels=1, id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    write_config(published, published_config)
    return PublishedModel(published, native)


def gte_published_weights(native: Weights, reranker: bool) -> Weights:
    """GteModel / GteForSequenceClassification's names -> new-impl's (NewModel, NewForSequenceClassification)."""
    out: Weights = {}
    source_prefix, target_prefix = ("gte.", "new.") if reranker else ("", "")
    layers = {int(name.split(".")[1 + bool(source_prefix)]) for name in native if ".layers." in f".{name}"}
    for i in sorted(layers):
        source, target = f"{source_prefix}layers.{i}.", f"{target_prefix}encoder.layer.{i}."
        for kind in ("weight", "bias"):
            out[f"{target}attention.qkv_proj.{kind}"] = torch.cat(
                [native[f"{source}self_attn.{p}_proj.{kind}"] for p in "qkv"], dim=0)
            out[f"{target}attention.o_proj.{kind}"] = native[f"{source}self_attn.o_proj.{kind}"]
            out[f"{target}mlp.down_proj.{kind}"] = native[f"{source}mlp.down_proj.{kind}"]
            out[f"{target}attn_ln.{kind}"] = native[f"{source}post_attention_layernorm.{kind}"]
            out[f"{target}mlp_ln.{kind}"] = native[f"{source}post_mlp_layernorm.{kind}"]
        out[f"{target}mlp.up_gate_proj.weight"] = torch.cat(
            [native[f"{source}mlp.up_proj.weight"], native[f"{source}mlp.gate_proj.weight"]], dim=0)
    for name, tensor in native.items():
        if name.startswith(f"{source_prefix}embeddings.") or name.startswith(f"{source_prefix}pooler."):
            out[target_prefix + name.removeprefix(source_prefix)] = tensor
        elif name.startswith("classifier."):
            out[name] = tensor
    return out


def gte_ntk_inv_freq(head_dim: int, base: float = GTE_ROPE_THETA, factor: float = GTE_NTK_FACTOR) -> Tensor:
    """new-impl's NTKScalingRotaryEmbedding, as its code reads: base * factor, then / factor ** (2 / dim)."""
    inv_freq = 1.0 / ((base * factor) ** (torch.arange(0, head_dim, 2).float() / head_dim))
    return inv_freq / factor ** (2 / head_dim)


# --- LLM rerankers: Qwen3-Reranker ---


def _qwen_chat_tokenizer(out_dir: Path) -> dict[str, int]:
    """Qwen3's kind: byte-level BPE over a corpus that has "yes" and "no" as whole tokens, the chat specials,
    <think> / </think> as added tokens, ByteLevel post-processing only (no EOS appended), left padding."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from testkit.factories import _corpus, _save_tokenizer

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    extra = ["yes", "no", "yes no yes no yes no", "Instruct Query Document system user assistant answer",
             "Judge whether the Document meets the requirements based on the Query"] * 20
    tok.train_from_iterator(_corpus() + extra, trainer=trainer)
    tok.add_tokens(["<think>", "</think>"])
    _save_tokenizer(tok, out_dir, special={"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
                    input_names=["input_ids", "attention_mask"], padding_side="left", model_max_length=32768)
    return {"vocab_size": tok.get_vocab_size(), "eos_token_id": tok.token_to_id("<|im_end|>")}


def make_qwen3_reranker(root: Path, *, seed: int = 0) -> Path:
    """Qwen3-Reranker's published form: `Qwen3ForCausalLM` (tied embeddings, as the 0.6B), no
    sentence-transformers files, no pad_token_id in its config, a folder named like the hub's. The
    reference is the folder itself: transformers loads it natively; the scoring recipe is the model card's."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    folder = root / "Qwen3-Reranker-tiny"
    folder.mkdir(parents=True)
    ids = _qwen_chat_tokenizer(folder)
    config = Qwen3Config(**_tiny_decoder(), **ids, tie_word_embeddings=True, rope_parameters={
        "rope_type": "default", "rope_theta": 1000000.0})
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config).eval()
    _randomize_norms(model, seed)
    model.save_pretrained(folder)
    saved = read_config(folder)
    saved.pop("pad_token_id", None)
    write_config(folder, saved)
    return folder


# --- Jina-BERT v2 ---

JINA_V2_AUTO_MAP = {"AutoConfig": "jinaai/jina-bert-implementation--configuration_bert.JinaBertConfig",
                    "AutoModel": "jinaai/jina-bert-implementation--modeling_bert.JinaBertModel",
                    "AutoModelForMaskedLM": "jinaai/jina-bert-implementation--modeling_bert.JinaBertForMaskedLM",
                    "AutoModelForSequenceClassification":
                        "jinaai/jina-bert-implementation--modeling_bert.JinaBertForSequenceClassification"}
JINA_V2_CODE_AUTO_MAP = {key: value.replace("jina-bert-implementation", "jina-bert-v2-qk-post-norm")
                         for key, value in JINA_V2_AUTO_MAP.items()}
# Six heads: not a power of two, so the slopes' second half (every other slope of 8 heads) counts.
JINA_V2_SHAPE = {"hidden_size": 48, "num_attention_heads": 6, "num_hidden_layers": 2, "intermediate_size": 64}


def make_jina_v2(root: Path, *, seed: int = 0, qk_post_norm: bool = False, reranker: bool = False) -> Path:
    """jina-embeddings-v2-base-en's layout (or -base-code's qk-post-norm one, or jina-reranker-v1's
    JinaBertForSequenceClassification): random weights under the published names, BERT's tokenizer kind,
    8192 positions. There is no native class: the folder is its own reference (see the tests' functional
    implementation)."""
    from testkit.factories import _write_sentence_transformers, make_tokenizer

    folder = root / ("jina-reranker-v1-tiny" if reranker else "jina-embeddings-v2-tiny")
    folder.mkdir(parents=True)
    vocab_size = len(make_tokenizer(folder, model_max_length=8192))
    generator = torch.Generator().manual_seed(seed)
    hidden, inner = JINA_V2_SHAPE["hidden_size"], JINA_V2_SHAPE["intermediate_size"]

    def matrix(rows: int, cols: int) -> Tensor:
        return 0.2 * torch.randn(rows, cols, generator=generator)

    def vector(size: int, around: float = 0.0) -> Tensor:
        return around + 0.1 * torch.randn(size, generator=generator)

    weights: Weights = {"embeddings.word_embeddings.weight": matrix(vocab_size, hidden),
                        "embeddings.token_type_embeddings.weight": matrix(2, hidden)}

    def linear(name: str, rows: int, cols: int, bias: bool = True) -> None:
        weights[f"{name}.weight"] = matrix(rows, cols)
        if bias:
            weights[f"{name}.bias"] = vector(rows)

    def layer_norm(name: str) -> None:
        weights[f"{name}.weight"], weights[f"{name}.bias"] = vector(hidden, 1.0), vector(hidden)

    layer_norm("embeddings.LayerNorm")
    for i in range(JINA_V2_SHAPE["num_hidden_layers"]):
        prefix = f"encoder.layer.{i}."
        for part in ("query", "key", "value"):
            linear(f"{prefix}attention.self.{part}", hidden, hidden)
        linear(f"{prefix}attention.output.dense", hidden, hidden)
        layer_norm(f"{prefix}attention.output.LayerNorm")
        if qk_post_norm:
            layer_norm(f"{prefix}attention.self.layer_norm_q")
            layer_norm(f"{prefix}attention.self.layer_norm_k")
            linear(f"{prefix}mlp.up_gated_layer", 2 * inner, hidden, bias=False)
            linear(f"{prefix}mlp.down_layer", hidden, inner)
            layer_norm(f"{prefix}layer_norm_1")
            layer_norm(f"{prefix}layer_norm_2")
        else:
            linear(f"{prefix}mlp.gated_layers", 2 * inner, hidden, bias=False)
            linear(f"{prefix}mlp.wo", hidden, inner)
            layer_norm(f"{prefix}mlp.layernorm")
    linear("pooler.dense", hidden, hidden)
    if reranker:
        weights = {f"bert.{name}": tensor for name, tensor in weights.items()}
        linear("classifier", 1, hidden)
    write_weights(folder, weights)
    write_config(folder, {
        "model_type": "bert", "architectures": ["JinaBertForSequenceClassification" if reranker
                                                else "JinaBertForMaskedLM"],
        "auto_map": JINA_V2_CODE_AUTO_MAP if qk_post_norm else JINA_V2_AUTO_MAP, **JINA_V2_SHAPE,
        "vocab_size": vocab_size, "type_vocab_size": 2, "max_position_embeddings": 8192, "model_max_length": 8192,
        "position_embedding_type": "alibi", "feed_forward_type": "geglu", "hidden_act": "gelu", "emb_pooler": "mean",
        "layer_norm_eps": 1e-12, "pad_token_id": 0, "attn_implementation": "torch", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02, "classifier_dropout": None,
        **({"num_labels": 1, "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}} if reranker else {}),
    })
    if not reranker:
        _write_sentence_transformers(folder, dim=hidden, pooling="mean", normalize=True, max_seq_length=8192)
    return folder


# --- jina-embeddings-v3 ---

JINA_V3_TASKS = ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"]
JINA_V3_INSTRUCTIONS = {"retrieval.query": "Represent the query for retrieving evidence documents: ",
                        "retrieval.passage": "Represent the document for retrieval: ",
                        "separation": "", "classification": "", "text-matching": ""}
JINA_V3_AUTO_MAP = {
    "AutoConfig": "jinaai/xlm-roberta-flash-implementation--configuration_xlm_roberta.XLMRobertaFlashConfig",
    "AutoModel": "jinaai/xlm-roberta-flash-implementation--modeling_lora.XLMRobertaLoRA",
    "AutoModelForMaskedLM": "jinaai/xlm-roberta-flash-implementation--modeling_xlm_roberta.XLMRobertaForMaskedLM"}
JINA_V3_RANK = 4
JINA_V3_ALPHA = 1


def make_jina_v3(root: Path, *, seed: int = 0) -> PublishedModel:
    """jina-embeddings-v3's layout: XLM-R tokenizer, rotary (theta 20000), fused Wqkv, five LoRA adapters stacked on
    dim 0 in torch parametrization form under `roberta.`, its task instructions in config.json. The native
    reference holds the base weights only (JinaEmbeddingsV3Model has no adapters); the published adapters are
    in `published/model.safetensors`, for the tests to merge."""
    from transformers import JinaEmbeddingsV3Config, JinaEmbeddingsV3Model

    from testkit.factories import _write_sentence_transformers

    native = root / "native"
    native.mkdir(parents=True)
    ids = FAMILIES["xlm-roberta"].tokenizer(native, 8194)
    config = JinaEmbeddingsV3Config(vocab_size=ids["vocab_size"], hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=64, max_position_embeddings=8194,
                                    type_vocab_size=1, pad_token_id=ids["pad_token_id"], layer_norm_eps=1e-5,
                                    rope_parameters={"rope_type": "default", "rope_theta": 20000.0},
                                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.2)
    torch.manual_seed(seed)
    model = JinaEmbeddingsV3Model(config, add_pooling_layer=False).eval()
    _randomize_norms(model, seed)
    model.save_pretrained(native)
    _write_sentence_transformers(native, dim=32, pooling="mean", normalize=True, max_seq_length=8194)
    published = root / "published"
    _copy_as_published(native, published)
    write_weights(published, jina_v3_published_weights(model.state_dict(), seed))
    write_config(published, {
        "model_type": "xlm-roberta", "architectures": ["XLMRobertaModel"], "auto_map": JINA_V3_AUTO_MAP,
        "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
        "hidden_act": "gelu", "vocab_size": ids["vocab_size"], "type_vocab_size": 1, "max_position_embeddings": 8194,
        "pad_token_id": ids["pad_token_id"], "bos_token_id": 0, "eos_token_id": 2, "layer_norm_eps": 1e-5,
        "position_embedding_type": "rotary", "rotary_emb_base": 20000.0, "lora_adaptations": JINA_V3_TASKS,
        "lora_rank": JINA_V3_RANK, "lora_alpha": JINA_V3_ALPHA, "lora_dropout_p": 0.0, "load_trained_adapters": True,
        "task_instructions": JINA_V3_INSTRUCTIONS, "matryoshka_dimensions": [8, 16, 32], "emb_pooler": None,
        "use_flash_attn": True, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "torch_dtype": "float32",
    })
    return PublishedModel(published, native)


def jina_v3_published_weights(native: Weights, seed: int) -> Weights:
    """JinaEmbeddingsV3Model's names -> xlm-roberta-flash-implementation's, every linear layer and embedding table
    parametrized: `original` plus random adapters (lora_A [tasks, r, in] and lora_B [tasks, out, r]; for tables
    lora_A [tasks, rows, r] and lora_B [tasks, r, dim])."""
    generator = torch.Generator().manual_seed(seed + 7)
    tasks = len(JINA_V3_TASKS)
    out: Weights = {}

    def parametrized(name: str, weight: Tensor, table: bool = False) -> None:
        rows, cols = weight.shape
        out[f"roberta.{name}.parametrizations.weight.original"] = weight
        a_shape, b_shape = ((tasks, rows, JINA_V3_RANK), (tasks, JINA_V3_RANK, cols)) if table else \
            ((tasks, JINA_V3_RANK, cols), (tasks, rows, JINA_V3_RANK))
        out[f"roberta.{name}.parametrizations.weight.0.lora_A"] = 0.3 * torch.randn(a_shape, generator=generator)
        out[f"roberta.{name}.parametrizations.weight.0.lora_B"] = 0.3 * torch.randn(b_shape, generator=generator)

    for table in ("word_embeddings", "token_type_embeddings"):
        parametrized(f"embeddings.{table}", native[f"embeddings.{table}.weight"], table=True)
    for kind in ("weight", "bias"):
        out[f"roberta.emb_ln.{kind}"] = native[f"embeddings.LayerNorm.{kind}"]
    layers = {int(name.split(".")[1]) for name in native if name.startswith("layers.")}
    for i in sorted(layers):
        source, target = f"layers.{i}.", f"encoder.layers.{i}."
        parametrized(target + "mixer.Wqkv", torch.cat([native[f"{source}self_attn.{p}_proj.weight"] for p in "qkv"]))
        out[f"roberta.{target}mixer.Wqkv.bias"] = torch.cat([native[f"{source}self_attn.{p}_proj.bias"] for p in "qkv"])
        parametrized(target + "mixer.out_proj", native[f"{source}self_attn.o_proj.weight"])
        out[f"roberta.{target}mixer.out_proj.bias"] = native[f"{source}self_attn.o_proj.bias"]
        for fc in ("fc1", "fc2"):
            parametrized(f"{target}mlp.{fc}", native[f"{source}mlp.{fc}.weight"])
            out[f"roberta.{target}mlp.{fc}.bias"] = native[f"{source}mlp.{fc}.bias"]
        for published_name, native_name in (("norm1", "post_attention_layernorm"), ("norm2", "post_mlp_layernorm")):
            for kind in ("weight", "bias"):
                out[f"roberta.{target}{published_name}.{kind}"] = native[f"{source}{native_name}.{kind}"]
    parametrized("pooler.dense", 0.2 * torch.randn(32, 32, generator=generator))  # published, never used to embed
    out["roberta.pooler.dense.bias"] = torch.zeros(32)
    return out


# Qwen3-Reranker's model card: its prompt around "<Instruct>: ...\n<Query>: ...\n<Document>: ..." and its default
# instruction, as the card's `format_instruction` / `process_inputs` write them (for the tests' reference).
QWEN3_RERANKER_CARD_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n')
QWEN3_RERANKER_CARD_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
QWEN3_RERANKER_CARD_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def qwen3_reranker_card_scores(folder: Path, query: str, documents: list[str], instruction: str | None = None
                               ) -> tuple[list[float], list[float]]:
    """The model card's recipe, each pair alone: (yes probabilities, yes - no logits) at the last token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    prefix = tokenizer.encode(QWEN3_RERANKER_CARD_PREFIX, add_special_tokens=False)
    suffix = tokenizer.encode(QWEN3_RERANKER_CARD_SUFFIX, add_special_tokens=False)
    probabilities, log_odds = [], []
    with torch.inference_mode():
        for document in documents:
            middle = (f"<Instruct>: {instruction or QWEN3_RERANKER_CARD_INSTRUCTION}\n<Query>: {query}\n"
                      f"<Document>: {document}")
            ids = prefix + tokenizer(middle)["input_ids"] + suffix
            last = model(input_ids=torch.tensor([ids])).logits[0, -1]
            pair = torch.stack([last[no], last[yes]])
            probabilities.append(float(torch.softmax(pair, dim=0)[1]))
            log_odds.append(float(pair[1] - pair[0]))
    return probabilities, log_odds


# --- BGE-M3 (FlagEmbedding): an XLM-RoBERTa encoder, CLS + Normalize, colbert_linear.pt and sparse_linear.pt ---

BGE_M3_COLBERT_DIM = 16  # BAAI/bge-m3's is its hidden size; another width shows it is read from the weights


def make_bge_m3(root: Path, *, seed: int = 0, colbert_dim: int = BGE_M3_COLBERT_DIM, max_seq_length: int = 64) -> Path:
    """BAAI/bge-m3's layout as FlagEmbedding publishes it: the encoder folder (XLM-RoBERTa with its
    sentence-transformers files: CLS pooling, Normalize) and, beside it, `colbert_linear.pt` (Linear hidden ->
    colbert_dim) and `sparse_linear.pt` (Linear hidden -> 1), each a state dict saved with torch.save."""
    from torch import nn

    folder = make_tiny_model(root / "bge-m3", "xlm-roberta", max_seq_length=max_seq_length, seed=seed)
    _set_pooling(folder, "cls")
    hidden = read_config(folder)["hidden_size"]
    torch.manual_seed(seed + 1)
    torch.save(nn.Linear(hidden, colbert_dim).state_dict(), folder / "colbert_linear.pt")
    torch.save(nn.Linear(hidden, 1).state_dict(), folder / "sparse_linear.pt")
    return folder
