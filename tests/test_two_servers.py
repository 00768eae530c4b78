"""Two `trident serve` on one host: Triton's ports are its defaults only when free, a port asked for
and taken fails at start, and a gateway only counts the Triton it started as ready."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx

from testkit.stack import Stack, free_port

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
            started = re.search(r"starting tritonserver (\S+) \(gRPC 127\.0\.0\.1:(\d+), HTTP (\d+), metrics (\d+)\)",
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
