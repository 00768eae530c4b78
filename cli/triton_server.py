"""Running the `tritonserver` binary that ships inside the nvidia-pytriton wheel.

What has to be right on a CPU-only machine (see shared notes, triton-on-cpu): a backend folder with
the Python backend and the stub for this interpreter, LD_LIBRARY_PATH with this interpreter's own
libpython first, this interpreter's bin/ first on PATH (the stub runs `python3`), and a shared-memory
prefix of our own so whatever a crash leaves in /dev/shm can be found and removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

from cli.procfs import die_with_parent

SHM_DIR = Path("/dev/shm")
# How tritonserver 2.51 says a port was taken: gRPC and HTTP fail its start, Metrics only logs it and serves on.
PORT_TAKEN = re.compile(r"failed to start (GRPC|HTTP|Metrics) service: .*already in use")
SERVICE_PORTS = {"GRPC": "grpc", "HTTP": "http", "Metrics": "metrics"}
SHM_PREFIX = "triton_python_backend_shm_region_trident_"


class TritonStartError(RuntimeError):
    """tritonserver exited or did not become ready; the message carries the end of its log."""


def pytriton_root() -> Path:
    import pytriton

    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def backend_directory(work_dir: Path) -> Path:
    """A backends/python folder holding the backend library, its utils and this Python's stub."""
    root = pytriton_root()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    python_dir = work_dir / "backends" / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    sources = {
        "libtriton_python.so": root / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": root / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": root / "python_backend_stubs" / version / "triton_python_backend_stub",
    }
    for name, source in sources.items():
        if not source.exists():
            raise TritonStartError(f"nvidia-pytriton lacks {source}; Python {version} may not be supported")
        target = python_dir / name
        if not target.exists():
            shutil.copy2(source, target)
    return python_dir.parent


def triton_environment() -> dict[str, str]:
    env = dict(os.environ)
    site_packages = Path(pytriton_root()).parent.parent
    libs = [sysconfig.get_config_var("LIBDIR") or "", str(site_packages / "nvidia_pytriton.libs")]
    env["LD_LIBRARY_PATH"] = ":".join([p for p in libs if p] + [env.get("LD_LIBRARY_PATH", "")]).rstrip(":")
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def clean_shared_memory(prefix: str = SHM_PREFIX) -> list[str]:
    """Remove Python-backend regions with our prefix (left by a crash); returns what was removed."""
    removed = []
    for region in SHM_DIR.glob(prefix + "*") if SHM_DIR.is_dir() else []:
        region.unlink(missing_ok=True)
        removed.append(region.name)
    return removed


@dataclass
class TritonServer:
    """One tritonserver process over one or more model repositories, bound to loopback by default."""

    repositories: list[Path]
    work_dir: Path
    http_port: int
    grpc_port: int
    metrics_port: int
    host: str = "127.0.0.1"
    log_file: Path | None = None
    shm_prefix: str = field(default_factory=lambda: f"{SHM_PREFIX}{uuid.uuid4().hex[:8]}_")
    # Triton's `--id`, which its server metadata answers: how we (and the gateway) know a port is ours.
    server_id: str = field(default_factory=lambda: f"trident-{uuid.uuid4().hex[:12]}")
    process: subprocess.Popen | None = None
    _log_start: int = 0  # where this start's lines begin in the log (it is appended to)

    def command(self) -> list[str]:
        root = pytriton_root()
        return [
            str(root / "bin" / "tritonserver"),
            *(f"--model-repository={repository}" for repository in self.repositories),
            f"--backend-directory={backend_directory(self.work_dir)}",
            f"--cache-directory={root / 'caches'}",
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true", "--allow-gpu-metrics=false", "--allow-cpu-metrics=true",
            "--disable-auto-complete-config",
            f"--id={self.server_id}",
            "--exit-timeout-secs=10",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            "--log-verbose=0",
        ]

    @property
    def log_path(self) -> Path:
        return self.log_file or self.work_dir / "tritonserver.log"

    def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.log_path
        self._log_start = log_file.stat().st_size if log_file.exists() else 0
        with log_file.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=triton_environment(),
                start_new_session=True, preexec_fn=die_with_parent,
            )

    @property
    def url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def ready(self) -> bool:
        """Ready, and the server on our port is this one (not another that held the port first)."""
        try:
            with urlopen(f"http://{self.host}:{self.http_port}/v2/health/ready", timeout=1) as response:
                if response.status != 200:
                    return False
            with urlopen(f"http://{self.host}:{self.http_port}/v2", timeout=1) as response:
                return json.loads(response.read()).get("name") == self.server_id
        except (URLError, OSError, ValueError):
            return False

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise TritonStartError(f"tritonserver exited while starting:\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.1)
        self.stop()
        raise TritonStartError(f"tritonserver was not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (Triton unloads models and frees shared memory), SIGKILL if it hangs, then clean up."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._kill_leftover_stubs()
        clean_shared_memory(self.shm_prefix)

    def _kill_leftover_stubs(self) -> None:
        # Stubs share the server's process group; after a crash they may outlive it.
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def ports_taken(self) -> set[str]:
        """The ports (http, grpc, metrics) this start of tritonserver found taken, from its log."""
        if not self.log_path.exists():
            return set()
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            text = log.read().decode(errors="replace")
        return {SERVICE_PORTS[match.group(1)] for match in PORT_TAKEN.finditer(text)}

    def port(self, name: str) -> int:
        return getattr(self, f"{name}_port")

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
