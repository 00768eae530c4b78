"""Tiny, deterministic Hugging Face checkpoints for tests: real file layouts, random weights, no network."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
_WORD_TEXT = (
    "the a an of to and in is it that for on with as was by at be this are from or have not but "
    "what all were when we there can your which their said if will each about how up out them then "
    "she many some so these would other into has more her two like him see time could no make than "
    "first been its who now people my made over did down only way find use may water long little very "
    "after words called just where most know get through back much before go good new write our used "
    "me man too any day same right look think also around another came come work three word must because "
    "does part even place well such here take why things help put years different away again off went "
    "old number great tell men say small every found still between name should home big give air line "
    "set own under read last never us left end along while might next sound below saw something thought "
    "both few those always looked show large often together asked house don world going want school "
    "important until form food keep children feet land side without boy once animals life enough took "
    "sometimes four head above kind began almost live page got earth need far hand high year mother light "
    "parts country father let night following picture being study second eyes soon times story boys since "
    "white days paper hard near sentence better best across during today others however sure means knew "
    "quick brown fox jumps lazy dog paris london berlin tokyo google apple microsoft john mary"
)
_PIECES = ["ing", "ed", "er", "est", "ly", "s", "tion", "ness", "ment", "able", "ize", "ful", "less"]
_EXTRA_CHARS = "éèêàâçüöäïôßñ"


def _vocab() -> dict[str, int]:
    """A fixed WordPiece vocabulary: every ASCII character and its ## form, so nothing plain is [UNK]."""
    chars = [chr(c) for c in range(33, 127)] + list(_EXTRA_CHARS)
    tokens = (
        SPECIAL_TOKENS + chars + [f"##{c}" for c in chars] + [f"##{p}" for p in _PIECES] + _WORD_TEXT.split()
    )
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    return vocab


def make_tokenizer(out_dir: Path, *, model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """Save a BERT-style fast tokenizer (lowercasing, WordPiece, [CLS]/[SEP] template with pair types)."""
    vocab = _vocab()
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )
    fast.save_pretrained(out_dir)
    # transformers 5 writes its new class name; pin the portable one that every version can load.
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return fast


def _config(num_labels: int, labels: list[str] | None) -> BertConfig:
    config = BertConfig(
        vocab_size=len(_vocab()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=512,
        pad_token_id=0,
        num_labels=num_labels,
    )
    if labels is not None:
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
    return config


def _write_sentence_transformers(
    out_dir: Path, *, dim: int, pooling: str, normalize: bool, max_seq_length: int
) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
        (out_dir / "2_Normalize").mkdir(exist_ok=True)
    (out_dir / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    (out_dir / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}, indent=2) + "\n"
    )
    # Legacy boolean keys: what most published checkpoints carry, so readers must handle them anyway.
    pooling_config = {
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_lasttoken": pooling == "lasttoken",
    }
    (out_dir / "1_Pooling").mkdir(exist_ok=True)
    (out_dir / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config, indent=2) + "\n")


