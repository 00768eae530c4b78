"""Writing the Triton model repository of one model, from its task's row (trident.tasks):

    <name>         ensemble: <name>_tokenizer -> <name>_engine -> <name>_postprocess   (text in)
    <name>_ids     ensemble: <name>_ids_input  -> <name>_engine -> <name>_postprocess   (token ids in; tasks
                                                                                        whose row allows them)
    <name>_tokens  ensemble: <name>_tokenizer -> <name>_engine                        (token embeddings out;
                                                                                        embedding models)

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
from trident.tasks import TOKENIZER_OUTPUTS, ids_model, tokens_model

MODEL_SOURCES = Path(__file__).resolve().parent.parent / "model_repository"
# Raised whenever what this module writes changes (tensors, ensembles, manifest fields), so a build cached by
# an older writer is never reused (cli.serve keys builds by it): 2 added MAX_TOKENS, TOKENIZE_NS and the
# manifest's quantization ranges; 3 the engine's token embeddings, `<name>_tokens`, sparse and multi-vector models;
# 4 no queue delays on CPU.
REPOSITORY_FORMAT = 4
MAX_BATCH_SIZE = 256
# Queue delays. A lone request waits out its steps' delays (Triton 2.51 at concurrency 1: queue 645 us at an
# engine with 500, 258 us at a tokenizer with 100, 120 us at the postprocess with 0), and under load the
# queue forms a batch while an instance is busy anyway. So nothing waits on CPU, where batching saves only
# a call's overhead; a GPU engine (torch, TensorRT) waits 500 us for a fuller batch, which costs it about
# what one input does.
GPU_ENGINE_QUEUE_DELAY_US = 500


def queue_delay_us(spec: ModelSpec, role: str) -> int:
    return GPU_ENGINE_QUEUE_DELAY_US if role == "engine" and spec.engine != "onnxruntime" else 0
# The steps whose instance count follows the serving host (`served_copy`); a build writes 1 for them, so a
# cached build carries no host's core count to another host. The engine's count is the spec's.
HOST_SIZED_ROLES = ("tokenizer", "ids", "postprocess")


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
    truncation = optional((T.TRUNCATE, T.TRUNCATE_LEFT, T.MAX_TOKENS, *([T.ADAPTER] if spec.adapters else [])))
    side = optional([T.SIDE] if task.multi_vector else [])  # query / document: lengths, expansion, masks
    text = [Tensor(T.TEXT), *optional([T.TEXT_PAIR] if task.pairs else []), *truncation, *side]
    timing = [Tensor(T.TOKENIZE_NS)]  # straight out of the ensemble: x-tokenization-time
    # A multi-vector query's expansion tokens are encoded but not attended to: the engine takes the mask.
    attention = [Tensor(T.ATTENTION_MASK, (-1,), optional=True, ragged=True)] if task.multi_vector else []
    engine_outputs = [Tensor(name, _engine_dims(name, spec)) for name in task.engine_outputs]
    context = [Tensor(T.TEXT), tokens[0], *spans, tokens[2]] if task.spans else []  # NER cuts words from TEXT
    if task.multi_vector:
        context = [tokens[0], tokens[2]]  # the skiplist masks tokens by id
    steps = {
        "tokenizer": Step("tokenizer", "tokenizer", text, tokens + spans + attention + timing),
        "engine": Step("engine", "engine", tokens + attention, engine_outputs),
        "postprocess": Step("postprocess", task.postprocess, [*context, engine_outputs[0], *optional(task.options)],
                            [Tensor(name, _output_dims(name, spec)) for name in task.outputs]),
    }
    if task.token_ids:
        steps["ids"] = Step("ids", "ids", [Tensor(T.TOKEN_IDS, (-1,), ragged=True), *truncation], tokens + timing)
    return steps


def _engine_dims(name: str, spec: ModelSpec) -> tuple[int, ...]:
    """Per item: [width], or [tokens, width] for a per-token output (hidden states: the encoder's width)."""
    task = spec.task_row
    width = spec.num_labels if name == T.LOGITS else (-1 if name == T.TOKEN_EMBEDDINGS and task.pools else spec.dim)
    return (-1, width) if task.per_token_output(name) else (width,)


def _output_dims(name: str, spec: ModelSpec) -> tuple[int, ...]:
    return {T.EMBEDDINGS: (-1,), T.SCORES: (spec.num_labels,), T.SPARSE_INDICES: (-1,),
            T.SPARSE_VALUES: (-1,), T.TOKEN_EMBEDDINGS: (-1, -1), T.VECTORS: (-1, spec.dim)}.get(name, (1,))


@dataclass(frozen=True)
class Ensemble:
    name: str
    chain: list[Step]  # the steps in order; each tensor keeps its name through the ensemble
    outputs: tuple[str, ...]


def ensembles_for(spec: ModelSpec, steps: dict[str, Step]) -> list[Ensemble]:
    """`<name>` (text) first: the one that carries the manifest."""
    task = spec.task_row
    tokenizer, engine, postprocess = steps["tokenizer"], steps["engine"], steps["postprocess"]
    ensembles = [Ensemble(spec.name, [tokenizer, engine, postprocess], task.ensemble_outputs)]
    if "ids" in steps:
        ensembles.append(Ensemble(ids_model(spec.name), [steps["ids"], engine, postprocess], task.ensemble_outputs))
    if task.token_embeddings:
        ensembles.append(Ensemble(tokens_model(spec.name), [tokenizer, engine],
                                  (T.TOKEN_EMBEDDINGS, *TOKENIZER_OUTPUTS)))
    return ensembles


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
    config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us(spec, step.role)
    instances = spec.engine_instances if step.role == "engine" else 1
    config.instance_group.add(kind=pb.ModelInstanceGroup.KIND_CPU, count=instances)
    _manifest(config, spec)
    return config


def ensemble_config(spec: ModelSpec, ensemble: Ensemble) -> pb.ModelConfig:
    """The chain of steps, each output mapped only where a later step or the ensemble's outputs take it: Triton
    asks each composing model for just those (the engine computes pooled vectors or token embeddings, not
    both). The ids ensemble takes TOKEN_IDS, so what its first step produces clashes with no input."""
    config = pb.ModelConfig(name=ensemble.name, platform="ensemble", max_batch_size=MAX_BATCH_SIZE)
    for index, step in enumerate(ensemble.chain):
        taken = {t.name for later in ensemble.chain[index + 1 :] for t in later.inputs} | set(ensemble.outputs)
        entry = config.ensemble_scheduling.step.add(model_name=model_name(spec, step.role), model_version=-1)
        for tensor in step.inputs:
            entry.input_map[tensor.name] = tensor.name
        for tensor in step.outputs:
            if tensor.name in taken:
                entry.output_map[tensor.name] = tensor.name
    first = ensemble.chain[0].inputs
    taken_first = {t.name for t in first}  # SIDE goes to the tokenizer and the postprocess: declared once
    options = [t for t in ensemble.chain[-1].inputs if t.name in spec.task_row.options and t.name not in taken_first]
    _declare([replace(t, ragged=False) for t in [*first, *options]], config.input, is_input=True)
    _declare([Tensor(name, _output_dims(name, spec)) for name in ensemble.outputs], config.output, False)
    if ensemble.name == spec.name:
        _manifest(config, spec)
    return config


def configs_for(spec: ModelSpec) -> dict[str, pb.ModelConfig]:
    """The config of every model of the spec's ensembles, keyed by model name."""
    steps = steps_for(spec)
    configs = {model_name(spec, role): python_config(spec, step) for role, step in steps.items()}
    for ensemble in ensembles_for(spec, steps):
        configs[ensemble.name] = ensemble_config(spec, ensemble)
    return configs


def render(config: pb.ModelConfig) -> str:
    return text_format.MessageToString(config)


def host_step_instances(cores: int) -> int:
    """Triton instances of each cheap step (tokenizer, ids, postprocess) on a host with `cores` cores: one
    per 4 cores, at most 4 (1 up to 7 cores). Past that the engine, not these steps, bounds throughput."""
    return min(4, max(1, cores // 4))


def served_copy(repository: Path, out: Path, step_instances: int) -> Path:
    """`repository` as this host serves it: under `out`, each model folder holds links to the build's files
    and version folders (nothing is copied), and the host-sized steps' `config.pbtxt` is written anew with
    `step_instances` instances. Folders that are not Trident steps are linked unchanged. Returns `out`."""
    sized = {model_name(ModelSpec.load(manifest), role)
             for manifest in repository.glob("*/manifest.json") for role in HOST_SIZED_ROLES}
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for model in sorted(repository.iterdir()):
        if model.name not in sized or not (model / "config.pbtxt").is_file():
            (out / model.name).symlink_to(model.resolve())
            continue
        (out / model.name).mkdir()
        for entry in model.iterdir():
            if entry.name != "config.pbtxt":
                (out / model.name / entry.name).symlink_to(entry.resolve())
        config = text_format.Parse((model / "config.pbtxt").read_text(), pb.ModelConfig())
        for group in config.instance_group:
            group.count = step_instances
        (out / model.name / "config.pbtxt").write_text(render(config))
    return out


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
