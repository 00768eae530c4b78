"""The engine contract over a TensorRT plan served by Triton (`<name>_trt`, platform tensorrt_plan).

The `<name>_engine` Python step sorts and pads token-budget batches as every batched engine does, splits any
wider than the plan's profiles allow (`MAX_ROWS`), and sends each to the plan model by BLS. `infer` is
injectable: tests pass an ONNX Runtime session in its place, since no machine here has TensorRT.

NOT RUN against a real plan: see builder/tensorrt_plan.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from trident import model_names
from trident.engines.contract import BatchedEngine
from trident.spec import ModelSpec

Infer = Callable[[dict[str, np.ndarray], str], np.ndarray]  # (feeds, the graph output asked for) -> that output
MAX_ROWS = 4096  # rows of one plan batch: the widest the plan's optimization profiles take


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


class TensorRTEngine(BatchedEngine):
    def __init__(self, spec: ModelSpec, infer: Infer | None = None, max_rows: int = MAX_ROWS) -> None:
        self.spec = spec
        self.pad_id = spec.pad_token_id
        self.max_rows = max_rows
        self.input_names = spec.engine_input_names()
        self.infer = infer or bls_infer(model_names.plan_model(spec.name))

    def _infer(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> list[np.ndarray]:
        return [np.asarray(self.infer(feeds, name), dtype=np.float32) for name in output_names]


def load(spec: ModelSpec, files: Path) -> TensorRTEngine:
    """The engine step of a TensorRT build: no files of its own, the plan is its own Triton model."""
    return TensorRTEngine(spec)
