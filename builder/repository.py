"""Writing the Triton model repository of one model, from its task's row (trident.tasks):

    <name>         ensemble: <name>_tokenizer -> <name>_engine -> <name>_postprocess   (text in)
    <name>_ids     ensemble: <name>_ids_input  -> <name>_engine -> <name>_postprocess   (token ids in; tasks
                                                                                        whose row allows them)
    <name>_tokens  ensemble: <name>_tokenizer -> <name>_engine                        (token embeddings out;
                                                                                        embedding models)
    <name>_hybrid_<kinds>[_ids]  a hybrid (BGE-M3) model's ensembles for each other set of its dense, sparse and
                   ColBERT outputs: the same three models, each ensemble mapping only what its set needs

and the bulk lane (`trident.priorities`): each ensemble's twin `<ensemble>_bulk`, whose tokenizer (and engine,
on the CPU) is a twin step `<step>_bulk` over the same files, at a lower OS priority; every composing model
has two dynamic-batching priority levels.

Every config is a `model_config_pb2.ModelConfig` (Triton's own protobuf, shipped in tritonclient) written
in text format, complete (Triton runs with --disable-auto-complete-config). Each Python-backend config
carries the manifest as the `trident_manifest` parameter, so every step reads the spec from Triton alone;
of the two ensembles only `<name>` carries it, which is how a gateway discovers the models it serves.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from trident import tensors as T
from trident.engines import engine_kind
from trident.model_names import VERSION, bulk_twin, hybrid_model, ids_model, plan_model, step_model, tokens_model
from trident.priorities import BULK_ENGINE_INSTANCES, BULK_MAX_BATCH, BULK_NICE, NICE_PARAMETER, Priority
from trident.spec import MANIFEST_PARAMETER, ModelSpec
from trident.tasks import HYBRID_OUTPUTS, TOKENIZER_OUTPUTS, hybrid_outputs

MODEL_SOURCES = Path(__file__).resolve().parent.parent / "model_repository"
# Raised whenever what this module writes changes (tensors, ensembles, manifest fields), so a build cached by
# an older writer is never reused (cli.serve keys builds by it): 2 added MAX_TOKENS, TOKENIZE_NS and the
# manifest's quantization ranges; 3 the engine's token embeddings, `<name>_tokens`, sparse and multi-vector models;
# 4 no queue delays on CPU; 5 priority levels and the bulk lane; 6 the bulk lane's engine as one instance; 7 late
# chunking / long inputs (LATE_CHUNKING, CHUNK_LONG, PROMPT, WINDOWS, POOL_RANGES) and hybrid models; 8 the gate's
# ranking figures (recall@10, a reranker's pair lists in gate.npz) and openvino-int8 as static + dynamic int8.
REPOSITORY_FORMAT = 8
MAX_BATCH_SIZE = 256
# Queue delays. A lone request waits out its steps' delays (Triton 2.51 at concurrency 1: queue 645 us at an
# engine with 500, 258 us at a tokenizer with 100, 120 us at the postprocess with 0), and under load the
# queue forms a batch while an instance is busy anyway. So nothing waits on CPU, where batching saves only
# a call's overhead; a GPU engine (torch, TensorRT) waits 500 us for a fuller batch, which costs it about
# what one input does.
GPU_ENGINE_QUEUE_DELAY_US = 500


def engine_on_gpu(spec: ModelSpec) -> bool:
    return engine_kind(spec.engine).gpu


def queue_delay_us(spec: ModelSpec, role: str) -> int:
    return GPU_ENGINE_QUEUE_DELAY_US if role == "engine" and engine_on_gpu(spec) else 0


def laned_roles(spec: ModelSpec) -> tuple[str, ...]:
    """The steps with a bulk twin: those whose execution time grows with the tokens, where a twin costs only
    CPU memory (a GPU engine is shared by both lanes)."""
    return ("tokenizer",) if engine_on_gpu(spec) else ("tokenizer", "engine")


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
    bulk: bool = False  # the bulk lane's twin of the step (`<name>_<role>_bulk`)

    def model(self, spec: ModelSpec) -> str:
        name = step_model(spec.name, self.role)
        return bulk_twin(name) if self.bulk else name


def steps_for(spec: ModelSpec) -> dict[str, Step]:
    """The composing models of the spec's ensembles, keyed by role, from its task's row."""
    task = spec.task_row
    tokens = [Tensor(T.INPUT_IDS, (-1,), ragged=True), Tensor(T.TOKEN_TYPE_IDS, (-1,), ragged=True),
              Tensor(T.NUM_TOKENS, ragged=True)]
    spans = [Tensor(T.OFFSETS, (-1, 2), ragged=True), Tensor(T.WORD_IDS, (-1,), ragged=True)] if task.spans else []
    truncation = optional((T.TRUNCATE, T.TRUNCATE_LEFT, T.MAX_TOKENS, *([T.ADAPTER] if spec.adapters else [])))
    side = optional([T.SIDE] if task.multi_vector else [])  # query / document: lengths, expansion, masks
    # Embedding models: late chunking and long inputs, laid out by the tokenizer and pooled by the engine.
    laid_out = task.token_embeddings
    layout = optional([T.LATE_CHUNKING, T.CHUNK_LONG, T.PROMPT] if laid_out else [])
    ranges = [Tensor(T.WINDOWS, (-1,), optional=True, ragged=True),
              Tensor(T.POOL_RANGES, (-1, 2), optional=True, ragged=True)] if laid_out else []
    text = [Tensor(T.TEXT), *optional([T.TEXT_PAIR] if task.pairs else []), *truncation, *side, *layout]
    timing = [Tensor(T.TOKENIZE_NS)]  # straight out of the ensemble: x-tokenization-time
    # A multi-vector query's expansion tokens are encoded but not attended to: the engine takes the mask.
    attention = [Tensor(T.ATTENTION_MASK, (-1,), optional=True, ragged=True)] if task.multi_vector else []
    engine_outputs = [Tensor(name, engine_dims(name, spec)) for name in task.engine_outputs]
    context = [Tensor(T.TEXT), tokens[0], *spans, tokens[2]] if task.spans else []  # NER cuts words from TEXT
    if task.multi_vector:
        context = [tokens[0], tokens[2]]  # the skiplist masks tokens by id
    engine_taken, outputs = [engine_outputs[0]], task.outputs
    if task.hybrid:  # lexical weights by token id; each engine output optional: an ensemble maps those it needs
        context, engine_taken = [tokens[0], tokens[2]], [replace(t, optional=True) for t in engine_outputs]
        outputs = hybrid_outputs(tuple(HYBRID_OUTPUTS))
    steps = {
        "tokenizer": Step("tokenizer", "tokenizer", text, tokens + spans + attention + ranges + timing),
        "engine": Step("engine", "engine", tokens + attention + ranges, engine_outputs),
        "postprocess": Step("postprocess", task.postprocess, [*context, *engine_taken, *optional(task.options)],
                            [Tensor(name, _output_dims(name, spec)) for name in outputs]),
    }
    if task.token_ids:
        steps["ids"] = Step("ids", "ids", [Tensor(T.TOKEN_IDS, (-1,), ragged=True), *truncation], tokens + timing)
    return steps


def engine_dims(name: str, spec: ModelSpec) -> tuple[int, ...]:
    """Per item: [width], or [tokens, width] for a per-token output (hidden states: the encoder's width)."""
    task = spec.task_row
    width = spec.num_labels if name == T.LOGITS else (-1 if name == T.TOKEN_EMBEDDINGS and task.pools else spec.dim)
    width = 1 if name == T.TOKEN_WEIGHTS else width
    return (-1, width) if task.per_token_output(name) else (width,)


def _output_dims(name: str, spec: ModelSpec) -> tuple[int, ...]:
    vectors = spec.hybrid.get("colbert_dim", spec.dim)  # a hybrid model's ColBERT width is its own
    return {T.EMBEDDINGS: (-1,), T.SCORES: (spec.num_labels,), T.SPARSE_INDICES: (-1,),
            T.SPARSE_VALUES: (-1,), T.TOKEN_EMBEDDINGS: (-1, -1), T.VECTORS: (-1, vectors)}.get(name, (1,))


def bulk_steps(spec: ModelSpec, steps: dict[str, Step]) -> dict[str, Step]:
    """The steps of the bulk lane: the twins of the laned steps, the others shared."""
    laned = laned_roles(spec)
    return {role: replace(step, bulk=True) if role in laned else step for role, step in steps.items()}


@dataclass(frozen=True)
class Ensemble:
    name: str
    chain: list[Step]  # the steps in order; each tensor keeps its name through the ensemble
    outputs: tuple[str, ...]
    max_batch_size: int = MAX_BATCH_SIZE


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
    if task.hybrid:
        ensembles = [ensemble for kinds in hybrid_sets() for ensemble in _hybrid_ensembles(spec, steps, kinds)]
    return ensembles


def hybrid_sets() -> list[tuple[str, ...]]:
    """Every non-empty set of a hybrid model's outputs, dense alone (`<name>`) first."""
    kinds = tuple(HYBRID_OUTPUTS)
    return [tuple(k for i, k in enumerate(kinds) if mask >> i & 1) for mask in range(1, 2 ** len(kinds))]


def _hybrid_ensembles(spec: ModelSpec, steps: dict[str, Step], kinds: tuple[str, ...]) -> list[Ensemble]:
    """The text and token-id ensembles answering `kinds`: the postprocess takes only the engine outputs they
    need, so the engine computes only those."""
    unneeded = {HYBRID_OUTPUTS[kind][0] for kind in HYBRID_OUTPUTS if kind not in kinds}
    post = steps["postprocess"]
    chain_post = replace(post, inputs=[t for t in post.inputs if t.name not in unneeded])
    outputs = (*hybrid_outputs(kinds), *TOKENIZER_OUTPUTS)
    name = hybrid_model(spec.name, kinds)
    return [Ensemble(name, [steps["tokenizer"], steps["engine"], chain_post], outputs),
            Ensemble(ids_model(name), [steps["ids"], steps["engine"], chain_post], outputs)]



def _declare(tensors: list[Tensor], into, is_input: bool) -> None:
    for tensor in tensors:
        entry = into.add(name=tensor.name, data_type=pb.DataType.Value(T.TYPES[tensor.name]), dims=tensor.dims)
        if is_input:
            entry.optional, entry.allow_ragged_batch = tensor.optional, tensor.ragged


def _manifest(config: pb.ModelConfig, spec: ModelSpec) -> None:
    config.parameters[MANIFEST_PARAMETER].string_value = json.dumps(
        dataclasses.asdict(spec), separators=(",", ":"), sort_keys=True)


def python_config(spec: ModelSpec, step: Step) -> pb.ModelConfig:
    """A step's config. Its batcher has the two priority levels (a request that names none is interactive); a
    bulk twin batches at most one bulk sub-request (BULK_MAX_BATCH) and runs its stub at BULK_NICE."""
    config = pb.ModelConfig(name=step.model(spec), backend="python",
                            max_batch_size=BULK_MAX_BATCH if step.bulk else MAX_BATCH_SIZE)
    _declare(step.inputs, config.input, is_input=True)
    _declare(step.outputs, config.output, is_input=False)
    config.dynamic_batching.max_queue_delay_microseconds = queue_delay_us(spec, step.role)
    config.dynamic_batching.priority_levels = len(Priority)
    config.dynamic_batching.default_priority_level = Priority.INTERACTIVE.value
    instances = spec.engine_instances if step.role == "engine" else 1
    config.instance_group.add(kind=pb.ModelInstanceGroup.KIND_CPU, count=instances)
    if step.bulk:
        config.parameters[NICE_PARAMETER].string_value = str(BULK_NICE)
    _manifest(config, spec)
    return config


def ensemble_config(spec: ModelSpec, ensemble: Ensemble) -> pb.ModelConfig:
    """The chain of steps, each output mapped only where a later step or the ensemble's outputs take it: Triton
    asks each composing model for just those (the engine computes pooled vectors or token embeddings, not
    both). The ids ensemble takes TOKEN_IDS, so what its first step produces clashes with no input."""
    config = pb.ModelConfig(name=ensemble.name, platform="ensemble", max_batch_size=ensemble.max_batch_size)
    first = ensemble.chain[0].inputs
    taken_first = {t.name for t in first}  # SIDE goes to the tokenizer and the postprocess: declared once
    options = [t for t in ensemble.chain[-1].inputs if t.name in spec.task_row.options and t.name not in taken_first]
    available = taken_first | {t.name for t in options}  # what the ensemble's inputs and earlier steps give
    for index, step in enumerate(ensemble.chain):
        taken = {t.name for later in ensemble.chain[index + 1 :] for t in later.inputs} | set(ensemble.outputs)
        entry = config.ensemble_scheduling.step.add(model_name=step.model(spec), model_version=-1)
        for tensor in step.inputs:
            if tensor.name in available or not tensor.optional:  # an optional input nothing gives stays unmapped
                entry.input_map[tensor.name] = tensor.name
        for tensor in step.outputs:
            if tensor.name in taken:
                entry.output_map[tensor.name] = tensor.name
                available.add(tensor.name)
    _declare([replace(t, ragged=False) for t in [*first, *options]], config.input, is_input=True)
    _declare([Tensor(name, _output_dims(name, spec)) for name in ensemble.outputs], config.output, False)
    if ensemble.name == spec.name:
        _manifest(config, spec)
    return config


def configs_for(spec: ModelSpec) -> dict[str, pb.ModelConfig]:
    """The config of every model of the spec's ensembles and of their bulk twins, keyed by model name."""
    steps = steps_for(spec)
    bulk = bulk_steps(spec, steps)
    twins = [step for step in bulk.values() if step.bulk]
    configs = {step.model(spec): python_config(spec, step) for step in steps.values()}
    # The lane's engine: one instance, whose manifest says so (its threads are the cores' share of one).
    lane_spec = replace(spec, engine_instances=BULK_ENGINE_INSTANCES)
    configs.update({step.model(spec): python_config(lane_spec, step) for step in twins})
    for ensemble in ensembles_for(spec, steps):
        configs[ensemble.name] = ensemble_config(spec, ensemble)
    for ensemble in ensembles_for(spec, bulk):
        twin = replace(ensemble, name=bulk_twin(ensemble.name), max_batch_size=BULK_MAX_BATCH)
        configs[twin.name] = ensemble_config(spec, twin)
    return configs


def twin_sources(spec: ModelSpec) -> dict[str, str]:
    """Each bulk twin step's model name -> the model whose files it runs (its version folder links there)."""
    return {bulk_twin(step_model(spec.name, role)): step_model(spec.name, role) for role in laned_roles(spec)}


def render(config: pb.ModelConfig) -> str:
    return text_format.MessageToString(config)


def host_step_instances(cores: int) -> int:
    """Triton instances of each cheap step (tokenizer, ids, postprocess) on a host with `cores` cores: one
    per 4 cores, at most 4 (1 up to 7 cores). Past that the engine, not these steps, bounds throughput."""
    return min(4, max(1, cores // 4))


def served_copy(repository: Path, out: Path, step_instances: int, gpus: list[int] | None = None) -> Path:
    """`repository` as this host serves it: under `out`, each model folder holds links to the build's files
    and version folders (nothing is copied), and the config of the models placed for the host is written anew:
    the host-sized steps with `step_instances` instances, and with `gpus` each GPU engine (and TensorRT plan)
    with its instances on each of those GPUs. Other folders are linked unchanged. Returns `out`."""
    placements = host_placements(repository, step_instances, gpus)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for model in sorted(repository.iterdir()):
        place = placements.get(model.name)
        if place is None or not (model / "config.pbtxt").is_file():
            (out / model.name).symlink_to(model.resolve())
            continue
        (out / model.name).mkdir()
        for entry in model.iterdir():
            if entry.name != "config.pbtxt":
                (out / model.name / entry.name).symlink_to(entry.resolve())
        config = text_format.Parse((model / "config.pbtxt").read_text(), pb.ModelConfig())
        place(config)
        (out / model.name / "config.pbtxt").write_text(render(config))
    return out


class PlacementError(ValueError):
    """A model cannot be placed as asked (GPUs for an engine that runs on the CPU)."""


def host_placements(repository: Path, step_instances: int, gpus: list[int] | None) -> dict[str, Callable]:
    """Model name -> what to change in its config on this host."""
    placements: dict[str, Callable] = {}
    for manifest in repository.glob("*/manifest.json"):
        spec = ModelSpec.load(manifest)
        for role in HOST_SIZED_ROLES:
            for name in (step_model(spec.name, role), bulk_twin(step_model(spec.name, role))):
                placements[name] = partial(set_instances, count=step_instances)
        if gpus is None:
            continue
        if not engine_on_gpu(spec):
            raise PlacementError(f"model {spec.name!r} runs its engine on the CPU ({spec.engine}); --gpus places "
                                 "GPU engines (built with --engine torch or --engine tensorrt)")
        placements[step_model(spec.name, "engine")] = partial(on_gpus, gpus=gpus, count=spec.engine_instances)
        placements[plan_model(spec.name)] = partial(on_gpus, gpus=gpus, count=1)  # a TensorRT plan, when built
    return placements


def set_instances(config: pb.ModelConfig, count: int) -> None:
    for group in config.instance_group:
        group.count = count


def on_gpus(config: pb.ModelConfig, gpus: list[int], count: int) -> None:
    """One instance group per GPU, `count` instances on each; a TensorRT plan keeps its optimization profiles."""
    profiles = list(config.instance_group[0].profile) if config.instance_group else []
    del config.instance_group[:]
    for gpu in gpus:
        config.instance_group.add(kind=pb.ModelInstanceGroup.KIND_GPU, count=count, gpus=[gpu], profile=profiles)


def model_files(spec: ModelSpec, tokenizer_file: Path, engine_files: dict[str, Path]) -> dict[str, dict[str, Path]]:
    """What each model's version folder holds, keyed by model name (the ensembles hold nothing)."""
    files: dict[str, dict[str, Path]] = {}
    for role, step in steps_for(spec).items():
        own = {"model.py": MODEL_SOURCES / step.source / "model.py"}
        if role == "tokenizer" or (role == "postprocess" and spec.task_row.spans):  # NER: token strings
            own["tokenizer.json"] = tokenizer_file
        if role == "engine":
            own.update(engine_files)
        files[step_model(spec.name, role)] = own
    return files


def write_repository(spec: ModelSpec, out: Path, tokenizer_file: Path, engine_files: dict[str, Path]) -> list[Path]:
    """Write every model of the spec's ensembles under `out`; returns their folders. Replaces an older
    build of `spec.name`. The engine model's version folder gets `engine_files` (name -> file or folder, as
    the engine's build made them: builder/engine_builds.py)."""
    files = model_files(spec, tokenizer_file, engine_files)
    twins = twin_sources(spec)
    folders = []
    for model, config in configs_for(spec).items():
        folder = out / model
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        if model in twins:  # the same files: linked, relative, so the repository can move
            (folder / VERSION).symlink_to(Path("..") / twins[model] / VERSION, target_is_directory=True)
        else:
            (folder / VERSION).mkdir()
        (folder / "config.pbtxt").write_text(render(config))
        for target, source in files.get(model, {}).items():
            if source.is_dir():
                shutil.copytree(source, folder / VERSION / target)
            else:
                shutil.copyfile(source, folder / VERSION / target)
        folders.append(folder)
    spec.save(out / spec.name / "manifest.json")
    return folders
