"""Writing the Triton model repository: one ensemble `<name>` over three Python-backend steps.

    <name>_tokenizer -> <name>_engine -> <name>_postprocess

Every config.pbtxt is complete (Triton runs with --disable-auto-complete-config) and carries the
manifest as the `trident_manifest` parameter, so each step and any gateway can read the spec from
Triton alone.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from trident import tensors as T
from trident.spec import MANIFEST_PARAMETER, ModelSpec

MODEL_SOURCES = Path(__file__).resolve().parent.parent / "model_repository"
MAX_BATCH_SIZE = 256


@dataclass(frozen=True)
class Tensor:
    name: str
    data_type: str
    dims: tuple[int, ...] = (1,)
    optional: bool = False
    ragged: bool = False

    def render(self) -> str:
        extra = " optional: true" if self.optional else ""
        extra += " allow_ragged_batch: true" if self.ragged else ""
        dims = ", ".join(str(d) for d in self.dims)
        return f'  {{ name: "{self.name}" data_type: {self.data_type} dims: [ {dims} ]{extra} }}'


def pbtxt_string(text: str) -> str:
    """A protobuf text-format string literal: printable ASCII as is, everything else as octal bytes."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in '"\\' else f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _tensors(kind: str, tensors: list[Tensor]) -> str:
    if kind == "output":  # optional and ragged describe inputs only
        tensors = [replace(t, optional=False, ragged=False) for t in tensors]
    return f"{kind} [\n" + ",\n".join(t.render() for t in tensors) + "\n]\n"


def _manifest_parameter(spec: ModelSpec) -> str:
    manifest = json.dumps(dataclasses.asdict(spec), separators=(",", ":"), sort_keys=True)
    return f'parameters {{ key: "{MANIFEST_PARAMETER}" value {{ string_value: {pbtxt_string(manifest)} }} }}\n'


def python_config(
    name: str, spec: ModelSpec, inputs: list[Tensor], outputs: list[Tensor], queue_delay_us: int, instances: int = 1
) -> str:
    return (
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: {MAX_BATCH_SIZE}\n'
        + _tensors("input", inputs)
        + _tensors("output", outputs)
        + f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}\n"
        + f"instance_group [ {{ kind: KIND_CPU count: {instances} }} ]\n"
        + _manifest_parameter(spec)
    )


def _step(model: str, mapping_in: dict[str, str], mapping_out: dict[str, str]) -> str:
    ins = "".join(f'      input_map {{ key: "{k}" value: "{v}" }}\n' for k, v in mapping_in.items())
    outs = "".join(f'      output_map {{ key: "{k}" value: "{v}" }}\n' for k, v in mapping_out.items())
    return f'    {{\n      model_name: "{model}"\n      model_version: -1\n{ins}{outs}    }}'


def _text_inputs(pairs: bool = True) -> list[Tensor]:
    return [
        Tensor(T.TEXT, "TYPE_STRING"),
        *([Tensor(T.TEXT_PAIR, "TYPE_STRING", optional=True)] if pairs else []),
        Tensor(T.TRUNCATE, "TYPE_BOOL", optional=True),
        Tensor(T.TRUNCATE_LEFT, "TYPE_BOOL", optional=True),
    ]


def _token_tensors() -> list[Tensor]:
    return [
        Tensor(T.INPUT_IDS, "TYPE_INT64", (-1,), ragged=True),
        Tensor(T.TOKEN_TYPE_IDS, "TYPE_INT64", (-1,), ragged=True),
        Tensor(T.NUM_TOKENS, "TYPE_INT32", ragged=True),
    ]


def _ensemble(spec: ModelSpec, inputs: list[Tensor], outputs: list[Tensor], steps: list[str]) -> str:
    return (
        f'name: "{spec.name}"\nplatform: "ensemble"\nmax_batch_size: {MAX_BATCH_SIZE}\n'
        + _tensors("input", inputs)
        + _tensors("output", outputs)
        + "ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}\n"
        + _manifest_parameter(spec)
    )


def _same_names(tensors: list[Tensor]) -> dict[str, str]:
    return {t.name: t.name for t in tensors}


