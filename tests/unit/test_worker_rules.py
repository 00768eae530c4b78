"""`trident serve --workers N` and host-sized Triton steps, the parts that need no server: the default counts,
the whole-server in-flight limit shared by processes (and given back by a killed one), the workers' plan, and
the served copy of a build with this host's instance counts. tests/test_gateway_workers.py runs the real thing."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from builder.repository import HOST_SIZED_ROLES, host_step_instances, served_copy
from cli.main import parser
from cli.ports import PortInUseError
from cli.workers import WorkerPlan, default_workers, first_slot, reserve_port, reuse_port_sockets
from gateway.limits import Admission, SharedSlots
from gateway.settings import GatewaySettings
from trident.model_names import bulk_twin, step_model
from trident.spec import ModelSpec


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (2, 1), (3, 1), (4, 2), (7, 3), (16, 8), (64, 8)])
def test_default_workers_are_one_per_two_cores_at_most_eight(cores, workers):
    assert default_workers(cores) == workers


@pytest.mark.parametrize(("cores", "instances"), [(1, 1), (2, 1), (7, 1), (8, 2), (12, 3), (16, 4), (96, 4)])
def test_host_sized_steps_get_one_instance_per_four_cores_at_most_four(cores, instances):
    assert host_step_instances(cores) == instances


def test_each_worker_starts_at_its_own_share_of_the_slots():
    assert [first_slot(i, 3, 10) for i in range(3)] == [0, 3, 6]
    assert [first_slot(i, 8, 4) for i in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]  # fewer slots than workers


@pytest.mark.parametrize("flag", ["--workers", "--step-instances"])
@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_worker_and_instance_counts_below_one_are_refused(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(["serve", flag, value])
    assert exit_info.value.code == 2
    assert flag in capsys.readouterr().err


def test_the_gateway_port_is_reserved_for_the_workers_and_a_taken_one_fails_at_start():
    reserved = reserve_port("127.0.0.1", 0)
    try:
        port = reserved[0].getsockname()[1]
        workers = [reuse_port_sockets("127.0.0.1", port, listen=True) for _ in range(2)]  # both bind
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))  # a program without SO_REUSEPORT cannot take it
        for sockets in workers:
            sockets[0].close()
    finally:
        reserved[0].close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(PortInUseError, match="--port"):
            reserve_port("127.0.0.1", taken.getsockname()[1])


def test_shared_slots_are_one_limit_across_processes_and_a_killed_process_gives_its_back(tmp_path):
    path = tmp_path / "slots"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from gateway.limits import SharedSlots
        slots = SharedSlots({str(path)!r}, 3)
        print(slots.take(), slots.take(), flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().split() == ["True", "True"]
        admission = Admission(3, SharedSlots(path, 3, first=2))
        assert admission.enter()  # the one slot left of the three
        assert not admission.enter()
        assert admission.in_flight == 1  # this process's own count: what its drain waits for
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        assert admission.enter() and admission.enter()  # the killed holder's two came back
        assert not admission.enter()
        for _ in range(3):
            admission.leave()
        assert admission.in_flight == 0
        assert all(admission.enter() for _ in range(3))
    finally:
        holder.kill()
        holder.wait()


def test_one_process_admission_is_unchanged_without_shared_slots():
    admission = Admission(2)
    assert admission.enter() and admission.enter() and not admission.enter()
    admission.leave()
    assert admission.enter() and admission.in_flight == 2


def test_the_workers_plan_round_trips_through_the_run_folder(tmp_path):
    settings = GatewaySettings(triton_urls=["127.0.0.1:9"], repositories=[Path("/models/a")], api_key="k",
                               max_concurrent_requests=7, triton_server_id="trident-x")
    plan = WorkerPlan(settings, "0.0.0.0", 8080, 3, 12.5, "text")
    plan.save(tmp_path)
    assert WorkerPlan.load(tmp_path) == plan


def _config(folder: Path) -> pb.ModelConfig:
    return text_format.Parse((folder / "config.pbtxt").read_text(), pb.ModelConfig())


def test_the_served_copy_sizes_the_cheap_steps_for_the_host_and_links_the_build(unit_repository, tmp_path):
    served = served_copy(unit_repository, tmp_path / "served", step_instances=3)
    specs = [ModelSpec.load(manifest) for manifest in unit_repository.glob("*/manifest.json")]
    assert specs
    names = [step_model(spec.name, role) for spec in specs for role in HOST_SIZED_ROLES]
    sized = {*names, *map(bulk_twin, names)}
    assert sorted(p.name for p in served.iterdir()) == sorted(p.name for p in unit_repository.iterdir())
    for model in served.iterdir():
        built = unit_repository / model.name
        if model.name in sized:
            assert [group.count for group in _config(model).instance_group] == [3]
            assert (model / "1").is_symlink() and (model / "1").resolve() == (built / "1").resolve()
            assert _config(built).instance_group[0].count == 1  # the build itself is left as it was
        else:  # engines, ensembles: the build's own folder
            assert model.is_symlink() and _config(model) == _config(built)
    for spec in specs:  # the engine keeps the spec's count
        engine = served / step_model(spec.name, "engine")
        assert [group.count for group in _config(engine).instance_group] == [spec.engine_instances]


def test_a_repository_that_is_not_a_folder_is_a_clear_error_before_triton_starts(tmp_path):
    from cli.supervisor import make_server
    from cli.triton_server import TritonStartError

    with pytest.raises(TritonStartError, match="is not a folder"):
        make_server([tmp_path / "missing"], 1, 2, 3)
