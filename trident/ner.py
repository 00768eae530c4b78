"""NER postprocessing: per-token logits of one text -> BEI `/predict_tokens` entries.

The semantics are those of `transformers.pipeline("token-classification", aggregation_strategy=S)`
(softmax, gather_pre_entities, aggregate_words, group_entities, ignore_labels=["O"]), redone in numpy so
the serving stage needs neither torch nor transformers. Entity spans, labels and scores equal the pipeline's;
what differs is only the response shape (BEI's `{"token", "token_id", "start", "end", "results"}`) and the
aggregated `token`, which is the original text sliced by start:end rather than re-decoded tokens (so case
and spacing are the caller's own).

raw_scores=True returns raw logits instead of probabilities:
- "none": one entry per non-special token, "O" tokens included (the caller judges raw scores), with the
  logit of every label, highest first.
- aggregated strategies: the same entities as raw_scores=False, each with the logit of every BIO label,
  averaged over the entity's words, where a word's logits are those its strategy picks: the token's own
  (simple), its first token's (first), its most confident token's (max) or the mean over its tokens
  (average). For "average" the top raw label may therefore differ from the entity's label, which is
  decided on averaged probabilities as in the pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from trident.postprocess import softmax

if TYPE_CHECKING:
    from tokenizers import Tokenizer

STRATEGIES = ("none", "simple", "first", "average", "max")
IGNORED_LABELS = ("O",)  # the pipeline's default ignore_labels
AGGREGATED_TOKEN_ID = 0  # BEI reports token_id 0 for entities made of several tokens


@dataclass(frozen=True)
class SubwordRule:
    """The tokenizer facts the pipeline uses to tell whether a token continues the previous word.

    With a continuing-subword prefix (WordPiece "##", some BPEs) a token is a subword when its text is
    longer or shorter than the original characters it covers. Without one (Unigram/Metaspace as in
    XLM-R, byte-level BPE) the pipeline falls back to whitespace: a token is a subword unless a space
    touches its start. Unknown tokens always start a word and show the original characters.
    """

    continuing_subword_prefix: str | None = "##"
    unk_token_id: int | None = None

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer) -> SubwordRule:
        model = json.loads(tokenizer.to_str())["model"]
        unk_id = model.get("unk_id")  # Unigram names its unknown token by id
        unk_token = model.get("unk_token")  # WordPiece and BPE by text
        if unk_id is None and unk_token is not None:
            unk_id = tokenizer.token_to_id(unk_token)
        return cls(model.get("continuing_subword_prefix") or None, unk_id)


@dataclass
class _Token:
    """A non-special token, as the pipeline's gather_pre_entities sees it."""

    token_id: int
    text: str
    start: int
    end: int
    is_subword: bool
    probs: np.ndarray  # [labels] float32
    logits: np.ndarray  # [labels] float32


@dataclass
class _Scored:
    """A token or word with its decided label; the pipeline's intermediate entity dict."""

    label: str
    score: float
    start: int
    end: int
    logits: np.ndarray  # the raw logits standing for it (see the module docstring)


