"""The engine table: which engines Trident builds and serves, and what each one is. One row per engine.

Every engine keeps one contract (`trident.engines.contract.Engine`: unpadded token ids in, one row per input
out), so the ensemble, the gateway and the tests do not depend on which one runs. What does depend on it reads
its row here: the CLI's `--engine` choices, the builder (which function builds and checks it), the repository
writer (queue delay, instance count) and the engine step (`load_engine`). Adding an engine adds a row, a module
in this package with `load(spec, files)`, and its build function in `builder/engine_builds.py`.

This module imports no runtime: each row names its modules, imported only when that engine is loaded or built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trident.engines.contract import Engine
    from trident.spec import ModelSpec


@dataclass(frozen=True)
class EngineKind:
    name: str  # `--engine NAME`, and `ModelSpec.engine` in the manifest
    device: str  # "cpu" | "gpu": what it is built for (a GPU engine waits for fuller batches)
    instances: int  # Triton instances of the engine model unless `--engine-instances` says otherwise
    runtime: str  # the module whose `load(spec, files)` opens it inside the engine step
    build: str  # "module:function" of the builder that makes its files and checks them (trident.gate)
    about: str  # what it is, for `--engine`'s help
    cpu_variants: bool = False  # chooses among the CPU precision variants (trident.precision.VARIANTS)
    fp8: bool = False  # can quantize to FP8 (quantization_type: fp8)
    several_outputs: bool = False  # runs several graph outputs in one pass (`run_outputs`: a hybrid model's)

    @property
    def gpu(self) -> bool:
        return self.device == "gpu"

    def load(self, spec: ModelSpec, files: Path) -> Engine:
        """The engine over the files the build put in the engine model's version folder."""
        return importlib.import_module(self.runtime).load(spec, files)

    def build_function(self) -> Callable[..., Any]:
        """The builder function the row names (builder/engine_builds.py), imported now."""
        module, function = self.build.split(":")
        return getattr(importlib.import_module(module), function)


ENGINES: dict[str, EngineKind] = {kind.name: kind for kind in (
    # Two single-threaded ONNX Runtime sessions beat one two-threaded one on a shared 2-core machine (spec.py).
    EngineKind("onnxruntime", device="cpu", instances=2, runtime="trident.engines.onnxruntime",
               build="builder.engine_builds:build_onnxruntime", cpu_variants=True, several_outputs=True,
               about="ONNX Runtime or OpenVINO on CPU, the fastest precision variant that passes the gate (default)"),
    EngineKind("torch", device="gpu", instances=1, runtime="trident.engines.torch.engine",
               build="builder.engine_builds:build_torch", fp8=True,
               about="PyTorch on CUDA: fp16 / bf16, fp8 on Hopper"),
    EngineKind("tensorrt", device="gpu", instances=1, runtime="trident.engines.tensorrt",
               build="builder.engine_builds:build_tensorrt",
               about="a TensorRT fp16 plan (needs TensorRT and a GPU to build)"),
)}
ENGINE_NAMES = tuple(ENGINES)
DEFAULT_ENGINE = "onnxruntime"


def engine_kind(name: str) -> EngineKind:
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; expected one of {', '.join(ENGINE_NAMES)}")
    return ENGINES[name]


def load_engine(spec: ModelSpec, files: Path) -> Engine:
    """The engine `spec.engine` names, over the files the build put beside the engine model."""
    return engine_kind(spec.engine).load(spec, files)
