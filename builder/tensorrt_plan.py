"""`--engine tensorrt`: the checked ONNX graph -> a TensorRT plan (fp16) and its Triton `tensorrt_plan` model.

The ensemble is unchanged: `<name>_engine` (Python) still sorts and pads the token-budget batches, and
sends each one to `<name>_trt`, the plan, by BLS (`trident.tensorrt_engine`). The plan has one
optimization profile per length band, so that a band's widest batch (max_num_tokens // shortest length
of the band rows) fits, and TensorRT tunes for the band's typical shape.

NOT RUN: no machine this was written on has TensorRT or a GPU with it. `build_plan` follows TensorRT 10's
documented Python API (Builder, OnnxParser.parse_from_file, IOptimizationProfile.set_shape,
build_serialized_network); the profiles and the config text are tested without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError
from trident import tensors as T
from trident.spec import ModelSpec

MAX_ROWS = 4096  # rows of one plan batch; trident.tensorrt_engine splits wider batches
BAND_FACTOR = 4  # each length band is 4x longer than the last: few profiles, each at most 4x padded
FIRST_BAND = 16
WORKSPACE_BYTES = 4 << 30


@dataclass(frozen=True)
class Profile:
    """min / opt / max (rows, tokens) shapes, the same for every [rows, tokens] input of the graph."""

    min: tuple[int, int]
    opt: tuple[int, int]
    max: tuple[int, int]


def length_bands(max_length: int) -> list[int]:
    """Upper bounds of the length bands: 16, 64, 256, ... and max_length itself last."""
    bands, bound = [], FIRST_BAND
    while bound < max_length:
        bands.append(bound)
        bound *= BAND_FACTOR
    return [*bands, max_length]


def optimization_profiles(max_length: int, max_num_tokens: int, max_rows: int = MAX_ROWS) -> list[Profile]:
    """One profile per band (lo, hi]: a batch whose longest row is in the band has at most
    max_num_tokens // (lo + 1) rows (the engine's budget), so that is the profile's max; opt is the
    batch of rows at the band's top length."""
    if max_length < 1 or max_num_tokens < max_length:
        raise ValueError(f"need 1 <= max_length ({max_length}) <= max_num_tokens ({max_num_tokens})")
    profiles, low = [], 0
    for high in length_bands(max_length):
        rows = max(1, min(max_rows, max_num_tokens // (low + 1)))
        opt_rows = max(1, min(rows, max_num_tokens // high))
        profiles.append(Profile(min=(1, low + 1), opt=(opt_rows, high), max=(rows, high)))
        low = high
    return profiles


def plan_input_names(spec: ModelSpec) -> list[str]:
    from trident.tensorrt_engine import graph_input_names

    return graph_input_names(spec)


def build_plan(onnx_file: Path, spec: ModelSpec, plan_file: Path, profiles: list[Profile],
               workspace_bytes: int = WORKSPACE_BYTES) -> Path:
    """Parse the ONNX graph, add the profiles, build an fp16 plan and write it to plan_file."""
    try:
        import tensorrt as trt
    except ImportError:
        raise BuildError("--engine tensorrt needs TensorRT's Python package and an NVIDIA GPU (pip install "
                         "tensorrt-cu12, or build inside NVIDIA's TensorRT / Triton container)") from None
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_file)):  # from the file, so external weights (.data) are found
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BuildError(f"TensorRT cannot parse {onnx_file.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    config.set_flag(trt.BuilderFlag.FP16)
    for shapes in profiles:
        profile = builder.create_optimization_profile()
        for name in plan_input_names(spec):
            profile.set_shape(name, shapes.min, shapes.opt, shapes.max)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError("TensorRT could not build a plan from the ONNX graph (see its log above)")
    plan_file.write_bytes(bytes(serialized))
    return plan_file


def plan_model_name(spec: ModelSpec) -> str:
    return f"{spec.name}_trt"


def plan_config(spec: ModelSpec, profiles: list[Profile]) -> str:
    """config.pbtxt of the plan model. max_batch_size 0: the engine step sends whole padded batches, so
    dims are the full [rows, tokens] shapes. The instance may use every profile; Triton's TensorRT backend
    picks one whose ranges hold the request's shapes."""
    inputs = ",\n".join(f'  {{ name: "{name}" data_type: TYPE_INT64 dims: [ -1, -1 ] }}'
                        for name in plan_input_names(spec))
    output = ",\n".join(f'  {{ name: "{spec.engine_output_name(name)}" data_type: TYPE_FP32 dims: [ '
                        f'{", ".join(map(str, _output_dims(spec, name)))} ] }}'
                        for name in spec.task_row.engine_outputs)
    profile_list = ", ".join(f'"{i}"' for i in range(len(profiles)))
    return (
        f'name: "{plan_model_name(spec)}"\nplatform: "tensorrt_plan"\nmax_batch_size: 0\n'
        f"input [\n{inputs}\n]\noutput [\n{output}\n]\n"
        f"instance_group [ {{ kind: KIND_GPU count: 1 profile: [ {profile_list} ] }} ]\n"
    )


def _output_dims(spec: ModelSpec, name: str) -> tuple[int, ...]:
    """[rows, width], or [rows, tokens, width] for a per-token output (hidden states: the encoder's width)."""
    task = spec.task_row
    width = spec.num_labels if name == T.LOGITS else (-1 if name == T.TOKEN_EMBEDDINGS and task.pools else spec.dim)
    return (-1, -1, width) if task.per_token_output(name) else (-1, width)


def write_plan_model(spec: ModelSpec, out: Path, plan_file: Path, profiles: list[Profile]) -> Path:
    """`<out>/<name>_trt/{config.pbtxt, 1/model.plan}`; replaces an older one."""
    import shutil

    folder = out / plan_model_name(spec)
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(plan_config(spec, profiles))
    shutil.copyfile(plan_file, folder / "1" / "model.plan")
    return folder
