"""Choosing the CPU engine's variant at build time: the fastest that this CPU allows and that passes the gate.

`--precision auto` (the default) times every variant the CPU allows (trident.precision.VARIANTS) on one fixed
batch, then gates them against ONNX Runtime float32 on the parity texts plus GATE_TEXT_COUNT generated ones,
fastest first, until one passes: that one is the fastest that passes, and the slower ones need no gate run.
A variant other than ONNX Runtime float32 must beat it by FASTER_BY (else the proven default stays). Engines
under AUTO_MIN_ENGINE_BYTES (test-sized models) skip all this: their run time is fixed overhead, the measurement
noise, and they stay ONNX Runtime float32. `fp32`, `bf16` and `int8` choose among the variants of that
precision, a variant's name forces it; a forced choice the CPU lacks, or one that fails the gate, is refused
and nothing is written.

A first `trident serve` defers the choice (`defer`): it serves ONNX Runtime float32, which the build has already
checked against transformers, at once, and measures the variants in the background (cli/refine.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from builder.errors import BuildError
from trident import cpu
from trident.engines import DEFAULT_ENGINE, engine_kind
from trident.engines.contract import Engine
from trident.engines.onnxruntime import OnnxEngine, threads_per_instance
from trident.gate import TOLERANCES, GateReport
from trident.precision import (
    GATE_FILE,
    PRECISIONS,
    REFERENCE,
    VARIANT_NAMES,
    VARIANTS,
    Variant,
    default_precision,
    int8_format,
    missing,
    open_engine,
    save_gate,
    variant,
    variant_gate,
)
from trident.spec import ModelSpec

Progress = Callable[[str], None]
AUTO_MIN_ENGINE_BYTES = 20 * 2**20  # ~5M float32 parameters
FASTER_BY = 1.1
SPEED_BATCH = (16, 128)  # inputs x tokens of the timed batch
SPEED_RUNS = 3  # the best of these, after one warm-up run


@dataclass
class Candidate:
    variant: str
    ms: float = float("nan")
    report: GateReport | None = None
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the int8 MatMul groups

    def row(self) -> dict[str, Any]:
        """As the manifest keeps it; `passed` None: not gated (a faster variant passed, or it could not win)."""
        return {"variant": self.variant, "ms": self.ms, "error": self.error, **self.extra,
                **(self.report.to_dict() if self.report else {"passed": None})}

    @property
    def passed(self) -> bool:
        return self.report is not None and self.report.passed


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS and precision not in VARIANT_NAMES:
        raise BuildError(f"unknown --precision {precision!r}: one of {', '.join(PRECISIONS + VARIANT_NAMES)}")


def resolve_precision(precision: str | None, quantization: str = "no_quant", engine: str = DEFAULT_ENGINE,
                      flags: frozenset[str] | None = None) -> str:
    """The precision a build asked for, checked before any work: `--quantization int8` is onnxruntime-int8,
    other engines have no CPU variants, and a forced precision must be one this CPU has."""
    if quantization == "int8":
        if precision not in (None, "int8", "onnxruntime-int8"):
            raise BuildError(f"--quantization int8 is --precision onnxruntime-int8; it cannot go with --precision "
                             f"{precision}")
        precision = "onnxruntime-int8"
    precision = precision or default_precision()
    check_precision(precision)
    if not engine_kind(engine).cpu_variants:
        if precision not in ("auto", "fp32", REFERENCE):
            raise BuildError(f"--precision {precision} chooses among the CPU engine's variants (--engine "
                             f"{DEFAULT_ENGINE}); the {engine} engine has its own precision")
        return precision
    candidates_for(precision, cpu.cpu_flags() if flags is None else flags, AUTO_MIN_ENGINE_BYTES)
    return precision


def candidates_for(precision: str, flags: frozenset[str], engine_bytes: int) -> list[Variant]:
    """The variants to measure; BuildError, saying why, when the CPU allows none of those asked for."""
    check_precision(precision)
    if precision == "auto" and engine_bytes < AUTO_MIN_ENGINE_BYTES:
        return [variant(REFERENCE)]
    if precision in VARIANT_NAMES:
        rows = [variant(precision)]
    else:
        rows = [row for row in VARIANTS if precision == "auto" or row.precision == precision]
    allowed = [row for row in rows if missing(row, flags) is None]
    if not allowed:
        raise BuildError(f"--precision {precision}: " + "; ".join(missing(row, flags) or "" for row in rows)
                         + ". Nothing was written; use --precision auto or fp32")
    return allowed


def choose_variant(model_dir: Path, spec: ModelSpec, onnx_file: Path, precision: str, progress: Progress,
                   flags: frozenset[str] | None = None, defer: bool = False) -> dict[str, Path]:
    """Set spec.variant and spec.variant_choice; return the engine files the variant adds beside model.onnx.
    `defer` (auto only): keep ONNX Runtime float32 for now and name the other candidates in
    `variant_choice["deferred"]`, for a refinement to measure."""
    flags = cpu.cpu_flags() if flags is None else flags
    rows = candidates_for(precision, flags, _graph_bytes(onnx_file))
    if spec.task_row.hybrid:  # the gate compares the dense output alone: the sparse and ColBERT ones stay float32
        if REFERENCE not in [row.name for row in rows]:
            raise BuildError(f"--precision {precision}: a hybrid (BGE-M3) model is served as {REFERENCE} (the "
                             "precision gate checks only its dense output); use --precision fp32")
        rows = [row for row in rows if row.name == REFERENCE]
    deferred = [row for row in rows if defer and precision == "auto" and row.name != REFERENCE]
    rows = [row for row in rows if row not in deferred]
    spec.variant = REFERENCE
    spec.variant_choice = {"precision": precision, "cpu_kind": cpu.cpu_kind(flags),
                           "cpu_flags": cpu.relevant_flags(flags), "cpu_name": cpu.cpu_name(), "candidates": [],
                           "deferred": [row.name for row in deferred]}
    if [row.name for row in rows] == [REFERENCE]:
        return {}
    folder = onnx_file.parent
    threads = threads_per_instance(spec.engine_instances)
    ids, types, label_texts, lists = _gate_inputs(model_dir, spec)
    progress(f"CPU {cpu.cpu_kind(flags)} ({' '.join(cpu.relevant_flags(flags))}): timing "
             f"{', '.join(row.name for row in rows)} on {SPEED_BATCH[0]} x {SPEED_BATCH[1]} tokens, then gating the "
             f"fastest first on {len(ids)} texts")
    reference = OnnxEngine(onnx_file, spec, threads, spec.pad_token_id)
    expected = reference.run(ids, types)
    save_gate(folder / GATE_FILE, ids, types, expected, label_texts, lists)
    forced = precision != "auto"
    measured = [_time(row, model_dir, spec, folder, threads, ids, types, flags, forced, reference, progress)
                for row in rows]

    def check(candidate: Candidate) -> GateReport:
        """Opened again (one engine in memory at a time); the reference's own outputs are the float32 ones."""
        row = variant(candidate.variant)
        actual = expected if row.name == REFERENCE else open_engine(row.name, folder, spec, threads).run(ids, types)
        return variant_gate(spec, row, expected, actual, label_texts, lists)

    reference_ms = next((c.ms for c in measured if c.variant == REFERENCE), float("inf"))  # forced: not a choice
    chosen = fastest_passing(measured, reference_ms, check)
    spec.variant_choice["candidates"] = [c.row() for c in measured]
    progress(table(measured, chosen))
    if chosen is None:
        raise BuildError(f"--precision {precision}: no variant passed the gate ({TOLERANCES['reduced'].describe()} to "
                         "float32); nothing was written. Use --precision fp32")
    spec.variant = chosen.variant
    spec.variant_choice.update({"chosen": chosen.variant, "ms": chosen.ms,
                                "gate": chosen.report.to_dict() if chosen.report else {}})
    if "int8_vs_float32" in chosen.extra:
        spec.parity["int8_vs_float32"] = chosen.extra["int8_vs_float32"]
    return _variant_files(folder, chosen.variant)


