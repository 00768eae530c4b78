"""The real gateway app under uvicorn, in a thread of the test process (no `trident serve` subprocess).

Run as `trident serve` runs it (same uvicorn options), so HTTP parsing, limits and middleware are the
real ones; pair it with `testkit.fake_triton` for a stack without tritonserver.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx
import uvicorn

from cli.ports import free_port
from gateway.app import create_app
from gateway.settings import GatewaySettings


@dataclass
class GatewayServer:
    settings: GatewaySettings
    port: int = field(default_factory=free_port)
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    client: httpx.Client | None = None  # keep-alive connections to it, for `post` and `get`

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, healthy: bool = True, timeout: float = 20) -> GatewayServer:
        self.app = create_app(self.settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=2, timeout_keep_alive=75, log_config=None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"gateway-{self.port}", daemon=True)
        self.thread.start()
        self.client = httpx.Client(base_url=self.base_url, timeout=30)
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway on port {self.port} did not start")
            time.sleep(0.01)
        if healthy:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.get("/health", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway on port {self.port} never became healthy")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(10)
        if self.client is not None:
            self.client.close()

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def post(self, path: str, body: object = None, content: bytes | None = None, **kwargs) -> httpx.Response:
        """POST JSON (`body`), or raw bytes (`content`) labelled application/json."""
        if content is not None:
            headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
            return self.client.post(path, content=content, headers=headers, **kwargs)
        return self.client.post(path, json=body, **kwargs)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.client.get(path, **kwargs)


def error_message(response: httpx.Response) -> str:
    """The error message, in either API's shape (OpenAI's object or TEI's string)."""
    body = response.json()
    return body["error"]["message"] if isinstance(body["error"], dict) else body["error"]
