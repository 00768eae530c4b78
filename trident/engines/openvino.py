"""OpenVINO on CPU, inside the engine stage's Python stub: float32, bf16 (AVX512_BF16 / AMX) or an NNCF int8 model
(static int8 MatMuls, dynamic int8 ones, bf16 around them where the CPU has it: builder/openvino_int8.py).

This Triton build has only the Python backend (no Triton OpenVINO backend), so OpenVINO runs here, under the
same contract and the same batching as `OnnxEngine`. Threads follow ONNX Runtime's: cores / engine instances
per Triton instance, one stream, no pinning and no busy-waiting (the cores are shared with Triton, the
tokenizer and the HTTP process).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trident.engines.contract import BatchedEngine
from trident.spec import ModelSpec

HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: the model's int8 MatMuls, the rest f32 (or bf16)
# int8: the MatMuls builder/openvino_int8.py left with int8 weights and float inputs get their inputs quantized at
# run time, per token in groups of this many values, so they run on int8 kernels too. On all-MiniLM-L6-v2 (AMD
# EPYC, 32 x 256 tokens) groups of 32 / 64 / 128 all pass the gate with the same margins (min cosine 0.99517 /
# 0.99488 / 0.99484, recall@10 0.9578 / 0.9540 / 0.9564); 128 is the fastest (1.38-1.46x bf16 against 1.29-1.35x).
DYNAMIC_GROUP = 128


def compile_options(precision: str, threads: int | None, flags: frozenset[str] | None = None) -> dict[str, object]:
    """`int8`: the graph around the int8 MatMuls in bf16 where the CPU (`flags`, default this one's) has it."""
    hint = HINTS[precision]
    if precision == "int8":
        from trident import cpu

        hint = "bf16" if cpu.has_any(cpu.cpu_flags() if flags is None else flags, cpu.BF16_FLAGS) else "f32"
    options: dict[str, object] = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY",
                                  "NUM_STREAMS": 1, "ENABLE_CPU_PINNING": False}
    if precision == "int8":
        options["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = DYNAMIC_GROUP
    if threads is not None:
        options["INFERENCE_NUM_THREADS"] = threads
    return options


class OpenVinoEngine(BatchedEngine):
    def __init__(self, model_path: Path, spec: ModelSpec, precision: str = "fp32", threads: int | None = None,
                 pad_id: int = 0) -> None:
        import openvino as ov

        self.spec = spec
        self.pad_id = pad_id
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(model_path)), "CPU", compile_options(precision, threads))
        self.input_names = {name for port in self.compiled.inputs for name in port.get_names()}
        self.request = self.compiled.create_infer_request()  # one per instance: Triton calls it one batch at a time

    def _infer(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> list[np.ndarray]:
        results = self.request.infer(feeds)  # copies below: the buffers are reused
        return [np.array(results[self.compiled.output(name)], dtype=np.float32) for name in output_names]
