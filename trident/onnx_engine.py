"""The engine contract: unpadded token ids in, one result per input out, in the caller's order.

Inputs are sorted by length and packed into sub-batches whose padded size (rows * longest) stays within
`spec.max_num_tokens`, each padded only to its own longest row, so short inputs never pay for long ones.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from trident.batching import padded_feeds, plan_batches, position_ids_from_mask, unpad_rows
from trident.spec import ModelSpec

__all__ = ["BatchedEngine", "OnnxEngine", "plan_batches", "position_ids_from_mask", "session_options",
           "threads_per_instance"]


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


class BatchedEngine:
    """The engine contract over any runtime: a subclass sets `spec`, `pad_id`, `input_names` and runs one padded
    batch in `_infer`."""

    spec: ModelSpec
    pad_id: int
    input_names: set[str]

    def run(
        self, sequences: list[np.ndarray], token_type_ids: list[np.ndarray] | None = None, output: str | None = None,
        attention: list[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """Per input: `[dim]` embeddings, `[num_labels]` logits, or `[len_i, num_labels]` NER logits; `output`
        (default: the task's main one) asks for another of the graph's outputs (`[len_i, hidden]` token
        embeddings), which is all the session then computes. `attention`: per input, the tokens that may be
        attended to (default all: see `trident.batching.padded_feeds`)."""
        output = output or self.spec.task_row.engine_output
        return self.run_outputs(sequences, token_type_ids, (output,), attention)[output]

    def run_outputs(
        self, sequences: list[np.ndarray], token_type_ids: list[np.ndarray] | None, outputs: tuple[str, ...],
        attention: list[np.ndarray] | None = None,
    ) -> dict[str, list[np.ndarray]]:
        """Several of the graph's outputs from one pass (a hybrid model's dense, sparse and ColBERT ones), each
        as `run` answers it; the session computes those and nothing else."""
        if token_type_ids is not None and len(token_type_ids) != len(sequences):
            raise ValueError(f"{len(token_type_ids)} token_type_ids for {len(sequences)} sequences")
        ids = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
        if any(len(s) == 0 for s in ids):
            raise ValueError("empty token sequence")
        types = None if token_type_ids is None else [np.asarray(t, dtype=np.int64) for t in token_type_ids]
        if types is not None and any(len(t) != len(s) for t, s in zip(types, ids, strict=True)):
            raise ValueError("each token_type_ids row must match its sequence's length")
        results: dict[str, list[np.ndarray | None]] = {output: [None] * len(ids) for output in outputs}
        for batch in plan_batches([len(s) for s in ids], self.spec.max_num_tokens):
            batch_types = None if types is None else [types[i] for i in batch]
            batch_attention = None if attention is None else [attention[i] for i in batch]
            rows = self._run_padded([ids[i] for i in batch], batch_types, outputs, batch_attention)
            for output in outputs:
                for index, row in zip(batch, rows[output], strict=True):
                    results[output][index] = row
        return {output: [r for r in rows if r is not None] for output, rows in results.items()}

    def _run_padded(self, ids: list[np.ndarray], types: list[np.ndarray] | None, outputs: tuple[str, ...],
                    attention: list[np.ndarray] | None = None) -> dict[str, list[np.ndarray]]:
        feeds = padded_feeds(ids, types, self.input_names, self.pad_id, self.spec.padding_side, attention)
        arrays = self._infer(feeds, [self.spec.engine_output_name(output) for output in outputs])
        lengths = [len(s) for s in ids]
        return {output: unpad_rows(array, lengths, self.spec.padding_side)
                if self.spec.task_row.per_token_output(output) else list(array)
                for output, array in zip(outputs, arrays, strict=True)}

    def _infer(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> list[np.ndarray]:
        raise NotImplementedError


class OnnxEngine(BatchedEngine):
    """An onnxruntime CPU session over a graph from `builder.export.export_onnx`."""

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
