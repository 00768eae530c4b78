"""What the repository writer and `trident place` write for priorities, the bulk lane and GPUs, read back
through Triton's own protobuf (`model_config_pb2`) as tritonserver reads it. No GPU here: the GPU configs
are checked as files; Triton has not loaded them on a GPU."""

from __future__ import annotations

import argparse
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from builder.repository import configs_for, write_repository
from cli.gpus import gpu_list
from cli.main import main
from trident.model_names import bulk_twin, step_model
from trident.priorities import BULK_ENGINE_INSTANCES, BULK_MAX_BATCH, BULK_NICE, NICE_PARAMETER, Priority
from trident.spec import ModelSpec
from trident.triton_adapter import use_instance_gpu


def read(folder: Path) -> pb.ModelConfig:
    return text_format.Parse((folder / "config.pbtxt").read_text(), pb.ModelConfig())


@pytest.fixture
def spec(unit_repository) -> ModelSpec:
    return ModelSpec.load(unit_repository / "tiny-bert-mean" / "manifest.json")


def steps_of(config: pb.ModelConfig) -> list[str]:
    return [step.model_name for step in config.ensemble_scheduling.step]


def test_every_composing_model_of_every_ensemble_has_both_priority_levels(spec):
    configs = configs_for(spec)
    ensembles = [c for c in configs.values() if c.platform == "ensemble"]
    assert {c.name for c in ensembles} == {"tiny-bert-mean", "tiny-bert-mean_ids", "tiny-bert-mean_tokens",
                                          *map(bulk_twin, ("tiny-bert-mean", "tiny-bert-mean_ids",
                                                           "tiny-bert-mean_tokens"))}
    for ensemble in ensembles:
        for step in steps_of(ensemble):
            batching = configs[step].dynamic_batching
            assert batching.priority_levels == len(Priority) == 2, step
            assert batching.default_priority_level == Priority.INTERACTIVE.value, step


def test_the_bulk_lane_has_its_own_tokenizer_and_cpu_engine_at_a_lower_os_priority(spec):
    configs = configs_for(spec)
    lane = steps_of(configs["tiny-bert-mean_bulk"])
    assert lane == ["tiny-bert-mean_tokenizer_bulk", "tiny-bert-mean_engine_bulk", "tiny-bert-mean_postprocess"]
    assert steps_of(configs["tiny-bert-mean_ids_bulk"]) == [
        "tiny-bert-mean_ids_input", "tiny-bert-mean_engine_bulk", "tiny-bert-mean_postprocess"]
    assert configs["tiny-bert-mean_bulk"].max_batch_size == BULK_MAX_BATCH
    for twin in lane[:2]:
        config = configs[twin]
        assert config.parameters[NICE_PARAMETER].string_value == str(BULK_NICE)
        assert config.max_batch_size == BULK_MAX_BATCH  # one bulk sub-request per execution
        own = configs[twin.removesuffix("_bulk")]
        assert NICE_PARAMETER not in own.parameters and own.max_batch_size > BULK_MAX_BATCH
        assert [i.name for i in config.input] == [i.name for i in own.input]
    engine = configs["tiny-bert-mean_engine_bulk"]
    assert [group.count for group in engine.instance_group] == [BULK_ENGINE_INSTANCES]
    assert ModelSpec.from_json(engine.parameters["trident_manifest"].string_value).engine_instances \
        == BULK_ENGINE_INSTANCES  # what its stage reads: its threads are the cores' share of one instance
    # Only the `<name>` ensemble carries the manifest: discovery finds each model once.
    assert [name for name, c in configs.items() if c.platform == "ensemble" and "trident_manifest" in c.parameters] \
        == ["tiny-bert-mean"]


def test_a_gpu_engine_is_shared_by_both_lanes(spec):
    configs = configs_for(replace(spec, engine="torch"))
    assert steps_of(configs["tiny-bert-mean_bulk"]) == [
        "tiny-bert-mean_tokenizer_bulk", "tiny-bert-mean_engine", "tiny-bert-mean_postprocess"]
    assert "tiny-bert-mean_engine_bulk" not in configs


