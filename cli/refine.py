"""The CPU variants that `trident serve` deferred, measured in the background once the server is up.

A first `trident serve` of a model with `--precision auto` serves ONNX Runtime float32 at once (the build has
checked it against transformers) and leaves the variants (OpenVINO, bf16, int8), which take a minute or two to
make, time and gate on a small machine, for later (builder/variants.py, `defer`). A refinement then builds the
model again with every variant in a child process that runs only on CPU time nobody else wants (SCHED_IDLE, and
nice 19), from START_DELAY_S after Triton is up (the gateway starts meanwhile), into a folder beside the first
build (`<build>-refined`), which every later start serves instead (cli/serve.py `prepare_model`). Stopping the
server stops the refinement (and the kernel does, should the server die); an unfinished one starts again with
the next `trident serve`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cli.procfs import die_with_parent
from trident.spec import ModelSpec

REFINED_SUFFIX = "-refined"
NICENESS = 19  # the lowest priority where SCHED_IDLE is not allowed: the server's processes come first
START_DELAY_S = 10.0  # the gateway's own start, and the first requests, before any of the refinement's work
STOP_TIMEOUT_S = 10.0

log = logging.getLogger("trident.serve")


def refined(repository: Path) -> Path:
    """Where the refinement of the build in `repository` goes."""
    return repository.with_name(repository.name + REFINED_SUFFIX)


def deferred(repository: Path) -> list[ModelSpec]:
    """The models of a build whose variants were left for later and are not refined yet."""
    specs = [ModelSpec.load(manifest) for manifest in sorted(repository.glob("*/manifest.json"))]
    return [spec for spec in specs if spec.variant_choice.get("deferred")
            and not (refined(repository) / spec.name / "manifest.json").is_file()]


@dataclass
class Refinement:
    """One model's refinement, started by `trident serve` and stopped with it."""

    repository: Path  # the build `trident serve` started from
    spec: ModelSpec
    build_options: dict[str, object]  # as `trident serve` built it (cli.main._build_options)
    process: subprocess.Popen | None = None

    @property
    def log_file(self) -> Path:
        target = refined(self.repository)
        return target.with_name(target.name + ".log")

    def command(self) -> list[str]:
        job = {"model": self.spec.source, "name": self.spec.name, "out": str(refined(self.repository)),
               "options": self.build_options, "parent": os.getpid(), "delay_s": START_DELAY_S}
        return [sys.executable, "-m", "cli.refine", json.dumps(job)]

    def start(self) -> None:
        """From the serve process's main thread: the child dies with that thread (die_with_parent)."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as out:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        log.info("%s: serving %s; measuring %s in the background on idle CPU time (log %s); the next start serves "
                 "the fastest variant that passes", self.spec.name, self.spec.variant,
                 ", ".join(self.spec.variant_choice["deferred"]), self.log_file)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def start_refinements(repositories: list[Path], build_options: dict[str, object]) -> list[Refinement]:
    """A refinement for every model of these builds whose variants were deferred."""
    refinements = [Refinement(repository, spec, build_options)
                   for repository in repositories for spec in deferred(repository)]
    for refinement in refinements:
        refinement.start()
    return refinements


# --- the child ----------------------------------------------------------------------------------------------


def run(model: str, name: str, out: Path, options: dict[str, object]) -> int:
    """Build `model` with every variant into `out`, through a partial folder renamed when complete. One
    refinement of `out` at a time: another one running (holding the lock) makes this one a no-op."""
    from builder.build import BuildOptions, build, summary

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{out}: another refinement is running", flush=True)
            return 0
        if (out / name / "manifest.json").is_file():
            return 0
        partial = out.with_name(out.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)  # what a stopped refinement left
        result = build(BuildOptions(model=model, out=partial, name=name, **options),
                       progress=lambda message: print(message, flush=True))
        print(summary(result), flush=True)
        shutil.rmtree(out, ignore_errors=True)
        partial.rename(out)
    return 0


def _die_with_parent(parent: int) -> None:
    """The kernel sends SIGTERM when the server's main thread exits; if it already has, stop now."""
    die_with_parent()
    if os.getppid() != parent:
        raise SystemExit(0)


def _lowest_priority() -> None:
    """SCHED_IDLE: run only when a core would otherwise idle; nice 19 as well (and alone where it is refused)."""
    os.nice(NICENESS)
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def main(argv: list[str] | None = None) -> int:
    job = json.loads((argv if argv is not None else sys.argv[1:])[0])
    _die_with_parent(job["parent"])
    _lowest_priority()
    time.sleep(job["delay_s"])
    return run(job["model"], job["name"], Path(job["out"]), job["options"])


if __name__ == "__main__":
    sys.exit(main())
