"""`trident serve --workers 2` through the real tritonserver: both worker processes answer on the one port,
the in-flight limit is the whole server's, /metrics is the whole server's, a SIGKILLed worker comes back,
SIGTERM drains every worker and exits 0; and the started Triton runs the host-sized steps' instance count
(`--step-instances 2` here). One stack for the module; the SIGTERM test, last, ends it.

Which worker answers a connection is read from /proc: the worker that holds the accepted socket."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cli.workers import default_workers
from testkit import procfs
from testkit.reliability import triton_pid
from testkit.stack import Stack, shm_regions

MODEL = "all-MiniLM-L6-v2"
LIMIT = 4  # --max-concurrent-requests: the whole server's
GUITAR = ["A man is playing a guitar.", "Someone is playing an instrument."]  # cosine 0.675 (README)
EMBEDDINGS_200 = 'trident_requests_total{method="POST",route="/v1/embeddings",status="200"}'


@pytest.fixture(scope="module")
def workers_stack(embedding_repositories, tmp_path_factory):
    stack = Stack(["--repository", str(embedding_repositories[MODEL]), "--workers", "2", "--step-instances", "2",
                   "--max-concurrent-requests", str(LIMIT), "--drain-timeout", "60"],
                  tmp_path_factory.mktemp("workers") / "serve.log").start()
    yield stack
    stack.stop()


def worker_pids(stack: Stack) -> list[int]:
    return sorted(pid for pid in procfs.children(stack.process.pid)
                  if procfs.alive(pid) and "cli.gateway_worker" in procfs.cmdline(pid))


class Client:
    """One keep-alive connection to the stack, and the worker process that accepted it."""

    def __init__(self, stack: Stack) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=120)
        self.health, _ = self.call("GET", "/health")  # answered: accepted, so its worker holds the socket
        inode = procfs.connection_inode(stack.port, self.connection.sock.getsockname()[1])
        self.worker = next(pid for pid in worker_pids(stack) if inode in procfs.socket_inodes(pid))

    def call(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        self.connection.request(method, path, body=None if body is None else json.dumps(body),
                                headers={"content-type": "application/json"})
        response = self.connection.getresponse()
        return response.status, response.read()

    def embed(self, texts: list[str]) -> tuple[int, object]:
        status, body = self.call("POST", "/v1/embeddings", {"input": texts, "model": MODEL})
        return status, json.loads(body)


def clients_per_worker(stack: Stack, each: int, timeout: float = 60) -> dict[int, list[Client]]:
    """At least `each` connections accepted by every worker: the kernel spreads them over the workers that
    listen (SO_REUSEPORT), so a worker still starting gets none until it listens, and one whose /health is
    not 200 yet (models not discovered) is asked again."""
    found: dict[int, list[Client]] = {pid: [] for pid in worker_pids(stack)}
    deadline = time.monotonic() + timeout
    while not all(len(clients) >= each for clients in found.values()):
        assert time.monotonic() < deadline, f"connections per worker: { {pid: len(c) for pid, c in found.items()} }"
        client = Client(stack)
        if client.health == 200 and len(found[client.worker]) < each:
            found[client.worker].append(client)
        else:
            client.connection.close()
            time.sleep(0.05)
    return found


def metric(client: Client, name: str) -> float:
    status, body = client.call("GET", "/metrics")
    assert status == 200
    match = re.search(rf"^{re.escape(name)} (\S+)$", body.decode(), re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def cosine(vectors) -> float:
    a, b = (np.array(item["embedding"]) for item in vectors["data"])
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_the_default_worker_count_follows_the_host_and_one_means_no_worker_process(stack):
    """The suite's shared stack runs with the defaults: one gateway per 2 cores, at most 8 (1 on 2 cores:
    the gateway inside the serve process, no worker process at all)."""
    workers = default_workers(procfs.host_cores())
    assert f"{workers} gateway worker(s)" in stack.log_path.read_text()
    assert len(worker_pids(stack)) == (0 if workers == 1 else workers)


def test_two_workers_each_serve_embeddings_and_triton_runs_two_instances_per_step(workers_stack):
    assert "2 gateway worker(s)" in workers_stack.log_tail(200)
    answers = {}
    for pid, (client, *_) in clients_per_worker(workers_stack, 1).items():
        status, answers[pid] = client.embed(GUITAR)
        assert status == 200, answers[pid]
        assert cosine(answers[pid]) == pytest.approx(0.675, abs=0.001)
    assert len(answers) == 2
    first, second = ([item["embedding"] for item in answer["data"]] for answer in answers.values())
    np.testing.assert_allclose(first, second, atol=1e-6)
    stubs = [" ".join(procfs.cmdline(pid)) for pid in procfs.children(triton_pid(workers_stack))]
    for step in ("tokenizer", "ids_input", "engine", "postprocess"):
        assert sum(f"/{MODEL}_{step}/" in stub for stub in stubs) == 2, step


def test_the_in_flight_limit_is_the_whole_servers_across_workers(workers_stack):
    clients = clients_per_worker(workers_stack, LIMIT + 1)
    crowded, other = (clients[pid] for pid in sorted(clients))
    scraper = other[1]
    triton = triton_pid(workers_stack)
    answers: list[int] = []
    os.kill(triton, signal.SIGSTOP)  # admitted requests stay in flight while Triton is frozen
    try:
        held = [threading.Thread(target=lambda c=c: answers.append(c.embed(["held"])[0])) for c in crowded[:LIMIT]]
        for thread in held:
            thread.start()
        deadline = time.monotonic() + 30
        while metric(scraper, 'trident_requests_in_flight{route="/v1/embeddings"}') < LIMIT:
            assert time.monotonic() < deadline, "the held requests were not all admitted"
        # One worker took every slot (a split limit would have refused half); the other has none left.
        for client in (other[0], crowded[LIMIT]):
            status, body = client.embed(["one more"])
            assert status == 429, body
            assert f"limit {LIMIT}" in body["error"]["message"]
    finally:
        os.kill(triton, signal.SIGCONT)
    for thread in held:
        thread.join(120)
    assert answers == [200] * LIMIT
    assert other[0].embed(["after"])[0] == 200  # the slots came back


def test_metrics_count_the_requests_of_every_worker(workers_stack):
    (a, *_), (b, *_) = clients_per_worker(workers_stack, 1).values()
    before = metric(a, EMBEDDINGS_200)
    for client, times in ((a, 3), (b, 2)):
        for _ in range(times):
            assert client.embed(["counted"])[0] == 200
    assert metric(b, EMBEDDINGS_200) - before == 5
    status, body = a.call("GET", "/metrics")
    assert status == 200
    text = body.decode()
    assert 'trident_info{version="' in text and "pid=" not in text  # each gauge combined, no per-process rows
    assert re.search(r"^trident_triton_metrics_up 1\.0$", text, re.MULTILINE)
    assert "nv_inference_request_success" in text  # Triton's own, once


def test_a_killed_worker_is_restarted_and_serving_goes_on(workers_stack):
    clients = clients_per_worker(workers_stack, 1)
    killed, survivor = sorted(clients)
    probe = clients[survivor][0]
    before = metric(probe, EMBEDDINGS_200)
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while len(worker_pids(workers_stack)) < 2 or killed in worker_pids(workers_stack):
        assert time.monotonic() < deadline, workers_stack.log_tail()
        time.sleep(0.2)
    clients = clients_per_worker(workers_stack, 1)
    assert killed not in clients and survivor in clients
    for client, *_ in clients.values():
        assert client.embed(GUITAR)[0] == 200
    assert metric(probe, EMBEDDINGS_200) >= before + 2  # the dead worker's counts are still in the sums
    assert f"(pid {killed}) exited with code -9; restarting it" in workers_stack.log_tail(200)


def test_sigterm_drains_every_worker_then_stops_triton_and_exits_0(workers_stack):
    clients = clients_per_worker(workers_stack, 2)
    busy, idle = sorted(clients)
    triton = triton_pid(workers_stack)
    run_dir = Path(procfs.cmdline(busy)[-2])
    prefix = next(arg.split("shm-region-prefix-name=")[1] for arg in procfs.cmdline(triton)
                  if "shm-region-prefix-name=" in arg)
    held: list[tuple[int, object]] = []
    os.kill(triton, signal.SIGSTOP)
    try:
        holder = threading.Thread(target=lambda: held.append(clients[busy][0].embed(["held in flight"])))
        holder.start()
        time.sleep(1.0)  # admitted
        workers_stack.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        # The busy worker refuses new work while its held request goes on, on its connections and on new
        # ones (the only worker still listening); the idle one had nothing to wait for and is gone.
        status, body = clients[busy][1].embed(["new"])
        assert status == 503 and "shutting down" in body["error"]["message"], body
        fresh = http.client.HTTPConnection("127.0.0.1", workers_stack.port, timeout=30)
        fresh.request("POST", "/v1/embeddings", body=json.dumps({"input": "new"}),
                      headers={"content-type": "application/json"})
        assert fresh.getresponse().status == 503
        assert not procfs.alive(idle) and procfs.alive(busy)
        assert workers_stack.process.poll() is None
    finally:
        os.kill(triton, signal.SIGCONT)
    holder.join(120)
    assert held and held[0][0] == 200, held
    assert workers_stack.process.wait(60) == 0
    assert not any(procfs.alive(pid) for pid in (busy, idle, triton))
    assert not run_dir.exists()  # the slots file and the metrics files went with it
    assert not [region for region in shm_regions() if region.startswith(prefix)]
