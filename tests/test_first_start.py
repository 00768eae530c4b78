"""A first `trident serve` serves without waiting for the choice among the CPU variants, and makes it afterwards.

The build serves ONNX Runtime float32 and names the other candidates in the manifest (`defer_variants`); a
refinement builds the model again with every variant into `<build>-refined`, in a child process on idle CPU time
that stops with the server; later starts serve the refinement. The first start's own time is a benchmark
(docs/benchmarks.md), not a test.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import builder.variants
from cli import refine
from cli.main import _build_options, parser
from cli.serve import ModelArg, prepare_model
from testkit.factories import make_tiny_bert
from trident import cpu
from trident.precision import REFERENCE
from trident.spec import ModelSpec


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRIDENT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny") / "tiny", pooling="mean", normalize=True)


def serve_options(**changes: object) -> dict[str, object]:
    return {**_build_options(parser().parse_args(["serve"])), "precision": "auto", **changes}


def manifest(repository: Path) -> ModelSpec:
    return ModelSpec.load(repository / "t" / "manifest.json")


def test_the_variants_wait_and_a_refinement_measures_every_one(home, tiny, monkeypatch):
    monkeypatch.setattr(builder.variants, "AUTO_MIN_ENGINE_BYTES", 0)  # measure even a tiny model
    allowed = [row.name for row in builder.variants.candidates_for("auto", cpu.cpu_flags(), 1 << 40)]
    first = prepare_model(ModelArg(str(tiny), "t"), serve_options(), lambda _: None, defer_variants=True)
    built = manifest(first)
    assert built.variant == REFERENCE and built.variant_choice["candidates"] == []
    assert built.variant_choice["deferred"] == [name for name in allowed if name != REFERENCE]
    assert [spec.name for spec in refine.deferred(first)] == ["t"]

    assert refine.run(str(tiny), "t", refine.refined(first), serve_options()) == 0  # what the child runs
    complete = manifest(refine.refined(first)).variant_choice
    assert complete["deferred"] == [] and [row["variant"] for row in complete["candidates"]] == allowed
    assert refine.deferred(first) == []
    assert prepare_model(ModelArg(str(tiny), "t"), serve_options(), lambda _: None) == refine.refined(first)


def test_the_refinement_runs_on_idle_cpu_time_and_stops_with_the_server(home, tiny):
    spec = ModelSpec(name="t", task="embedding", architecture="BertModel", model_type="bert", max_length=64, dim=32,
                     source=str(tiny), variant_choice={"deferred": ["openvino-bf16"]})
    refinement = refine.Refinement(home / "builds" / "key", spec, serve_options())
    refinement.start()
    pid = refinement.process.pid
    _wait_for(lambda: os.sched_getscheduler(pid) == os.SCHED_IDLE or None, 30)  # the child sets it itself
    assert _niceness(pid) == refine.NICENESS
    refinement.stop()
    assert refinement.process.poll() is not None and not _alive(pid)


def _niceness(pid: int) -> int | None:
    """The process's nice value once it has set it (None before)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16]) if int(fields[16]) != 0 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(probe, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := probe()) is not None:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")
