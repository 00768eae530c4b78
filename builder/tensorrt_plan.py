"""`--engine tensorrt`: the checked ONNX graph -> a TensorRT plan (fp16) and its Triton `tensorrt_plan` model.

The ensemble is unchanged: `<name>_engine` (Python) still sorts and pads the token-budget batches, and
sends each one to `<name>_trt`, the plan, by BLS (`trident.engines.tensorrt`). The plan has one
optimization profile per length band, so that a band's widest batch (max_num_tokens // shortest length
of the band rows) fits, and TensorRT tunes for the band's typical shape.

NOT RUN: no machine this was written on has TensorRT or a GPU with it. `build_plan` follows TensorRT 10's
documented Python API (Builder, OnnxParser.parse_from_file, IOptimizationProfile.set_shape,
build_serialized_network); the profiles and the config text are tested without it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as pb

from builder.errors import BuildError
from builder.repository import engine_dims, render
from trident.engines.tensorrt import MAX_ROWS
from trident.model_names import VERSION, plan_model
from trident.spec import ModelSpec

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
        for name in spec.engine_input_names():
            profile.set_shape(name, shapes.min, shapes.opt, shapes.max)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError("TensorRT could not build a plan from the ONNX graph (see its log above)")
    plan_file.write_bytes(bytes(serialized))
    return plan_file


def plan_config(spec: ModelSpec, profiles: list[Profile]) -> pb.ModelConfig:
    """The plan model's config. max_batch_size 0: the engine step sends whole padded batches, so dims are the
    full [rows, tokens] shapes. The instance may use every profile; Triton's TensorRT backend picks one whose
    ranges hold the request's shapes."""
    config = pb.ModelConfig(name=plan_model(spec.name), platform="tensorrt_plan", max_batch_size=0)
    for name in spec.engine_input_names():
        config.input.add(name=name, data_type=pb.TYPE_INT64, dims=[-1, -1])
    for output in spec.task_row.engine_outputs:  # [rows, width], or [rows, tokens, width] per token
        config.output.add(name=spec.engine_output_name(output), data_type=pb.TYPE_FP32,
                          dims=[-1, *engine_dims(output, spec)])
    config.instance_group.add(kind=pb.ModelInstanceGroup.KIND_GPU, count=1,
                              profile=[str(i) for i in range(len(profiles))])
    return config


def write_plan_model(spec: ModelSpec, out: Path, plan_file: Path, profiles: list[Profile]) -> Path:
    """`<out>/<name>_trt/{config.pbtxt, 1/model.plan}`; replaces an older one."""
    folder = out / plan_model(spec.name)
    if folder.exists():
        shutil.rmtree(folder)
    (folder / VERSION).mkdir(parents=True)
    (folder / "config.pbtxt").write_text(render(plan_config(spec, profiles)))
    shutil.copyfile(plan_file, folder / VERSION / "model.plan")
    return folder