def fastest_passing(measured: list[Candidate], reference_ms: float,
                    check: Callable[[Candidate], GateReport]) -> Candidate | None:
    """Gate the timed candidates fastest first (`check` sets each one's report) and return the first that passes:
    the fastest that passes. One that does not beat `reference_ms` by FASTER_BY (the reference itself aside)
    cannot win and is not gated; neither is any slower than the winner."""
    timed = sorted((c for c in measured if not c.error), key=lambda c: c.ms)
    for candidate in timed:
        if candidate.variant != REFERENCE and candidate.ms * FASTER_BY > reference_ms:
            continue
        candidate.report = check(candidate)
        if candidate.passed:
            return candidate
    return None


def table(measured: list[Candidate], chosen: Candidate | None) -> str:
    """One row per candidate: its ms, then the gate's two figures against float32, the angle (min cosine; a
    score's max |diff|) and the ranking (mean recall@10 of the neighbours; a reranker's min Kendall tau)."""
    lines = [f"{'variant':<18} {'ms':>8} {'min cos|dscore':>14} {'recall@10|tau':>13}  gate vs onnxruntime-fp32"]
    for c in measured:
        angle = ranking = ""
        if c.error:
            verdict = c.error
        elif c.report is None:
            verdict = "not gated: a faster variant passed" if chosen else "not gated: no faster than float32"
        else:
            verdict = ("pass: " if c.report.passed else "FAIL: ") + c.report.describe()
            angle, ranking = _figures(c.report)
        mark = "  <- chosen" if chosen is not None and c.variant == chosen.variant else ""
        lines.append(f"{c.variant:<18} {c.ms:>8.1f} {angle:>14} {ranking:>13}  {verdict}{mark}")
    return "\n".join(lines)


