"""The model spec: the one description of a built model, written at build time and read by everyone.

It travels as `manifest.json` beside the Triton repository and, verbatim, as the `trident_manifest`
parameter of the ensemble's config, so an HTTP front pointed at any Triton can discover what it serves.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trident import heads
from trident import tensors as T
from trident.engines import DEFAULT_ENGINE
from trident.heads import POOLINGS
from trident.tasks import Task, task_of

__all__ = ["MANIFEST_PARAMETER", "POOLINGS", "QUANTIZATIONS", "ModelSpec"]
# BEI's quantization_type values, plus int8: Trident's CPU quantization (ONNX Runtime dynamic int8).
QUANTIZATIONS = ("no_quant", "int8", "fp8", "fp8_kv", "fp4", "fp4_kv", "fp4_mlp_only")
MANIFEST_PARAMETER = "trident_manifest"
# The exported engine graph's output names, per engine output tensor.
GRAPH_OUTPUTS = {T.POOLED: "embeddings", T.TOKEN_EMBEDDINGS: "token_embeddings", T.LOGITS: "logits",
                 T.TOKEN_WEIGHTS: "token_weights"}


@dataclass
class ModelSpec:
    name: str
    task: str
    architecture: str
    model_type: str
    max_length: int
    dim: int
    # Embeddings: the sentence-transformers modules after the encoder (trident.heads); empty for other tasks.
    head: list[dict[str, Any]] = field(default_factory=list)
    padding_side: str = "right"
    pad_token_id: int = 0
    vocab_size: int = 0
    uses_token_type_ids: bool = False
    id2label: dict[str, str] = field(default_factory=dict)
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    # An LLM reranker's prompt (builder/families/llm_reranker.py): `template` with {instruction}, {query} and
    # {document}, and the default `instruction`; the fixed text around it is in the tokenizer.
    rerank_prompt: dict[str, str] = field(default_factory=dict)
    # LoRA task adapters run by the one engine (jina-embeddings-v3): ADAPTER i + 1 is adapters[i], 0 none.
    adapters: list[str] = field(default_factory=list)
    default_route: str = ""
    max_num_tokens: int = 16384
    quantization: str = "no_quant"
    dtype: str = "float32"
    engine: str = DEFAULT_ENGINE  # a row of the engine table (trident.engines)
    # Engine model instances in Triton. On CPU each runs ONNX Runtime with cores // instances threads:
    # two single-threaded sessions on 2 cores spent 2.9 ms of CPU per short request, one two-threaded
    # session 4.3 ms (its threads wait on each other while the HTTP process and tokenizer hold a core).
    engine_instances: int = 1
    # The CPU engine's variant (trident.precision.VARIANTS: runtime and precision) and how it was chosen:
    # {"precision" asked, "cpu_kind", "cpu_flags" (the relevant ones), "cpu_name", "candidates": [{"variant",
    # "ms", "passed", gate figures...}], "ms", "min_cosine" / "max_score_diff" of the chosen one}.
    variant: str = "onnxruntime-fp32"
    variant_choice: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    revision: str = ""
    content_hash: str = ""
    builder_version: str = ""  # trident.__version__ of the build
    parity: dict[str, Any] = field(default_factory=dict)
    # Embeddings: [[min per dimension], [max per dimension]] of the normalized vectors of a fixed calibration
    # text set (builder.calibration): the ranges of int8 / uint8 embeddings (`quantize_embeddings`' `ranges`).
    quantization_ranges: list[list[float]] = field(default_factory=list)
    # Multi-vector models: how each side is tokenized, as sentence-transformers' Transformer module says:
    # {"query_length": int | None, "document_length": int | None, "expansion": None | {"strategy": "fixed" |
    # "min", "attend": bool, "length": int, "token_id": int}} (queries padded with token_id up to length).
    sides: dict[str, Any] = field(default_factory=dict)
    # Hybrid (BGE-M3) models, as builder.hybrid reads FlagEmbedding's files: {"colbert_dim": width of the ColBERT
    # vectors, "sparse_skip_ids": the ids that never carry a lexical weight (CLS, EOS, PAD, UNK)}.
    hybrid: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        task_of(self.task)  # an unknown task fails here
        if self.head:
            heads.check(self.head)
        if not self.default_route:
            self.default_route = self.task_row.default_route

    def engine_input_names(self) -> list[str]:
        """Inputs of the exported engine graph, in order."""
        names = ["input_ids", "attention_mask"]
        if self.uses_token_type_ids:
            names.append("token_type_ids")
        # Left padding shifts every token right, so positions must come from the mask, not from arange.
        if self.padding_side == "left":
            names.append("position_ids")
        return names

    @property
    def pooling(self) -> str | None:
        return heads.pooling_mode(self.head)

    @property
    def normalize(self) -> bool:
        """The model's own default: its head ends with Normalize."""
        return heads.normalizes(self.head)

    @property
    def task_row(self) -> Task:
        return task_of(self.task)

    def engine_output_name(self, output: str | None = None) -> str:
        """The exported graph's name of an engine output (default: the task's main one)."""
        return GRAPH_OUTPUTS[output or self.task_row.engine_output]

    def engine_output_names(self) -> list[str]:
        """The graph's outputs, in order."""
        return [GRAPH_OUTPUTS[output] for output in self.task_row.engine_outputs]

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    def labels(self) -> list[str]:
        return [self.id2label[str(i)] for i in range(self.num_labels)]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in known}
        if "head" not in data and data.get("pooling"):  # a manifest written before heads were module lists
            fields["head"] = heads.simple_head(data["pooling"], bool(data.get("normalize")))
        return cls(**fields)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        return cls.from_dict(json.loads(text))

    def save(self, path: Path) -> None:
        path.write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: Path) -> ModelSpec:
        return cls.from_json(path.read_text())