def test_a_twin_runs_the_files_of_its_step_through_a_relative_link(unit_repository):
    twin = unit_repository / "tiny-bert-mean_tokenizer_bulk" / "1"
    assert twin.is_symlink() and twin.readlink() == Path("..") / "tiny-bert-mean_tokenizer" / "1"
    assert (twin / "model.py").is_file() and (twin / "tokenizer.json").is_file()


def gpu_repository(unit_repository: Path, tmp_path: Path, spec: ModelSpec) -> Path:
    """tiny-bert-mean as a torch (GPU) build: the same files, the engine's checkpoint folder left empty."""
    repository = tmp_path / "repository"
    tokenizer = unit_repository / "tiny-bert-mean_tokenizer" / "1" / "tokenizer.json"
    write_repository(replace(spec, engine="torch", engine_instances=2), repository, tokenizer, engine_files={})
    return repository


def test_trident_place_puts_the_engine_on_each_gpu_and_the_cheap_steps_on_the_cpu(unit_repository, tmp_path, spec):
    repository = gpu_repository(unit_repository, tmp_path, spec)
    placed = tmp_path / "placed"
    assert main(["place", str(repository), "--out", str(placed), "--gpus", "0,1", "--step-instances", "3"]) == 0
    engine = read(placed / "tiny-bert-mean_engine")
    assert [(g.kind, list(g.gpus), g.count) for g in engine.instance_group] == [
        (pb.ModelInstanceGroup.KIND_GPU, [0], 2), (pb.ModelInstanceGroup.KIND_GPU, [1], 2)]
    for step in ("tokenizer", "postprocess", "ids"):
        for name in (step_model(spec.name, step), bulk_twin(step_model(spec.name, step))):
            if (placed / name).exists():
                groups = read(placed / name).instance_group
                assert [(g.kind, g.count, list(g.gpus)) for g in groups] == [(pb.ModelInstanceGroup.KIND_CPU, 3, [])]
    assert read(repository / "tiny-bert-mean_engine").instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU


def test_a_tensorrt_plan_keeps_its_profiles_on_each_gpu(unit_repository, tmp_path, spec):
    repository = gpu_repository(unit_repository, tmp_path, spec)
    plan = repository / "tiny-bert-mean_trt"
    (plan / "1").mkdir(parents=True)
    (plan / "config.pbtxt").write_text('name: "tiny-bert-mean_trt"\nplatform: "tensorrt_plan"\nmax_batch_size: 0\n'
                                       'instance_group [ { kind: KIND_GPU count: 1 profile: [ "0", "1" ] } ]\n')
    main(["place", str(repository), "--out", str(tmp_path / "placed"), "--gpus", "1,3"])
    groups = read(tmp_path / "placed" / "tiny-bert-mean_trt").instance_group
    assert [(list(g.gpus), g.count, list(g.profile)) for g in groups] == [([1], 1, ["0", "1"]), ([3], 1, ["0", "1"])]


def test_gpus_for_an_engine_on_the_cpu_is_refused(unit_repository, tmp_path, capsys):
    assert main(["place", str(unit_repository), "--out", str(tmp_path / "placed"), "--gpus", "0"]) == 2
    assert "runs its engine on the CPU" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "visible", "expected"), [
    ("all", 4, [0, 1, 2, 3]), ("0,2", 4, [0, 2]), ("1", 0, [1]),  # nothing detected: the user's word
])
def test_gpu_lists(text, visible, expected):
    assert gpu_list(text, visible) == expected


@pytest.mark.parametrize(("text", "visible", "error"), [
    ("all", 0, "shows no GPU"), ("0,0", 2, "distinct"), ("2", 2, "indexes 0 to 1"), ("first", 2, "all` or GPU"),
    ("-1", 2, ">= 0"),
])
def test_bad_gpu_lists(text, visible, error):
    with pytest.raises(argparse.ArgumentTypeError, match=error):
        gpu_list(text, visible)


def test_an_instance_on_a_gpu_makes_it_the_current_device(monkeypatch):
    devices = []
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(set_device=devices.append))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    use_instance_gpu({"model_instance_kind": "GPU", "model_instance_device_id": "1"})
    use_instance_gpu({"model_instance_kind": "CPU", "model_instance_device_id": "0"})
    assert devices == [1]