def _figures(report: GateReport) -> tuple[str, str]:
    """The angle and ranking figures of a report, as the table prints them ('' where not measured)."""
    angle = report.max_score_diff if not np.isnan(report.max_score_diff) else report.min_cosine
    ranking = report.min_kendall_tau if report.pair_lists else report.recall_at_10
    return ("" if np.isnan(angle) else f"{angle:.5f}"), ("" if np.isnan(ranking) else f"{ranking:.4f}")


def _time(row: Variant, model_dir: Path, spec: ModelSpec, folder: Path, threads: int, ids: list[np.ndarray],
          types: list[np.ndarray] | None, flags: frozenset[str], forced: bool, reference: Engine,
          progress: Progress) -> Candidate:
    """Prepare the variant's files, open it (the reference is open already) and time it."""
    candidate = Candidate(row.name)
    try:
        candidate.extra = _prepare(row, model_dir, spec, folder, ids, types, flags, progress)
        engine = reference if row.name == REFERENCE else open_engine(row.name, folder, spec, threads)
        candidate.ms = speed_ms(engine, spec)
    except BuildError as exc:
        if forced:
            raise
        candidate.error = str(exc).split(";")[0]
    return candidate


def speed_ms(engine, spec: ModelSpec) -> float:
    """Best-of-SPEED_RUNS milliseconds of one fixed batch through the engine, as served."""
    rng = np.random.default_rng(0)
    count, length = SPEED_BATCH[0], min(SPEED_BATCH[1], spec.max_length)
    ids = [rng.integers(1, max(2, spec.vocab_size), length) for _ in range(count)]
    types = [np.zeros(length, dtype=np.int64) for _ in range(count)] if spec.uses_token_type_ids else None
    engine.run(ids, types)
    best = float("inf")
    for _ in range(SPEED_RUNS):
        started = time.perf_counter()
        engine.run(ids, types)
        best = min(best, time.perf_counter() - started)
    return best * 1000


def _prepare(row: Variant, model_dir: Path, spec: ModelSpec, folder: Path, ids: list[np.ndarray],
             types: list[np.ndarray] | None, flags: frozenset[str], progress: Progress) -> dict[str, Any]:
    """Write the variant's own files (the float32 graph serves both float32 runtimes and OpenVINO bf16)."""
    if row.name == "onnxruntime-int8":
        from builder.int8 import build_int8

        target = folder / row.file
        target.parent.mkdir(exist_ok=True)
        label = len(_parity_texts(spec))
        report = build_int8(spec, folder / "model.onnx", target, ids[:label], None if types is None else
                            types[:label], progress, **int8_format(flags))
        return {"int8_vs_float32": report.to_dict(), "int8_format": int8_format(flags)}
    if row.name == "openvino-int8":
        from builder.openvino_int8 import quantize_openvino_int8

        quantize_openvino_int8(model_dir, spec, folder / "model.onnx", folder / row.file, progress)
    return {}


def _variant_files(folder: Path, name: str) -> dict[str, Path]:
    files = {GATE_FILE: folder / GATE_FILE}
    top = Path(variant(name).file).parts[0]
    if top != "model.onnx":
        files[top] = folder / top
    return files


def _parity_texts(spec: ModelSpec) -> list:
    from builder.parity import default_texts

    return default_texts(spec)


def _gate_inputs(model_dir: Path, spec: ModelSpec) -> tuple[list[np.ndarray], list[np.ndarray] | None, int,
                                                             list[tuple[int, int]]]:
    """Token ids of the parity texts (their NER labels must not move) and the generated gate texts; for a pair
    task, the gate's pair lists (the order of each is judged)."""
    from transformers import AutoTokenizer

    from builder.gate_texts import gate_pairs, gate_texts, pair_lists
    from builder.parity import tokenize

    parity = _parity_texts(spec)
    texts = [*parity, *(gate_pairs() if spec.task_row.pairs else gate_texts())]
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
    ids, types = tokenize(tokenizer, spec, texts)
    return ids, types, len(parity), pair_lists(len(parity)) if spec.task_row.pairs else []


def _graph_bytes(onnx_file: Path) -> int:
    weights = onnx_file.with_name(onnx_file.name + ".data")
    return onnx_file.stat().st_size + (weights.stat().st_size if weights.exists() else 0)
