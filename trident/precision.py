"""The CPU engine's variants (runtime x precision), the one accuracy gate they all pass, and the serve-time
re-check of a variant chosen on another kind of CPU.

A variant is a row of `VARIANTS`. The build (`builder/variants.py`) measures the candidates the CPU allows,
gates them against ONNX Runtime float32 and records the chosen one in the manifest (`ModelSpec.variant`,
`ModelSpec.variant_choice`). The engine folder always holds the float32 `model.onnx`, the variant's own files
and `gate.npz` (the gate's token ids and the float32 outputs), so that the engine stage, finding itself on a
CPU whose relevant flags differ from the build's, re-runs the gate before it trusts the variant, and serves
float32 when the variant fails it or this CPU lacks what it needs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trident import cpu
from trident import tensors as T
from trident.postprocess import sigmoid, softmax
from trident.spec import ModelSpec

PRECISIONS = ("auto", "fp32", "bf16", "int8")
PRECISION_ENV = "TRIDENT_PRECISION"  # the default of --precision (tests pin onnxruntime-fp32 with it)
REFERENCE = "onnxruntime-fp32"
GATE_FILE = "gate.npz"
# Reduced precisions: per text, cosine to float32 (vectors) or |score difference| (rerank, classify, NER
# probabilities); NER's labels must also stay the same on the parity texts.
GATE_MIN_COSINE = 0.99
GATE_MAX_SCORE_DIFF = 0.01
# Another float32 runtime must match ONNX Runtime as the engine matches transformers (builder/parity.py).
STRICT_MAX_ABS_DIFF = 1e-4
STRICT_MIN_COSINE = 0.99999

log = logging.getLogger("trident.precision")


@dataclass(frozen=True)
class Variant:
    name: str
    precision: str  # fp32 | bf16 | int8
    runtime: str  # onnxruntime | openvino
    file: str  # in the engine model's folder
    needs: tuple[str, ...] = ()  # CPU flags, any of which it needs

    @property
    def strict(self) -> bool:
        """float32 variants are held to float32 parity, reduced ones to the reduced-precision gate."""
        return self.precision == "fp32"


VARIANTS = (
    Variant("onnxruntime-fp32", "fp32", "onnxruntime", "model.onnx"),
    Variant("openvino-fp32", "fp32", "openvino", "model.onnx"),  # OpenVINO reads the ONNX graph itself
    Variant("openvino-bf16", "bf16", "openvino", "model.onnx", cpu.BF16_FLAGS),
    Variant("onnxruntime-int8", "int8", "onnxruntime", "int8/model.onnx"),  # builder/int8.py
    Variant("openvino-int8", "int8", "openvino", "openvino-int8/model.xml"),  # NNCF, weights and activations
)
VARIANT_NAMES = tuple(v.name for v in VARIANTS)


def variant(name: str) -> Variant:
    for row in VARIANTS:
        if row.name == name:
            return row
    raise KeyError(f"unknown engine variant {name!r}; known: {', '.join(VARIANT_NAMES)}")


def default_precision() -> str:
    return os.environ.get(PRECISION_ENV, "auto")


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def missing(row: Variant, flags: frozenset[str]) -> str | None:
    """Why this CPU (or this Python) cannot run the variant, or None."""
    if row.needs and not cpu.has_any(flags, row.needs):
        return (f"{row.name} needs a CPU with {' or '.join(row.needs)}; this one ({cpu.cpu_kind(flags)}) has "
                f"{' '.join(cpu.relevant_flags(flags)) or 'none of the relevant flags'}")
    if row.runtime == "openvino" and not openvino_installed():
        return f"{row.name} needs the openvino package (pip install openvino)"
    return None


def int8_format(flags: frozenset[str]) -> dict[str, Any]:
    """ONNX Runtime's int8 format that is fast and exact on this CPU: u8 x s8 where VNNI / AMX multiply it
    without saturation; elsewhere (AVX2, AVX-512 without VNNI) 7-bit weights so vpmaddubsw cannot saturate."""
    vnni = cpu.has_any(flags, cpu.VNNI_FLAGS)
    return {"weights": "s8", "reduce_range": not vnni}


# --- the gate ---------------------------------------------------------------------------------------------


@dataclass
class GateReport:
    passed: bool
    num_texts: int
    min_cosine: float = float("nan")  # vectors
    max_score_diff: float = float("nan")  # rerank / classify / NER probabilities
    max_abs_diff: float = float("nan")  # raw outputs (the strict float32 gate)
    labels_changed: int = 0  # NER tokens whose label moved, on the parity texts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        parts = []
        if not np.isnan(self.min_cosine):
            parts.append(f"min cosine {self.min_cosine:.5f}")
        if not np.isnan(self.max_score_diff):
            parts.append(f"max |score diff| {self.max_score_diff:.4f}")
        if self.labels_changed:
            parts.append(f"{self.labels_changed} NER labels changed")
        return ", ".join(parts) + f" over {self.num_texts} texts"


def _cosines(expected: list[np.ndarray], actual: list[np.ndarray]) -> np.ndarray:
    """Row by row (a per-token output: token by token), in float64; NaN stays NaN."""
    want = np.concatenate([e.reshape(-1, e.shape[-1]) for e in expected]).astype(np.float64)
    got = np.concatenate([a.reshape(-1, a.shape[-1]) for a in actual]).astype(np.float64)
    norms = np.maximum(np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1), 1e-30)
    return (want * got).sum(axis=1) / norms


def _scores(logits: np.ndarray) -> np.ndarray:
    return sigmoid(logits) if logits.shape[-1] == 1 else softmax(logits)


def gate(spec: ModelSpec, expected: list[np.ndarray], actual: list[np.ndarray], strict: bool,
         label_texts: int = 0) -> GateReport:
    """`actual` (a variant's main engine output per text) against `expected` (ONNX Runtime float32's).
    `label_texts`: the first texts, whose NER labels must not change (the parity texts)."""
    report = GateReport(passed=False, num_texts=len(expected))
    report.max_abs_diff = max((float(np.max(np.abs(e - a))) for e, a in zip(expected, actual, strict=True)),
                              default=float("nan"))
    task = spec.task_row
    if task.engine_output == T.LOGITS:
        diffs = [np.abs(_scores(e.astype(np.float64)) - _scores(a.astype(np.float64)))
                 for e, a in zip(expected, actual, strict=True)]
        report.max_score_diff = float(max(np.max(d) for d in diffs))
        if task.per_token:
            report.labels_changed = int(sum(np.sum(np.argmax(e, -1) != np.argmax(a, -1))
                                            for e, a in zip(expected[:label_texts], actual[:label_texts],
                                                            strict=True)))
        ok = report.max_score_diff <= GATE_MAX_SCORE_DIFF and report.labels_changed == 0
    else:
        report.min_cosine = float(np.min(_cosines(expected, actual)))
        ok = report.min_cosine >= (STRICT_MIN_COSINE if strict else GATE_MIN_COSINE)
    if strict:
        ok = ok and report.max_abs_diff <= STRICT_MAX_ABS_DIFF
    report.passed = bool(ok) and not np.isnan(report.max_abs_diff)  # NaN anywhere fails
    return report


# --- the gate's inputs and float32 outputs, kept beside the engine ----------------------------------------


def save_gate(path: Path, ids: list[np.ndarray], types: list[np.ndarray] | None, expected: list[np.ndarray],
              label_texts: int) -> None:
    arrays: dict[str, np.ndarray] = {"label_texts": np.array(label_texts)}
    for i, row in enumerate(ids):
        arrays[f"ids_{i}"] = row.astype(np.int64)
        arrays[f"expected_{i}"] = expected[i].astype(np.float32)
        if types is not None:
            arrays[f"types_{i}"] = types[i].astype(np.int64)
    np.savez_compressed(path, **arrays)


def load_gate(path: Path) -> tuple[list[np.ndarray], list[np.ndarray] | None, list[np.ndarray], int]:
    with np.load(path) as data:
        n = sum(1 for key in data.files if key.startswith("ids_"))
        ids = [data[f"ids_{i}"] for i in range(n)]
        types = [data[f"types_{i}"] for i in range(n)] if "types_0" in data.files else None
        return ids, types, [data[f"expected_{i}"] for i in range(n)], int(data["label_texts"])


# --- engines ----------------------------------------------------------------------------------------------


def open_engine(name: str, folder: Path, spec: ModelSpec, threads: int | None = None):
    """The engine of variant `name` over the files in `folder` (the engine model's version folder)."""
    row = variant(name)
    if row.runtime == "openvino":
        from trident.openvino_engine import OpenVinoEngine

        return OpenVinoEngine(folder / row.file, spec, row.precision, threads, spec.pad_token_id)
    from trident.onnx_engine import OnnxEngine

    return OnnxEngine(folder / row.file, spec, threads, spec.pad_token_id)


def served_engine(spec: ModelSpec, folder: Path, threads: int | None = None,
                  flags: frozenset[str] | None = None):
    """The recorded variant's engine if this CPU is the kind it was chosen on, or if it passes the gate again
    here; else ONNX Runtime float32, said in the log."""
    flags = cpu.cpu_flags() if flags is None else flags
    name = spec.variant
    recorded = spec.variant_choice.get("cpu_flags")
    reason = missing(variant(name), flags)  # also: OpenVINO not installed where this is served
    if name == REFERENCE or (reason is None and recorded == cpu.relevant_flags(flags)):
        return open_engine(name, folder, spec, threads)
    if reason is None and (folder / GATE_FILE).is_file():
        engine = open_engine(name, folder, spec, threads)
        ids, types, expected, label_texts = load_gate(folder / GATE_FILE)
        report = gate(spec, expected, engine.run(ids, types), variant(name).strict, label_texts)
        if report.passed:
            log.warning("%s: %s was chosen on a %s CPU, this one is %s; re-checked here: %s, kept",
                        spec.name, name, spec.variant_choice.get("cpu_kind"), cpu.cpu_kind(flags), report.describe())
            return engine
        reason = f"it fails the gate on this CPU ({report.describe()})"
    log.warning("%s: serving %s instead of %s (chosen on a %s CPU; this one is %s): %s", spec.name, REFERENCE,
                name, spec.variant_choice.get("cpu_kind"), cpu.cpu_kind(flags), reason or "no gate file to re-check")
    return open_engine(REFERENCE, folder, spec, threads)
