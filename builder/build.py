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
from builder.engine_builds import EngineBuild
from builder.errors import BuildError
from builder.families import native_checkpoint
from builder.inspect import inspect_checkpoint, save_tokenizer
from builder.repository import write_repository
from builder.variants import resolve_precision
from trident import __version__
from trident.engines import DEFAULT_ENGINE, engine_kind
from trident.engines.contract import Engine
from trident.gate import GateReport
from trident.model_names import step_model
from trident.spec import ModelSpec
from trident.tasks import tasks_for_route

Progress = Callable[[str], None]


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
    engine: str = DEFAULT_ENGINE  # a row of the engine table (trident.engines)
    engine_instances: int | None = None  # Triton instances of the engine model; None: the engine's row says
    # The CPU engine's variant: auto | fp32 | bf16 | int8 | a variant's name (builder/variants.py); None: the
    # default ($TRIDENT_PRECISION, else auto), or onnxruntime-int8 with quantization int8.
    precision: str | None = field(default=None)
    # `trident serve`: with auto, serve ONNX Runtime float32 at once and choose among the CPU variants later, in
    # the background (builder/variants.py, cli/refine.py).
    defer_variants: bool = False


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
    kind = engine_kind(options.engine)
    spec.engine = kind.name
    spec.engine_instances = options.engine_instances or kind.instances
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
        spec.variant_choice = {}
        job = EngineBuild(model_dir, spec, staging_dir, precision, progress, options.trust_remote_code,
                          options.defer_variants)
        built = kind.build_function()(job)
        if spec.task_row.dense_vectors:
            _calibrate(model_dir, spec, built.served(), progress)
        progress("writing the Triton model repository")
        repository = staging_dir / "repository"
        write_repository(spec, repository, staging_dir / "tokenizer.json", built.files)
        built.add_models(repository)
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


def _calibrate(model_dir: Path, spec: ModelSpec, engine: Engine, progress: Progress) -> None:
    """int8 / uint8 embedding ranges from the engine as served (the ranges move with bf16)."""
    from builder.calibration import CALIBRATION_TEXTS, quantization_ranges

    progress(f"calibrating int8 / uint8 embedding ranges on {len(CALIBRATION_TEXTS)} texts (and the model's prompts)")
    spec.quantization_ranges = quantization_ranges(model_dir, spec, engine.run)


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
        detail = (f": {', '.join(int8['int8_groups'])} MatMuls, {GateReport.from_dict(int8).describe()} to float32"
                  if int8 else "")
        lines.append(f"  quantized   {spec.quantization}{detail}")
    if spec.variant_choice.get("candidates"):
        choice = spec.variant_choice
        gate = GateReport.from_dict(choice.get("gate", {"passed": False, "num_texts": 0}))
        lines.append(f"  variant     {spec.variant} on {choice['cpu_kind']} ({choice['precision']}): "
                     f"{choice['ms']:.1f} ms per batch, {gate.describe()} to float32")
    elif engine_kind(spec.engine).cpu_variants:
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
        f"  models      {spec.name} = "
        + " -> ".join(step_model(spec.name, role) for role in ("tokenizer", "engine", "postprocess")),
        f"  source      {spec.source} (sha256 {spec.content_hash[:16]})",
    ]
    return "\n".join(lines)
