"""Writing the Triton model repository of one model, from its task's row (trident.tasks):

    <name>      ensemble: <name>_tokenizer -> <name>_engine -> <name>_postprocess   (text in)
    <name>_ids  ensemble: <name>_ids_input  -> <name>_engine -> <name>_postprocess   (token ids in; tasks
                                                                                     whose row allows them)

Every config is a `model_config_pb2.ModelConfig` (Triton's own protobuf, shipped in tritonclient) written
in text format, complete (Triton runs with --disable-auto-complete-config). Each Python-backend config
carries the manifest as the `trident_manifest` parameter, so every step reads the spec from Triton alone;
of the two ensembles only `<name>` carries it, which is how a gateway discovers the models it serves.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from trident import tensors as T
from trident.spec import MANIFEST_PARAMETER, ModelSpec
from trident.tasks import ids_model

MODEL_SOURCES = Path(__file__).resolve().parent.parent / "model_repository"
# Raised whenever what this module writes changes (tensors, ensembles, manifest fields), so a build cached by
# an older writer is never reused (cli.serve keys builds by it): 2 added MAX_TOKENS, TOKENIZE_NS and the
# manifest's quantization ranges.
REPOSITORY_FORMAT = 2
MAX_BATCH_SIZE = 256
# Queue delays: the engine waits a little for a fuller batch; the cheap steps do not.
QUEUE_DELAY_US = {"tokenizer": 100, "ids": 100, "engine": 500, "postprocess": 0}


@dataclass(frozen=True)
class Tensor:
    """One tensor of a config; `dims` per item (Triton adds the batch dimension)."""

    name: str
    dims: tuple[int, ...] = (1,)
    optional: bool = False
    ragged: bool = False


def optional(names: Iterable[str]) -> list[Tensor]:
    return [Tensor(name, optional=True) for name in names]


@dataclass(frozen=True)
class Step:
    """A Python-backend model of the ensembles: which stage (source folder) and its tensors."""

    role: str  # tokenizer | ids | engine | postprocess: the model is `<name>_<role>`
    source: str  # folder under model_repository/ holding its model.py
    inputs: list[Tensor]
    outputs: list[Tensor]


def steps_for(spec: ModelSpec) -> dict[str, Step]:
    """The composing models of the spec's ensembles, keyed by role, from its task's row."""
    task = spec.task_row
    tokens = [Tensor(T.INPUT_IDS, (-1,), ragged=True), Tensor(T.TOKEN_TYPE_IDS, (-1,), ragged=True),
              Tensor(T.NUM_TOKENS, ragged=True)]
    spans = [Tensor(T.OFFSETS, (-1, 2), ragged=True), Tensor(T.WORD_IDS, (-1,), ragged=True)] if task.spans else []
    truncation = optional((T.TRUNCATE, T.TRUNCATE_LEFT, T.MAX_TOKENS))
    text = [Tensor(T.TEXT), *optional([T.TEXT_PAIR] if task.pairs else []), *truncation]
    timing = [Tensor(T.TOKENIZE_NS)]  # straight out of the ensemble: x-tokenization-time
    width = spec.dim if task.pools else spec.num_labels
    engine_output = Tensor(task.engine_output, (-1, width) if task.per_token else (width,), ragged=task.per_token)
    context = [Tensor(T.TEXT), tokens[0], *spans, tokens[2]] if task.spans else []  # NER cuts words from TEXT
    steps = {
        "tokenizer": Step("tokenizer", "tokenizer", text, tokens + spans + timing),
        "engine": Step("engine", "engine", tokens, [engine_output]),
        "postprocess": Step("postprocess", task.postprocess, [*context, engine_output, *optional(task.options)],
                            [Tensor(name, _output_dims(name, spec)) for name in task.outputs]),
    }
    if task.token_ids:
        steps["ids"] = Step("ids", "ids", [Tensor(T.TOKEN_IDS, (-1,), ragged=True), *truncation], tokens + timing)
    return steps


def _output_dims(name: str, spec: ModelSpec) -> tuple[int, ...]:
    return {T.EMBEDDINGS: (-1,), T.SCORES: (spec.num_labels,)}.get(name, (1,))


def model_name(spec: ModelSpec, role: str) -> str:
    return f"{spec.name}_{role}" if role != "ids" else f"{spec.name}_ids_input"


def _declare(tensors: list[Tensor], into, is_input: bool) -> None:
    for tensor in tensors:
        entry = into.add(name=tensor.name, data_type=pb.DataType.Value(T.TYPES[tensor.name]), dims=tensor.dims)
        if is_input:
            entry.optional, entry.allow_ragged_batch = tensor.optional, tensor.ragged


def _manifest(config: pb.ModelConfig, spec: ModelSpec) -> None:
    config.parameters[MANIFEST_PARAMETER].string_value = json.dumps(
        dataclasses.asdict(spec), separators=(",", ":"), sort_keys=True)


def python_config(spec: ModelSpec, step: Step) -> pb.ModelConfig:
    config = pb.ModelConfig(name=model_name(spec, step.role), backend="python", max_batch_size=MAX_BATCH_SIZE)
    _declare(step.inputs, config.input, is_input=True)
    _declare(step.outputs, config.output, is_input=False)
    config.dynamic_batching.SetInParent()
    config.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US[step.role]
    instances = spec.engine_instances if step.role == "engine" else 1
    config.instance_group.add(kind=pb.ModelInstanceGroup.KIND_CPU, count=instances)
    _manifest(config, spec)
    return config


def ensemble_config(spec: ModelSpec, steps: dict[str, Step], first: str) -> pb.ModelConfig:
    """`first` (tokenizer or ids) -> engine -> postprocess. Every tensor keeps its name through the
    ensemble: the ids ensemble takes TOKEN_IDS, so what its first step produces clashes with no input."""
    chain = [steps[first], steps["engine"], steps["postprocess"]]
    config = pb.ModelConfig(name=spec.name if first == "tokenizer" else ids_model(spec.name),
                            platform="ensemble", max_batch_size=MAX_BATCH_SIZE)
    for step in chain:
        entry = config.ensemble_scheduling.step.add(model_name=model_name(spec, step.role), model_version=-1)
        for tensor in step.inputs:
            entry.input_map[tensor.name] = tensor.name
        for tensor in step.outputs:
            entry.output_map[tensor.name] = tensor.name
    options = [t for t in chain[2].inputs if t.name in spec.task_row.options]
    _declare([replace(t, ragged=False) for t in [*chain[0].inputs, *options]], config.input, is_input=True)
    _declare([Tensor(name, _output_dims(name, spec)) for name in spec.task_row.ensemble_outputs], config.output,
             False)
    if first == "tokenizer":
        _manifest(config, spec)
    return config


def configs_for(spec: ModelSpec) -> dict[str, pb.ModelConfig]:
    """The config of every model of the spec's ensembles, keyed by model name."""
    steps = steps_for(spec)
    configs = {model_name(spec, role): python_config(spec, step) for role, step in steps.items()}
    configs[spec.name] = ensemble_config(spec, steps, "tokenizer")
    if "ids" in steps:
        configs[ids_model(spec.name)] = ensemble_config(spec, steps, "ids")
    return configs


