"""Export a local Hugging Face checkpoint to the one ONNX graph the engine serves.

The graph takes int64 `[batch, seq]` inputs (`ModelSpec.engine_input_names`) and returns, for an embedding model,
`embeddings` `[batch, dim]` (the head's pooling and Dense modules folded in, never normalized:
normalization is a per-request choice) and `token_embeddings` `[batch, seq, hidden]` (the last hidden
state, for /embed_all: the engine asks for one or the other); for a SPLADE model `embeddings`
`[batch, vocab]` (SpladePooling folded in: the `[batch, seq, vocab]` logits stay inside); for a multi-vector
model `token_embeddings` `[batch, seq, dim]` through its Dense modules; else `logits` (`[batch, num_labels]`,
or `[batch, seq, num_labels]` for NER).

Only the dynamo exporter is used: the legacy TorchScript exporter silently produces wrong hidden states
for BERT-family models.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import transformers
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.utils import logging as hf_logging

from trident import heads
from trident import tensors as T
from trident.batching import position_ids_from_mask
from trident.gate import TOLERANCES
from trident.head_layers import DenseStack, pool_padded, splade_pool_padded
from trident.models import register as register_trident_models
from trident.spec import ModelSpec

OPSET = 18
# eager first: its additive-mask graph runs 12% faster in ORT on CPU than the exported SDPA decomposition
# (whose IsNaN/Where guards for fully masked rows took 15% of MiniLM's time); sdpa is the fallback.
ATTN_IMPLEMENTATIONS = ("eager", "sdpa")
# Example shapes: batch 2 and seq 16 so torch.export never specializes either dim to 0/1.
_EXAMPLE_BATCH = 2
_EXAMPLE_SEQ = 16
# Protobuf refuses files over 2 GiB; above this the weights go to one `<name>.data` file beside the graph.
_EXTERNAL_DATA_BYTES = 1_800_000_000


Progress = Callable[[str], None]


class ExportError(RuntimeError):
    """The exported graph does not reproduce the torch model."""


def load_model(
    model_dir: Path, spec: ModelSpec, attn_implementation: str = "sdpa", trust_remote_code: bool = False
) -> PreTrainedModel:
    """Load the checkpoint in float32 eval mode; code shipped in model_dir runs only if trust_remote_code."""
    register_trident_models()  # a converted family may be one of Trident's own classes (trident/models/)
    model = getattr(transformers, spec.task_row.auto_class).from_pretrained(
        model_dir,
        local_files_only=True,  # remote code, when trusted, comes from model_dir itself, never the hub
        trust_remote_code=trust_remote_code,
        dtype=torch.float32,
        attn_implementation=attn_implementation,
    )
    return model.eval()


class ServingGraph(nn.Module):
    """What gets exported: the HF model plus its head, returning the task's engine outputs in order
    (`Task.engine_outputs`): an embedding model's pooled vector (the head up to, not including, Normalize)
    and each token's last hidden state; a SPLADE model's pooled vocabulary vector; logits."""

    def __init__(self, model: PreTrainedModel, spec: ModelSpec, model_dir: Path) -> None:
        super().__init__()
        self.model = model
        self.outputs = spec.task_row.engine_outputs
        self.pooling = spec.pooling
        self.splade = spec.head[0] if heads.is_sparse(spec.head) else None
        self.multi_vector = spec.task_row.multi_vector  # its token vectors go through the Dense modules
        self.dense = DenseStack(spec.head, model_dir) if spec.task_row.dense_vectors or self.multi_vector else None
        if spec.task_row.hybrid:  # BGE-M3: each token's lexical weight and ColBERT vector (builder.hybrid)
            from builder.hybrid import COLBERT_FILE, SPARSE_FILE, linear

            self.sparse_linear, self.colbert_linear = linear(model_dir, SPARSE_FILE), linear(model_dir, COLBERT_FILE)
        self.hybrid = spec.task_row.hybrid

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
    ) -> tuple[Tensor, ...]:
        extra = {"token_type_ids": token_type_ids, "position_ids": position_ids}
        kwargs = {k: v for k, v in extra.items() if v is not None}
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return tuple(self._output(name, out, attention_mask) for name in self.outputs)

    def _output(self, name: str, out: object, attention_mask: Tensor) -> Tensor:
        if name == T.LOGITS:
            return out.logits
        if name == T.TOKEN_WEIGHTS:
            return torch.relu(self.sparse_linear(out.last_hidden_state.float()))
        if name == T.TOKEN_EMBEDDINGS:
            hidden = out.last_hidden_state.float()
            if self.hybrid:  # every token's, CLS too: the postprocess drops it (and normalizes)
                return self.colbert_linear(hidden)
            return self.dense(hidden) if self.multi_vector else hidden
        if self.splade is not None:  # the [batch, seq, vocab] logits never leave the graph
            return splade_pool_padded(out.logits, attention_mask, self.splade["strategy"], self.splade["activation"])
        return self.dense(pool_padded(out.last_hidden_state, attention_mask, self.pooling))


def _example_inputs(spec: ModelSpec, vocab_size: int, batch: int, lengths: list[int]) -> dict[str, Tensor]:
    """Random in-vocab ids with per-row lengths, padded on spec.padding_side with a zero mask."""
    seq = max(lengths)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, vocab_size, (batch, seq), generator=generator)
    attention_mask = torch.zeros(batch, seq, dtype=torch.int64)
    for row, length in enumerate(lengths):
        if spec.padding_side == "left":
            attention_mask[row, seq - length :] = 1
        else:
            attention_mask[row, :length] = 1
    feeds = {"input_ids": input_ids * attention_mask, "attention_mask": attention_mask}
    if spec.uses_token_type_ids:
        token_type_ids = torch.zeros_like(input_ids)
        token_type_ids[:, seq // 2 :] = 1  # exercise both segment embeddings
        feeds["token_type_ids"] = token_type_ids * attention_mask
    if spec.padding_side == "left":
        feeds["position_ids"] = torch.from_numpy(position_ids_from_mask(attention_mask.numpy()))
    return feeds


def _param_bytes(model: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the exporter's known-noise (torchvision, axis renames, deprecations) and HF progress bars."""
    registration_logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    old_level = registration_logger.level
    registration_logger.setLevel(logging.ERROR)
    bars_were_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*")
            yield
    finally:
        registration_logger.setLevel(old_level)
        if bars_were_enabled:
            hf_logging.enable_progress_bar()