def aggregate(
    text: str,
    token_ids: Sequence[int],
    offsets: Sequence[tuple[int, int]],
    word_ids: Sequence[int | None],
    special_mask: Sequence[int | bool],
    logits: np.ndarray,
    id2label: Mapping[int | str, str],
    strategy: str,
    raw_scores: bool,
    tokens: Sequence[str] | None = None,
    *,
    rule: SubwordRule | None = None,
) -> list[dict[str, Any]]:
    """BEI entries for one text from its tokens (offsets into `text`) and logits [tokens, labels].

    `tokens` are the tokenizer's token strings ("##ing", "▁New"); they drive the subword test for prefix
    tokenizers and are the `token` of "none" entries. Without them the original characters stand in and
    a token is a subword when it continues the previous token's word (`word_ids`), which is what the
    pipeline's test amounts to for ordinary WordPiece text. `rule` defaults to WordPiece's "##".
    Raises ValueError for an unknown strategy or inconsistent inputs.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown aggregation_strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    logits = np.asarray(logits, dtype=np.float32)  # the pipeline also scores in float32
    _check_shapes(token_ids, offsets, word_ids, special_mask, logits, tokens)
    labels = _label_names(id2label, logits.shape[-1])
    rule = rule if rule is not None else SubwordRule()
    gathered = _gather(text, token_ids, offsets, word_ids, special_mask, logits, tokens, rule)
    if strategy == "none":
        return _token_entries(gathered, labels, raw_scores)
    words = _per_token(gathered, labels) if strategy == "simple" else _per_word(gathered, labels, strategy)
    return [_entity_entry(text, entity, labels, raw_scores) for entity in _group_entities(words)]


def _check_shapes(
    token_ids: Sequence[int],
    offsets: Sequence[tuple[int, int]],
    word_ids: Sequence[int | None],
    special_mask: Sequence[int | bool],
    logits: np.ndarray,
    tokens: Sequence[str] | None,
) -> None:
    n = len(token_ids)
    if logits.ndim != 2 or logits.shape[0] != n:
        raise ValueError(f"logits must be [{n} tokens, labels], got shape {list(logits.shape)}")
    lengths = {"offsets": len(offsets), "word_ids": len(word_ids), "special_mask": len(special_mask)}
    if tokens is not None:
        lengths["tokens"] = len(tokens)
    for name, length in lengths.items():
        if length != n:
            raise ValueError(f"{name} has {length} entries for {n} tokens")


def _label_names(id2label: Mapping[int | str, str], num_labels: int) -> list[str]:
    by_index = {int(index): label for index, label in id2label.items()}
    missing = [i for i in range(num_labels) if i not in by_index]
    if missing:
        raise ValueError(f"id2label has no label for logit columns {missing}")
    return [by_index[i] for i in range(num_labels)]


def _gather(
    text: str,
    token_ids: Sequence[int],
    offsets: Sequence[tuple[int, int]],
    word_ids: Sequence[int | None],
    special_mask: Sequence[int | bool],
    logits: np.ndarray,
    tokens: Sequence[str] | None,
    rule: SubwordRule,
) -> list[_Token]:
    probs = softmax(logits)
    gathered = []
    for i, token_id in enumerate(token_ids):
        if special_mask[i]:
            continue
        start, end = int(offsets[i][0]), int(offsets[i][1])
        original = text[start:end]
        if int(token_id) == rule.unk_token_id:
            token_text, is_subword = original, False
        elif tokens is None:
            token_text, is_subword = original, i > 0 and word_ids[i] is not None and word_ids[i] == word_ids[i - 1]
        elif rule.continuing_subword_prefix:
            token_text, is_subword = tokens[i], len(tokens[i]) != len(original)
        else:
            token_text, is_subword = tokens[i], start > 0 and " " not in text[start - 1 : start + 1]
        gathered.append(_Token(int(token_id), token_text, start, end, is_subword, probs[i], logits[i]))
    return gathered


def _token_entries(gathered: list[_Token], labels: list[str], raw_scores: bool) -> list[dict[str, Any]]:
    entries = []
    for token in gathered:
        best = int(token.probs.argmax())
        if raw_scores:
            results = _all_labels(labels, token.logits)
        elif labels[best] in IGNORED_LABELS:
            continue
        else:
            results = {labels[best]: float(token.probs[best])}
        entries.append(_entry(token.text, token.token_id, token.start, token.end, results))
    return entries


def _per_token(gathered: list[_Token], labels: list[str]) -> list[_Scored]:
    scored = []
    for token in gathered:
        best = int(token.probs.argmax())
        scored.append(_Scored(labels[best], token.probs[best], token.start, token.end, token.logits))
    return scored


def _per_word(gathered: list[_Token], labels: list[str], strategy: str) -> list[_Scored]:
    """Force one label per word (the pipeline's aggregate_words): subwords join the word before them."""
    words: list[list[_Token]] = []
    for token in gathered:
        if words and token.is_subword:
            words[-1].append(token)
        else:
            words.append([token])
    return [_score_word(word, labels, strategy) for word in words]


def _score_word(word: list[_Token], labels: list[str], strategy: str) -> _Scored:
    if strategy == "average":
        probs = np.nanmean(np.stack([token.probs for token in word]), axis=0)
        logits = np.mean(np.stack([token.logits for token in word]), axis=0)
    else:
        chosen = word[0] if strategy == "first" else max(word, key=lambda token: token.probs.max())
        probs, logits = chosen.probs, chosen.logits
    best = int(probs.argmax())
    return _Scored(labels[best], probs[best], word[0].start, word[-1].end, logits)


def _split_tag(label: str) -> tuple[str, str]:
    """("B"|"I", tag) as the pipeline's get_tag: anything without a B-/I- prefix continues as I."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _group_entities(words: list[_Scored]) -> list[_Scored]:
    """Join adjacent words of one tag unless the later one begins a new entity (B-); drop "O" groups."""
    groups: list[list[_Scored]] = []
    for word in words:
        bi, tag = _split_tag(word.label)
        if groups and bi != "B" and tag == _split_tag(groups[-1][-1].label)[1]:
            groups[-1].append(word)
        else:
            groups.append([word])
    merged = [_merge(group) for group in groups]
    return [entity for entity in merged if entity.label not in IGNORED_LABELS]


def _merge(group: list[_Scored]) -> _Scored:
    return _Scored(
        label=group[0].label.split("-", 1)[-1],  # the pipeline names the group after its first label
        score=float(np.nanmean([word.score for word in group])),
        start=group[0].start,
        end=group[-1].end,
        logits=np.mean(np.stack([word.logits for word in group]), axis=0),
    )


def _entity_entry(text: str, entity: _Scored, labels: list[str], raw_scores: bool) -> dict[str, Any]:
    results = _all_labels(labels, entity.logits) if raw_scores else {entity.label: float(entity.score)}
    return _entry(text[entity.start : entity.end], AGGREGATED_TOKEN_ID, entity.start, entity.end, results)


def _all_labels(labels: list[str], logits: np.ndarray) -> dict[str, float]:
    """Every label's logit, highest first (as BEI lists them)."""
    order = np.argsort(-logits, kind="stable")
    return {labels[i]: float(logits[i]) for i in order}


def _entry(token: str, token_id: int, start: int, end: int, results: dict[str, float]) -> dict[str, Any]:
    return {"token": token, "token_id": token_id, "start": start, "end": end, "results": results}