def make_tiny_bert(
    out_dir: Path,
    *,
    head: str = "base",
    num_labels: int | None = None,
    pooling: str = "cls",
    normalize: bool = False,
    max_seq_length: int = 128,
    seed: int = 0,
) -> Path:
    """Write a tiny random BERT checkpoint to out_dir and return it.

    head: "base" (BertModel plus sentence-transformers files), "seq-cls" (BertForSequenceClassification,
    default 3 labels) or "token-cls" (BertForTokenClassification with the CoNLL NER labels).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model: PreTrainedModel
    if head == "base":
        model = BertModel(_config(2, None))
    elif head == "seq-cls":
        n = num_labels if num_labels is not None else 3
        labels = ["score"] if n == 1 else [f"label_{i}" for i in range(n)]
        model = BertForSequenceClassification(_config(n, labels))
    elif head == "token-cls":
        labels = NER_LABELS if num_labels is None else [f"TAG_{i}" for i in range(num_labels)]
        model = BertForTokenClassification(_config(len(labels), labels))
    else:
        raise ValueError(f"unknown head {head!r}")
    model.eval().save_pretrained(out_dir)
    make_tokenizer(out_dir, model_max_length=512)
    if head == "base":
        _write_sentence_transformers(
            out_dir, dim=32, pooling=pooling, normalize=normalize, max_seq_length=max_seq_length
        )
    return out_dir


# sentence-transformers' module names for a SPLADE model, as each major version saves them.
SPLADE_LAYOUTS = {
    "6": ("sentence_transformers.base.modules.transformer.Transformer",
          "sentence_transformers.sparse_encoder.modules.splade_pooling.SpladePooling", "embedding_dimension"),
    "5": ("sentence_transformers.sparse_encoder.models.MLMTransformer",  # naver/splade-v3 and other hub models
          "sentence_transformers.sparse_encoder.models.SpladePooling", "word_embedding_dimension"),
}


def make_tiny_splade(out_dir: Path, *, layout: str = "6", strategy: str = "max", activation: str = "relu",
                     max_seq_length: int = 128, seed: int = 0) -> Path:
    """A tiny random BertForMaskedLM with SpladePooling, in the file layout sentence-transformers `layout`
    ("6" or "5") saves. Weights are spread (std 0.2) and the MLM bias lowered, so a few dozen of the ~500
    vocabulary entries are non-zero for a short text, each well away from zero."""
    from transformers import BertForMaskedLM

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = _config(2, None)
    config.initializer_range = 0.2
    model = BertForMaskedLM(config)
    with torch.no_grad():
        model.cls.predictions.bias.fill_(-2.5)
    model.eval().save_pretrained(out_dir)
    make_tokenizer(out_dir, model_max_length=512)
    transformer, pooling, dimension_key = SPLADE_LAYOUTS[layout]
    modules = [{"idx": 0, "name": "0", "path": "", "type": transformer},
               {"idx": 1, "name": "1", "path": "1_SpladePooling", "type": pooling}]
    (out_dir / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    st_config: dict[str, Any] = {"max_seq_length": max_seq_length, "do_lower_case": False}
    if layout == "6":
        st_config = {"transformer_task": "fill-mask", "module_output_name": "token_embeddings",
                     "modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
                     **st_config}
    (out_dir / "sentence_bert_config.json").write_text(json.dumps(st_config, indent=2) + "\n")
    (out_dir / "1_SpladePooling").mkdir(exist_ok=True)
    (out_dir / "1_SpladePooling" / "config.json").write_text(json.dumps(
        {"pooling_strategy": strategy, "activation_function": activation, dimension_key: None}, indent=2) + "\n")
    (out_dir / "config_sentence_transformers.json").write_text(json.dumps(
        {"model_type": "SparseEncoder", "prompts": {"query": "", "document": ""}, "default_prompt_name": None,
         "similarity_fn_name": "dot"}, indent=2) + "\n")
    return out_dir


COLBERT_PROMPTS = {"query": "[Q] ", "document": "[D] "}  # the markers, added to the vocabulary as ColBERT's are


def make_tiny_colbert(out_dir: Path, *, seed: int = 0, query_length: int | None = 12, document_length: int = 40,
                      expansion: str | None = "fixed", attend: bool = False, dim: int = 16) -> Path:
    """A tiny ColBERT-style model saved by sentence-transformers' MultiVectorEncoder itself: the tiny BERT
    with [Q] / [D] added to its vocabulary, a bias-free Dense projection to `dim` and Normalize per token,
    a MultiVectorMask skipping punctuation in documents; queries expanded with [MASK] up to 12 tokens
    (`expansion` "fixed", "min" or None; `attend`: whether the encoder attends to the expansion tokens)."""
    import string

    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask
    from transformers import AutoTokenizer

    base = make_tiny_bert(out_dir.parent / f"{out_dir.name}-base", seed=seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    tokenizer.add_tokens(["[Q]", "[D]"])
    tokenizer.save_pretrained(str(base))
    model = BertModel.from_pretrained(str(base))
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model.save_pretrained(str(base))
    query_expansion = {"strategy": expansion, "attend": attend, "length": 12} if expansion else None
    modules = [Transformer(str(base), query_length=query_length, document_length=document_length,
                           query_expansion=query_expansion),
               Dense(32, dim, bias=False, activation_function=nn.Identity(), module_input_name="token_embeddings"),
               Normalize(module_input_name="token_embeddings"),
               MultiVectorMask(skiplist_words=list(string.punctuation))]
    torch.manual_seed(seed)
    MultiVectorEncoder(modules=modules, device="cpu", prompts=COLBERT_PROMPTS).save(str(out_dir))
    return out_dir


# --- Every architecture family: tiny random checkpoints with the tokenizer layout of the real ones ---

# initializer_range 0.2, not 0.02: with near-zero weights attention is almost uniform and a masking or
# position bug would hide under the tolerances.
_TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
         "initializer_range": 0.2}
# Causal families: grouped-query attention (4 query heads over 2 key/value heads), like the real ones.
_TINY_CAUSAL = {**_TINY, "num_key_value_heads": 2, "head_dim": 8, "max_position_embeddings": 32768}
# Small attention windows, so short test texts already cross them.
SLIDING_WINDOW = 8
QWEN3_QUERY_PROMPT = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery: "


def _corpus() -> list[str]:
    """Text the tiny subword tokenizers are trained on: English words plus a little of everything else."""
    words = _WORD_TEXT.split()
    lines = [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
    lines += [
        "Zürich, São Paulo, Kraków: naïve café déjà vu, Straße, façade. résumé coöperate",
        "东京は日本の首都です。Москва — столица России. مرحبا بالعالم. नमस्ते दुनिया 빠른 갈색 여우",
        "Hello, world! 3.14159 2024-01-01 $1,000,000 someone@example.com https://example.org/a?b=c",
        "Transformers process text as sequences of subword tokens; truncation happens past the maximum.",
    ]
    return lines * 3


def _train(tok: Tokenizer, trainer: object) -> Tokenizer:
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return tok


def _byte_level_bpe(special_tokens: list[str], vocab_size: int = 700) -> Tokenizer:
    """GPT-2 / RoBERTa / Qwen / Llama 3 style: byte-level BPE, so no text is ever unknown."""
    from tokenizers import trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    return _train(tok, trainer)


def _metaspace_bpe(special_tokens: list[str], vocab_size: int = 700) -> Tokenizer:
    """SentencePiece-BPE style (Mistral, Gemma): `▁` marks spaces, unknown characters become <unk>."""
    from tokenizers import trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens, show_progress=False)
    return _train(tok, trainer)


def _unigram(special_tokens: list[str]) -> Tokenizer:
    """XLM-R style: SentencePiece Unigram over Metaspace, with "<unk>" among `special_tokens`.

    The pieces are listed, not trained: Unigram training is not deterministic, and a checkpoint that
    changes bytes on every run would never hit the build cache.
    """
    words = _WORD_TEXT.split()
    chars = [chr(c) for c in range(33, 127)] + list(_EXTRA_CHARS + "京東日本の首都ですМосквастолицаРи")
    pieces = [*(f"▁{w}" for w in words), *_PIECES, "▁", *chars, *(f"▁{c}" for c in chars)]
    scored = [(token, 0.0) for token in special_tokens]
    scored += [(piece, -1.0 - i / len(pieces)) for i, piece in enumerate(dict.fromkeys(pieces))]
    tok = Tokenizer(models.Unigram(scored, unk_id=special_tokens.index("<unk>")))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.add_special_tokens(special_tokens)
    return tok


def _wordpiece(special_tokens: list[str]) -> Tokenizer:
    """BERT-style lowercasing WordPiece over the fixed vocabulary, with `special_tokens` first."""
    vocab: dict[str, int] = {}
    for token in [*special_tokens, *_vocab()]:
        vocab.setdefault(token, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    return tok


def _template(tok: Tokenizer, single: str, pair: str) -> None:
    """Post-processor adding the special tokens named in the templates, with their ids in `tok`."""
    names = {word.split(":")[0] for word in f"{single} {pair}".split() if not word.startswith("$")}
    tok.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(name, tok.token_to_id(name)) for name in sorted(names)]
    )


def _save_tokenizer(
    tok: Tokenizer, out_dir: Path, *, special: dict[str, str], input_names: list[str], padding_side: str,
    model_max_length: int,
) -> None:
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=model_max_length, padding_side=padding_side,
                                   model_input_names=input_names, **special)
    fast.save_pretrained(out_dir)
    # transformers 5 writes its new class name; pin the portable one that every version can load.
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.update(tokenizer_class="PreTrainedTokenizerFast", model_input_names=input_names, padding_side=padding_side)
    config_path.write_text(json.dumps(config, indent=2) + "\n")


_NO_TYPES = ["input_ids", "attention_mask"]
_ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
_ROBERTA_SPECIAL_MAP = {"bos_token": "<s>", "cls_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>",
                        "sep_token": "</s>", "unk_token": "<unk>", "mask_token": "<mask>"}


def _roberta_tokenizer(out_dir: Path, max_len: int) -> dict[str, int]:
    tok = _byte_level_bpe(_ROBERTA_SPECIALS)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), add_prefix_space=False)
    _save_tokenizer(tok, out_dir, special=_ROBERTA_SPECIAL_MAP, input_names=_NO_TYPES, padding_side="right",
                    model_max_length=max_len)
    return {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "vocab_size": tok.get_vocab_size()}


def _xlm_roberta_tokenizer(out_dir: Path, max_len: int) -> dict[str, int]:
    tok = _unigram(["<s>", "<pad>", "</s>", "<unk>"])
    tok.add_special_tokens(["<mask>"])
    _template(tok, "<s> $A </s>", "<s> $A </s> </s> $B </s>")
    _save_tokenizer(tok, out_dir, special=_ROBERTA_SPECIAL_MAP, input_names=_NO_TYPES, padding_side="right",
                    model_max_length=max_len)
    return {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "vocab_size": tok.get_vocab_size()}


_BERT_SPECIAL_MAP = {"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                     "mask_token": "[MASK]"}


def _distilbert_tokenizer(out_dir: Path, max_len: int) -> dict[str, int]:
    tok = _wordpiece(SPECIAL_TOKENS)
    _template(tok, "[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1")
    _save_tokenizer(tok, out_dir, special=_BERT_SPECIAL_MAP, input_names=_NO_TYPES, padding_side="right",
                    model_max_length=max_len)
    return {"pad_token_id": 0, "vocab_size": tok.get_vocab_size()}


def _mpnet_tokenizer(out_dir: Path, max_len: int) -> dict[str, int]:
    """MPNet: BERT's lowercasing WordPiece, RoBERTa's <s>/</s> template and padding id 1, no token types."""
    tok = _wordpiece(["<s>", "<pad>", "</s>", "<unk>", "[UNK]", "<mask>"])
    _template(tok, "<s> $A </s>", "<s> $A </s> </s> $B </s>")
    special = {**_ROBERTA_SPECIAL_MAP, "unk_token": "[UNK]"}
    _save_tokenizer(tok, out_dir, special=special, input_names=_NO_TYPES, padding_side="right",
                    model_max_length=max_len)
    return {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "vocab_size": tok.get_vocab_size()}


def _modernbert_tokenizer(out_dir: Path, max_len: int) -> dict[str, int]:
    """ModernBERT: OLMo's byte-level BPE with BERT's [CLS]/[SEP] template, no token types."""
    tok = _byte_level_bpe(["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"])
    _template(tok, "[CLS] $A [SEP]", "[CLS] $A [SEP] $B [SEP]")
    _save_tokenizer(tok, out_dir, special=_BERT_SPECIAL_MAP, input_names=_NO_TYPES, padding_side="right",
                    model_max_length=max_len)
    ids = {name: tok.token_to_id(token) for name, token in
           (("pad_token_id", "[PAD]"), ("bos_token_id", "[CLS]"), ("eos_token_id", "[SEP]"),
            ("cls_token_id", "[CLS]"), ("sep_token_id", "[SEP]"))}
    return {**ids, "vocab_size": tok.get_vocab_size()}


def _causal_tokenizer(
    out_dir: Path, max_len: int, *, tok: Tokenizer, bos: str | None, eos: str, pad: str, append_eos: bool,
    padding_side: str, extra: dict[str, str] | None = None,
) -> dict[str, int]:
    """Decoder tokenizers: optional BOS in front and, like Qwen3-Embedding's, EOS appended by the post-processor."""
    prefix = f"{bos} " if bos else ""
    suffix = f" {eos}" if append_eos else ""
    if prefix or suffix:
        _template(tok, f"{prefix}$A{suffix}", f"{prefix}$A{suffix} {prefix}$B:1{suffix}:1")
    special = {"eos_token": eos, "pad_token": pad, **({"bos_token": bos} if bos else {}), **(extra or {})}
    _save_tokenizer(tok, out_dir, special=special, input_names=_NO_TYPES, padding_side=padding_side,
                    model_max_length=max_len)
    ids = {"pad_token_id": tok.token_to_id(pad), "eos_token_id": tok.token_to_id(eos)}
    ids["bos_token_id"] = tok.token_to_id(bos) if bos else None
    return {**ids, "vocab_size": tok.get_vocab_size()}


