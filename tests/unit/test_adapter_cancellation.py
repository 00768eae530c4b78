"""The Triton adapter answers a request that Triton marks cancelled (its client gave up while it was
queued) with CANCELLED, and its stage never sees it; the others of the batch are answered as usual."""

from __future__ import annotations

import numpy as np

from testkit.fake_triton import InferenceRequest, Tensor, TritonError, pb_utils_module
from trident.triton_adapter import StageModel


class Doubling:
    seen: list[int] = []

    def __init__(self, spec: object, files: object) -> None:
        pass

    def process(self, requests: list[dict]) -> list[dict]:
        Doubling.seen += [int(r["X"][0, 0]) for r in requests]
        return [{"Y": r["X"] * 2} for r in requests]


def test_cancelled_requests_do_no_work_and_the_rest_are_answered():
    pb_utils_module()
    model = StageModel()
    model.stage, model.input_names, model.output_names = Doubling(None, None), ("X",), ("Y",)
    requests = [InferenceRequest([Tensor("X", np.array([[value]]))], cancelled=value == 2) for value in (1, 2, 3)]
    responses = model.execute(requests)
    assert Doubling.seen == [1, 3]
    assert responses[1].error().code() == TritonError.CANCELLED
    assert [r.output_tensors()[0].as_numpy()[0, 0] for r in (responses[0], responses[2])] == [2, 6]
