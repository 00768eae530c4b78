"""Two `trident serve` on one host: Triton's ports are its defaults only when free, a port asked for
and taken fails at start, and a gateway only counts the Triton it started as ready."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from cli.ports import free_port
from cli.supervisor import Supervisor
from cli.triton_server import TritonServer, TritonStartError
from testkit.stack import Stack

MODEL = "tiny-bert-cls"


@contextlib.contextmanager
def held(ports: list[int]) -> Iterator[None]:
    """Listen on each port we can bind (one we cannot is held by someone else: taken either way)."""
    sockets = []
    try:
        for port in ports:
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
                sock.listen()
                sockets.append(sock)
            except OSError:
                sock.close()
        yield
    finally:
        for sock in sockets:
            sock.close()


def test_a_taken_triton_port_that_was_asked_for_fails_at_start(embedding_repositories):
    port = free_port()
    with held([port]):
        run = subprocess.run([sys.executable, "-m", "cli", "serve", "--repository",
                              str(embedding_repositories[MODEL]), "--port", str(free_port()),
                              "--triton-grpc-port", str(port)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr[-2000:]
    assert f"port {port} (--triton-grpc-port) is already in use" in run.stderr


def test_beside_servers_holding_the_default_ports_serve_picks_free_ones(embedding_repositories, tmp_path):
    with held([8000, 8001, 8002]):
        stack = Stack(["--repository", str(embedding_repositories[MODEL]), "--log-format", "text"],
                      tmp_path / "serve.log", pin_triton_ports=False)
        stack.start()
        try:
            started = re.search(r"starting tritonserver (\S+) \(gRPC 127\.0\.0\.1:(\d+), HTTP (\d+), metrics (\d+)[;)]",
                                stack.log_path.read_text())
            assert started, stack.log_tail()
            ports = {int(p) for p in started.groups()[1:]}
            assert len(ports) == 3 and not ports & {8000, 8001, 8002}
            health = httpx.get(f"{stack.base_url}/health", timeout=10)
            assert health.status_code == 200 and health.json()["models"] == [MODEL]
            answer = httpx.post(f"{stack.base_url}/embed", json={"inputs": "its own Triton"}, timeout=30)
            assert answer.status_code == 200, answer.text
        finally:
            stack.stop()


def empty_server(root, **ports: int) -> TritonServer:
    """A tritonserver over an empty repository (it starts in a second), on free ports but for `ports`."""
    (root / "repository").mkdir(parents=True, exist_ok=True)
    chosen = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port(), **ports}
    return TritonServer([root / "repository"], root / "work", **chosen)


@pytest.mark.parametrize("name", ["grpc", "http", "metrics"])
def test_a_port_taken_after_it_was_chosen_is_chosen_again(tmp_path, caplog, name):
    """What two servers started at the same moment do to each other, made certain: the port is held between
    being chosen and being bound. Triton 2.51 fails to start on a taken gRPC or HTTP port and only logs a
    taken metrics port (and then serves without metrics, or with another server's there)."""
    port = free_port()
    supervisor = Supervisor(empty_server(tmp_path, **{f"{name}_port": port}))
    with held([port]):
        supervisor.start(rebind=frozenset({"http", "grpc", "metrics"}))
    try:
        assert supervisor.server.port(name) != port and supervisor.server.ready()
        assert f"found its {name} port {port} taken" in caplog.text
    finally:
        supervisor.stop()


def test_a_port_asked_for_and_taken_meanwhile_fails_with_its_flag(tmp_path):
    port = free_port()
    supervisor = Supervisor(empty_server(tmp_path, grpc_port=port))
    with held([port]), pytest.raises(TritonStartError, match=rf"grpc {port} port\(s\): already in use "
                                                              r"\(--triton-grpc-port\)"):
        supervisor.start(rebind=frozenset({"http", "metrics"}))
    assert not supervisor.server.alive()


def test_two_servers_started_at_the_same_moment_both_serve_their_own_models(embedding_repositories, tmp_path):
    """Neither pins Triton's ports: both choose the same ones (8000-8002 when free) and one of them finds them
    taken when it binds, then starts again on others. Stopped, neither leaves its Triton work folder behind; a
    log asked for with --triton-log stays."""
    temp = {model: tmp_path / f"tmp-{model}" for model in ("tiny-bert-cls", "tiny-bert-mean")}
    for folder in temp.values():
        folder.mkdir()
    kept_log = tmp_path / "kept" / "tritonserver.log"
    stacks = [Stack(["--repository", str(embedding_repositories[model]), "--log-format", "text",
                     *(["--triton-log", str(kept_log)] if model == "tiny-bert-mean" else [])],
                    tmp_path / f"{model}.log", env={"TMPDIR": str(temp[model])}, pin_triton_ports=False)
              for model in temp]
    with ThreadPoolExecutor(2) as pool:
        started = [pool.submit(stack.start) for stack in stacks]
        errors = [future.exception() for future in started]
    try:
        assert errors == [None, None], [stack.log_tail() for stack in stacks]
        for stack, model in zip(stacks, ("tiny-bert-cls", "tiny-bert-mean"), strict=True):
            assert httpx.get(f"{stack.base_url}/health", timeout=10).json()["models"] == [model]
            assert httpx.post(f"{stack.base_url}/embed", json={"inputs": "mine"}, timeout=30).status_code == 200
            assert list(temp[model].glob("trident-triton-*")), "the Triton work folder is where TMPDIR says"
    finally:
        for stack in stacks:
            stack.stop()
    assert [path for folder in temp.values() for path in folder.glob("trident-triton-*")] == []
    assert "successfully loaded 'tiny-bert-mean_engine'" in kept_log.read_text()
