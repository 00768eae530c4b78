"""Request ids, timing headers, JSON log lines and the 500 path, in-process (no Triton needed)."""

from __future__ import annotations

import json
import logging

from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.logs import JsonFormatter
from gateway.observe import RequestRecord, request_id_from
from gateway.settings import GatewaySettings


def scope_with(request_id: bytes) -> dict:
    return {"headers": [(b"x-request-id", request_id)]}


def test_client_request_ids_are_kept_only_when_harmless():
    assert request_id_from(scope_with(b"abc-123_x.y:z/1+2=")) == "abc-123_x.y:z/1+2="
    for hostile in (b"", b"a b", b"a\r\nSet-Cookie: x", b"x" * 129, b'{"json":1}'):
        made = request_id_from(scope_with(hostile))
        assert len(made) == 32 and made != hostile.decode("latin-1")


def test_timing_headers_are_whole_milliseconds_of_what_happened():
    record = RequestRecord("id", "POST", "/embed", "/embed", arrived=100.0)
    assert not record.did_model_work()
    record.first_call, record.last_answer, record.tokens, record.characters = 100.004, 100.0301, 12, 40
    headers = record.timing_headers(now=100.0315)
    assert headers == {"x-total-time": "31", "x-compute-time": "31", "x-queue-time": "4",
                       "x-inference-time": "26", "x-compute-tokens": "12", "x-compute-characters": "40"}
    record.tokenization_s = 0.0
    assert record.timing_headers(now=100.0315)["x-tokenization-time"] == "0"


def test_json_log_lines():
    record = logging.LogRecord("trident.access", logging.INFO, __file__, 1, "POST %s %d", ("/embed", 200), None)
    record.request_id, record.status, record.inputs = "rid-1", 200, 3
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "POST /embed 200" and entry["request_id"] == "rid-1"
    assert entry["status"] == 200 and entry["inputs"] == 3 and entry["level"] == "info"
    assert "model" not in entry  # fields that were not set are left out


def test_a_bug_is_a_json_500_with_the_request_id(caplog):
    app = create_app(GatewaySettings(triton_urls=["127.0.0.1:1"]))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    @app.get("/v1/boom")
    async def boom_v1() -> None:
        raise RuntimeError("a bug")

    client = TestClient(app)  # no lifespan: nothing talks to Triton
    with caplog.at_level(logging.ERROR, logger="trident.gateway"):
        tei = client.get("/boom", headers={"x-request-id": "bug-1"})
    assert tei.status_code == 500 and tei.headers["x-request-id"] == "bug-1"
    assert tei.json() == {"error": "internal error (request id bug-1); see the server log",
                          "error_type": "internal_error"}
    assert "a bug" in caplog.text
    openai = client.get("/v1/boom")
    assert openai.status_code == 500 and openai.json()["error"]["type"] == "internal_error"
