"""`trident serve`, its models: each `--model` built, or a build with the same content hash reused.

Running them is cli/supervisor.py (Triton under supervision, the draining gateway server).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.build import BuildOptions, build, default_name, summary
from builder.checkpoint import content_hash, resolve_checkpoint
from builder.repository import REPOSITORY_FORMAT
from builder.variants import resolve_precision
from cli.models import DEFAULT_MODEL_NAME, build_key, cache_root, default_model_dir
from cli.refine import refined
from trident import __version__, cpu
from trident.engines import DEFAULT_ENGINE


@dataclass
class ModelArg:
    source: str
    name: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelArg:
        """`PATH`, `HUB/ID`, or `NAME=PATH` to choose the served name."""
        name, sep, source = text.partition("=")
        return cls(source, name) if sep and not Path(text).exists() else cls(text)


def prepare_model(model: ModelArg, build_options: dict[str, object], progress=print,
                  defer_variants: bool = False) -> Path:
    """Return a repository folder holding this model, building it only if no matching build exists (its
    refinement first: cli/refine.py). `defer_variants`: a new build serves ONNX Runtime float32 and leaves the
    choice among the CPU variants to a refinement, so that a first start does not wait for it."""
    model_dir = resolve_checkpoint(model.source)
    name = model.name or default_name(model_dir, model.source)
    key = build_key(content_hash(model_dir), f"{__version__}/{REPOSITORY_FORMAT}",
                    {"name": name, **build_options, **variant_key(build_options)})
    repository = cache_root() / "builds" / key
    for folder in (refined(repository), repository):
        if (folder / name / "manifest.json").is_file():
            progress(f"reusing the build of {name} in {folder}")
            return folder
    result = build(BuildOptions(model=str(model_dir), out=repository, name=name, **build_options,
                                defer_variants=defer_variants), progress)
    progress(summary(result))
    return repository


def variant_key(build_options: dict[str, object]) -> dict[str, object]:
    """What the CPU engine's variant depends on: the precision asked for and, unless that is plain ONNX Runtime
    float32, the CPU's relevant flags: a build chosen on another kind of CPU is not reused here."""
    precision = resolve_precision(build_options.get("precision"), str(build_options.get("quantization", "no_quant")),
                                  str(build_options.get("engine", DEFAULT_ENGINE)))
    cpu_flags = "" if precision == "onnxruntime-fp32" else " ".join(cpu.relevant_flags())
    return {"precision": precision, "cpu": cpu_flags}


def default_models() -> list[ModelArg]:
    return [ModelArg(str(default_model_dir()), DEFAULT_MODEL_NAME)]