def _export(graph: ServingGraph, spec: ModelSpec, out_path: Path) -> None:
    vocab_size = graph.model.config.vocab_size
    example_seq = max(2, min(_EXAMPLE_SEQ, spec.max_length))
    feeds = _example_inputs(spec, vocab_size, _EXAMPLE_BATCH, [example_seq, example_seq // 2])
    batch = torch.export.Dim("batch")
    seq = torch.export.Dim("seq", max=max(spec.max_length, example_seq))
    external = _param_bytes(graph) > _EXTERNAL_DATA_BYTES
    _remove_outputs(out_path)
    torch.onnx.export(
        graph,
        (),
        str(out_path),
        kwargs=feeds,
        input_names=list(feeds),
        output_names=spec.engine_output_names(),
        opset_version=OPSET,
        dynamo=True,
        external_data=external,
        dynamic_shapes={name: {0: batch, 1: seq} for name in feeds},
        verbose=False,
    )


def _remove_outputs(out_path: Path) -> None:
    """Drop a previous graph and its weights file so a stale `.data` can never be picked up."""
    for path in (out_path, out_path.with_name(out_path.name + ".data")):
        path.unlink(missing_ok=True)


def _check_against_torch(graph: ServingGraph, spec: ModelSpec, out_path: Path) -> float:
    """Max abs diff on shapes the export never saw: batch 1 / seq 1, and a ragged batch of 3."""
    vocab_size = graph.model.config.vocab_size
    session = ort.InferenceSession(str(out_path), providers=["CPUExecutionProvider"])
    longest = max(2, min(23, spec.max_length))
    diffs = []
    for batch, lengths in ((1, [1]), (3, [longest, 1, longest // 2])):
        feeds = _example_inputs(spec, vocab_size, batch, lengths)
        with torch.inference_mode():
            expected_outputs = [t.numpy() for t in graph(**feeds)]
        actual_outputs = session.run(None, {k: v.numpy() for k, v in feeds.items()})
        for name, expected, actual in zip(graph.outputs, expected_outputs, actual_outputs, strict=True):
            if actual.shape != expected.shape:
                raise ExportError(f"ONNX output {name} shape {actual.shape} != torch {expected.shape}")
            if spec.task_row.per_token_output(name):  # padding rows carry no meaning and may differ
                mask = feeds["attention_mask"].numpy().astype(bool)
                actual, expected = actual[mask], expected[mask]
            diffs.append(float(np.abs(actual - expected).max()))
    return float(np.max(diffs))  # np.max, not max(): a NaN must propagate and fail the tolerance check


def export_onnx(
    model_dir: Path,
    spec: ModelSpec,
    out_path: Path,
    progress: Progress | None = None,
    trust_remote_code: bool = False,
) -> None:
    """Export model_dir to out_path (ONNX, opset 18, dynamic batch and seq) and check it against torch.

    Tries eager attention, then sdpa, keeping the first whose graph matches torch within
    the float32 tolerance (trident.gate) on unseen shapes; raises ExportError if none does.
    """
    say = progress or (lambda _msg: None)
    if spec.task_row.pools and spec.pooling is None:
        raise ValueError("embedding export needs a head that starts with Pooling")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for attn in ATTN_IMPLEMENTATIONS:
        with quiet():
            say(f"loading {model_dir} ({spec.task}, attention={attn})")
            try:
                graph = ServingGraph(load_model(model_dir, spec, attn, trust_remote_code), spec, model_dir).eval()
            except (ValueError, ImportError) as exc:  # model has no such attention implementation
                failures.append(f"{attn}: cannot load ({exc})")
                continue
            say(f"exporting to {out_path} (opset {OPSET}, dynamo)")
            _export(graph, spec, out_path)
            say("checking the ONNX graph against torch on batch 1 / seq 1 and a ragged batch")
            diff = _check_against_torch(graph, spec, out_path)
        if diff <= TOLERANCES["float32"].max_abs_diff:
            say(f"export ok: max abs diff vs torch {diff:.2e}")
            return
        failures.append(f"{attn}: max abs diff {diff:.2e} > {TOLERANCES['float32'].max_abs_diff:.0e}")
    _remove_outputs(out_path)
    raise ExportError(f"no attention implementation exported correctly: {'; '.join(failures)}")