def _qwen_tokenizer(append_eos: bool, padding_side: str):
    def make(out_dir: Path, max_len: int) -> dict[str, int]:
        tok = _byte_level_bpe(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        return _causal_tokenizer(out_dir, max_len, tok=tok, bos=None, eos="<|endoftext|>", pad="<|endoftext|>",
                                 append_eos=append_eos, padding_side=padding_side)
    return make


def _llama_tokenizer(out_dir: Path, max_len: int) -> dict[str, int]:
    """Llama 3: byte-level BPE, <|begin_of_text|> in front; pad is the EOS (Llama has no pad token)."""
    tok = _byte_level_bpe(["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"])
    return _causal_tokenizer(out_dir, max_len, tok=tok, bos="<|begin_of_text|>", eos="<|end_of_text|>",
                             pad="<|end_of_text|>", append_eos=True, padding_side="left")


def _mistral_tokenizer(out_dir: Path, max_len: int) -> dict[str, int]:
    """Mistral (e5-mistral style): SentencePiece BPE, <s> in front and </s> appended, right padding."""
    tok = _metaspace_bpe(["<unk>", "<s>", "</s>"])
    return _causal_tokenizer(out_dir, max_len, tok=tok, bos="<s>", eos="</s>", pad="</s>", append_eos=True,
                             padding_side="right", extra={"unk_token": "<unk>"})


def _gemma_tokenizer(out_dir: Path, max_len: int) -> dict[str, int]:
    """Gemma: SentencePiece BPE with <pad>=0, <eos>=1, <bos>=2 in front and <eos> appended."""
    tok = _metaspace_bpe(["<pad>", "<eos>", "<bos>", "<unk>"])
    return _causal_tokenizer(out_dir, max_len, tok=tok, bos="<bos>", eos="<eos>", pad="<pad>", append_eos=True,
                             padding_side="left", extra={"unk_token": "<unk>"})


@dataclass(frozen=True)
class Family:
    """One architecture family: its config (tiny), tokenizer layout and sentence-transformers pooling."""

    model_type: str
    config: dict[str, Any]
    tokenizer: Callable[[Path, int], dict[str, int]]
    pooling: str
    causal: bool = False
    prompts: dict[str, str] = field(default_factory=dict)


FAMILIES: dict[str, Family] = {
    "bert": Family("bert", {"max_position_embeddings": 512},
                   lambda out, n: {"pad_token_id": 0, "vocab_size": len(make_tokenizer(out, model_max_length=n))},
                   "cls"),
    "roberta": Family("roberta", {"max_position_embeddings": 514}, _roberta_tokenizer, "mean"),
    "xlm-roberta": Family("xlm-roberta", {"max_position_embeddings": 514}, _xlm_roberta_tokenizer, "cls"),
    "distilbert": Family("distilbert", {"dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 64,
                                        "max_position_embeddings": 512}, _distilbert_tokenizer, "mean"),
    "mpnet": Family("mpnet", {"max_position_embeddings": 514}, _mpnet_tokenizer, "mean"),
    # Layer 0 global, layer 1 local over a window of 2 * SLIDING_WINDOW tokens, like every third layer of the real one.
    "modernbert": Family("modernbert", {"max_position_embeddings": 8192, "local_attention": 2 * SLIDING_WINDOW,
                                        "global_attn_every_n_layers": 2}, _modernbert_tokenizer, "mean"),
    "qwen2": Family("qwen2", _TINY_CAUSAL, _qwen_tokenizer(append_eos=False, padding_side="right"), "lasttoken",
                    causal=True),
    "qwen3": Family("qwen3", _TINY_CAUSAL, _qwen_tokenizer(append_eos=True, padding_side="left"), "lasttoken",
                    causal=True, prompts={"query": QWEN3_QUERY_PROMPT, "document": ""}),
    "llama": Family("llama", _TINY_CAUSAL, _llama_tokenizer, "lasttoken", causal=True),
    "mistral": Family("mistral", {**_TINY_CAUSAL, "sliding_window": SLIDING_WINDOW}, _mistral_tokenizer,
                      "lasttoken", causal=True),
    # Attention soft-capping at 2 (50 in the real one), so that a graph without it fails parity.
    "gemma2": Family("gemma2", {**_TINY_CAUSAL, "sliding_window": SLIDING_WINDOW, "query_pre_attn_scalar": 8,
                                "attn_logit_softcapping": 2.0,
                                "layer_types": ["sliding_attention", "full_attention"]},
                     _gemma_tokenizer, "lasttoken", causal=True),
    "gemma3_text": Family("gemma3_text", {**_TINY_CAUSAL, "sliding_window": SLIDING_WINDOW,
                                          "query_pre_attn_scalar": 8,
                                          "layer_types": ["sliding_attention", "full_attention"]},
                          _gemma_tokenizer, "lasttoken", causal=True),
}


def make_tiny_model(
    out_dir: Path,
    family: str,
    *,
    head: str = "base",
    num_labels: int | None = None,
    max_seq_length: int = 64,
    normalize: bool = True,
    seed: int = 0,
) -> Path:
    """Write a tiny random checkpoint of `family` (a FAMILIES key) to out_dir and return it.

    head: "base" (the bare model plus sentence-transformers files: pooling, normalize, max_seq_length,
    prompts), "seq-cls" (`*ForSequenceClassification`, default 1 label: a reranker) or "token-cls"
    (`*ForTokenClassification` with the CoNLL NER labels).
    """
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification

    spec = FAMILIES[family]
    out_dir.mkdir(parents=True, exist_ok=True)
    token_ids = spec.tokenizer(out_dir, max_seq_length)
    config = AutoConfig.for_model(spec.model_type, **{**_TINY, **spec.config, **token_ids})
    model_class: Any = AutoModel
    if head == "seq-cls":
        n = num_labels if num_labels is not None else 1
        _set_labels(config, ["score"] if n == 1 else [f"label_{i}" for i in range(n)])
        model_class = AutoModelForSequenceClassification
    elif head == "token-cls":
        _set_labels(config, NER_LABELS if num_labels is None else [f"TAG_{i}" for i in range(num_labels)])
        model_class = AutoModelForTokenClassification
    elif head != "base":
        raise ValueError(f"unknown head {head!r}")
    torch.manual_seed(seed)
    model = model_class.from_config(config, dtype=torch.float32)
    _randomize_norms(model, seed)
    model.eval().save_pretrained(out_dir)
    if head == "base":
        _write_sentence_transformers(out_dir, dim=32, pooling=spec.pooling, normalize=normalize,
                                     max_seq_length=max_seq_length)
        if spec.prompts:
            st_config = {"prompts": spec.prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"}
            (out_dir / "config_sentence_transformers.json").write_text(json.dumps(st_config, indent=2) + "\n")
    return out_dir


def _set_labels(config: Any, labels: list[str]) -> None:
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}


def _randomize_norms(model: nn.Module, seed: int) -> None:
    """Norm weights start at exactly 1 (or 0 for Gemma's 1 + w); jitter them so a missed scale shows up."""
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name.lower() and parameter.ndim == 1:
                parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))


def sharpen_head(checkpoint: Path, scale: float, outside_bias: float | None = None) -> Path:
    """Rewrite a tiny classification checkpoint with its output layer scaled by `scale`.

    Random heads give nearly equal logits (every reranker score ~0.503, every NER label ~1/9), so
    orders and argmaxes would hinge on 1e-6 differences; scaled, scores spread and NER labels vary by
    token. `outside_bias` (token classification) biases label 0 ("O") so entities come and go.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification

    architecture = AutoConfig.from_pretrained(checkpoint).architectures[0]
    loader = AutoModelForTokenClassification if "Token" in architecture else AutoModelForSequenceClassification
    model = loader.from_pretrained(checkpoint, dtype=torch.float32)
    head = model.classifier.out_proj if hasattr(model.classifier, "out_proj") else model.classifier
    with torch.no_grad():
        head.weight.mul_(scale)
        if outside_bias is not None:
            head.bias.zero_()
            head.bias[0] = outside_bias
    model.eval().save_pretrained(checkpoint)
    return checkpoint
