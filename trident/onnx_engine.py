"""The engine contract: unpadded token ids in, one result per input out, in the caller's order.

Inputs are sorted by length and packed into sub-batches whose padded size (rows * longest) stays within
`spec.max_num_tokens`, each padded only to its own longest row, so short inputs never pay for long ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from trident.spec import ModelSpec


def position_ids_from_mask(attention_mask: np.ndarray) -> np.ndarray:
    """Positions counted over real tokens only, so left padding does not shift them."""
    return np.clip(np.cumsum(attention_mask, axis=1) - 1, 0, None).astype(np.int64)


def plan_batches(lengths: list[int], max_num_tokens: int) -> list[list[int]]:
    """Group input indices, longest first, so each group's rows * longest <= max_num_tokens.

    A single input longer than the budget still gets a group of its own: it cannot be split.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    for index in order:
        # Sorted longest first, so the first row of a group sets its padded length.
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_num_tokens:
            batches[-1].append(index)
        else:
            batches.append([index])
    return batches


def session_options(intra_op_threads: int | None = None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One graph, one stream of ops: parallelism belongs inside each op, not across them.
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads  # None: ORT picks (one per physical core)
    return options


class OnnxEngine:
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

    def run(
        self, sequences: list[np.ndarray], token_type_ids: list[np.ndarray] | None = None
    ) -> list[np.ndarray]:
        """Per input: `[dim]` embeddings, `[num_labels]` logits, or `[len_i, num_labels]` NER logits."""
        if token_type_ids is not None and len(token_type_ids) != len(sequences):
            raise ValueError(f"{len(token_type_ids)} token_type_ids for {len(sequences)} sequences")
        ids = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
        if any(len(s) == 0 for s in ids):
            raise ValueError("empty token sequence")
        types = None if token_type_ids is None else [np.asarray(t, dtype=np.int64) for t in token_type_ids]
        if types is not None and any(len(t) != len(s) for t, s in zip(types, ids, strict=True)):
            raise ValueError("each token_type_ids row must match its sequence's length")
        results: list[np.ndarray | None] = [None] * len(ids)
        for batch in plan_batches([len(s) for s in ids], self.spec.max_num_tokens):
            batch_types = None if types is None else [types[i] for i in batch]
            outputs = self._run_padded([ids[i] for i in batch], batch_types)
            for index, output in zip(batch, outputs, strict=True):
                results[index] = output
        return [r for r in results if r is not None]

    def _run_padded(self, ids: list[np.ndarray], types: list[np.ndarray] | None) -> list[np.ndarray]:
        lengths = [len(s) for s in ids]
        input_ids, attention_mask = self._pad(ids, self.pad_id)
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = np.zeros_like(input_ids) if types is None else self._pad(types, 0)[0]
        if "position_ids" in self.input_names:
            feeds["position_ids"] = position_ids_from_mask(attention_mask)
        (output,) = self.session.run(None, feeds)
        if self.spec.task != "ner":
            return list(output)
        if self.spec.padding_side == "left":
            return [row[len(row) - n :] for row, n in zip(output, lengths, strict=True)]
        return [row[:n] for row, n in zip(output, lengths, strict=True)]

    def _pad(self, rows: list[np.ndarray], value: int) -> tuple[np.ndarray, np.ndarray]:
        """Pad to the longest row on spec.padding_side; returns (padded, attention mask)."""
        longest = max(len(r) for r in rows)
        padded = np.full((len(rows), longest), value, dtype=np.int64)
        mask = np.zeros((len(rows), longest), dtype=np.int64)
        for i, row in enumerate(rows):
            span = (
                slice(longest - len(row), longest) if self.spec.padding_side == "left" else slice(0, len(row))
            )
            padded[i, span] = row
            mask[i, span] = 1
        return padded, mask
