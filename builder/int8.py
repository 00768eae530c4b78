"""`quantization_type: int8` for the CPU engine: ONNX Runtime dynamic int8, kept only where it is accurate.

Constant-weight MatMuls get int8 weights (signed, per output channel) and activations quantized per call
(per tensor), so nothing needs calibration data; ONNX Runtime picks its int8 kernels for the CPU it runs on
(AVX2, AVX-512 VNNI, AMX). Attention's activation x activation products, softmax and norms stay float32.

Per-tensor activation scales cost accuracy unevenly: on all-MiniLM-L6-v2 quantizing every projection gives
a min cosine of 0.984 to float32, the attention projections alone 0.993. So the MatMuls are grouped by
weight shape (q/k/v/o, FFN up, FFN down...) and the build tries the groups' combinations from the most int8
multiply-adds down, keeping the first whose outputs pass the reduced-precision gate (trident.gate) against
float32's on the parity texts; if none does, nothing is written.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from builder.errors import BuildError
from trident.engines.onnxruntime import OnnxEngine
from trident.gate import TOLERANCES, GateReport, gate
from trident.spec import ModelSpec

MAX_TRIES = 8  # combinations of MatMul groups checked before giving up


@dataclass
class Int8Report:
    gate: GateReport  # against float32, on the parity texts
    int8_groups: list[str] = field(default_factory=list)  # weight shapes quantized, e.g. "384x1536 (6)"
    int8_fraction: float = 0.0  # of the MatMul multiply-adds per token

    def to_dict(self) -> dict[str, Any]:
        return {**self.gate.to_dict(), "int8_groups": self.int8_groups, "int8_fraction": self.int8_fraction}


def matmul_groups(fp32_path: Path) -> dict[tuple[int, ...], list[str]]:
    """Node names of the MatMuls with a constant weight, by weight shape."""
    import onnx

    model = onnx.load(str(fp32_path), load_external_data=False)
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    groups: dict[tuple[int, ...], list[str]] = {}
    for node in model.graph.node:
        if node.op_type == "MatMul" and len(shapes.get(node.input[1], ())) == 2:
            groups.setdefault(shapes[node.input[1]], []).append(node.name)
    return groups


def candidates(groups: dict[tuple[int, ...], list[str]]) -> list[list[tuple[int, ...]]]:
    """Non-empty combinations of groups, the most int8 multiply-adds first."""
    def macs(combo: tuple[tuple[int, ...], ...]) -> int:
        return sum(shape[0] * shape[1] * len(groups[shape]) for shape in combo)

    combos = [c for n in range(len(groups), 0, -1) for c in itertools.combinations(groups, n)]
    return [list(c) for c in sorted(combos, key=macs, reverse=True)]


def quantize_int8(fp32_path: Path, int8_path: Path, nodes: list[str], weights: str = "s8",
                  reduce_range: bool = False) -> None:
    """Write fp32_path with `nodes` (MatMul names) in dynamic int8 (`weights` s8 or u8; `reduce_range`: 7-bit
    weights, see trident.precision.int8_format). Weights go to `<int8_path name>.data` only when even a quarter
    of the float32 weights would pass protobuf's 2 GiB limit."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantizer advises static-quantization pre-processing on the root logger: not used here.
    logging.getLogger().addFilter(_drop_preprocessing_advice)

    data = fp32_path.with_name(fp32_path.name + ".data")
    external = data.exists() and data.stat().st_size > 7 * 2**30
    weight_type = QuantType.QInt8 if weights == "s8" else QuantType.QUInt8
    quantize_dynamic(fp32_path, int8_path, weight_type=weight_type, per_channel=True, reduce_range=reduce_range,
                     nodes_to_quantize=nodes, op_types_to_quantize=["MatMul"], use_external_data_format=external,
                     extra_options={"MatMulConstBOnly": True})


def _drop_preprocessing_advice(record: logging.LogRecord) -> bool:
    return "pre-processing before quantization" not in record.getMessage()


def build_int8(
    spec: ModelSpec, fp32_path: Path, int8_path: Path, ids: list[np.ndarray], types: list[np.ndarray] | None,
    progress: Callable[[str], None], weights: str = "s8", reduce_range: bool = False,
) -> Int8Report:
    """The int8 graph with the most int8 work that passes the gate (see the module doc); BuildError if none."""
    groups = matmul_groups(fp32_path)
    total = sum(shape[0] * shape[1] * len(names) for shape, names in groups.items())
    expected = OnnxEngine(fp32_path, spec, pad_id=spec.pad_token_id).run(ids, types)  # once, not per try
    report: Int8Report | None = None
    for combo in candidates(groups)[:MAX_TRIES]:
        quantize_int8(fp32_path, int8_path, [name for shape in combo for name in groups[shape]], weights, reduce_range)
        actual = OnnxEngine(int8_path, spec, pad_id=spec.pad_token_id).run(ids, types)
        report = Int8Report(gate(expected, actual, "reduced", logits=spec.task_row.logits, label_texts=len(ids)),
                            [f"{shape[0]}x{shape[1]} ({len(groups[shape])})" for shape in combo],
                            sum(shape[0] * shape[1] * len(groups[shape]) for shape in combo) / total)
        progress(f"int8 {', '.join(report.int8_groups)}: {report.gate.describe()} to float32")
        if report.gate.passed:
            return report
    last = report.gate.describe() if report else "nothing to quantize"  # the least int8 work tried
    raise BuildError(f"int8 outputs differ from float32: with the fewest int8 MatMuls tried, {last} (needs "
                     f"{TOLERANCES['reduced'].describe()}); nothing was written. Use quantization_type: no_quant "
                     "for this model")
