"""Work nobody waits for is not done: a client that hangs up, or a request past its deadline, cancels
its Triton call, and Triton runs no step of the ensemble that had not started.

How it is shown: both instances of MiniLM's engine are kept busy with two large batches sent to the
engine model directly (200 rows each, so Triton cannot merge them into one batch of at most 256),
then short requests arrive through the gateway and queue at the engine behind them; their clients give
up (or the gateway's deadline passes) while they wait. Triton's statistics then show that the
postprocess step never ran for them.

What Triton 2.51 does not do (measured): the composing request already queued at the engine is not
marked cancelled when its ensemble request is, so the engine step itself still runs for them; Triton
checks cancellation between ensemble steps. A request sent to a composing model directly and cancelled
while queued is skipped by the stage adapter (tests/unit/test_adapter_cancellation.py).
"""

from __future__ import annotations

import asyncio
import threading

import httpx
import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient

from testkit.stack import Stack
from trident import tensors as T

MODEL = "all-MiniLM-L6-v2"
ENGINE, POSTPROCESS = f"{MODEL}_engine", f"{MODEL}_postprocess"
BUSY_ROWS, BUSY_TOKENS = 200, 96
SHORT = 8  # short requests that give up while queued


async def items_run(url: str, model: str) -> int:
    client = grpcclient.InferenceServerClient(url)
    try:
        stats = await client.get_inference_statistics(model, as_json=True)
        return int(stats["model_stats"][0].get("inference_count", 0))
    finally:
        await client.close()


async def keep_engine_busy(url: str) -> None:
    """Two batches that cannot merge, one per engine instance; returns when both are done."""
    rng = np.random.default_rng(0)
    client = grpcclient.InferenceServerClient(url)

    async def one() -> None:
        ids = rng.integers(1000, 30000, (BUSY_ROWS, BUSY_TOKENS)).astype(np.int64)
        tensors = {T.INPUT_IDS: ids, T.TOKEN_TYPE_IDS: np.zeros_like(ids),
                   T.NUM_TOKENS: np.full((BUSY_ROWS, 1), BUSY_TOKENS, dtype=np.int32)}
        inputs = []
        for name, array in tensors.items():
            tensor = grpcclient.InferInput(name, list(array.shape), "INT64" if array.dtype == np.int64 else "INT32")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        await client.infer(ENGINE, inputs, client_timeout=120)

    try:
        await asyncio.gather(one(), one())
    finally:
        await client.close()


def queued_requests_give_up(stack: Stack, url: str, client_timeout_s: float) -> tuple[int, list[object]]:
    """Items the postprocess ran while SHORT requests queued at the busy engine and were given up; and
    their outcomes."""
    before = asyncio.run(items_run(url, POSTPROCESS))
    busy = threading.Thread(target=lambda: asyncio.run(keep_engine_busy(url)))
    busy.start()
    threading.Event().wait(0.5)  # both instances have their batch
    outcomes: list[object] = []

    def short(i: int) -> None:
        try:
            outcomes.append(httpx.post(f"{stack.base_url}/v1/embeddings", json={"input": f"given up {i}"},
                                       timeout=client_timeout_s).status_code)
        except httpx.TimeoutException as exc:
            outcomes.append(type(exc).__name__)

    clients = [threading.Thread(target=short, args=(i,)) for i in range(SHORT)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    busy.join()
    threading.Event().wait(1.0)  # anything not dropped would run now
    return asyncio.run(items_run(url, POSTPROCESS)) - before, outcomes


def test_a_client_that_hangs_up_costs_no_engine_work(stack):
    ran, outcomes = queued_requests_give_up(stack, stack.grpc_url, client_timeout_s=0.5)
    assert all(outcome == "ReadTimeout" for outcome in outcomes), outcomes  # they did give up while queued
    assert ran == 0, f"the postprocess ran {ran} items nobody was waiting for"
    assert httpx.post(f"{stack.base_url}/embed", json={"inputs": "still serving"}, timeout=60).status_code == 200


@pytest.fixture(scope="module")
def short_deadline(embedding_repositories, tmp_path_factory):
    stack = Stack(["--repository", str(embedding_repositories[MODEL]), "--request-timeout", "0.5"],
                  tmp_path_factory.mktemp("deadline") / "serve.log")
    yield stack.start()
    stack.stop()


def test_a_request_past_its_deadline_costs_no_engine_work(short_deadline):
    ran, outcomes = queued_requests_give_up(short_deadline, short_deadline.grpc_url, client_timeout_s=30)
    assert outcomes == [503] * SHORT, outcomes  # the gateway's deadline answered them
    assert ran == 0, f"the postprocess ran {ran} items past their deadline"
