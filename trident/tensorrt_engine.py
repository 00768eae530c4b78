"""The engine contract over a TensorRT plan served by Triton (`<name>_trt`, platform tensorrt_plan).

The `<name>_engine` Python step sorts and pads token-budget batches exactly as OnnxEngine does, splits
any wider than the plan's profiles allow, and sends each to the plan model by BLS. `infer` is injectable:
tests pass an ONNX Runtime session in its place, since no machine here has TensorRT.

NOT RUN against a real plan: see builder/tensorrt_plan.py.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from trident.batching import padded_feeds, plan_batches, unpad_rows
from trident.spec import ModelSpec

Infer = Callable[[dict[str, np.ndarray], str], np.ndarray]  # (feeds, the graph output asked for) -> that output
MAX_ROWS = 4096  # as builder.tensorrt_plan.MAX_ROWS: the profiles' widest batch


def graph_input_names(spec: ModelSpec) -> list[str]:
    return spec.engine_input_names()


def output_name(spec: ModelSpec, output: str | None = None) -> str:
    return spec.engine_output_name(output)


def bls_infer(model_name: str) -> Infer:
    """Call a Triton model from inside a Python-backend model (Business Logic Scripting)."""

    def infer(feeds: dict[str, np.ndarray], output: str) -> np.ndarray:
        import triton_python_backend_utils as pb_utils

        request = pb_utils.InferenceRequest(
            model_name=model_name, requested_output_names=[output],
            inputs=[pb_utils.Tensor(name, value) for name, value in feeds.items()],
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{model_name}: {response.error().message()}")
        return pb_utils.get_output_tensor_by_name(response, output).as_numpy()

    return infer


class TensorRTEngine:
    def __init__(self, spec: ModelSpec, infer: Infer | None = None, max_rows: int = MAX_ROWS) -> None:
        self.spec = spec
        self.max_rows = max_rows
        self.input_names = graph_input_names(spec)
        self.infer = infer or bls_infer(f"{spec.name}_trt")

    def run(self, sequences: list[np.ndarray], token_type_ids: list[np.ndarray] | None = None,
            output: str | None = None, attention: list[np.ndarray] | None = None) -> list[np.ndarray]:
        output = output or self.spec.task_row.engine_output
        ids = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
        if any(len(s) == 0 for s in ids):
            raise ValueError("empty token sequence")
        types = None if token_type_ids is None else [np.asarray(t, dtype=np.int64) for t in token_type_ids]
        results: list[np.ndarray | None] = [None] * len(ids)
        for group in plan_batches([len(s) for s in ids], self.spec.max_num_tokens):
            for start in range(0, len(group), self.max_rows):
                chunk = group[start : start + self.max_rows]
                chunk_types = None if types is None else [types[i] for i in chunk]
                chunk_attention = None if attention is None else [attention[i] for i in chunk]
                outputs = self._run_padded([ids[i] for i in chunk], chunk_types, output, chunk_attention)
                for index, row in zip(chunk, outputs, strict=True):
                    results[index] = row
        return [r for r in results if r is not None]

    def _run_padded(self, ids: list[np.ndarray], types: list[np.ndarray] | None, output: str,
                    attention: list[np.ndarray] | None = None) -> list[np.ndarray]:
        side = self.spec.padding_side
        feeds = padded_feeds(ids, types, self.input_names, self.spec.pad_token_id, side, attention)
        rows = np.asarray(self.infer(feeds, output_name(self.spec, output)), dtype=np.float32)
        if not self.spec.task_row.per_token_output(output):
            return list(rows)
        return unpad_rows(rows, [len(s) for s in ids], side)
