"""The plain-Python pieces behind /rerank, /predict and /predict_tokens, without Triton: TEI's score rule,
TEI's /predict input shapes, sub-request planning, the tokenizer's spans for NER, and model picking; and
those behind /embed_all, /embed_sparse and multi-vector models (engine outputs, sparse entries, sides)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gateway.errors import ApiError
from gateway.jobs import ScoreJob
from gateway.registry import Discovery, ModelRegistry
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
    registry.replace(Discovery([_spec("cls", "classifier"), _spec("rr-b", "reranker"), _spec("rr-a", "reranker")]))
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


# --- one engine batch wanting two outputs, sparse entries, multi-vector sides ----------------------------------


class _RecordingEngine:
    """Answers each output with recognisable rows and records what it was asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def run(self, sequences, token_type_ids=None, output=None, attention=None):
        self.calls.append((output, len(sequences)))
        if output == T.TOKEN_EMBEDDINGS:
            return [np.full((len(s), 3), float(s[0]), dtype=np.float32) for s in sequences]
        return [np.full(2, float(s[0]), dtype=np.float32) for s in sequences]


def test_an_engine_batch_runs_each_wanted_output_once_and_answers_each_request_its_own():
    from trident.stages import REQUESTED_OUTPUTS, EngineStage

    stage = EngineStage.__new__(EngineStage)
    stage.spec = ModelSpec(name="m", task="embedding", architecture="X", model_type="bert", max_length=8, dim=2)
    stage.engine = _RecordingEngine()

    def request(first: int, wanted: tuple[str, ...]) -> dict:
        ids = np.array([[first, 1, 1], [first + 1, 1, 0]], dtype=np.int64)
        return {T.INPUT_IDS: ids, T.TOKEN_TYPE_IDS: np.zeros_like(ids), T.NUM_TOKENS: np.array([[3], [2]]),
                REQUESTED_OUTPUTS: wanted}

    pooled, tokens, pooled_too = stage.process([request(10, (T.POOLED,)), request(20, (T.TOKEN_EMBEDDINGS,)),
                                                request(30, (T.POOLED,))])
    assert sorted(stage.engine.calls) == [(T.POOLED, 4), (T.TOKEN_EMBEDDINGS, 2)]
    assert set(pooled) == {T.POOLED} and pooled[T.POOLED][:, 0].tolist() == [10, 11]
    assert pooled_too[T.POOLED][:, 0].tolist() == [30, 31]
    assert set(tokens) == {T.TOKEN_EMBEDDINGS} and tokens[T.TOKEN_EMBEDDINGS].shape == (2, 3, 3)
    assert tokens[T.TOKEN_EMBEDDINGS][1, :, 0].tolist() == [21, 21, 0]  # its own 2 tokens, then padding


def test_sparse_stage_keeps_non_zeros_in_index_order_and_top_k():
    from trident.task_stages import SparseStage

    spec = ModelSpec(name="s", task="sparse", architecture="BertForMaskedLM", model_type="bert", max_length=8, dim=6,
                     head=[{"type": "SpladePooling", "strategy": "max", "activation": "relu"}])
    pooled = np.array([[0, 0.5, 0, 2.0, 0.5, 0], [0, 0, 0, 0, 0, 0]], dtype=np.float32)
    (everything,) = SparseStage(spec, None).process([{T.POOLED: pooled}])
    assert everything[T.SPARSE_INDICES].tolist() == [[1, 3, 4], [-1, -1, -1]]
    assert everything[T.SPARSE_VALUES].tolist() == [[0.5, 2.0, 0.5], [0, 0, 0]]
    (top,) = SparseStage(spec, None).process([{T.POOLED: pooled, T.TOP_K: np.array([[2], [2]], dtype=np.int32)}])
    assert top[T.SPARSE_INDICES].tolist() == [[1, 3], [-1, -1]]  # 2.0, then the tie 0.5 / 0.5: the lower index


def test_query_expansion_pads_queries_only_and_masks_attention():
    from trident.multi_vector import expand_queries, scoring_tokens, side_limit

    sides = {"query_length": 12, "document_length": 40,
             "expansion": {"strategy": "fixed", "attend": False, "length": 5, "token_id": 4}}
    assert (side_limit(sides, "query"), side_limit(sides, "document"), side_limit(sides, "")) == (5, 40, 0)
    ids = np.array([[2, 7, 3, 0], [2, 7, 8, 3]], dtype=np.int64)
    out_ids, types, lengths, attention = expand_queries(ids, np.ones_like(ids), np.array([3, 4]),
                                                        ["query", "document"], sides["expansion"])
    assert out_ids.tolist() == [[2, 7, 3, 4, 4], [2, 7, 8, 3, 0]] and lengths.tolist() == [5, 4]
    assert types.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]]  # expansion tokens are type 0
    assert attention.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]]
    mask = {"skiplist_ids": [7], "skiplist_tasks": ["document"]}
    assert scoring_tokens(out_ids[0, :5], "query", mask).all()  # queries keep all, expansion included
    assert scoring_tokens(out_ids[1, :4], "document", mask).tolist() == [True, False, True, True]
    assert scoring_tokens(out_ids[1, :4], "", mask).tolist() == [True, False, True, True]  # no side: a document's
