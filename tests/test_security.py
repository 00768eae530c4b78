"""What a request can never make the server do, and what it does by default, on the
real `trident serve` process (its open files, its listening sockets).

Covered elsewhere, referenced here so the promise reads whole:
- API keys: every route but /health answers 401 without the key, keys are compared in constant time and
  never reach the log (tests/unit/test_api_keys.py).
- Model names are names, never paths, and the body size limit applies before the body is read or parsed
  (tests/unit/test_bad_requests.py: test_model_names_are_names_not_paths, test_body_size_limit_*).
- Remote code: a checkpoint with `auto_map` is refused without --trust-remote-code
  (tests/test_builder.py: test_remote_code_is_refused) and the refused code never runs; dependencies are
  pinned (tests/unit/test_supply_chain.py).
"""

from __future__ import annotations

import httpx

from testkit import procfs
from testkit.procfs import listening_addresses


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
