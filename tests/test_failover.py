"""One gateway over two real tritonservers (`--triton-url A --triton-url B`): requests are spread
over both, and when one is killed (SIGKILL, mid-load) no request is lost: every answer is a 200 with
the vector computed before the kill. The killed server, restarted, is used again.

Each request carries 4 inputs and `--triton-batch-size 2` splits it into 2 sub-requests, so a
single HTTP request can have one half on each server when the kill lands.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from cli.ports import free_port
from cli.triton_server import TritonServer
from testkit.stack import Stack

MODEL = "tiny-bert-cls"
TEXTS = [f"failover sentence number {i}, with a few more words" for i in range(240)]
PER_REQUEST = 4
KILL_AFTER = 12  # answered requests before the kill
TOLERANCE = 1e-5  # two servers, same engine; batch composition may differ


def start_triton(repository: Path, work_dir: Path) -> TritonServer:
    server = TritonServer([repository], work_dir, free_port(), free_port(), free_port())
    server.start()
    server.wait_ready(timeout=300)
    return server


@pytest.fixture(scope="module")
def tritons(embedding_repositories, tmp_path_factory) -> Iterator[list[TritonServer]]:
    repository = embedding_repositories[MODEL]
    servers = [start_triton(repository, tmp_path_factory.mktemp(f"triton-{name}")) for name in "ab"]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def gateway(tritons, embedding_repositories, tmp_path_factory) -> Iterator[Stack]:
    args = [arg for server in tritons for arg in ("--triton-url", server.url)]
    args += ["--repository", str(embedding_repositories[MODEL]), "--triton-batch-size", "2"]
    stack = Stack(args, tmp_path_factory.mktemp("gateway") / "serve.log").start()
    yield stack
    stack.stop()


def successes(server: TritonServer) -> float:
    """Requests this server's ensemble answered, from its own Prometheus metrics."""
    text = httpx.get(server.metrics_url, timeout=10).text
    pattern = rf'^nv_inference_request_success{{model="{MODEL}",version="1"}} (\S+)$'
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def endpoint_up(stack: Stack, server: TritonServer) -> float:
    text = httpx.get(f"{stack.base_url}/metrics", timeout=10).text
    match = re.search(rf'^trident_triton_endpoint_up{{url="{re.escape(server.url)}"}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1))


def embed(client: httpx.Client, stack: Stack, texts: list[str]) -> httpx.Response:
    return client.post(f"{stack.base_url}/v1/embeddings", json={"input": texts, "model": MODEL}, timeout=120)


def vectors(response: httpx.Response) -> np.ndarray:
    return np.array([item["embedding"] for item in response.json()["data"]])


def test_requests_are_spread_over_both_servers(gateway, tritons):
    before = [successes(server) for server in tritons]
    with httpx.Client() as client:
        for start in range(0, 40, PER_REQUEST):
            assert embed(client, gateway, TEXTS[start : start + PER_REQUEST]).status_code == 200
    after = [successes(server) for server in tritons]
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)


def test_killing_one_server_mid_load_loses_no_request(gateway, tritons):
    with httpx.Client() as client:
        reference = vectors(embed(client, gateway, TEXTS))
    assert reference.shape[0] == len(TEXTS)
    victim, survivor = tritons
    answered = threading.Semaphore(0)

    def call(start: int) -> tuple[int, int, np.ndarray | str]:
        with httpx.Client() as client:
            response = embed(client, gateway, TEXTS[start : start + PER_REQUEST])
        answered.release()
        return start, response.status_code, vectors(response) if response.status_code == 200 else response.text

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(call, start) for start in range(0, len(TEXTS), PER_REQUEST)]
        for _ in range(KILL_AFTER):
            assert answered.acquire(timeout=120), "the load did not get going"
        os.kill(victim.process.pid, signal.SIGKILL)
        results = [future.result(timeout=300) for future in futures]
    victim.stop()  # reaps it, kills its leftover stubs, removes its /dev/shm regions
    assert not list(Path("/dev/shm").glob(victim.shm_prefix + "*"))

    unfinished_at_kill = len(results) - KILL_AFTER
    assert unfinished_at_kill > 0
    for start, status, body in results:
        assert status == 200, (start, body)
        np.testing.assert_allclose(body, reference[start : start + PER_REQUEST], atol=TOLERANCE)
    assert survivor.alive()
    assert httpx.get(f"{gateway.base_url}/health", timeout=30).status_code == 200
    assert f"triton endpoint {victim.url} is down" in gateway.log_path.read_text(errors="replace")
    assert endpoint_up(gateway, victim) == 0 and endpoint_up(gateway, survivor) == 1


def test_a_restarted_server_is_used_again(gateway, tritons):
    victim = tritons[0]
    if not victim.alive():
        victim.start()
        victim.wait_ready(timeout=300)
    deadline = time.monotonic() + 60
    with httpx.Client() as client:
        while successes(victim) == 0:  # its counters restarted at zero
            assert time.monotonic() < deadline, "the restarted server was never used again"
            response = embed(client, gateway, TEXTS[:PER_REQUEST])
            assert response.status_code == 200, response.text
            time.sleep(0.1)
    assert httpx.get(f"{gateway.base_url}/health", timeout=30).status_code == 200
    assert endpoint_up(gateway, victim) == 1
