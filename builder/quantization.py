"""Which quantizations a build may ask for here, and the FP8 accuracy gate.

- fp8 (and fp8_kv, the same here: embedding models keep no KV cache): causal models only, `--engine torch`,
  on a GPU with FP8 tensor cores (compute capability >= 8.9). The build then compares FP8 embeddings with
  the unquantized engine's (bf16 on the GPU) on a fixed text set and refuses cosine < FP8_MIN_COSINE.
- fp4*: needs Blackwell's FP4 tensor cores (compute capability >= 10.0), and Trident has no FP4 kernels
  yet, so it is refused everywhere, with the reason that applies.
- BERT-family models: no quantization at all, as in BEI-Bert (config_file.check_settings says so first).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from builder.errors import BuildError
from trident.spec import ModelSpec

FP8_MIN_COSINE = 0.99
FP8_CAPABILITY = (8, 9)
FP4_CAPABILITY = (10, 0)
FP8_KINDS = ("fp8", "fp8_kv")
ENGINES = ("onnxruntime", "torch", "tensorrt")
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
    if engine != "torch":
        raise BuildError(f"quantization_type: {quantization} runs on the PyTorch GPU engine: add --engine torch "
                         f"(the {engine} engine has no FP8 path)")
    if capability is None or capability < FP8_CAPABILITY:
        raise BuildError(f"quantization_type: {quantization} needs FP8 tensor cores (compute capability 8.9 or newer: "
                         f"Ada, Hopper, Blackwell) to build and to check its accuracy; this machine has "
                         f"{_describe(capability)}. Build on the GPU that will serve it, or use no_quant")


@dataclass
class Fp8Report:
    min_cosine: float
    mean_cosine: float
    num_texts: int
    quantized_layers: int
    reference: str  # what FP8 was compared with, e.g. "torch bfloat16 on cuda"
    kernel: bool  # torch._scaled_mm (True) or the dequantized float reference (False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def row_cosines(expected: list[np.ndarray], actual: list[np.ndarray]) -> np.ndarray:
    """Cosine of each pair of rows, in float64; NaN (an all-NaN row) stays NaN and fails every gate."""
    cosines = []
    for want, got in zip(expected, actual, strict=True):
        w, g = want.ravel().astype(np.float64), got.ravel().astype(np.float64)
        cosines.append(float(w @ g / max(np.linalg.norm(w) * np.linalg.norm(g), 1e-30)))
    return np.array(cosines)


def fp8_accuracy(model_dir: Path, spec: ModelSpec, ids: list[np.ndarray], *, device: str | None = None,
                 fp8_kernel: bool | None = None) -> Fp8Report:
    """Embeddings of `ids` from the unquantized engine and from the FP8 one, compared row by row.

    On a GPU both run as served (bf16 reference, FP8 through torch._scaled_mm); on a CPU (tests) the
    reference is float32 and FP8 goes through the dequantized matmul unless `fp8_kernel` says otherwise.
    The spec's model type is not checked here: tests force FP8 on a BERT checkpoint through this function.
    """
    import torch

    from trident.torch_engine.engine import EngineOptions, TorchEngine

    options = EngineOptions(fp8_kernel=fp8_kernel, compile=False)  # compiling changes speed, not accuracy
    engine = TorchEngine.load(model_dir, spec, device=device, options=options, quantization="no_quant")
    label = f"torch {str(next(engine.model.parameters()).dtype).removeprefix('torch.')} on {engine.device}"
    expected = engine.run(ids)
    engine.quantize_fp8()  # in place, layer by layer: one copy of the weights at a time
    actual = engine.run(ids)
    kernel = any(getattr(m, "use_kernel", False) for m in engine.model.modules())
    cosines = row_cosines(expected, actual)
    report = Fp8Report(float(np.min(cosines)), float(np.mean(cosines)), len(ids), len(engine.fp8_layers),
                       label, kernel)
    del engine
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return report


def check_fp8_accuracy(report: Fp8Report) -> None:
    if not report.min_cosine >= FP8_MIN_COSINE:  # `not >=`: NaN fails too
        raise BuildError(f"FP8 embeddings differ from {report.reference}: min cosine {report.min_cosine:.4f} over "
                         f"{report.num_texts} texts (needs >= {FP8_MIN_COSINE}); nothing was written. "
                         "Use quantization_type: no_quant for this model")