def render(config: pb.ModelConfig) -> str:
    return text_format.MessageToString(config)


def onnx_files(onnx_file: Path) -> dict[str, Path]:
    """The graph and, for models over protobuf's 2 GB limit, its external weights file beside it."""
    files = {"model.onnx": onnx_file}
    weights = onnx_file.with_name(onnx_file.name + ".data")
    if weights.exists():
        files["model.onnx.data"] = weights
    return files


def model_files(spec: ModelSpec, tokenizer_file: Path, engine_files: dict[str, Path]) -> dict[str, dict[str, Path]]:
    """What each model's version folder holds, keyed by model name (the ensembles hold nothing)."""
    files: dict[str, dict[str, Path]] = {}
    for role, step in steps_for(spec).items():
        own = {"model.py": MODEL_SOURCES / step.source / "model.py"}
        if role == "tokenizer" or (role == "postprocess" and spec.task_row.spans):  # NER: token strings
            own["tokenizer.json"] = tokenizer_file
        if role == "engine":
            own.update(engine_files)
        files[model_name(spec, role)] = own
    return files


def write_repository(spec: ModelSpec, out: Path, onnx_file: Path | None, tokenizer_file: Path,
                     engine_files: dict[str, Path] | None = None) -> list[Path]:
    """Write every model of the spec's ensembles under `out`; returns their folders. Replaces an older
    build of `spec.name`. The engine model gets `model.onnx`, or `engine_files` (name -> file or folder)
    when given: the checkpoint folder of `--engine torch`."""
    files = model_files(spec, tokenizer_file, engine_files if engine_files is not None else onnx_files(onnx_file))
    folders = []
    for model, config in configs_for(spec).items():
        folder = out / model
        if folder.exists():
            shutil.rmtree(folder)
        (folder / "1").mkdir(parents=True)
        (folder / "config.pbtxt").write_text(render(config))
        for target, source in files.get(model, {}).items():
            if source.is_dir():
                shutil.copytree(source, folder / "1" / target)
            else:
                shutil.copyfile(source, folder / "1" / target)
        folders.append(folder)
    spec.save(out / spec.name / "manifest.json")
    return folders