def embedding_configs(spec: ModelSpec) -> dict[str, str]:
    """config.pbtxt for each model of an embedding ensemble, keyed by model name."""
    name = spec.name
    text_inputs = _text_inputs()
    tokens = _token_tensors()
    pooled = Tensor(T.POOLED, "TYPE_FP32", (spec.dim,))
    shaping = [Tensor(T.NORMALIZE, "TYPE_BOOL", optional=True), Tensor(T.DIMENSIONS, "TYPE_INT32", optional=True)]
    embeddings = Tensor(T.EMBEDDINGS, "TYPE_FP32", (-1,))
    num_tokens = Tensor(T.NUM_TOKENS, "TYPE_INT32")
    steps = [
        _step(f"{name}_tokenizer", {t.name: t.name for t in text_inputs},
              {T.INPUT_IDS: "input_ids", T.TOKEN_TYPE_IDS: "token_type_ids", T.NUM_TOKENS: T.NUM_TOKENS}),
        _step(f"{name}_engine",
              {T.INPUT_IDS: "input_ids", T.TOKEN_TYPE_IDS: "token_type_ids", T.NUM_TOKENS: T.NUM_TOKENS},
              {T.POOLED: "pooled"}),
        _step(f"{name}_postprocess", {T.POOLED: "pooled", T.NORMALIZE: T.NORMALIZE, T.DIMENSIONS: T.DIMENSIONS},
              {T.EMBEDDINGS: T.EMBEDDINGS}),
    ]
    ensemble = (
        f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: {MAX_BATCH_SIZE}\n'
        + _tensors("input", text_inputs + shaping)
        + _tensors("output", [embeddings, num_tokens])
        + "ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}\n"
        + _manifest_parameter(spec)
    )
    return {
        f"{name}_tokenizer": python_config(f"{name}_tokenizer", spec, text_inputs, tokens, queue_delay_us=100),
        f"{name}_engine": python_config(f"{name}_engine", spec, tokens, [pooled], queue_delay_us=500,
                                             instances=spec.engine_instances),
        f"{name}_postprocess": python_config(
            f"{name}_postprocess", spec, [pooled, *shaping], [embeddings], queue_delay_us=0
        ),
        name: ensemble,
    }


def logits_configs(spec: ModelSpec) -> dict[str, str]:
    """Reranker / classifier ensemble: text (+ pair) -> ids -> LOGITS [labels] -> SCORES [labels]."""
    name = spec.name
    text_inputs, tokens = _text_inputs(), _token_tensors()
    logits = Tensor(T.LOGITS, "TYPE_FP32", (spec.num_labels,))
    raw_scores = Tensor(T.RAW_SCORES, "TYPE_BOOL", optional=True)
    scores = Tensor(T.SCORES, "TYPE_FP32", (spec.num_labels,))
    token_map = {T.INPUT_IDS: "input_ids", T.TOKEN_TYPE_IDS: "token_type_ids", T.NUM_TOKENS: T.NUM_TOKENS}
    steps = [
        _step(f"{name}_tokenizer", _same_names(text_inputs), token_map),
        _step(f"{name}_engine", token_map, {T.LOGITS: "logits"}),
        _step(f"{name}_postprocess", {T.LOGITS: "logits", T.RAW_SCORES: T.RAW_SCORES}, {T.SCORES: T.SCORES}),
    ]
    return {
        f"{name}_tokenizer": python_config(f"{name}_tokenizer", spec, text_inputs, tokens, queue_delay_us=100),
        f"{name}_engine": python_config(f"{name}_engine", spec, tokens, [logits], queue_delay_us=500,
                                             instances=spec.engine_instances),
        f"{name}_postprocess": python_config(f"{name}_postprocess", spec, [logits, raw_scores], [scores],
                                             queue_delay_us=0),
        name: _ensemble(spec, [*text_inputs, raw_scores], [scores, Tensor(T.NUM_TOKENS, "TYPE_INT32")], steps),
    }


