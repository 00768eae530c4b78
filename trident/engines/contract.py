"""The engine contract, and the padded-batch engine that ONNX Runtime, OpenVINO and TensorRT share.

    run(unpadded token id sequences[, token type ids][, output][, attention]) -> one array per input, in order

Inputs are sorted by length and packed into sub-batches whose padded size (rows * longest) stays within
`spec.max_num_tokens`, each padded only to its own longest row, so short inputs never pay for long ones.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from trident.batching import padded_feeds, plan_batches, unpad_rows
from trident.spec import ModelSpec


class Engine(Protocol):
    """What the engine step (trident.stages.EngineStage), the builder's checks and the bench call."""

    spec: ModelSpec

    def run(self, sequences: list[np.ndarray], token_type_ids: list[np.ndarray] | None = None,
            output: str | None = None, attention: list[np.ndarray] | None = None) -> list[np.ndarray]: ...


class BatchedEngine:
    """The engine contract over any runtime that takes padded batches: a subclass sets `spec`, `pad_id` and
    `input_names`, and runs one padded batch in `_infer`. `max_rows` caps the rows of one batch where the
    runtime has such a limit (a TensorRT plan's profiles)."""

    spec: ModelSpec
    pad_id: int
    input_names: set[str] | list[str]
    max_rows: int | None = None

    def run(
        self, sequences: list[np.ndarray], token_type_ids: list[np.ndarray] | None = None, output: str | None = None,
        attention: list[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        """Per input: `[dim]` embeddings, `[num_labels]` logits, or `[len_i, num_labels]` NER logits; `output`
        (default: the task's main one) asks for another of the graph's outputs (`[len_i, hidden]` token
        embeddings), which is all the runtime then computes. `attention`: per input, the tokens that may be
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
        for batch in self._batches([len(s) for s in ids]):
            batch_types = None if types is None else [types[i] for i in batch]
            batch_attention = None if attention is None else [attention[i] for i in batch]
            rows = self._run_padded([ids[i] for i in batch], batch_types, outputs, batch_attention)
            for output in outputs:
                for index, row in zip(batch, rows[output], strict=True):
                    results[output][index] = row
        return {output: [r for r in rows if r is not None] for output, rows in results.items()}

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Token-budget groups, each split into runs of at most `max_rows` rows."""
        groups = plan_batches(lengths, self.spec.max_num_tokens)
        if self.max_rows is None:
            return groups
        return [group[start : start + self.max_rows] for group in groups for start in range(0, len(group),
                                                                                                self.max_rows)]

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
