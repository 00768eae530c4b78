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


def embedding_configs(spec: ModelSpec) -> dict[str, str]:
    """config.pbtxt for each model of an embedding ensemble, keyed by model name."""
    name = spec.name
    text_inputs = [
        Tensor(T.TEXT, "TYPE_STRING"),
        Tensor(T.TEXT_PAIR, "TYPE_STRING", optional=True),
        Tensor(T.TRUNCATE, "TYPE_BOOL", optional=True),
        Tensor(T.TRUNCATE_LEFT, "TYPE_BOOL", optional=True),
    ]
    tokens = [
        Tensor(T.INPUT_IDS, "TYPE_INT64", (-1,), ragged=True),
        Tensor(T.TOKEN_TYPE_IDS, "TYPE_INT64", (-1,), ragged=True),
        Tensor(T.NUM_TOKENS, "TYPE_INT32", ragged=True),
    ]
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
        f"{name}_engine": python_config(f"{name}_engine", spec, tokens, [pooled], queue_delay_us=500),
        f"{name}_postprocess": python_config(
            f"{name}_postprocess", spec, [pooled, *shaping], [embeddings], queue_delay_us=0
        ),
        name: ensemble,
    }


def write_repository(spec: ModelSpec, out: Path, onnx_file: Path, tokenizer_file: Path) -> list[Path]:
    """Write the four models under `out`; returns their folders. Replaces an older build of `spec.name`."""
    configs = embedding_configs(spec)
    files = {
        f"{spec.name}_tokenizer": {"model.py": MODEL_SOURCES / "tokenizer" / "model.py", "tokenizer.json": tokenizer_file},
        f"{spec.name}_engine": {"model.py": MODEL_SOURCES / "engine" / "model.py", "model.onnx": onnx_file},
        f"{spec.name}_postprocess": {"model.py": MODEL_SOURCES / "postprocess" / "model.py"},
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
            shutil.copyfile(source, folder / "1" / target)
        folders.append(folder)
    spec.save(out / spec.name / "manifest.json")
    return folders