def ner_configs(spec: ModelSpec) -> dict[str, str]:
    """NER ensemble: text -> ids + offsets + word ids -> LOGITS [seq, labels] -> RESULT (JSON per text).

    TEXT feeds the postprocess as well: entity words and spans are cut from the original text.
    """
    name = spec.name
    text_inputs, tokens = _text_inputs(pairs=False), _token_tensors()
    spans = [Tensor(T.OFFSETS, "TYPE_INT32", (-1, 2), ragged=True),
             Tensor(T.WORD_IDS, "TYPE_INT32", (-1,), ragged=True)]
    logits = Tensor(T.LOGITS, "TYPE_FP32", (-1, spec.num_labels), ragged=True)
    options = [Tensor(T.AGGREGATION_STRATEGY, "TYPE_STRING", optional=True),
               Tensor(T.RAW_SCORES, "TYPE_BOOL", optional=True)]
    result = Tensor(T.RESULT, "TYPE_STRING")
    token_map = {T.INPUT_IDS: "input_ids", T.TOKEN_TYPE_IDS: "token_type_ids", T.NUM_TOKENS: T.NUM_TOKENS}
    span_map = {T.OFFSETS: "offsets", T.WORD_IDS: "word_ids"}
    postprocess_inputs = [Tensor(T.TEXT, "TYPE_STRING"), tokens[0], *spans, tokens[2], logits, *options]
    steps = [
        _step(f"{name}_tokenizer", _same_names(text_inputs), {**token_map, **span_map}),
        _step(f"{name}_engine", token_map, {T.LOGITS: "logits"}),
        _step(f"{name}_postprocess",
              {T.TEXT: T.TEXT, T.INPUT_IDS: "input_ids", **span_map, T.NUM_TOKENS: T.NUM_TOKENS,
               T.LOGITS: "logits", **_same_names(options)},
              {T.RESULT: T.RESULT}),
    ]
    return {
        f"{name}_tokenizer": python_config(f"{name}_tokenizer", spec, text_inputs, tokens + spans, queue_delay_us=100),
        f"{name}_engine": python_config(f"{name}_engine", spec, tokens, [logits], queue_delay_us=500,
                                             instances=spec.engine_instances),
        f"{name}_postprocess": python_config(f"{name}_postprocess", spec, postprocess_inputs, [result],
                                             queue_delay_us=0),
        name: _ensemble(spec, [*text_inputs, *options], [result, Tensor(T.NUM_TOKENS, "TYPE_INT32")], steps),
    }


def configs_for(spec: ModelSpec) -> dict[str, str]:
    """config.pbtxt of every model of the spec's ensemble, keyed by model name."""
    if spec.task == "ner":
        return ner_configs(spec)
    if spec.task in ("reranker", "classifier"):
        return logits_configs(spec)
    return embedding_configs(spec)


# The postprocess model's source folder under model_repository/, per task.
POSTPROCESS_SOURCES = {"embedding": "postprocess", "reranker": "scores", "classifier": "scores", "ner": "ner"}


def onnx_files(onnx_file: Path) -> dict[str, Path]:
    """The graph and, for models over protobuf's 2 GB limit, its external weights file beside it."""
    files = {"model.onnx": onnx_file}
    weights = onnx_file.with_name(onnx_file.name + ".data")
    if weights.exists():
        files["model.onnx.data"] = weights
    return files


def write_repository(spec: ModelSpec, out: Path, onnx_file: Path | None, tokenizer_file: Path,
                     engine_files: dict[str, Path] | None = None) -> list[Path]:
    """Write the four models under `out`; returns their folders. Replaces an older build of `spec.name`.

    The engine model gets `model.onnx`, or `engine_files` (name -> file or folder) when given: the
    checkpoint folder of `--engine torch`.
    """
    configs = configs_for(spec)
    postprocess_files = {"model.py": MODEL_SOURCES / POSTPROCESS_SOURCES[spec.task] / "model.py"}
    if spec.task == "ner":  # token strings for the entities' words
        postprocess_files["tokenizer.json"] = tokenizer_file
    files = {
        f"{spec.name}_tokenizer": {"model.py": MODEL_SOURCES / "tokenizer" / "model.py",
                                   "tokenizer.json": tokenizer_file},
        f"{spec.name}_engine": {"model.py": MODEL_SOURCES / "engine" / "model.py",
                                **(engine_files if engine_files is not None else onnx_files(onnx_file))},
        f"{spec.name}_postprocess": postprocess_files,
        spec.name: {},
    }
    folders = []
    for model, config in configs.items():
        folder = out / model
        if folder.exists():
            shutil.rmtree(folder)
        (folder / "1").mkdir(parents=True)
        (folder / "config.pbtxt").write_text(config)
        for target, source in files[model].items():
            if source.is_dir():
                shutil.copytree(source, folder / "1" / target)
            else:
                shutil.copyfile(source, folder / "1" / target)
        folders.append(folder)
    spec.save(out / spec.name / "manifest.json")
    return folders
