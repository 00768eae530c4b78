"""trident.ner.aggregate against transformers' token-classification pipeline, no Triton involved.

Tiny random BERT NER heads are sharpened (scaled classifier weights, an optional push towards "O") so that
every strategy finds many entities, B-/I- runs, multi-token words and words whose tokens disagree; the
coverage test asserts that, so the parity tests cannot pass on empty outputs. Tolerance: scores within
1e-4 of the pipeline's; spans, labels and token texts exactly equal.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    BertConfig,
    BertForTokenClassification,
    PreTrainedTokenizerFast,
    pipeline,
)

from testkit.factories import NER_LABELS, make_tiny_bert
from trident.ner import STRATEGIES, SubwordRule, aggregate, softmax

SCORE_TOLERANCE = 1e-4
TEXTS = [
    "Apple is looking at buying U.K. startup for $1 billion",
    "Angela Merkel met Emmanuel Macron in Paris and Berlin.",
    "Zürich-based Nestlé acquired Blue Bottle Coffee.",
    "Jean-Pierre went to New York, New York!",
    "apple Apple APPLE: the same word, three times; Paris, paris.",
    "東京 and Zürich\nNew  York\tBerlin",  # unknown CJK tokens, newline, double space, tab
]


@dataclass
class NerCase:
    """A model, its fast tokenizer and what trident needs to know about that tokenizer."""

    model: Any
    tokenizer: Any
    rule: SubwordRule
    _answers: dict[tuple[str, str], list[dict]] = field(default_factory=dict)
    _encoded: dict[str, tuple[dict[str, Any], np.ndarray]] = field(default_factory=dict)

    def labels(self) -> dict[int, str]:
        return self.model.config.id2label

    def run_pipeline(self, text: str, strategy: str) -> list[dict]:
        """The pipeline's answer, computed once per strategy for all TEXTS (building pipelines is slow)."""
        if (text, strategy) not in self._answers:
            classifier = pipeline(
                "token-classification", model=self.model, tokenizer=self.tokenizer, aggregation_strategy=strategy
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # the whitespace-fallback notice
                answers = [classifier(one) for one in TEXTS]
            self._answers.update({(one, strategy): answer for one, answer in zip(TEXTS, answers, strict=True)})
        return self._answers[(text, strategy)]

    def encode(self, text: str) -> tuple[dict[str, Any], np.ndarray]:
        """The tokenizer's view of `text` (what the Triton tokenizer stage carries) and its logits."""
        if text not in self._encoded:
            self._encoded[text] = self._encode(text)
        info, logits = self._encoded[text]
        return dict(info), logits

    def _encode(self, text: str) -> tuple[dict[str, Any], np.ndarray]:
        encoding = self.tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
        ids = encoding["input_ids"]
        inputs = {
            name: torch.tensor([encoding[name]])
            for name in ("input_ids", "token_type_ids", "attention_mask")
            if name in encoding
        }
        with torch.no_grad():
            logits = self.model(**inputs).logits[0].numpy()
        info = {
            "token_ids": ids,
            "offsets": encoding["offset_mapping"],
            "word_ids": encoding.word_ids(),
            "special_mask": encoding["special_tokens_mask"],
            "tokens": encoding.tokens(),
        }
        return info, logits

    def trident(self, text: str, strategy: str, raw_scores: bool = False, with_tokens: bool = True) -> list:
        info, logits = self.encode(text)
        if not with_tokens:
            info["tokens"] = None
        return aggregate(
            text,
            **info,
            logits=logits,
            id2label=self.labels(),
            strategy=strategy,
            raw_scores=raw_scores,
            rule=self.rule,
        )


def _sharpen(model: Any, scale: float, outside_bias: float) -> Any:
    """Random heads are nearly uniform; scaling makes the argmax vary by token, the bias thins entities."""
    with torch.no_grad():
        model.classifier.weight.mul_(scale)
        model.classifier.bias.zero_()
        model.classifier.bias[0] = outside_bias
    return model.eval()


def _wordpiece_case(out_dir: Path, seed: int, outside_bias: float) -> NerCase:
    checkpoint = make_tiny_bert(out_dir, head="token-cls", seed=seed)
    model = _sharpen(AutoModelForTokenClassification.from_pretrained(checkpoint), 10.0, outside_bias)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    return NerCase(model, tokenizer, SubwordRule.from_tokenizer(tokenizer.backend_tokenizer))


def _unigram_case(seed: int) -> NerCase:
    """An XLM-R-style tokenizer (Unigram + Metaspace, no subword prefix): the pipeline's whitespace rule."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=specials, unk_token="<unk>")
    corpus = [*TEXTS, "the startup went to the city, bought coffee and looked at billions of words"]
    tokenizer.train_from_iterator(corpus * 20, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        pad_token_id=1,
        id2label=dict(enumerate(NER_LABELS)),
        label2id={label: i for i, label in enumerate(NER_LABELS)},
    )
    torch.manual_seed(seed)
    model = _sharpen(BertForTokenClassification(config), 10.0, 0.5)
    return NerCase(model, fast, SubwordRule.from_tokenizer(tokenizer))


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, NerCase]:
    root = tmp_path_factory.mktemp("ner")
    return {
        "wordpiece-dense": _wordpiece_case(root / "dense", seed=1, outside_bias=0.0),
        "wordpiece-sparse": _wordpiece_case(root / "sparse", seed=2, outside_bias=1.0),
        "unigram-metaspace": _unigram_case(seed=3),
    }


def _expected(case: NerCase, text: str, strategy: str) -> list[dict]:
    """The pipeline's answer in BEI's shape."""
    ids = case.tokenizer(text)["input_ids"]
    expected = []
    for entity in case.run_pipeline(text, strategy):
        start, end = entity["start"], entity["end"]
        if strategy == "none":
            token, token_id, label = entity["word"], ids[entity["index"]], entity["entity"]
        else:
            token, token_id, label = text[start:end], 0, entity["entity_group"]
        expected.append(
            {"token": token, "token_id": token_id, "start": start, "end": end, "results": {label: entity["score"]}}
        )
    return expected


def _score_gap(actual: list[dict], expected: list[dict]) -> float:
    """Assert equal entries apart from scores; return the largest score difference."""
    strip = [{**entry, "results": list(entry["results"])} for entry in actual]
    assert strip == [{**entry, "results": list(entry["results"])} for entry in expected]
    gaps = [
        abs(entry["results"][label] - float(score))
        for entry, reference in zip(actual, expected, strict=True)
        for label, score in reference["results"].items()
    ]
    return max(gaps, default=0.0)


@pytest.mark.parametrize("case_name", ["wordpiece-dense", "wordpiece-sparse", "unigram-metaspace"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_matches_pipeline(cases: dict[str, NerCase], case_name: str, strategy: str) -> None:
    case = cases[case_name]
    for text in TEXTS:
        gap = _score_gap(case.trident(text, strategy), _expected(case, text, strategy))
        assert gap <= SCORE_TOLERANCE, (text, gap)


@pytest.mark.parametrize("strategy", ["simple", "first", "average", "max"])
def test_word_ids_stand_in_for_token_strings(cases: dict[str, NerCase], strategy: str) -> None:
    """Without token strings, WordPiece words come from word_ids; the entities are the same."""
    case = cases["wordpiece-dense"]
    for text in TEXTS:
        assert case.trident(text, strategy, with_tokens=False) == case.trident(text, strategy)


@pytest.mark.parametrize("case_name", ["wordpiece-dense", "wordpiece-sparse", "unigram-metaspace"])
def test_outputs_are_not_vacuous(cases: dict[str, NerCase], case_name: str) -> None:
    """Every strategy finds entities, and the texts exercise what makes the strategies differ."""
    case = cases[case_name]
    outputs = {s: [case.run_pipeline(text, s) for text in TEXTS] for s in STRATEGIES}
    for strategy, per_text in outputs.items():
        assert sum(map(len, per_text)) >= 10, strategy
    tokens = [entity for per_text in outputs["none"] for entity in per_text]
    assert any(entity["entity"].startswith("B-") for entity in tokens)
    assert any(entity["entity"].startswith("I-") for entity in tokens)
    groups = [entity for per_text in outputs["simple"] for entity in per_text]
    assert any(len(entity["word"].split()) > 1 or entity["end"] - entity["start"] > 3 for entity in groups)
    # Word-level strategies must disagree with one another somewhere, or they were not really tested.
    word_level = [str(outputs[s]) for s in ("first", "average", "max")]
    assert len(set(word_level)) == 3
    assert str(outputs["simple"]) not in word_level


def test_none_raw_scores_give_every_label_of_every_token(cases: dict[str, NerCase]) -> None:
    case = cases["wordpiece-sparse"]
    labels = list(case.labels().values())
    for text in TEXTS:
        info, logits = case.encode(text)
        raw = case.trident(text, "none", raw_scores=True)
        kept = [i for i, special in enumerate(info["special_mask"]) if not special]
        assert [entry["token_id"] for entry in raw] == [info["token_ids"][i] for i in kept]
        for entry, i in zip(raw, kept, strict=True):
            assert sorted(entry["results"]) == sorted(labels)
            values = list(entry["results"].values())
            assert values == sorted(values, reverse=True)
            assert entry["results"] == {case.labels()[j]: pytest.approx(float(logits[i, j])) for j in range(9)}
        # The tokens whose best label is an entity are exactly the plain "none" answer.
        entities = [entry for entry in raw if next(iter(entry["results"])) != "O"]
        plain = case.trident(text, "none")
        assert [{**e, "results": None} for e in entities] == [{**e, "results": None} for e in plain]
        assert [next(iter(e["results"])) for e in entities] == [next(iter(e["results"])) for e in plain]


@pytest.mark.parametrize("strategy", ["simple", "first", "average", "max"])
def test_aggregated_raw_scores_keep_the_entities(cases: dict[str, NerCase], strategy: str) -> None:
    case = cases["wordpiece-dense"]
    labels = sorted(case.labels().values())
    for text in TEXTS:
        raw = case.trident(text, strategy, raw_scores=True)
        plain = case.trident(text, strategy)
        assert [{**e, "results": None} for e in raw] == [{**e, "results": None} for e in plain]
        for entry in raw:
            assert sorted(entry["results"]) == labels
            values = list(entry["results"].values())
            assert values == sorted(values, reverse=True)


def test_simple_raw_scores_average_the_entity_tokens(cases: dict[str, NerCase]) -> None:
    case = cases["wordpiece-dense"]
    text = TEXTS[2]
    info, logits = case.encode(text)
    for entry in case.trident(text, "simple", raw_scores=True):
        inside = [
            i
            for i, (start, end) in enumerate(info["offsets"])
            if not info["special_mask"][i] and entry["start"] <= start and end <= entry["end"]
        ]
        mean = logits[inside].mean(axis=0)
        assert entry["results"] == {case.labels()[j]: pytest.approx(float(mean[j]), abs=1e-5) for j in range(9)}


@pytest.mark.parametrize("strategy", ["maximum", "MAX", "", "none "])
def test_unknown_strategy_is_rejected(strategy: str) -> None:
    with pytest.raises(ValueError, match="none, simple, first, average, max"):
        aggregate("a", [5], [(0, 1)], [0], [0], np.zeros((1, 2)), {0: "O", 1: "B-PER"}, strategy, False)


def test_inconsistent_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="logits must be"):
        aggregate("a", [5], [(0, 1)], [0], [0], np.zeros((2, 2)), {0: "O", 1: "B-PER"}, "max", False)
    with pytest.raises(ValueError, match="offsets has 0 entries"):
        aggregate("a", [5], [], [0], [0], np.zeros((1, 2)), {0: "O", 1: "B-PER"}, "max", False)
    with pytest.raises(ValueError, match="no label for logit columns"):
        aggregate("a", [5], [(0, 1)], [0], [0], np.zeros((1, 3)), {"0": "O", "1": "B-PER"}, "max", False)


def test_string_label_keys_and_non_bio_labels() -> None:
    """id2label as read from config.json (string keys); plain labels group like I- continuations."""
    logits = np.array([[0.0, 5.0, 0.0], [0.0, 4.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 3.0]], dtype=np.float32)
    entries = aggregate(
        "ab cd ef gh",
        [10, 11, 12, 13],
        [(0, 2), (3, 5), (6, 8), (9, 11)],
        [0, 1, 2, 3],
        [0, 0, 0, 0],
        logits,
        {"0": "O", "1": "PER", "2": "LOC"},
        "simple",
        False,
        ["ab", "cd", "ef", "gh"],
    )
    assert [(e["token"], list(e["results"])) for e in entries] == [("ab cd", ["PER"]), ("gh", ["LOC"])]
    assert entries[0]["results"]["PER"] == pytest.approx(float(softmax(logits[:2])[:, 1].mean()))


def test_softmax_is_stable_for_large_logits() -> None:
    probs = softmax(np.array([[1000.0, 999.0, -1000.0]], dtype=np.float32))
    assert np.all(np.isfinite(probs))
    assert probs.sum() == pytest.approx(1.0)
    assert probs[0, 0] == pytest.approx(1 / (1 + np.exp(-1.0)))
