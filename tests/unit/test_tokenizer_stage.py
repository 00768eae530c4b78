"""The tokenizer step tokenizes a whole dynamic batch in one call: each request gets exactly the rows it would
get alone (ids, types, lengths, NER spans, padded to its own longest), its share of the time, and its own
refusal when it has one, without failing the others."""

from __future__ import annotations

import numpy as np
import pytest

from testkit.factories import make_tiny_bert
from trident import tensors as T
from trident.errors import StageError, StageErrorKind
from trident.spec import ModelSpec
from trident.stages import TokenizerStage


def texts(*values: str) -> np.ndarray:
    return np.array([v.encode() for v in values], dtype=np.object_).reshape(-1, 1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> object:
    return make_tiny_bert(tmp_path_factory.mktemp("tok") / "m", head="token-cls")


def stage(checkpoint, task: str) -> TokenizerStage:
    spec = ModelSpec(name="m", task=task, architecture="X", model_type="bert", max_length=12, dim=4,
                     id2label={"0": "O", "1": "B"} if task == "ner" else {})
    return TokenizerStage(spec, checkpoint)


REQUESTS = [
    {T.TEXT: texts("hello world")},
    {T.TEXT: texts("a much longer text that is cut at the model's maximum length of twelve", "short")},
    {T.TEXT: texts("left cut of a long text that goes on and on"), T.TRUNCATE_LEFT: np.array([[True]])},
    {T.TEXT: texts("capped text here", "x"), T.MAX_TOKENS: np.array([[4], [4]], dtype=np.int32)},
]


@pytest.mark.parametrize("task", ["embedding", "ner"])
def test_a_batch_gives_each_request_what_it_gets_alone(checkpoint, task):
    tokenizer = stage(checkpoint, task)
    calls, encode = [], tokenizer.tokenizer.encode

    def counted(batch, *rest, **options):
        calls.append(len(batch))
        return encode(batch, *rest, **options)

    tokenizer.tokenizer.encode = counted
    together = tokenizer.process(REQUESTS)
    assert calls == [6]  # one call for the whole batch
    for request, merged in zip(REQUESTS, together, strict=True):
        (alone,) = tokenizer.process([request])
        assert set(merged) == set(alone)
        for name in merged:
            if name != T.TOKENIZE_NS:
                np.testing.assert_array_equal(merged[name], alone[name], err_msg=name)
        assert merged[T.TOKENIZE_NS].shape == (len(request[T.TEXT]), 1)
    assert together[1][T.INPUT_IDS].shape[1] == 12 and together[0][T.INPUT_IDS].shape[1] < 12


def test_a_refusal_is_that_request_s_own(checkpoint):
    tokenizer = stage(checkpoint, "embedding")
    too_long = {T.TEXT: texts("fine", "this text is far too long to fit in twelve tokens of the model"),
                T.TRUNCATE: np.array([[True], [False]])}
    results = tokenizer.process([REQUESTS[0], too_long, REQUESTS[1]])
    assert isinstance(results[1], StageError) and results[1].kind is StageErrorKind.INPUT_TOO_LONG
    assert results[1].details["index"] == 1  # the index inside its own request, not the batch
    (alone,) = tokenizer.process([REQUESTS[1]])
    np.testing.assert_array_equal(results[2][T.INPUT_IDS], alone[T.INPUT_IDS])
