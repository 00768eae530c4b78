"""`trident serve`: build (or reuse) the models, run Triton under supervision, run the gateway.

Triton runs as a child process; if it dies, the supervisor cleans its shared memory and starts it
again while the gateway keeps answering 503 for the gap. SIGINT/SIGTERM stop the gateway first,
then Triton, so nothing is left in /dev/shm.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from trident.models import DEFAULT_MODEL_NAME, build_key, cache_root, default_model_dir
from trident.triton_server import TritonServer, clean_shared_memory

log = logging.getLogger("trident.serve")


@dataclass
class ModelArg:
    source: str
    name: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelArg:
        """`PATH`, `HUB/ID`, or `NAME=PATH` to choose the served name."""
        name, sep, source = text.partition("=")
        return cls(source, name) if sep and not Path(text).exists() else cls(text)


def prepare_model(model: ModelArg, build_options: dict[str, object], progress=print) -> Path:
    """Return a repository folder holding this model, building it only if no matching build exists."""
    from builder.build import BuildOptions, build, default_name, summary
    from builder.checkpoint import content_hash, resolve_checkpoint
    from trident import __version__

    model_dir = resolve_checkpoint(model.source)
    name = model.name or default_name(model_dir, model.source)
    key = build_key(content_hash(model_dir), __version__, {"name": name, **build_options})
    repository = cache_root() / "builds" / key
    if (repository / name / "manifest.json").is_file():
        progress(f"reusing the build of {name} in {repository}")
        return repository
    result = build(BuildOptions(model=str(model_dir), out=repository, name=name, **build_options), progress)
    progress(summary(result))
    return repository


def default_models() -> list[ModelArg]:
    return [ModelArg(str(default_model_dir()), DEFAULT_MODEL_NAME)]


@dataclass
class Supervisor:
    """Keeps one tritonserver alive; restarts it after a crash."""

    server: TritonServer
    restart_delay_s: float = 0.5
    stopping: threading.Event = field(default_factory=threading.Event)
    restarts: int = 0
    _thread: threading.Thread | None = None

    def start(self, timeout: float = 300.0) -> None:
        self.server.start()
        self.server.wait_ready(timeout)
        self._thread = threading.Thread(target=self._watch, name="triton-supervisor", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self.stopping.wait(0.2):
            if self.server.alive():
                continue
            log.warning("tritonserver exited (code %s); restarting", self.server.process.returncode)
            self.server.stop()
            clean_shared_memory(self.server.shm_prefix)
            time.sleep(self.restart_delay_s)
            if self.stopping.is_set():
                return
            try:
                self.server.start()
                self.server.wait_ready()
                self.restarts += 1
            except Exception as exc:  # keep trying: the gateway answers 503 meanwhile
                log.error("tritonserver did not restart: %s", exc)

    def stop(self) -> None:
        self.stopping.set()
        if self._thread:
            self._thread.join(timeout=5)
        self.server.stop()


def make_server(repositories: list[Path], http_port: int, grpc_port: int, metrics_port: int) -> TritonServer:
    work_dir = Path(tempfile.mkdtemp(prefix="trident-triton-"))
    return TritonServer(repositories=repositories, work_dir=work_dir, http_port=http_port,
                        grpc_port=grpc_port, metrics_port=metrics_port)
