"""Issue 7, promise 5: what a request can never make the server do, and what it does by default.

Covered elsewhere, referenced here so the promise reads whole:
- API keys: every route but /health answers 401 without the key and the key never reaches the log
  (tests/test_gateway_faults.py: test_every_route_but_health_needs_the_key, test_the_key_is_never_logged).
- Remote code: a checkpoint with `auto_map` is refused without --trust-remote-code
  (tests/test_builder.py: test_remote_code_is_refused); below, the refused code is also shown not to run.
"""

from __future__ import annotations

import inspect
import json
import re
import socket
import time
from pathlib import Path

import httpx
import pytest
import tomllib

from builder.errors import BuildError
from builder.inspect import inspect_checkpoint
from cli import procfs
from cli.procfs import listening_addresses
from gateway import auth
from testkit.factories import make_tiny_bert

ROOT = Path(__file__).resolve().parent.parent


def test_api_keys_are_compared_in_constant_time():
    source = inspect.getsource(auth.ApiKeyMiddleware)
    assert "hmac.compare_digest" in source and "==" not in source


@pytest.mark.parametrize("model", ["../../etc/passwd", "/etc/passwd", "..", "all-MiniLM-L6-v2/../../../etc/shadow",
                                   "file:///etc/passwd", "~root/.ssh/id_rsa"])
@pytest.mark.parametrize(("path", "field"), [("/v1/embeddings", "input"), ("/embed", "inputs"),
                                            ("/tokenize", "inputs"), ("/info", None)])
def test_model_names_are_names_not_paths(stack, model, path, field):
    if field is None:
        response = httpx.get(f"{stack.base_url}{path}", params={"model": model}, timeout=30)
    else:
        response = httpx.post(f"{stack.base_url}{path}", json={field: "x", "model": model}, timeout=30)
    assert response.status_code == 404, response.text
    assert "root:" not in response.text and "not served" in response.text


def test_no_request_makes_the_gateway_open_a_file_by_name(stack, tmp_path):
    """A model name pointing at a real tokenizer file outside the repositories is still just 'not served'."""
    planted = tmp_path / "evil_tokenizer" / "1"
    planted.mkdir(parents=True)
    (planted / "tokenizer.json").write_text("{}")
    model = str(tmp_path / "evil")
    for path in ("/tokenize", "/decode"):
        body = {"inputs": "x", "model": model} if path == "/tokenize" else {"ids": [1], "model": model}
        response = httpx.post(f"{stack.base_url}{path}", json=body, timeout=30)
        assert response.status_code in (404, 422), response.text
    assert not any(str(tmp_path) in f for f in procfs.open_files(stack.process.pid))


def test_everything_binds_loopback_by_default(stack):
    """The shared stack runs `trident serve` without --host: gateway and Triton listen on 127.0.0.1 only."""
    # 127.0.0.1 in /proc/net/tcp's hex, the same as IPv4-mapped IPv6 (Triton's gRPC), and ::1.
    loopback = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}
    for port in (stack.port, stack.triton_http_port, stack.triton_grpc_port, stack.triton_metrics_port):
        assert listening_addresses(port) and listening_addresses(port) <= loopback, (port, listening_addresses(port))


def test_body_size_limit_applies_before_the_body_is_read(stack):
    """A Content-Length over the limit is refused at once, without waiting for (or reading) the body."""
    with socket.create_connection(("127.0.0.1", stack.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000000\r\n\r\n{")
        started = time.monotonic()
        reply = sock.recv(65536).decode("latin-1")
    assert reply.startswith("HTTP/1.1 413"), reply
    assert time.monotonic() - started < 30  # answered while 999,999,999 bytes were never sent


def test_size_limit_is_judged_before_the_json(stack):
    too_big_and_broken = b"{" * (3 * 1024 * 1024)
    response = httpx.post(f"{stack.base_url}/v1/embeddings", content=too_big_and_broken,
                          headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 413, response.text


def test_refused_remote_code_never_runs(tmp_path):
    model = make_tiny_bert(tmp_path / "m")
    marker = tmp_path / "remote-code-ran"
    (model / "modeling_custom.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(BuildError, match="trust-remote-code"):
        inspect_checkpoint(model, "m")
    assert not marker.exists()


def test_dependencies_are_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for group in project["optional-dependencies"].values() for r in group]
    loose = [r for r in requirements if not re.search(r"==[\w.]+", r)]
    assert not loose, f"unpinned: {loose}"
    constraints = [line for line in (ROOT / "constraints.txt").read_text().splitlines()
                   if line.strip() and not line.startswith("#")]
    assert constraints and all("==" in line for line in constraints)
