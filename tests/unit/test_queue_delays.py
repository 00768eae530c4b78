"""Dynamic batching never makes a request wait on CPU: a lone request would wait out every step's delay, and
under load the queue forms batches anyway. A GPU engine waits 500 us for a fuller batch."""

from __future__ import annotations

from dataclasses import replace

from builder.repository import GPU_ENGINE_QUEUE_DELAY_US, python_config, steps_for
from trident.spec import ModelSpec


def delays(spec: ModelSpec) -> dict[str, int]:
    return {role: python_config(spec, step).dynamic_batching.max_queue_delay_microseconds
            for role, step in steps_for(spec).items()}


def test_no_step_waits_on_cpu_and_a_gpu_engine_waits_for_a_batch(unit_repository):
    spec = ModelSpec.load(next(unit_repository.glob("*/manifest.json")))
    assert spec.engine == "onnxruntime"
    assert set(delays(spec).values()) == {0}
    for engine in ("torch", "tensorrt"):
        gpu = delays(replace(spec, engine=engine))
        assert gpu.pop("engine") == GPU_ENGINE_QUEUE_DELAY_US and set(gpu.values()) == {0}
