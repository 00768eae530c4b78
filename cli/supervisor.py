"""Triton under supervision, and the gateway's uvicorn server that drains before it stops.

Triton runs as a child process; if it dies, the supervisor cleans its shared memory and starts it
again while the gateway keeps answering 503 for the gap. A Python backend stub that dies
(Triton then fails every request to that model and never restarts it) counts as a crash too.
SIGINT/SIGTERM first drain the gateway (new requests 503, admitted ones finish), then stop Triton,
so nothing is left in /dev/shm.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from builder.repository import PlacementError, served_copy
from cli import procfs
from cli.ports import free_port
from cli.triton_server import TritonServer, TritonStartError, clean_shared_memory

log = logging.getLogger("trident.serve")


@dataclass
class Supervisor:
    """Keeps one tritonserver alive; restarts it after a crash."""

    server: TritonServer
    restart_delay_s: float = 0.5
    stopping: threading.Event = field(default_factory=threading.Event)
    restarts: int = 0
    _thread: threading.Thread | None = None
    _stubs: list[int] = field(default_factory=list)

    def start(self, timeout: float = 300.0, rebind: frozenset[str] = frozenset(), attempts: int = 5) -> None:
        """Start tritonserver and wait until it is ready. `rebind`: the ports (http, grpc, metrics) that were chosen
        free rather than asked for: one taken since (another server started at the same moment) is chosen
        again and Triton restarted, up to `attempts` times; a port asked for and taken fails at once."""
        for attempt in range(1, attempts + 1):
            taken = self._start_once(timeout)
            if not taken:
                break
            pinned = sorted(taken - rebind)
            if pinned or attempt == attempts:
                ports = ", ".join(f"{name} {self.server.port(name)}" for name in sorted(taken))
                raise TritonStartError(f"tritonserver could not bind its {ports} port(s): already in use"
                                       + (f" (--triton-{pinned[0]}-port)" if pinned else f" after {attempts} tries"))
            self._choose_ports_again(taken)
        self._stubs = stub_pids(self.server.process.pid)
        self._thread = threading.Thread(target=self._watch, name="triton-supervisor", daemon=True)
        self._thread.start()

    def _start_once(self, timeout: float) -> set[str]:
        """One start; the ports found taken (then tritonserver is stopped), or none when it is ready."""
        self.server.start()
        try:
            self.server.wait_ready(timeout)
        except TritonStartError:
            taken = self.server.ports_taken()
            self.server.stop()
            if not taken:
                raise
            return taken
        taken = self.server.ports_taken()  # Metrics only logs it: ready, but another server's metrics there
        if taken:
            self.server.stop()
        return taken

    def _choose_ports_again(self, taken: set[str]) -> None:
        used = {self.server.port(name) for name in ("http", "grpc", "metrics")}
        old = {name: self.server.port(name) for name in sorted(taken)}
        for name in sorted(taken):
            port = free_port(self.server.host, used)
            used.add(port)
            setattr(self.server, f"{name}_port", port)
        log.warning("tritonserver found its %s taken since they were chosen (another server started meanwhile); "
                    "starting it again on %s", ", ".join(f"{n} port {p}" for n, p in old.items()),
                    ", ".join(f"{n} port {self.server.port(n)}" for n in old))

    def _watch(self) -> None:
        while not self.stopping.wait(0.2):
            if not self.server.alive():
                log.warning("tritonserver exited (code %s); restarting", self.server.process.returncode)
            elif any(not procfs.alive(pid) for pid in self._stubs):
                log.warning("a Python backend stub of tritonserver died; restarting tritonserver")
                # Its state is broken: no graceful unload (which answers "unknown model" meanwhile).
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.server.process.pid, signal.SIGKILL)
            else:
                continue
            self._restart()

    def _restart(self) -> None:
        self.server.stop(timeout=5.0)  # kills what is left of its process group, cleans its shm
        clean_shared_memory(self.server.shm_prefix)
        time.sleep(self.restart_delay_s)
        if self.stopping.is_set():
            return
        try:
            self.server.start()
            self.server.wait_ready()
            self._stubs = stub_pids(self.server.process.pid)
            self.restarts += 1
            log.warning("tritonserver is back (restart %d)", self.restarts)
        except Exception as exc:  # keep trying: the gateway answers 503 meanwhile
            log.error("tritonserver did not restart: %s", exc)

    def stop(self) -> None:
        self.stopping.set()
        if self._thread:
            self._thread.join(timeout=5)
        self.server.stop()


def make_server(repositories: list[Path], http_port: int, grpc_port: int, metrics_port: int,
                step_instances: int = 1, gpus: list[int] | None = None, log_file: Path | None = None) -> TritonServer:
    """A tritonserver over served copies of the builds (builder.repository.served_copy: links, with the
    cheap steps' instance counts of this host and the engines on `gpus`), so a build never changes with the
    host serving it. Its work folder is the caller's to remove; `log_file` (else one in that folder) is not."""
    for repository in repositories:
        if not repository.is_dir():
            raise TritonStartError(f"model repository {repository} is not a folder")
    work_dir = Path(tempfile.mkdtemp(prefix="trident-triton-"))
    try:
        served = [served_copy(repository, work_dir / "repositories" / str(index), step_instances, gpus)
                  for index, repository in enumerate(repositories)]
    except PlacementError as exc:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise TritonStartError(str(exc)) from None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
    return TritonServer(repositories=served, work_dir=work_dir, http_port=http_port,
                        grpc_port=grpc_port, metrics_port=metrics_port, log_file=log_file)


def stub_pids(parent: int) -> list[int]:
    """The Python backend stubs tritonserver started (its children), one per model instance.
    A dead stub stays a zombie until Triton exits: `procfs.alive` tells."""
    return procfs.children(parent)


def gateway_config(app, host: str, port: int) -> uvicorn.Config:
    """uvicorn's settings for the gateway, one process or each of `--workers`."""
    # log_config=None: uvicorn's own loggers go through our (JSON) root handler.
    # Keep-alive longer than clients' pool expiry (httpx 5 s, aiohttp 15 s): a server that closes an
    # idle connection just as a client reuses it makes that request fail with no answer at all.
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                          timeout_graceful_shutdown=10, timeout_keep_alive=75, log_config=None)


class DrainingServer(uvicorn.Server):
    """uvicorn whose first SIGTERM/SIGINT drains: new requests get 503 while the admitted ones finish
    (up to `drain_timeout_s`); then it shuts down as usual. A second signal skips the drain, unless
    `repeat_signal_skips_drain` is False (a gateway worker: the serve process kills it if it must)."""

    def __init__(self, config: uvicorn.Config, admission, drain_timeout_s: float,
                 repeat_signal_skips_drain: bool = True) -> None:
        super().__init__(config)
        self.admission = admission
        self.drain_timeout_s = drain_timeout_s
        self.repeat_signal_skips_drain = repeat_signal_skips_drain
        self._drain_deadline: float | None = None

    def handle_exit(self, sig: int, frame: object) -> None:
        if self._drain_deadline is not None or self.should_exit:
            if self.repeat_signal_skips_drain:
                super().handle_exit(sig, frame)
            return
        self.admission.draining = True
        self._drain_deadline = time.monotonic() + self.drain_timeout_s

    async def on_tick(self, counter: int) -> bool:
        if self._drain_deadline is not None and not self.should_exit:
            drained = self.admission.in_flight == 0
            if drained or time.monotonic() >= self._drain_deadline:
                log.info("drained (%d request(s) still in flight); shutting down", self.admission.in_flight)
                self.should_exit = True
        return await super().on_tick(counter)
