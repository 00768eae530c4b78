"""Priorities on real Triton 2.51 (the gateway's side, against the fake: tests/unit/test_priority_rules.py).

- Triton hands an ensemble request's priority to its steps: shown on a one-step ensemble whose step runs one
  request at a time and answers the order it ran them in (the queue's order, not a timing).
- A bulk job in flight does not hold an interactive request: the request is answered while the job is still
  running, by the interactive lane's models (Triton's per-model statistics say which ran it), the job by the
  bulk lane's.
- The bulk lane's stubs run at nice 10, every thread of them; the interactive lane's at 0.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient

from cli.ports import free_port
from cli.triton_server import TritonServer
from testkit import procfs
from trident.priorities import BULK_ENGINE_INSTANCES, BULK_NICE, Priority

MODEL = "all-MiniLM-L6-v2"

STEP = '''
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.ran = 0

    def execute(self, requests):
        responses = []
        for request in requests:
            time.sleep(0.4)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("ORDER", np.array([[self.ran]], np.int32))]))
            self.ran += 1
        return responses
'''

CONFIGS = {
    "step": '''name: "step" backend: "python" max_batch_size: 1
input [ { name: "X" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "ORDER" data_type: TYPE_INT32 dims: [ 1 ] } ]
dynamic_batching { priority_levels: 2 default_priority_level: 1 }
instance_group [ { kind: KIND_CPU count: 1 } ]''',
    "chain": '''name: "chain" platform: "ensemble" max_batch_size: 1
input [ { name: "X" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "ORDER" data_type: TYPE_INT32 dims: [ 1 ] } ]
ensemble_scheduling { step [ { model_name: "step" model_version: -1 input_map { key: "X" value: "X" }
  output_map { key: "ORDER" value: "ORDER" } } ] }''',
}


@pytest.fixture(scope="module")
def one_at_a_time(tmp_path_factory) -> str:
    """tritonserver with `chain`: an ensemble over `step`, which runs one request at a time, 0.4 s each."""
    root = tmp_path_factory.mktemp("priority-chain")
    for name, config in CONFIGS.items():
        (root / "repository" / name / "1").mkdir(parents=True)
        (root / "repository" / name / "config.pbtxt").write_text(config)
    (root / "repository" / "step" / "1" / "model.py").write_text(textwrap.dedent(STEP))
    server = TritonServer([root / "repository"], root / "work", free_port(), free_port(), free_port())
    server.start()
    try:
        server.wait_ready(120)
        yield server.url
    finally:
        server.stop()


async def run_order(url: str, first: list[int], late: int) -> tuple[list[int], int]:
    """Requests at the `first` priorities, all queued behind the first of them, then one at `late`; the
    order `step` ran each in."""
    client = grpcclient.InferenceServerClient(url)

    async def one(priority: int) -> int:
        x = grpcclient.InferInput("X", [1, 1], "INT32")
        x.set_data_from_numpy(np.zeros((1, 1), np.int32))
        result = await client.infer("chain", [x], priority=priority, client_timeout=60)
        return int(result.as_numpy("ORDER")[0, 0])

    try:
        queued = [asyncio.create_task(one(p)) for p in first]
        await asyncio.sleep(0.15)  # the first runs (0.4 s), the others wait in step's queue
        last = await one(late)
        return [await task for task in queued], last
    finally:
        await client.close()


def test_triton_hands_an_ensemble_request_s_priority_to_its_steps(one_at_a_time):
    bulk, interactive = Priority.BULK.value, Priority.INTERACTIVE.value
    orders, late = asyncio.run(run_order(one_at_a_time, [bulk] * 4, interactive))
    assert sorted([*orders, late]) == list(range(5))
    assert late == min(orders) + 1  # straight after the one already running, before the 3 queued bulk ones
    orders, late = asyncio.run(run_order(one_at_a_time, [bulk] * 4, bulk))  # the control: same level, FIFO
    assert late == max(orders) + 1


def model_counts(stack, models: list[str]) -> dict[str, int]:
    stats = httpx.get(f"http://127.0.0.1:{stack.triton_http_port}/v2/models/stats", timeout=10).json()
    counts = {entry["name"]: int(entry["inference_stats"]["success"]["count"]) for entry in stats["model_stats"]}
    return {model: counts.get(model, 0) for model in models}


LANES = [f"{MODEL}_tokenizer", f"{MODEL}_engine", f"{MODEL}_tokenizer_bulk", f"{MODEL}_engine_bulk"]


def test_a_bulk_job_in_flight_does_not_hold_an_interactive_request(stack):
    rng = np.random.default_rng(7)
    words = ["index", "these", "long", "passages", "for", "retrieval", "later", "please"]
    passages = [" ".join(rng.choice(words, 300)) for _ in range(256)]
    before = model_counts(stack, LANES)
    bulk: dict[str, httpx.Response] = {}
    job = threading.Thread(target=lambda: bulk.update(r=httpx.post(
        f"{stack.base_url}/embed", json={"inputs": passages, "model": MODEL, "truncate": True}, timeout=300)))
    job.start()
    deadline = time.monotonic() + 120
    while model_counts(stack, LANES)[f"{MODEL}_engine_bulk"] == before[f"{MODEL}_engine_bulk"]:
        assert time.monotonic() < deadline and job.is_alive(), "the bulk job never reached the bulk engine"
        time.sleep(0.05)
    query = httpx.post(f"{stack.base_url}/embed", json={"inputs": "where is the index", "model": MODEL}, timeout=60)
    still_running = job.is_alive()
    during = model_counts(stack, LANES)
    job.join(300)
    after = model_counts(stack, LANES)
    assert query.status_code == 200 and query.headers["x-trident-priority"] == "interactive"
    assert still_running, "the bulk job ended before the query was answered: nothing was shown"
    assert during[f"{MODEL}_tokenizer"] - before[f"{MODEL}_tokenizer"] == 1  # the query, on its own lane
    assert during[f"{MODEL}_engine"] - before[f"{MODEL}_engine"] == 1
    assert bulk["r"].status_code == 200 and len(bulk["r"].json()) == len(passages)
    assert bulk["r"].headers["x-trident-priority"] == "bulk"
    assert after[f"{MODEL}_engine_bulk"] - before[f"{MODEL}_engine_bulk"] == len(passages) // 32
    assert after[f"{MODEL}_tokenizer_bulk"] - before[f"{MODEL}_tokenizer_bulk"] == len(passages) // 32


def nice(pid: int, thread: str | None = None) -> int:
    path = Path(f"/proc/{pid}/task/{thread}/stat") if thread else Path(f"/proc/{pid}/stat")
    text = path.read_text()
    return int(text[text.rindex(")") + 2 :].split()[16])


def test_the_bulk_lane_s_stubs_run_at_a_lower_os_priority(stack):
    stubs = [pid for pid in procfs.descendants(stack.process.pid)
             if "triton_python_backend_stub" in " ".join(procfs.cmdline(pid)) and f"{MODEL}_" in
             " ".join(procfs.cmdline(pid))]
    lanes = {pid: "_bulk" in " ".join(procfs.cmdline(pid)) for pid in stubs}
    assert sum(lanes.values()) == 1 + BULK_ENGINE_INSTANCES  # the bulk tokenizer, the bulk engine
    for pid, bulk in lanes.items():
        threads = [thread.name for thread in Path(f"/proc/{pid}/task").iterdir()]
        assert {nice(pid, thread) for thread in threads} == ({BULK_NICE} if bulk else {0}), json.dumps(
            procfs.cmdline(pid))
