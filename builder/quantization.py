"""Which quantizations a build may ask for here, and the FP8 accuracy gate.

- fp8 (and fp8_kv, the same here: embedding models keep no KV cache): causal models only, `--engine torch`,
  on a GPU with FP8 tensor cores (compute capability >= 8.9). The build then compares FP8 embeddings with
  the unquantized engine's (bf16 on the GPU) on a fixed text set and refuses any that fail the FP8 gate
  (trident.gate).
- fp4*: needs Blackwell's FP4 tensor cores (compute capability >= 10.0), and Trident has no FP4 kernels
  yet, so it is refused everywhere, with the reason that applies.
- BERT-family models: no quantization at all, as in BEI-Bert (config_file.check_settings says so first).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from builder.errors import BuildError
from trident.engines import ENGINES, engine_kind
from trident.gate import TOLERANCES, GateReport, gate
from trident.spec import ModelSpec

FP8_CAPABILITY = (8, 9)
FP4_CAPABILITY = (10, 0)
FP8_KINDS = ("fp8", "fp8_kv")
Capability = tuple[int, int] | None


def gpu_capability() -> Capability:
    """The first CUDA device's compute capability, or None without one (or without a CUDA torch)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return tuple(torch.cuda.get_device_capability(0))


def _describe(capability: Capability) -> str:
    if capability is None:
        return "no CUDA GPU"
    return f"a GPU of compute capability {capability[0]}.{capability[1]}"


def check_quantization(spec: ModelSpec, quantization: str, engine: str, capability: Capability) -> None:
    """Refuse, with the reason, a quantization this model, engine or machine cannot build. BERT-family
    models are refused earlier (config_file.check_settings) with BEI-Bert's reason."""
    if quantization == "no_quant":
        return
    if quantization.startswith("fp4"):
        if capability is None or capability < FP4_CAPABILITY:
            raise BuildError(f"quantization_type: {quantization} needs FP4 tensor cores (NVIDIA Blackwell, compute "
                             f"capability 10.0 or newer); this machine has {_describe(capability)}. Use fp8 on "
                             "Hopper or Ada GPUs, or no_quant")
        raise BuildError(f"quantization_type: {quantization} is not implemented in Trident yet (no FP4 kernels); "
                         "use fp8 or no_quant")
    if quantization not in FP8_KINDS:
        raise BuildError(f"unknown quantization_type {quantization!r}")
    if not engine_kind(engine).fp8:
        fp8_engines = " or ".join(f"--engine {kind.name}" for kind in ENGINES.values() if kind.fp8)
        raise BuildError(f"quantization_type: {quantization} runs on the PyTorch GPU engine: add {fp8_engines} "
                         f"(the {engine} engine has no FP8 path)")
    if capability is None or capability < FP8_CAPABILITY:
        raise BuildError(f"quantization_type: {quantization} needs FP8 tensor cores (compute capability 8.9 or newer: "
                         f"Ada, Hopper, Blackwell) to build and to check its accuracy; this machine has "
                         f"{_describe(capability)}. Build on the GPU that will serve it, or use no_quant")


@dataclass
class Fp8Report:
    gate: GateReport  # FP8 against the unquantized engine
    quantized_layers: int
    reference: str  # what FP8 was compared with, e.g. "torch bfloat16 on cuda"
    kernel: bool  # torch._scaled_mm (True) or the dequantized float reference (False)

    def to_dict(self) -> dict[str, Any]:
        return {**self.gate.to_dict(), "quantized_layers": self.quantized_layers, "reference": self.reference,
                "kernel": self.kernel}


def fp8_accuracy(model_dir: Path, spec: ModelSpec, ids: list[np.ndarray], *, device: str | None = None,
                 fp8_kernel: bool | None = None) -> Fp8Report:
    """Outputs of `ids` from the unquantized engine and from the FP8 one, through the FP8 gate.

    On a GPU both run as served (bf16 reference, FP8 through torch._scaled_mm); on a CPU (tests) the
    reference is float32 and FP8 goes through the dequantized matmul unless `fp8_kernel` says otherwise.
    The spec's model type is not checked here: tests force FP8 on a BERT checkpoint through this function.
    """
    import torch

    from trident.engines.torch.engine import EngineOptions, TorchEngine

    options = EngineOptions(fp8_kernel=fp8_kernel, compile=False)  # compiling changes speed, not accuracy
    engine = TorchEngine.load(model_dir, spec, device=device, options=options, quantization="no_quant")
    label = f"torch {str(next(engine.model.parameters()).dtype).removeprefix('torch.')} on {engine.device}"
    expected = engine.run(ids)
    engine.quantize_fp8()  # in place, layer by layer: one copy of the weights at a time
    actual = engine.run(ids)
    kernel = any(getattr(m, "use_kernel", False) for m in engine.model.modules())
    report = Fp8Report(gate(expected, actual, "fp8", logits=spec.task_row.logits), len(engine.fp8_layers), label,
                       kernel)
    del engine
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return report


def check_fp8_accuracy(report: Fp8Report) -> None:
    if not report.gate.passed:
        raise BuildError(f"FP8 outputs differ from {report.reference}: {report.gate.describe()} (needs "
                         f"{TOLERANCES['fp8'].describe()}); nothing was written. Use quantization_type: no_quant "
                         "for this model")
