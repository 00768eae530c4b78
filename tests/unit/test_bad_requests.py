"""Whatever a client sends, the documented status with a JSON body that names the problem, and the
gateway keeps serving; the fake Triton runs the real tokenizer and postprocess.

Inputs that are odd but legal text (control characters, NUL, whitespace, a 100k-character word) are
valid requests: they get an embedding, the same one every time. The fixed-seed fuzz run is
tests/unit/test_fuzz.py.
"""

from __future__ import annotations

import socket
import time

import httpx
import numpy as np
import pytest

from testkit.gateway_server import GatewayServer, error_message

MODEL = "tiny-bert-mean"  # dim 32, max length 128
GOOD = {"input": "still alive?", "model": MODEL}


def assert_still_serving(gateway: GatewayServer) -> None:
    response = gateway.post("/v1/embeddings", GOOD)
    assert response.status_code == 200, response.text
    assert len(response.json()["data"][0]["embedding"]) == 32
    assert gateway.get("/health").status_code == 200


def assert_rejected(response: httpx.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    text = error_message(response)
    for fragment in fragments:
        assert fragment.lower() in text.lower(), (fragment, text)


# --- not JSON, or not the right JSON -------------------------------------------------------------

MALFORMED = [b"{", b'{"input": ["unterminated', b'{"input": "x",}', b"not json at all", b'{"input": "x"} trailing',
             b"\xff\xfe\x00{", b'{"input": "\xc3\x28"}', b""]


@pytest.mark.parametrize("content", MALFORMED, ids=range(len(MALFORMED)))
@pytest.mark.parametrize("path", ["/v1/embeddings", "/embed"])
def test_malformed_json_is_400(gateway, path, content):
    response = gateway.post(path, content=content)
    assert response.status_code in (400, 422), response.text  # 422: valid JSON but not an object
    assert "json" in error_message(response).lower() or "body" in error_message(response).lower()
    assert_still_serving(gateway)


def test_raw_non_utf8_bytes_are_400(gateway):
    response = gateway.post("/v1/embeddings", content=b'{"input": "caf\xe9", "model": "tiny-bert-mean"}')
    assert_rejected(response, 400, "JSON")


@pytest.mark.parametrize("body", [[], "a string", 42, None, [{"input": "x"}]])
def test_a_body_that_is_not_an_object_is_422(gateway, body):
    assert_rejected(gateway.post("/v1/embeddings", body), 422, "JSON object")


def test_not_json_content_type_is_415(gateway):
    response = httpx.post(f"{gateway.base_url}/v1/embeddings", data={"input": "form encoded"}, timeout=30)
    assert response.status_code == 415, response.text
    assert_still_serving(gateway)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_is_a_4xx(gateway, depth):
    body = b'{"input": ' + b"[" * depth + b"]" * depth + b"}"
    response = gateway.post("/v1/embeddings", content=body)
    assert response.status_code in (400, 413, 422), response.text
    assert_still_serving(gateway)


def test_deeply_nested_object_in_an_ignored_field_is_a_4xx_or_ignored(gateway):
    depth = 50_000
    body = b'{"input": "x", "model": "' + MODEL.encode() + b'", "user_extra": ' + b'{"a":' * depth + b"1" + \
        b"}" * depth + b"}"
    response = gateway.post("/v1/embeddings", content=body)
    assert response.status_code in (200, 400, 413, 422), response.text
    assert_still_serving(gateway)


# --- the fields ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"input": [], "model": MODEL}, 400, "must not be empty"),
        ({"input": "", "model": MODEL}, 400, "empty string"),
        ({"input": ["ok", ""], "model": MODEL}, 400, "item 1"),
        ({"input": 42}, 422, "input"),
        ({"input": True}, 422, "input"),
        ({"input": [1, "mixed"]}, 422, "input"),
        ({"input": None}, 422, "input"),
        ({"input": {"text": "a dict"}}, 422, "input"),
        ({"input": [1.5, 2.5]}, 422, "input"),
        ({"input": [["a"]]}, 422, "input"),
        ({"model": MODEL}, 422, "input"),
        ({"input": "x", "model": 3}, 422, "model"),
        ({"input": "x", "encoding_format": "utf8"}, 422, "encoding_format"),
        ({"input": "x", "encoding_format": 1}, 422, "encoding_format"),
        ({"input": "x", "truncate": "yes"}, 422, "truncate"),
        ({"input": "x", "dimensions": "ten"}, 422, "dimensions"),
        ({"input": "x", "dimensions": 33}, 422, "32"),
        ({"input": "word " * 400, "truncate": False}, 422, "input 0 has 402 tokens"),
    ],
)
def test_openai_errors_name_the_field(gateway, body, status, fragment):
    response = gateway.post("/v1/embeddings", body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert fragment in error["message"]
    assert error["code"] == status and error["type"]
    assert_still_serving(gateway)


def test_tei_route_errors_use_tei_shape(gateway):
    response = gateway.post("/embed", {"inputs": "word " * 400})
    assert response.status_code == 422
    assert response.json()["error_type"] == "validation_error"
    assert "402 tokens" in response.json()["error"]


def test_long_input_index_is_global_across_sub_requests(gateway):
    texts = ["short"] * 40 + ["word " * 400]  # 32 per Triton sub-request: the long one is item 8 of the second
    response = gateway.post("/embed", {"inputs": texts, "truncate": False})
    assert response.status_code == 422
    assert "input 40 has" in response.json()["error"]


@pytest.mark.parametrize("ids", [[[2, 5, -1]], [[2, 2**31]], [[2, 10**30]], [[99999999]], [[1, 2, 503]]])
def test_out_of_range_token_ids_are_422(gateway, ids):
    response = gateway.post("/v1/embeddings", {"input": ids, "model": MODEL})
    assert response.status_code == 422, response.text
    assert_still_serving(gateway)


@pytest.mark.parametrize("dimensions", [-1, 0, -(2**63), 10**6, 2**64])
def test_negative_or_absurd_dimensions_are_422(gateway, dimensions):
    for path, field in (("/v1/embeddings", "input"), ("/embed", "inputs")):
        response = gateway.post(path, {field: "x", "model": MODEL, "dimensions": dimensions})
        assert_rejected(response, 422, "dimensions")


@pytest.mark.parametrize("strategy", ["bogus", "", "FIRST; DROP TABLE", 3])
def test_unknown_aggregation_strategy_is_422(gateway, strategy):
    response = gateway.post("/predict_tokens", {"inputs": "Ada lives in Paris", "aggregation_strategy": strategy})
    assert_rejected(response, 422, "aggregation_strategy")


@pytest.mark.parametrize("model", ["no-such-model", "../../etc/passwd", "/etc/passwd", "..", "\x00", "a" * 10_000,
                                   "tiny-bert-mean/../tiny-bert-cls", "tiny-bert-mean/../../../etc/shadow",
                                   "file:///etc/passwd", "~root/.ssh/id_rsa"])
@pytest.mark.parametrize(("path", "field"), [("/v1/embeddings", "input"), ("/embed", "inputs"),
                                            ("/tokenize", "inputs"), ("/info", None)])
def test_model_names_are_names_not_paths(gateway, model, path, field):
    if field is None:
        response = gateway.get(path, params={"model": model})
    else:
        response = gateway.post(path, {field: "x", "model": model})
    assert_rejected(response, 404, "not served")
    assert "root:" not in response.text


# --- sizes -----------------------------------------------------------------------------------------


def test_too_many_inputs_is_413(gateway):
    assert_rejected(gateway.post("/v1/embeddings", {"input": ["x"] * 2049, "model": MODEL}), 413, "2048")


def test_body_over_the_limit_is_413(gateway):
    response = gateway.post("/v1/embeddings", content=b'{"input": ["' + b"a" * (3 * 1024 * 1024) + b'"]}')
    assert_rejected(response, 413, "limit")
    assert_still_serving(gateway)


def test_size_limit_is_judged_before_the_json(gateway):
    too_big_and_broken = b"{" * (3 * 1024 * 1024)
    assert gateway.post("/v1/embeddings", content=too_big_and_broken).status_code == 413


def test_chunked_body_over_limit_is_413(gateway):
    def chunks():
        yield b'{"input": ["'
        for _ in range(48):
            yield b"a" * 65536
        yield b'"]}'

    response = httpx.post(f"{gateway.base_url}/v1/embeddings", content=chunks(),
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 413
    assert_still_serving(gateway)


def test_body_size_limit_applies_before_the_body_is_read(gateway):
    """A Content-Length over the limit is refused at once, without waiting for (or reading) the body."""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000000\r\n\r\n{")
        started = time.monotonic()
        reply = sock.recv(65536).decode("latin-1")
    assert reply.startswith("HTTP/1.1 413"), reply
    assert time.monotonic() - started < 30  # answered while 999,999,999 bytes were never sent


def test_huge_single_input_is_truncated_on_openai_and_refused_on_tei(gateway):
    # 300 kB, 60,000 tokens: far over the model's 128. (The e2e run sent 1.5 MB, 6 s of tokenizing.)
    text = "word " * 60_000
    assert gateway.post("/v1/embeddings", {"input": text, "model": MODEL}).status_code == 200
    assert_rejected(gateway.post("/embed", {"inputs": text, "model": MODEL, "truncate": False}), 422, "tokens")
    assert_still_serving(gateway)


def test_hundred_thousand_character_word(gateway):
    word = "supercalifragilistic" * 5_000
    first = gateway.post("/v1/embeddings", {"input": word, "model": MODEL})
    again = gateway.post("/v1/embeddings", {"input": word, "model": MODEL})
    assert first.status_code == 200, first.text
    assert first.json()["data"][0]["embedding"] == again.json()["data"][0]["embedding"]


# --- odd text --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["   ", "\t\n\r ", "\u00a0\u2003", "a\x00b", "\x00", "\x01\x02\x1b[31m\x7f",
                                  "\u202e\u200b\ufeff", "🙂" * 50, "e\u0301" * 100])
def test_odd_but_legal_text_gets_a_deterministic_embedding(gateway, text):
    first = gateway.post("/v1/embeddings", {"input": [text, "plain"], "model": MODEL})
    assert first.status_code == 200, first.text
    again = gateway.post("/v1/embeddings", {"input": text, "model": MODEL})
    vector = np.array(first.json()["data"][0]["embedding"])
    assert vector.size > 0 and np.isfinite(vector).all()
    np.testing.assert_allclose(vector, again.json()["data"][0]["embedding"], atol=1e-6)


@pytest.mark.parametrize("escaped", [b'"\\ud800"', b'"a\\udfffb"', b'["ok", "\\udc00"]'])
@pytest.mark.parametrize("path", ["/v1/embeddings", "/embed", "/tokenize"])
def test_lone_surrogates_are_400(gateway, path, escaped):
    field = b"input" if path == "/v1/embeddings" else b"inputs"
    response = gateway.post(path, content=b'{"' + field + b'": ' + escaped + b', "model": "' + MODEL.encode() + b'"}')
    assert_rejected(response, 400, "surrogate")
    assert_still_serving(gateway)
