"""LLM rerankers as published (Qwen3-Reranker): a `*ForCausalLM` whose relevance score is the probability of
"yes" against "no" as the next token, after the model's documented prompt.

    score = softmax(logit("no"), logit("yes"))[yes] = sigmoid(h . (W["yes"] - W["no"]))

with h the last hidden state of the last token and W the LM head (the embedding table when tied). So the
converted checkpoint is the native `*ForSequenceClassification` with one label whose row is W["yes"] - W["no"]:
the engine computes one dot product per input, never a vocabulary row, and the reranker's sigmoid gives the
score (raw_scores: the log-odds).

The prompt, as Qwen3-Reranker's model card builds it (left padding, its `process_inputs`):

    prefix + tokens("<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {document}") + suffix

The fixed prefix and suffix go into the served tokenizer as a post-processor around the text, so truncation
cuts the middle and keeps them; the middle is formatted by the gateway (the spec's `rerank_prompt`), with the
request's `instruction` or the documented default.

Recognised without flags: a `*ForCausalLM` folder without sentence-transformers files whose name (or
`_name_or_path`) says rerank; `--task reranker` (or the YAML's default route /rerank) for any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from builder.errors import BuildError
from builder.families import Family, Published, write_spec_fields
from builder.families.staging import check_names, copy_side_files, read_weights, write_config, write_weights

QWEN3_RERANKER_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
QWEN3_RERANKER_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
RERANK_PROMPT = {
    "template": "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}",
    "instruction": "Given a web search query, retrieve relevant passages that answer the query",
}
ANSWERS = ("yes", "no")


def _named_rerank(published: Published) -> bool:
    """The folder's name, the hub cache's repository folder above `snapshots/<sha>`, or `_name_or_path`."""
    folder = published.folder.resolve()
    names = [folder.name, str(published.config.get("_name_or_path", ""))]
    if folder.parent.name == "snapshots":  # models--Qwen--Qwen3-Reranker-0.6B/snapshots/<sha>
        names.append(folder.parent.parent.name)
    return any("rerank" in name.lower() for name in names)


def matches(published: Published) -> bool:
    architecture = (published.config.get("architectures") or [""])[0]
    if not architecture.endswith("ForCausalLM") or (published.folder / "modules.json").is_file():
        return False
    return published.task == "reranker" or (published.task is None and _named_rerank(published))


def _classifier_architecture(architecture: str) -> str:
    import transformers

    native = architecture.removesuffix("ForCausalLM") + "ForSequenceClassification"
    if not hasattr(transformers, native):
        raise BuildError(f"LLM reranker: transformers has no {native} to serve {architecture} as a reranker")
    return native


def _answer_ids(folder: Path) -> dict[str, int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    ids = {answer: tokenizer.convert_tokens_to_ids(answer) for answer in ANSWERS}
    if any(i is None or i == tokenizer.unk_token_id for i in ids.values()):
        raise BuildError(f"LLM reranker: the tokenizer has no single token for {ANSWERS}: {ids}")
    return ids


def native_config(config: dict[str, Any], pad_token_id: int) -> dict[str, Any]:
    native = dict(config)
    native.pop("auto_map", None)
    native.update(architectures=[_classifier_architecture(config["architectures"][0])], num_labels=1,
                  id2label={"0": "yes"}, label2id={"yes": 0}, tie_word_embeddings=False)
    if native.get("pad_token_id") is None:  # the classifier finds each input's last token by it
        native["pad_token_id"] = pad_token_id
    return native


def yes_minus_no(weights: dict[str, torch.Tensor], answers: dict[str, int]) -> torch.Tensor:
    """The one score row: the LM head's "yes" row minus its "no" row, in float32 (`[1, hidden]`)."""
    head = weights.get("lm_head.weight")
    if head is None:
        head = weights["model.embed_tokens.weight"]  # tie_word_embeddings: the head is the embedding table
    return (head[answers["yes"]].float() - head[answers["no"]].float()).unsqueeze(0)


def wrap_tokenizer(folder: Path, prefix: str, suffix: str) -> None:
    """The served tokenizer.json puts every text between the prompt's fixed token ids (after the tokenizer's
    own post-processing), so truncation keeps both and cuts the text in the middle."""
    from tokenizers import Tokenizer, processors

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    pieces = {}
    for name, text in (("[RERANK_PREFIX]", prefix), ("[RERANK_SUFFIX]", suffix)):
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        pieces[name] = {"id": name, "ids": ids, "tokens": [tokenizer.id_to_token(i) for i in ids]}
    wrap = processors.TemplateProcessing(single="[RERANK_PREFIX] $A [RERANK_SUFFIX]",
                                         pair="[RERANK_PREFIX] $A $B [RERANK_SUFFIX]",
                                         special_tokens=list(pieces.values()))
    own = tokenizer.post_processor
    tokenizer.post_processor = wrap if own is None else processors.Sequence([own, wrap])
    tokenizer.save(str(folder / "tokenizer.json"))


def convert(published: Published, dest: Path) -> None:
    from transformers import AutoTokenizer

    if not (published.folder / "tokenizer.json").is_file():
        raise BuildError(f"LLM reranker: {published.folder} has no tokenizer.json (Trident serves fast tokenizers)")
    answers = _answer_ids(published.folder)
    tokenizer = AutoTokenizer.from_pretrained(published.folder, local_files_only=True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    config = native_config(published.config, pad)
    copy_side_files(published.folder, dest)
    write_config(dest, config)
    weights = read_weights(published.folder)
    weights["score.weight"] = yes_minus_no(weights, answers)
    weights.pop("lm_head.weight", None)
    check_names(dest, weights, "LLM reranker", "AutoModelForSequenceClassification")
    write_weights(dest, weights)
    wrap_tokenizer(dest, QWEN3_RERANKER_PREFIX, QWEN3_RERANKER_SUFFIX)
    write_spec_fields(dest, {"rerank_prompt": RERANK_PROMPT})


FAMILY = Family("an LLM reranker (*ForCausalLM scored by its yes / no logits)",
                "*ForSequenceClassification with the one row W[yes] - W[no]", matches, convert)
