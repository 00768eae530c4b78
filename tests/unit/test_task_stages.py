"""The plain-Python pieces behind /rerank, /predict and /predict_tokens, without Triton: TEI's score rule,
TEI's /predict input shapes, sub-request planning, the tokenizer's spans for NER, and model picking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gateway.errors import ApiError
from gateway.jobs import ScoreJob
from gateway.registry import ModelRegistry
from gateway.validation import parse_ner_inputs, parse_predict_inputs
from testkit.factories import make_tiny_bert
from trident import tensors as T
from trident.spec import ModelSpec
from trident.task_stages import ScoresStage, scores_from_logits
from trident.tokenization import TextTokenizer


def test_scores_follow_tei():
    logits = np.array([[2.5, -1.0, 0.3], [-80.0, 0.0, 80.0]], dtype=np.float32)
    np.testing.assert_allclose(scores_from_logits(logits, False), torch.softmax(torch.from_numpy(logits), -1),
                               atol=1e-7)
    single = np.array([[3.0], [-3.0], [-100.0], [100.0]], dtype=np.float32)
    np.testing.assert_allclose(scores_from_logits(single, False), torch.sigmoid(torch.from_numpy(single)), atol=1e-7)
    np.testing.assert_array_equal(scores_from_logits(logits, True), logits)


def test_raw_scores_per_item():
    spec = ModelSpec(name="m", task="classifier", architecture="X", model_type="bert", max_length=8, dim=2,
                     id2label={"0": "a", "1": "b"})
    logits = np.array([[1.0, 2.0], [1.0, 2.0]], dtype=np.float32)
    (result,) = ScoresStage(spec, None).process([{T.LOGITS: logits, T.RAW_SCORES: np.array([[True], [False]])}])
    np.testing.assert_array_equal(result[T.SCORES][0], logits[0])
    np.testing.assert_allclose(result[T.SCORES][1].sum(), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    ("inputs", "items", "batched"),
    [
        ("s", [("s", None)], False),
        (["s"], [("s", None)], False),
        (["a", "b"], [("a", "b")], False),
        ([["s"]], [("s", None)], True),
        ([["s"], ["a", "b"]], [("s", None), ("a", "b")], True),
    ],
)
def test_predict_inputs_as_tei_reads_them(inputs, items, batched):
    assert parse_predict_inputs(inputs) == (items, batched)


@pytest.mark.parametrize("inputs", [["a", "b", "c"], [["a", "b", "c"]], [["a"], "b"], [[]], [[1]], 3, None, {}])
def test_bad_predict_inputs(inputs):
    with pytest.raises(ApiError) as error:
        parse_predict_inputs(inputs)
    assert error.value.status == 422


def test_ner_inputs_flatten_in_order():
    assert parse_ner_inputs([["a", "b"], ["c"]]) == ["a", "b", "c"]
    assert parse_ner_inputs(["a", "b"]) == ["a", "b"]
    assert parse_ner_inputs("a") == ["a"]
    for bad in ([], [[]], [["a", 1]], [["a"], "b"], 7):
        with pytest.raises(ApiError):
            parse_ner_inputs(bad)


def test_sub_requests_are_contiguous_and_never_mix_pairs():
    def job(texts: list[str], pairs: list[str | None]) -> ScoreJob:
        return ScoreJob(texts=texts, pairs=pairs, param="inputs", truncate=True, truncate_left=False)

    assert job(list("abcdefg"), [None, None, "x", "y", "z", None, None]).spans(2) == [(0, 2), (2, 4), (4, 5), (5, 7)]
    assert job(["a"], [None]).spans(32) == [(0, 1)]


def test_spans_for_ner(tmp_path):
    checkpoint = make_tiny_bert(tmp_path / "m", head="token-cls")
    tokenizer = TextTokenizer(checkpoint / "tokenizer.json", 32)
    text = "Zürich's café"
    offsets, word_ids = tokenizer.encode([text, "a"]).spans()
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(checkpoint)(text, return_offsets_mapping=True)
    n = len(reference["input_ids"])
    assert offsets[0, :n].tolist() == [list(span) for span in reference["offset_mapping"]]
    assert word_ids[0, :n].tolist() == [-1 if w is None else w for w in reference.word_ids()]
    assert word_ids[1].tolist() == [-1, 0, -1] + [-1] * (n - 3)  # [CLS] a [SEP], then padding


def _spec(name: str, task: str) -> ModelSpec:
    return ModelSpec(name=name, task=task, architecture="X", model_type="bert", max_length=8, dim=1,
                     id2label={"0": "x"})


def test_pick_by_route():
    registry = ModelRegistry(default_model="cls")
    registry.replace([_spec("cls", "classifier"), _spec("rr-b", "reranker"), _spec("rr-a", "reranker")])
    assert registry.pick(None, route="/predict").name == "cls"
    assert registry.pick(None, route="/rerank").name == "rr-a"  # no name: the first reranker by name
    assert registry.pick("rr-b", route="/rerank").name == "rr-b"
    assert registry.pick("rr-b", route="/predict").name == "rr-b"  # a reranker also answers /predict
    with pytest.raises(ApiError) as error:
        registry.pick("cls", route="/rerank")
    assert error.value.status == 400 and "it serves /predict" in error.value.message
    with pytest.raises(ApiError) as error:
        registry.pick(None, route="/predict_tokens")
    assert error.value.status == 400
    with pytest.raises(ApiError) as error:
        registry.pick("nope", route="/rerank")
    assert error.value.status == 404
