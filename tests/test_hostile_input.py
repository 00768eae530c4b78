"""Issue 7, promise 4: whatever a client sends, the right 4xx with a clear message, and the server stays up.

Each hostile body goes through the real shared stack (gateway + tritonserver). Inputs that are odd but
legal text (control characters, NUL, whitespace, a 100k-character word) are valid requests: they get an
embedding, the same one every time. Everything else gets a 4xx whose message names the problem, and a
normal request right after it still works. The fixed-seed fuzz run lives in tests/test_fuzz.py.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

MODEL = "tiny-bert-mean"
GOOD = {"input": "still alive?", "model": MODEL}


def post(stack, path: str, body: object = None, content: bytes | None = None, timeout: float = 60) -> httpx.Response:
    if content is not None:
        return httpx.post(f"{stack.base_url}{path}", content=content, timeout=timeout,
                          headers={"Content-Type": "application/json"})
    return httpx.post(f"{stack.base_url}{path}", json=body, timeout=timeout)


def message(response: httpx.Response) -> str:
    body = response.json()
    return body["error"]["message"] if isinstance(body["error"], dict) else body["error"]


def assert_still_serving(stack) -> None:
    response = post(stack, "/v1/embeddings", GOOD)
    assert response.status_code == 200, response.text
    assert httpx.get(f"{stack.base_url}/health", timeout=30).status_code == 200


def assert_rejected(response: httpx.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    text = message(response)
    for fragment in fragments:
        assert fragment.lower() in text.lower(), (fragment, text)


# --- not JSON, or not the right JSON -------------------------------------------------------------

MALFORMED = [b"{", b'{"input": "x",}', b"not json at all", b'{"input": "x"} trailing', b"\xff\xfe\x00{",
             b'{"input": "\xc3\x28"}', b""]


@pytest.mark.parametrize("content", MALFORMED, ids=range(len(MALFORMED)))
@pytest.mark.parametrize("path", ["/v1/embeddings", "/embed"])
def test_malformed_json_is_400(stack, path, content):
    response = post(stack, path, content=content)
    assert response.status_code in (400, 422), response.text  # 422: valid JSON but not an object
    assert "json" in message(response).lower() or "body" in message(response).lower()
    assert_still_serving(stack)


@pytest.mark.parametrize("body", [[], "a string", 42, None, [{"input": "x"}]])
def test_a_body_that_is_not_an_object_is_422(stack, body):
    assert_rejected(post(stack, "/v1/embeddings", body), 422, "JSON object")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"input": 5}, "input"),
        ({"input": True}, "input"),
        ({"input": {"a": 1}}, "input"),
        ({"input": [1.5, 2.5]}, "input"),
        ({"input": [["a"]]}, "input"),
        ({"input": "x", "model": 3}, "model"),
        ({"input": "x", "encoding_format": 1}, "encoding_format"),
        ({"input": "x", "truncate": "yes"}, "truncate"),
    ],
)
def test_wrong_types_are_422_naming_the_field(stack, body, fragment):
    assert_rejected(post(stack, "/v1/embeddings", {"model": MODEL, **body}), 422, fragment)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_is_a_4xx(stack, depth):
    body = b'{"input": ' + b"[" * depth + b"]" * depth + b"}"
    response = post(stack, "/v1/embeddings", content=body)
    assert response.status_code in (400, 413, 422), response.text
    assert_still_serving(stack)


def test_deeply_nested_object_in_an_ignored_field_is_a_4xx_or_ignored(stack):
    depth = 50_000
    body = b'{"input": "x", "model": "' + MODEL.encode() + b'", "user_extra": ' + b'{"a":' * depth + b"1" + \
        b"}" * depth + b"}"
    response = post(stack, "/v1/embeddings", content=body)
    assert response.status_code in (200, 400, 413, 422), response.text
    assert_still_serving(stack)


# --- sizes -----------------------------------------------------------------------------------------


def test_too_many_inputs_is_413(stack):
    response = post(stack, "/v1/embeddings", {"input": ["x"] * 2049, "model": MODEL})
    assert_rejected(response, 413, "2048")


def test_body_over_the_limit_is_413_before_parsing(stack):
    response = post(stack, "/v1/embeddings", content=b'{"input": "' + b"a" * (3 * 1024 * 1024) + b'"}')
    assert_rejected(response, 413, "limit")


def test_huge_single_input_is_truncated_on_openai_and_refused_on_tei(stack):
    text = "word " * 300_000  # 1.5 MB: under the body limit, far over the model's 128 tokens
    assert post(stack, "/v1/embeddings", {"input": text, "model": MODEL}).status_code == 200
    assert_rejected(post(stack, "/embed", {"inputs": text, "model": MODEL, "truncate": False}), 422, "tokens")
    assert_still_serving(stack)


def test_hundred_thousand_character_word(stack):
    word = "supercalifragilistic" * 5_000
    first = post(stack, "/v1/embeddings", {"input": word, "model": MODEL})
    again = post(stack, "/v1/embeddings", {"input": word, "model": MODEL})
    assert first.status_code == 200, first.text
    assert first.json()["data"][0]["embedding"] == again.json()["data"][0]["embedding"]


# --- odd text --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", ["ok", ""]])
def test_empty_strings_are_400(stack, text):
    assert_rejected(post(stack, "/v1/embeddings", {"input": text, "model": MODEL}), 400, "empty")


@pytest.mark.parametrize("text", ["   ", "\t\n\r ", "\u00a0\u2003", "a\x00b", "\x00", "\x01\x02\x1b[31m\x7f",
                                  "\u202e\u200b\ufeff", "🙂" * 50, "e\u0301" * 100])
def test_odd_but_legal_text_gets_a_deterministic_embedding(stack, text):
    first = post(stack, "/v1/embeddings", {"input": [text, "plain"], "model": MODEL})
    assert first.status_code == 200, first.text
    again = post(stack, "/v1/embeddings", {"input": text, "model": MODEL})
    vector = np.array(first.json()["data"][0]["embedding"])
    assert vector.size > 0 and np.isfinite(vector).all()
    np.testing.assert_allclose(vector, again.json()["data"][0]["embedding"], atol=1e-6)


@pytest.mark.parametrize("escaped", [b'"\\ud800"', b'"a\\udfffb"', b'["ok", "\\udc00"]'])
@pytest.mark.parametrize("path", ["/v1/embeddings", "/embed", "/tokenize"])
def test_lone_surrogates_are_400(stack, path, escaped):
    field = b"input" if path == "/v1/embeddings" else b"inputs"
    response = post(stack, path, content=b'{"' + field + b'": ' + escaped + b', "model": "' + MODEL.encode() + b'"}')
    assert_rejected(response, 400, "surrogate")
    assert_still_serving(stack)


def test_raw_non_utf8_bytes_are_400(stack):
    response = post(stack, "/v1/embeddings", content=b'{"input": "caf\xe9", "model": "tiny-bert-mean"}')
    assert_rejected(response, 400, "JSON")


# --- ids, dimensions, options ------------------------------------------------------------------------


@pytest.mark.parametrize("ids", [[[2, 5, -1]], [[2, 2**31]], [[2, 10**30]], [[99999999]]])
def test_out_of_range_token_ids_are_422(stack, ids):
    response = post(stack, "/v1/embeddings", {"input": ids, "model": MODEL})
    assert response.status_code == 422, response.text
    assert_still_serving(stack)


@pytest.mark.parametrize("dimensions", [-1, 0, -(2**63), 10**6, 2**64])
def test_negative_or_absurd_dimensions_are_422(stack, dimensions):
    for path, field in (("/v1/embeddings", "input"), ("/embed", "inputs")):
        response = post(stack, path, {field: "x", "model": MODEL, "dimensions": dimensions})
        assert_rejected(response, 422, "dimensions")


@pytest.mark.parametrize("strategy", ["bogus", "", "FIRST; DROP TABLE", 3])
def test_unknown_aggregation_strategy_is_422(stack, strategy):
    response = post(stack, "/predict_tokens", {"inputs": "Ada lives in Paris", "aggregation_strategy": strategy})
    assert_rejected(response, 422, "aggregation_strategy")


@pytest.mark.parametrize("model", ["../../etc/passwd", "/etc/passwd", "tiny-bert-mean/../tiny-bert-cls", "\x00",
                                   "a" * 10_000])
def test_unknown_model_names_are_404(stack, model):
    assert_rejected(post(stack, "/v1/embeddings", {"input": "x", "model": model}), 404, "not served")
