"""How each engine of the engine table (trident.engines) is built and checked: one function per row.

Each one makes the files of the engine model's version folder in the build's staging folder, checks them
against transformers (nothing is written to the output unless they pass), and says which engine the rest of
the build (the int8 / uint8 calibration) runs as served, and which other Triton models it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError
from trident.engines.contract import Engine
from trident.spec import ModelSpec

Progress = Callable[[str], None]


@dataclass
class EngineBuild:
    """What an engine's build function works from."""

    model_dir: Path  # the checkpoint, in a layout transformers loads natively
    spec: ModelSpec
    staging_dir: Path  # the build's temporary folder: the engine's files go here
    precision: str  # the CPU engine's variant asked for (builder.variants.resolve_precision)
    progress: Progress
    trust_remote_code: bool = False
    defer_variants: bool = False  # builder/variants.py: the CPU variants measured later, by a refinement

    @property
    def onnx_file(self) -> Path:
        return self.staging_dir / "model.onnx"


@dataclass
class BuiltEngine:
    files: dict[str, Path]  # the engine model's version folder: name -> file or folder
    served: Callable[[], Engine]  # opens the engine as it will be served
    add_models: Callable[[Path], None] = lambda repository: None  # writes any other Triton model it calls


def build_onnxruntime(job: EngineBuild) -> BuiltEngine:
    """The ONNX graph, checked, and the CPU precision variant chosen for this CPU (builder/variants.py)."""
    from builder.variants import choose_variant
    from trident.precision import open_engine

    export_and_check(job)
    files = {**onnx_files(job.onnx_file),
             **choose_variant(job.model_dir, job.spec, job.onnx_file, job.precision, job.progress,
                              defer=job.defer_variants)}
    return BuiltEngine(files, lambda: open_engine(job.spec.variant, job.onnx_file.parent, job.spec))


def build_torch(job: EngineBuild) -> BuiltEngine:
    """The checkpoint itself, checked through TorchEngine (and the FP8 gate) before anything is written."""
    from builder.torch_build import check_torch_engine, stage_checkpoint
    from trident.engines.torch.engine import TorchEngine

    job.spec.parity = check_torch_engine(job.model_dir, job.spec, job.progress, job.trust_remote_code)
    files = {"checkpoint": stage_checkpoint(job.model_dir, job.staging_dir / "checkpoint", job.spec)}
    return BuiltEngine(files, lambda: TorchEngine.load(job.model_dir, job.spec, quantization=job.spec.quantization))


def build_tensorrt(job: EngineBuild) -> BuiltEngine:
    """The checked ONNX graph becomes an fp16 plan, its own Triton model; the engine step only pads and calls it.
    Calibration runs the ONNX graph the plan is built from (no machine here runs TensorRT)."""
    from trident.precision import REFERENCE, open_engine

    export_and_check(job)
    job.spec.dtype = "float16"
    return BuiltEngine({}, lambda: open_engine(REFERENCE, job.onnx_file.parent, job.spec),
                       lambda repository: _add_tensorrt_plan(job, repository))


def export_and_check(job: EngineBuild) -> None:
    """The ONNX graph of the model and its head, through the engine as served, against transformers."""
    from builder.export import export_onnx
    from builder.parity import ParityError, check_parity, summary

    job.progress("exporting to ONNX (torch.export, dynamo)")
    export_onnx(job.model_dir, job.spec, job.onnx_file, progress=job.progress, trust_remote_code=job.trust_remote_code)
    job.progress("checking the engine against transformers")
    try:
        report = check_parity(job.model_dir, job.spec, job.onnx_file, strict=True,
                              trust_remote_code=job.trust_remote_code)
    except ParityError as exc:
        raise BuildError(f"the engine does not match transformers, nothing was written: {exc}") from None
    job.spec.parity = summary(report)


def onnx_files(onnx_file: Path) -> dict[str, Path]:
    """The graph and, for models over protobuf's 2 GB limit, its external weights file beside it."""
    files = {"model.onnx": onnx_file}
    weights = onnx_file.with_name(onnx_file.name + ".data")
    if weights.exists():
        files["model.onnx.data"] = weights
    return files


def _add_tensorrt_plan(job: EngineBuild, repository: Path) -> None:
    from builder.tensorrt_plan import build_plan, optimization_profiles, write_plan_model

    spec = job.spec
    profiles = optimization_profiles(spec.max_length, spec.max_num_tokens)
    job.progress(f"building the TensorRT plan (fp16, {len(profiles)} optimization profiles)")
    plan_file = build_plan(job.onnx_file, spec, job.onnx_file.with_name("model.plan"), profiles)
    write_plan_model(spec, repository, plan_file, profiles)
