"""Reliability, for real: concurrency without mixed-up answers, bounded overload, faults.

Promise 1 runs on the shared stack. The others start their own `trident serve` (a tiny BERT, a small
concurrency limit, a 10 s Triton deadline) because they overload it, SIGKILL its tritonserver, kill a
Python backend stub and SIGTERM it. No assertion is about speed: only generous bounds that tell a hang
from an answer, since this suite runs on loaded 2-core machines. `make soak` (soak/run.py) runs the
longer version and prints the figures.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from builder.repository import host_step_instances
from cli.supervisor import stub_pids
from testkit import procfs
from testkit.reliability import (
    distinct_texts,
    embed_alone,
    healthy,
    kill,
    run_for,
    run_load,
    shm_prefix,
    shm_regions_with,
    stack_rss,
    triton_pid,
    wait_for,
)
from testkit.stack import Stack
from trident.priorities import BULK_ENGINE_INSTANCES

MODEL = "tiny-bert-cls"
LIMIT = 8
DEADLINE_S = 10
RECOVERY_S = 180  # a Triton restart on a loaded 2-core machine; typically a few seconds


@pytest.fixture(scope="module")
def fault_stack(embedding_repositories, tmp_path_factory) -> Iterator[Stack]:
    args = ["--repository", str(embedding_repositories[MODEL]), "--max-concurrent-requests", str(LIMIT),
            "--request-timeout", str(DEADLINE_S)]
    stack = Stack(args, tmp_path_factory.mktemp("faults") / "serve.log").start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def reference(fault_stack) -> dict[str, np.ndarray]:
    return embed_alone(fault_stack, MODEL, distinct_texts(40, seed=3))


def embedding(stack: Stack, text: str) -> np.ndarray:
    response = httpx.post(f"{stack.base_url}/v1/embeddings", json={"input": text, "model": MODEL}, timeout=60)
    assert response.status_code == 200, response.text
    return np.array(response.json()["data"][0]["embedding"], dtype=np.float32)


# --- 1. no lost or mixed-up answers --------------------------------------------------------------------


def test_two_thousand_concurrent_distinct_requests_each_get_their_own_answer(stack):
    texts = distinct_texts(1000)
    reference = embed_alone(stack, "tiny-bert-mean", texts)
    # 2,000 requests: each text alone once, and again inside a batch of 1-5 others, all shuffled together.
    rng = np.random.default_rng(0)
    batches = [[t] for t in texts]
    order = rng.permutation(len(texts)).tolist()
    while order:
        size = int(rng.integers(1, 6))
        batches.append([texts[i] for i in order[:size]])
        order = order[size:]
    batches = [batches[i] for i in rng.permutation(len(batches))][:2000]
    report = run_load(stack, "tiny-bert-mean", batches, concurrency=64, reference=reference)
    assert report.sent == len(batches) >= 1200
    assert report.wrong == 0, report.summary()
    assert not report.unexplained, report.unexplained[:5]
    assert report.statuses[200] == report.sent, report.summary()  # 64 < the stack's limit: nothing refused


# --- 2. overload is bounded ------------------------------------------------------------------------


def test_overload_is_429_at_once_memory_plateaus_and_health_is_immediate(fault_stack, reference):
    texts = list(reference)
    samples: list[int] = []
    report = run_for(fault_stack, MODEL, texts, seconds=16, concurrency=6 * LIMIT, reference=reference,
                     on_tick=lambda: samples.append(stack_rss(fault_stack)))
    summary = report.summary()
    assert report.wrong == 0 and not report.unexplained, summary
    assert report.statuses[200] > 0 and report.errors["429 overloaded"] > 0, summary
    assert set(report.errors) <= {"429 overloaded"}, summary
    assert set(report.retry_after) == {"1"}, report.retry_after
    # Bounded, not fast (a loaded machine): nothing admitted waits past the Triton deadline plus the
    # client's own scheduling, and a refusal never waits for the model.
    assert max(report.ok_latencies) < DEADLINE_S + 20, summary
    assert max(report.rejected_latencies) < DEADLINE_S + 20, summary
    # Memory plateaus: the last third of the run is not above the first third by more than noise.
    third = max(1, len(samples) // 3)
    early, late = max(samples[:third]), max(samples[-third:])
    assert late < early * 1.2 + 64 * 2**20, (early, late, samples)
    assert healthy(fault_stack)  # at once, no recovery period
    response = httpx.post(f"{fault_stack.base_url}/v1/embeddings", json={"input": texts[0], "model": MODEL})
    assert response.status_code == 200


# --- 3. faults -------------------------------------------------------------------------------------------


def test_sigkill_of_tritonserver_mid_load_fails_fast_and_recovers(fault_stack, reference):
    texts = list(reference)
    before = embedding(fault_stack, texts[0])
    triton = triton_pid(fault_stack)
    regions = set(shm_regions_with(shm_prefix(triton)))  # the restarted server reuses the prefix, not the names
    assert regions
    killed_at: list[float] = []

    def kill_once() -> None:
        if not killed_at:
            kill(triton)
            killed_at.append(time.monotonic())

    timer = threading.Timer(2.0, kill_once)
    timer.start()
    report = run_for(fault_stack, MODEL, texts, seconds=6, concurrency=LIMIT, reference=reference, timeout=60)
    timer.join()
    summary = report.summary()
    assert report.wrong == 0 and not report.unexplained, summary  # every request answered, none hung
    assert report.errors.get("503 unavailable", 0) > 0, summary
    assert set(report.errors) <= {"503 unavailable", "429 overloaded"}, summary
    assert max(report.rejected_latencies) < DEADLINE_S + 5, summary
    recovery = wait_for(lambda: healthy(fault_stack), RECOVERY_S, interval=0.2)
    assert triton_pid(fault_stack) != triton  # restarted by trident serve, same gateway process
    assert not regions & set(shm_regions_with(shm_prefix(triton_pid(fault_stack)))), "stale /dev/shm regions"
    np.testing.assert_allclose(embedding(fault_stack, texts[0]), before, atol=1e-6)
    print(f"recovered {recovery:.1f} s after health was first polled; 503s: {report.errors}")


def test_health_is_503_while_triton_is_down(fault_stack):
    triton = triton_pid(fault_stack)
    kill(triton)
    wait_for(lambda: not healthy(fault_stack), 10, interval=0.05)  # the truth, as soon as Triton is gone
    wait_for(lambda: healthy(fault_stack), RECOVERY_S, interval=0.2)


def test_python_backend_stub_crash_is_503_then_recovers(fault_stack, reference):
    text = next(iter(reference))
    triton = triton_pid(fault_stack)
    stubs = stub_pids(triton)
    # Tokenizer, its bulk twin, ids input and postprocess (each sized for the host: 1 below 8 cores), two engine
    # instances and the bulk lane's engine.
    assert len(stubs) == 4 * host_step_instances(procfs.host_cores()) + 2 + BULK_ENGINE_INSTANCES
    # The tokenizer's stub: every interactive text request needs it (the ids input's is never used by text).
    kill(next(pid for pid in stubs if any(f"{MODEL}_tokenizer/" in arg for arg in procfs.cmdline(pid))))
    statuses = set()

    def answered() -> bool:
        response = httpx.post(f"{fault_stack.base_url}/v1/embeddings", json={"input": text, "model": MODEL},
                              timeout=60)
        statuses.add(response.status_code)
        return response.status_code == 200

    wait_for(answered, RECOVERY_S, interval=0.2)
    assert statuses <= {200, 503}, statuses  # never a 424 "stub is not healthy" left standing
    assert triton_pid(fault_stack) != triton  # Triton never restarts a stub itself: trident serve did
    np.testing.assert_allclose(embedding(fault_stack, text), reference[text], atol=1e-6)
    assert healthy(fault_stack)


def test_sigterm_drains_in_flight_requests_refuses_new_ones_then_stops_triton(embedding_repositories, tmp_path):
    stack = Stack(["--repository", str(embedding_repositories[MODEL]), "--drain-timeout", "60"],
                  tmp_path / "serve.log").start()
    try:
        expected = embedding(stack, "held in flight")
        triton = triton_pid(stack)
        prefix = shm_prefix(triton)
        held: dict[str, httpx.Response] = {}
        kill(triton, signal.SIGSTOP)  # the held request cannot finish while Triton is frozen
        try:
            worker = threading.Thread(target=lambda: held.update(r=httpx.post(
                f"{stack.base_url}/v1/embeddings", json={"input": "held in flight", "model": MODEL}, timeout=120)))
            worker.start()
            time.sleep(1.0)  # let it get admitted
            stack.process.send_signal(signal.SIGTERM)
            time.sleep(1.0)  # the signal is handled between two requests, not inside the next one
            refused = wait_for_status(stack, 503)
            assert "shutting down" in refused.json()["error"]["message"]
            assert refused.headers["retry-after"] == "1"
            assert httpx.get(f"{stack.base_url}/health", timeout=10).status_code == 503
            assert stack.process.poll() is None  # still draining: the held request is in flight
        finally:
            kill(triton, signal.SIGCONT)
        worker.join(120)
        assert held["r"].status_code == 200, held["r"].text
        np.testing.assert_allclose(held["r"].json()["data"][0]["embedding"], expected, atol=1e-6)
        assert stack.process.wait(60) == 0
        wait_for(lambda: not procfs.alive(triton), 30)
        assert not shm_regions_with(prefix)
    finally:
        stack.stop()


def wait_for_status(stack: Stack, status: int, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.post(f"{stack.base_url}/v1/embeddings", json={"input": "new", "model": MODEL}, timeout=30)
        if response.status_code == status or time.monotonic() > deadline:
            assert response.status_code == status, response.text
            return response
        time.sleep(0.05)

