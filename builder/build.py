"""The build pipeline: checkpoint -> spec -> ONNX engine -> parity check -> Triton repository.

Nothing is written under `out` until the engine has matched transformers; the files are staged in a
temporary folder beside it first.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from builder.checkpoint import content_hash, resolve_checkpoint
from builder.config_file import check_settings
from builder.errors import BuildError
from builder.families import native_checkpoint
from builder.inspect import inspect_checkpoint, save_tokenizer
from builder.repository import onnx_files, write_repository
from builder.variants import choose_variant, resolve_precision
from trident import __version__
from trident.spec import ModelSpec
from trident.tasks import tasks_for_route

Progress = Callable[[str], None]
# Two single-threaded ONNX Runtime sessions beat one two-threaded one on a shared 2-core machine (spec.py).
CPU_ENGINE_INSTANCES = 2


@dataclass
class BuildOptions:
    model: str
    out: Path
    name: str | None = None
    task: str | None = None
    pooling: str | None = None
    max_length: int | None = None
    max_num_tokens: int = 16384
    quantization: str = "no_quant"
    default_route: str | None = None
    revision: str | None = None
    trust_remote_code: bool = False
    base_model: str | None = None  # BEI's encoder | encoder_bert, from a YAML config (see config_file)
    engine: str = "onnxruntime"  # onnxruntime | torch (CUDA, float32 on CPU) | tensorrt (GPU + TensorRT)
    engine_instances: int | None = None  # Triton instances of the engine model; None: 2 on CPU, 1 on a GPU
    # The CPU engine's variant: auto | fp32 | bf16 | int8 | a variant's name (builder/variants.py); None: the
    # default ($TRIDENT_PRECISION, else auto), or onnxruntime-int8 with quantization int8.
    precision: str | None = field(default=None)


@dataclass
class BuildResult:
    spec: ModelSpec
    repository: Path
    seconds: float


def default_name(model_dir: Path, model: str) -> str:
    candidate = model.rstrip("/").split("/")[-1] if not Path(model).is_dir() else model_dir.name
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in candidate).strip("-.") or "model"


def build(options: BuildOptions, progress: Progress = print) -> BuildResult:
    started = time.monotonic()
    published_dir = resolve_checkpoint(options.model, options.revision)
    # A family published in a layout that needs its own code is converted to a native one first (families/).
    with native_checkpoint(published_dir, options.task or _task_of_route(options.default_route), options.out,
                           progress) as model_dir:
        return _build(options, published_dir, model_dir, started, progress)


def _task_of_route(route: str | None) -> str | None:
    tasks = tasks_for_route(route) if route else ()
    return tasks[0] if len(tasks) == 1 else None


def _build(options: BuildOptions, published_dir: Path, model_dir: Path, started: float,
           progress: Progress) -> BuildResult:
    """The build of `model_dir` (the published folder, or its native conversion); hashed as published."""
    name = options.name or default_name(published_dir, options.model)
    progress(f"inspecting {model_dir}")
    spec = inspect_checkpoint(model_dir, name, options.task, options.pooling, options.max_length,
                              options.trust_remote_code)
    check_settings(spec, options.base_model, options.quantization, options.default_route, options.engine)
    precision = resolve_precision(options.precision, options.quantization, options.engine)  # refusals come first
    if options.engine_instances is not None and options.engine_instances < 1:
        raise BuildError(f"--engine-instances must be at least 1, got {options.engine_instances}")
    spec.engine = options.engine
    spec.engine_instances = options.engine_instances or (CPU_ENGINE_INSTANCES if options.engine == "onnxruntime" else 1)
    spec.max_num_tokens = options.max_num_tokens
    spec.max_length = _bounded_max_length(spec.max_length, options, progress)
    spec.quantization = options.quantization
    spec.default_route = options.default_route or spec.default_route
    spec.source = str(published_dir) if Path(options.model).is_dir() else options.model
    spec.revision = options.revision or ""
    spec.builder_version = __version__
    progress("hashing the checkpoint")
    spec.content_hash = content_hash(published_dir)
    options.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".trident-build-", dir=options.out) as staging:
        staging_dir = Path(staging)
        save_tokenizer(model_dir, staging_dir / "tokenizer.json")
        onnx_file, engine_files = staging_dir / "model.onnx", None
        spec.variant_choice = {}
        if spec.engine == "torch":
            from builder.torch_build import check_torch_engine, stage_checkpoint

            spec.parity = check_torch_engine(model_dir, spec, progress, options.trust_remote_code)
            engine_files = {"checkpoint": stage_checkpoint(model_dir, staging_dir / "checkpoint", spec)}
        else:
            _export_and_check(model_dir, spec, onnx_file, progress, options.trust_remote_code)
            if spec.engine == "onnxruntime":
                engine_files = {**onnx_files(onnx_file), **choose_variant(model_dir, spec, onnx_file, precision,
                                                                          progress)}
        if spec.task_row.dense_vectors:
            _calibrate(model_dir, spec, onnx_file, progress)
        progress("writing the Triton model repository")
        repository = staging_dir / "repository"
        if spec.engine == "tensorrt":
            engine_files, spec.dtype = {}, "float16"  # the engine step only pads and calls the plan model
        write_repository(spec, repository, onnx_file, staging_dir / "tokenizer.json", engine_files)
        if spec.engine == "tensorrt":
            _add_tensorrt_plan(spec, onnx_file, repository, progress)
        _move_models(repository, options.out)
    return BuildResult(spec, options.out, time.monotonic() - started)


def _bounded_max_length(max_length: int, options: BuildOptions, progress: Progress) -> int:
    """One input must fit one engine batch, so (as in BEI) max_num_tokens also caps the input length."""
    if max_length <= options.max_num_tokens:
        return max_length
    if options.max_length:
        raise BuildError(f"--max-length {options.max_length} is more than --max-num-tokens {options.max_num_tokens}: "
                         "one input must fit in one engine batch; raise --max-num-tokens")
    progress(f"max length {max_length} capped at max_num_tokens {options.max_num_tokens}")
    return options.max_num_tokens


def _export_and_check(
    model_dir: Path, spec: ModelSpec, onnx_file: Path, progress: Progress, trust_remote_code: bool = False
) -> None:
    from builder.export import export_onnx
    from builder.parity import ParityError, check_parity

    progress("exporting to ONNX (torch.export, dynamo)")
    export_onnx(model_dir, spec, onnx_file, progress=progress, trust_remote_code=trust_remote_code)
    progress("checking the engine against transformers")
    try:
        report = check_parity(model_dir, spec, onnx_file, strict=True, trust_remote_code=trust_remote_code)
    except ParityError as exc:
        raise BuildError(f"the engine does not match transformers, nothing was written: {exc}") from None
    spec.parity = {"max_abs_diff": report.max_abs_diff, "min_cosine": report.min_cosine,
                   "texts": report.num_texts, "tolerance": report.tolerance}


def _calibrate(model_dir: Path, spec: ModelSpec, onnx_file: Path, progress: Progress) -> None:
    """int8 / uint8 embedding ranges from the engine being built (the ONNX graph that a plan is made of)."""
    from builder.calibration import CALIBRATION_TEXTS, quantization_ranges

    progress(f"calibrating int8 / uint8 embedding ranges on {len(CALIBRATION_TEXTS)} texts (and the model's prompts)")
    if spec.engine == "torch":
        from trident.torch_engine.engine import TorchEngine

        engine = TorchEngine.load(model_dir, spec, quantization=spec.quantization)
    else:
        from trident.precision import open_engine

        engine = open_engine(spec.variant, onnx_file.parent, spec)  # the variant served (ranges move with bf16)
    spec.quantization_ranges = quantization_ranges(model_dir, spec, engine.run)


def _add_tensorrt_plan(spec: ModelSpec, onnx_file: Path, repository: Path, progress: Progress) -> None:
    from builder.tensorrt_plan import build_plan, optimization_profiles, write_plan_model

    profiles = optimization_profiles(spec.max_length, spec.max_num_tokens)
    progress(f"building the TensorRT plan (fp16, {len(profiles)} optimization profiles)")
    plan_file = build_plan(onnx_file, spec, onnx_file.with_name("model.plan"), profiles)
    write_plan_model(spec, repository, plan_file, profiles)


def _move_models(staged: Path, out: Path) -> None:
    for folder in staged.iterdir():
        target = out / folder.name
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(folder), target)


def summary(result: BuildResult) -> str:
    spec = result.spec
    lines = [
        f"built {spec.name} in {result.seconds:.1f} s -> {result.repository}",
        f"  task        {spec.task} ({spec.architecture}, default route {spec.default_route})",
        f"  engine      {spec.engine}, {spec.dtype}, max length {spec.max_length}, "
        f"max_num_tokens {spec.max_num_tokens}",
    ]
    if spec.quantization != "no_quant":
        int8 = spec.parity.get("int8_vs_float32")
        detail = (f": {', '.join(int8['int8_groups'])} MatMuls, min cosine {int8['min_cosine']:.5f} to float32"
                  if int8 else "")
        lines.append(f"  quantized   {spec.quantization}{detail}")
    if spec.variant_choice.get("candidates"):
        choice = spec.variant_choice
        gate = choice.get("gate", {})
        figure = (f"min cosine {gate['min_cosine']:.5f}" if gate.get("min_cosine") == gate.get("min_cosine")
                  else f"max |score diff| {gate.get('max_score_diff', float('nan')):.4f}")
        lines.append(f"  variant     {spec.variant} on {choice['cpu_kind']} ({choice['precision']}): "
                     f"{choice['ms']:.1f} ms per batch, {figure} to float32")
    elif spec.engine == "onnxruntime":
        lines.append(f"  variant     {spec.variant}")
    if spec.task_row.vectors:
        modules = " -> ".join(module["type"] for module in spec.head)
        lines.append(f"  {spec.task:<11} dim {spec.dim}, head {modules} (pooling {spec.pooling})")
    else:
        lines.append(f"  labels      {', '.join(spec.labels())}")
    if spec.prompts:
        lines.append(f"  prompts     {', '.join(spec.prompts)} (default {spec.default_prompt_name})")
    parity = spec.parity
    lines += [
        f"  parity      max |diff| {parity.get('max_abs_diff', float('nan')):.2e}, min cosine "
        f"{parity.get('min_cosine', float('nan')):.7f} over {parity.get('texts')} texts "
        f"(tolerance {parity.get('tolerance')})",
        f"  models      {spec.name} = {spec.name}_tokenizer -> {spec.name}_engine -> {spec.name}_postprocess",
        f"  source      {spec.source} (sha256 {spec.content_hash[:16]})",
    ]
    return "\n".join(lines)
