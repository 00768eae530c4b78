"""Start and stop a real `trident serve` (tritonserver + gateway) for tests, on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from cli.ports import free_port
from testkit import procfs

SHM = Path("/dev/shm")
SHM_PREFIX = "triton_python_backend_shm_region_"


def shm_regions() -> set[str]:
    return {p.name for p in SHM.glob(SHM_PREFIX + "*")} if SHM.is_dir() else set()


@dataclass
class Stack:
    """One `trident serve` subprocess; `args` are extra CLI arguments (models, repositories, flags)."""

    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    triton_http_port: int = field(default_factory=free_port)
    triton_grpc_port: int = field(default_factory=free_port)
    triton_metrics_port: int = field(default_factory=free_port)
    pin_triton_ports: bool = True  # False: let `trident serve` choose Triton's ports itself
    process: subprocess.Popen | None = None
    _shm_before: set[str] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.triton_grpc_port}"

    def command(self) -> list[str]:
        pinned = ["--triton-http-port", str(self.triton_http_port), "--triton-grpc-port", str(self.triton_grpc_port),
                  "--triton-metrics-port", str(self.triton_metrics_port)] if self.pin_triton_ports else []
        # No response cache unless `args` set one: an input sent twice reaches the model twice, so a test comparing
        # an input alone with the same input in a batch compares two computations.
        cache = [] if "--cache-size" in self.args else ["--cache-size", "0"]
        return [sys.executable, "-m", "cli", "serve", *self.args, "--port", str(self.port), *pinned, *cache]

    def start(self, timeout: float = 300.0) -> Stack:
        self._shm_before = shm_regions()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **self.env}, start_new_session=True)
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"trident serve exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"trident serve was not healthy after {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to the serve process (it stops Triton), SIGKILL to the group if it hangs."""
        own = self._triton_shm_prefixes()  # other stacks may run at the same time: leave their regions be
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process:
            with contextlib.suppress(ProcessLookupError):  # anything left in the group
                os.killpg(self.process.pid, signal.SIGKILL)
        for region in shm_regions() - self._shm_before:
            if not own or region.startswith(own):
                (SHM / region).unlink(missing_ok=True)

    def _triton_shm_prefixes(self) -> tuple[str, ...]:
        """The shared-memory prefixes of the tritonservers this stack's process started."""
        if self.process is None:
            return ()
        return tuple(arg.split("shm-region-prefix-name=")[1] for pid in procfs.children(self.process.pid)
                     for arg in procfs.cmdline(pid) if "shm-region-prefix-name=" in arg)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def post_json(stack: Stack, path: str, body: object) -> object:
    """POST JSON to a running stack; the answer must be 200 (else the assertion shows the body)."""
    response = httpx.post(f"{stack.base_url}{path}", json=body, timeout=120)
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:500]}"
    return response.json()


def embed(stack: Stack, model: str, texts: list[str], **extra: object) -> np.ndarray:
    """`/v1/embeddings` of `texts` from `model`, as a float32 [n, dim] array."""
    answer = post_json(stack, "/v1/embeddings", {"input": texts, "model": model, **extra})
    return np.array([item["embedding"] for item in answer["data"]], dtype=np.float32)
