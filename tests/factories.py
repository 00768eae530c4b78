"""Tiny, deterministic Hugging Face checkpoints for tests: real file layouts, random weights, no network."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
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
