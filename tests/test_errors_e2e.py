"""Bad requests get the documented status and a JSON body, and the next good request still works."""

from __future__ import annotations

import httpx
import pytest

GOOD = {"input": ["still alive?"], "model": "all-MiniLM-L6-v2"}


def post(stack, path: str, **kwargs) -> httpx.Response:
    return httpx.post(f"{stack.base_url}{path}", timeout=30, **kwargs)


def assert_still_serving(stack) -> None:
    response = post(stack, "/v1/embeddings", json=GOOD)
    assert response.status_code == 200, response.text
    assert len(response.json()["data"][0]["embedding"]) == 384


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"input": [], "model": "all-MiniLM-L6-v2"}, 400, "must not be empty"),
        ({"input": "", "model": "all-MiniLM-L6-v2"}, 400, "empty string"),
        ({"input": ["ok", ""], "model": "all-MiniLM-L6-v2"}, 400, "item 1"),
        ({"input": 42}, 422, "input"),
        ({"input": [1, "mixed"]}, 422, "input"),
        ({"input": None}, 422, "input"),
        ({"input": {"text": "a dict"}}, 422, "input"),
        ({"model": "all-MiniLM-L6-v2"}, 422, "input"),
        ({"input": "x", "encoding_format": "utf8"}, 422, "encoding_format"),
        ({"input": "x", "dimensions": "ten"}, 422, "dimensions"),
        ({"input": "x", "dimensions": 0}, 422, "dimensions"),
        ({"input": "x", "dimensions": 385}, 422, "384"),
        ({"input": [[1, 2, 99999999]]}, 422, "vocabulary"),
        ({"input": "x", "model": "no-such-model"}, 404, "not served"),
        ({"input": "word " * 400, "truncate": False}, 422, "input 0 has 402 tokens"),
    ],
)
def test_openai_errors(stack, body, status, fragment):
    response = post(stack, "/v1/embeddings", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert fragment in error["message"]
    assert error["code"] == status and error["type"]
    assert_still_serving(stack)


def test_malformed_json(stack):
    body = b'{"input": ["unterminated'
    response = post(stack, "/v1/embeddings", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]
    assert_still_serving(stack)


def test_body_over_limit_is_413(stack):
    body = b'{"input": ["' + b"a" * (3 * 1024 * 1024) + b'"]}'
    response = post(stack, "/v1/embeddings", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "limit" in response.json()["error"]["message"]
    assert_still_serving(stack)


def test_chunked_body_over_limit_is_413(stack):
    def chunks():
        yield b'{"input": ["'
        for _ in range(48):
            yield b"a" * 65536
        yield b'"]}'

    response = post(stack, "/v1/embeddings", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert_still_serving(stack)


def test_too_many_inputs_is_413(stack):
    response = post(stack, "/v1/embeddings", json={"input": ["x"] * 2049})
    assert response.status_code == 413
    assert "2048" in response.json()["error"]["message"]


def test_tei_route_errors_use_tei_shape(stack):
    response = post(stack, "/embed", json={"inputs": "word " * 400})
    assert response.status_code == 422
    assert response.json()["error_type"] == "validation_error"
    assert "402 tokens" in response.json()["error"]


def test_not_json_content_type(stack):
    response = post(stack, "/v1/embeddings", data={"input": "form encoded"})
    assert response.status_code == 415
    assert_still_serving(stack)


def test_long_input_index_is_global_across_sub_requests(stack):
    texts = ["short"] * 40 + ["word " * 400]
    response = post(stack, "/embed", json={"inputs": texts, "truncate": False})
    assert response.status_code == 422
    assert "input 40 has" in response.json()["error"]
