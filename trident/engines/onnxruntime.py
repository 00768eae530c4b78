"""The CPU engine: ONNX Runtime over the graph from `builder.export.export_onnx`, and how the engine step loads
the CPU engine's variant (ONNX Runtime or OpenVINO, trident.precision)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from trident.engines.contract import BatchedEngine
from trident.spec import ModelSpec


def session_options(intra_op_threads: int | None = None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One graph, one stream of ops: parallelism belongs inside each op, not across them.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads  # None: ORT picks (one per physical core)
    # Idle pool threads sleep instead of spinning: the cores are shared with Triton, the tokenizer and
    # the HTTP process, and a spinning thread takes CPU from them (3.4 vs 4.3 ms of CPU per short request).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def threads_per_instance(instances: int) -> int:
    """The cores this process may use, shared evenly by the engine's Triton instances."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, instances))


class OnnxEngine(BatchedEngine):
    """An onnxruntime CPU session."""

    def __init__(
        self, model_path: Path, spec: ModelSpec, intra_op_threads: int | None = None, pad_id: int = 0
    ) -> None:
        self.spec = spec
        self.pad_id = pad_id
        self.session = ort.InferenceSession(
            str(model_path),
            sess_options=session_options(intra_op_threads),
            providers=["CPUExecutionProvider"],
        )
        self.input_names = {i.name for i in self.session.get_inputs()}

    def _infer(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> list[np.ndarray]:
        return self.session.run(output_names, feeds)


def load(spec: ModelSpec, files: Path) -> BatchedEngine:
    """The engine step's CPU engine: the manifest's variant, re-checked on another kind of CPU (trident.precision)."""
    from trident.precision import served_engine

    return served_engine(spec, files, threads_per_instance(spec.engine_instances))
