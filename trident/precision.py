"""The CPU engine's variants (runtime x precision), the gate each is held to (trident.gate), and the serve-time
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trident import cpu
from trident.gate import GateReport, gate
from trident.spec import ModelSpec

PRECISIONS = ("auto", "fp32", "bf16", "int8")
PRECISION_ENV = "TRIDENT_PRECISION"  # the default of --precision (tests pin onnxruntime-fp32 with it)
REFERENCE = "onnxruntime-fp32"
GATE_FILE = "gate.npz"
log = logging.getLogger("trident.precision")


@dataclass(frozen=True)
class Variant:
    name: str
    precision: str  # fp32 | bf16 | int8
    runtime: str  # onnxruntime | openvino
    file: str  # in the engine model's folder
    needs: tuple[str, ...] = ()  # CPU flags, any of which it needs

    @property
    def tolerance(self) -> str:
        """Its gate against ONNX Runtime float32 (trident.gate): float32 parity, or the reduced precisions'."""
        return "float32" if self.precision == "fp32" else "reduced"


VARIANTS = (
    Variant("onnxruntime-fp32", "fp32", "onnxruntime", "model.onnx"),
    Variant("openvino-fp32", "fp32", "openvino", "model.onnx"),  # OpenVINO reads the ONNX graph itself
    Variant("openvino-bf16", "bf16", "openvino", "model.onnx", cpu.BF16_FLAGS),
    Variant("onnxruntime-int8", "int8", "onnxruntime", "int8/model.onnx"),  # builder/int8.py
    # NNCF static + dynamic int8 (builder/openvino_int8.py): only where int8 dot products are native (VNNI / AMX).
    Variant("openvino-int8", "int8", "openvino", "openvino-int8/model.xml", cpu.VNNI_FLAGS),
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


def variant_gate(spec: ModelSpec, row: Variant, expected: list[np.ndarray], actual: list[np.ndarray],
                 label_texts: int = 0, pair_lists: list[tuple[int, int]] | None = None) -> GateReport:
    """A variant's main engine output per text against ONNX Runtime float32's. `label_texts`: the first texts,
    whose NER labels must not change (the parity texts); `pair_lists`: the texts that are one query's pairs (a
    reranker's order within each is judged)."""
    return gate(expected, actual, row.tolerance, logits=spec.task_row.logits, label_texts=label_texts,
                pair_lists=pair_lists)


# --- the gate's inputs and float32 outputs, kept beside the engine ----------------------------------------


def save_gate(path: Path, ids: list[np.ndarray], types: list[np.ndarray] | None, expected: list[np.ndarray],
              label_texts: int, pair_lists: list[tuple[int, int]] | None = None) -> None:
    arrays: dict[str, np.ndarray] = {"label_texts": np.array(label_texts),
                                     "pair_lists": np.array(pair_lists or [], dtype=np.int64).reshape(-1, 2)}
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


def load_pair_lists(path: Path) -> list[tuple[int, int]]:
    """The gate's pair lists ([start, stop) of one query's pairs); none in a gate.npz from before they were kept."""
    with np.load(path) as data:
        return [(int(a), int(b)) for a, b in data["pair_lists"]] if "pair_lists" in data.files else []


# --- engines ----------------------------------------------------------------------------------------------


def open_engine(name: str, folder: Path, spec: ModelSpec, threads: int | None = None):
    """The engine of variant `name` over the files in `folder` (the engine model's version folder)."""
    row = variant(name)
    if row.runtime == "openvino":
        from trident.engines.openvino import OpenVinoEngine

        return OpenVinoEngine(folder / row.file, spec, row.precision, threads, spec.pad_token_id)
    from trident.engines.onnxruntime import OnnxEngine

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
        report = variant_gate(spec, variant(name), expected, engine.run(ids, types), label_texts,
                              load_pair_lists(folder / GATE_FILE))
        if report.passed:
            log.warning("%s: %s was chosen on a %s CPU, this one is %s; re-checked here: %s, kept",
                        spec.name, name, spec.variant_choice.get("cpu_kind"), cpu.cpu_kind(flags), report.describe())
            return engine
        reason = f"it fails the gate on this CPU ({report.describe()})"
    log.warning("%s: serving %s instead of %s (chosen on a %s CPU; this one is %s): %s", spec.name, REFERENCE,
                name, spec.variant_choice.get("cpu_kind"), cpu.cpu_kind(flags), reason or "no gate file to re-check")
    return open_engine(REFERENCE, folder, spec, threads)
