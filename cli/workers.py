"""`trident serve --workers N`: N gateway processes on one port, supervised by the `trident serve` process.

The serve process keeps supervising Triton (cli/supervisor.py) and starts each worker fresh (`python -m
cli.gateway_worker`, never a fork of a process holding gRPC channels or threads). Every worker binds its own
listening socket to the same host:port with SO_REUSEPORT, so the kernel spreads new connections over the
workers evenly; one inherited socket would let whichever worker wakes first accept a whole burst of
connections (uvloop and asyncio accept every pending connection per wake-up). The serve process holds a bound, never
listening, socket on the port for its whole life: a port in use fails at start, and nobody else can take
the port while a worker restarts.

What the workers share lives in one run folder (a fresh temp folder per `trident serve`, removed at exit):
`worker.json` (the settings), `in-flight.slots` (the whole server's --max-concurrent-requests slots,
gateway/limits.py `SharedSlots`) and `metrics/` (prometheus_client's multiprocess files, gateway/metrics.py).
A worker that exits is started again (with backoff); SIGTERM / SIGINT drain every worker (each answers new
requests 503 and lets admitted ones finish), a second signal kills them; then Triton is stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import multiprocess

from cli.ports import PortInUseError
from cli.procfs import die_with_parent
from gateway.metrics import MULTIPROCESS_DIR_ENV
from gateway.settings import GatewaySettings

log = logging.getLogger("trident.serve")
WORKER_MODULE = "cli.gateway_worker"
MOST_DEFAULT_WORKERS = 8
PLAN_FILE, SLOTS_FILE, METRICS_DIR = "worker.json", "in-flight.slots", "metrics"
RESTART_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # after the 1st, 2nd, ... exit in a row
STEADY_S = 30.0  # a worker that lived this long starts its restart delays over
SHUTDOWN_GRACE_S = 15.0  # past the drain: uvicorn's own graceful shutdown (10 s) and exit


def default_workers(cores: int) -> int:
    """One gateway worker per 2 cores, at most 8 (1 on a 2-core machine: today's single process)."""
    return min(MOST_DEFAULT_WORKERS, max(1, cores // 2))


def first_slot(index: int, workers: int, limit: int) -> int:
    """Where worker `index` starts looking for a free in-flight slot: the start of its equal share."""
    return index * limit // workers


@dataclass
class WorkerPlan:
    """What every worker process needs, written once to the run folder as JSON."""

    settings: GatewaySettings
    host: str
    port: int
    workers: int
    drain_timeout_s: float
    log_format: str

    def save(self, run_dir: Path) -> None:
        data = dataclasses.asdict(self)
        data["settings"]["repositories"] = [str(path) for path in self.settings.repositories]
        (run_dir / PLAN_FILE).write_text(json.dumps(data))

    @classmethod
    def load(cls, run_dir: Path) -> WorkerPlan:
        data = json.loads((run_dir / PLAN_FILE).read_text())
        settings = GatewaySettings(**data.pop("settings"))
        settings.repositories = [Path(path) for path in settings.repositories]
        return cls(settings=settings, **data)


def _addresses(host: str, port: int) -> list[tuple]:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)


def reuse_port_sockets(host: str, port: int, listen: bool) -> list[socket.socket]:
    """A SO_REUSEPORT TCP socket bound to each address of `host` (as uvicorn binds them), listening or not.
    Port 0: the port the first one got, for all of them."""
    sockets = []
    try:
        for family, kind, proto, _, address in _addresses(host, port):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            port = sock.getsockname()[1]
            if listen:
                sock.listen(2048)
                sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def reserve_port(host: str, port: int) -> list[socket.socket]:
    """The serve process's own bound, never listening, sockets on the gateway port (connections only go
    to listening sockets): a port in use fails here, before any model is built. Port 0 picks a free one
    (`getsockname` of any of them says which; the workers bind that one)."""
    try:
        return reuse_port_sockets(host, port, listen=False)
    except OSError as exc:
        raise PortInUseError(f"the gateway port {host}:{port} (--port) cannot be bound: {exc.strerror}") from exc


@dataclass
class Worker:
    index: int
    process: subprocess.Popen | None = None
    started: float = 0.0
    exits_in_a_row: int = 0
    restart_at: float | None = None


@dataclass
class GatewayWorkers:
    """N worker processes: started, restarted when one exits, drained together on SIGTERM / SIGINT."""

    plan: WorkerPlan
    run_dir: Path
    workers: list[Worker] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _kill: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.workers = [Worker(index) for index in range(self.plan.workers)]

    @property
    def metrics_dir(self) -> Path:
        return self.run_dir / METRICS_DIR

    def environment(self) -> dict[str, str]:
        return {**os.environ, MULTIPROCESS_DIR_ENV: str(self.metrics_dir)}

    def start(self) -> None:
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        self.plan.save(self.run_dir)
        for worker in self.workers:
            self._spawn(worker)

    def _spawn(self, worker: Worker) -> None:
        # Same process group as `trident serve` (a group kill reaches them), and SIGTERM if it dies.
        worker.process = subprocess.Popen([sys.executable, "-m", WORKER_MODULE, str(self.run_dir), str(worker.index)],
                                          env=self.environment(), preexec_fn=die_with_parent)
        worker.started, worker.restart_at = time.monotonic(), None
        log.info("gateway worker %d started (pid %d)", worker.index, worker.process.pid)

    def supervise(self) -> None:
        """Start again each worker that exited, after a delay that grows while it keeps exiting."""
        now = time.monotonic()
        for worker in self.workers:
            if worker.restart_at is not None:
                if now >= worker.restart_at:
                    self._spawn(worker)
                continue
            code = worker.process.poll()
            if code is None:
                continue
            multiprocess.mark_process_dead(worker.process.pid, str(self.metrics_dir))  # its live gauges go
            worker.exits_in_a_row = 1 if now - worker.started >= STEADY_S else worker.exits_in_a_row + 1
            delay = RESTART_DELAYS_S[min(worker.exits_in_a_row, len(RESTART_DELAYS_S)) - 1]
            worker.restart_at = now + delay
            log.warning("gateway worker %d (pid %d) exited with code %s; restarting it in %.1f s",
                        worker.index, worker.process.pid, code, delay)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self._stop.is_set():
            log.warning("%s again: stopping the gateway workers now", signal.Signals(signum).name)
            self._kill.set()
        self._stop.set()

    def run(self) -> None:
        """Supervise until SIGTERM / SIGINT, then drain every worker and return when none is left."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        try:
            while not self._stop.wait(0.2):
                self.supervise()
        finally:
            self.stop()

    def stop(self) -> None:
        """Each worker drains (SIGTERM: new requests 503, admitted ones finish within --drain-timeout);
        SIGKILL for any still there after that and uvicorn's own shutdown, or on a second signal."""
        live = [w.process for w in self.workers if w.process is not None and w.process.poll() is None]
        log.info("draining %d gateway worker(s)", len(live))
        for process in live:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.plan.drain_timeout_s + SHUTDOWN_GRACE_S
        while any(p.poll() is None for p in live) and time.monotonic() < deadline and not self._kill.is_set():
            self._kill.wait(0.1)
        for process in live:
            if process.poll() is None:
                log.warning("gateway worker pid %d did not stop; killing it", process.pid)
                process.kill()
                process.wait()
