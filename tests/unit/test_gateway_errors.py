"""The gateway's error table (gateway.errors.ErrorKind) against the HTTP API page and /openapi.json, and
Triton's failures translated by their gRPC status and tagged kind (gateway.triton.translate), without
Triton: the statuses and messages are those Triton 2.51 sends (measured, see gateway.triton)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from starlette.testclient import TestClient
from tritonclient.utils import InferenceServerException

from gateway.app import create_app
from gateway.errors import ERROR_TYPES, ApiError, ErrorKind, error_response, status_response
from gateway.settings import GatewaySettings
from gateway.triton import TritonUnreachable, translate
from trident import errors as stage_errors
from trident.errors import InputTooLongError, StageError, StageErrorKind

HTTP_API = Path(__file__).resolve().parent.parent.parent / "docs" / "http-api.md"
HEADER = "| status | type | when |"


def documented_error_rows() -> list[tuple[str, str, str]]:
    lines = HTTP_API.read_text().splitlines()
    start = lines.index(HEADER) + 2  # past the header and the |---| line
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        status, type_, when = (cell.strip() for cell in line.strip().strip("|").split(" | ", 2))
        rows.append((status, type_, when))
    return rows


def test_the_documented_error_table_is_the_error_kind_table():
    assert documented_error_rows() == [(str(kind.status), f"`{kind.type}`", kind.description) for kind in ErrorKind]


def test_openapi_describes_each_status_from_the_table():
    doc = create_app(GatewaySettings(triton_urls=["127.0.0.1:1"])).openapi()  # nothing talks to Triton
    described = {int(status): answer["description"] for item in doc["paths"].values() for operation in item.values()
                 for status, answer in operation["responses"].items() if int(status) >= 400}
    assert described.items() <= {kind.status: kind.description for kind in ErrorKind}.items()
    assert {400, 401, 404, 413, 415, 422, 424, 429, 501, 503} <= described.keys()


def test_the_type_strings_are_those_clients_always_got():
    assert ERROR_TYPES == {
        400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error", 413: "payload_too_large",
        415: "unsupported_media_type", 422: "validation_error", 424: "backend_error", 429: "overloaded",
        500: "internal_error", 501: "not_implemented", 503: "unavailable",
    }
    assert len({kind.status for kind in ErrorKind}) == len(ErrorKind)  # one kind per status


# --- translate --------------------------------------------------------------------------------


def failure(message: str, status: str | None) -> InferenceServerException:
    return InferenceServerException(msg=message, status=status)


def tagged(error: StageError, status: str, ensemble: str | None = "m") -> InferenceServerException:
    prefix = f"in ensemble '{ensemble}', " if ensemble else ""
    return failure(prefix + stage_errors.encode(error), status)


def test_too_long_is_422_with_the_index_shifted_to_the_request():
    error = translate(tagged(InputTooLongError(3, 602, 128), "StatusCode.INVALID_ARGUMENT"), offset=32, param="texts")
    assert (error.kind, error.param) == (ErrorKind.VALIDATION, "texts")
    assert error.message == stage_errors.too_long_message(35, 602, 128)
    assert error.message.startswith("input 35 has 602 tokens, more than the model's maximum of 128")


def test_invalid_input_is_422_in_the_stages_words():
    refusal = StageError(StageErrorKind.INVALID_INPUT, "DIMENSIONS must be between 1 and 32, got 999")
    error = translate(tagged(refusal, "StatusCode.INVALID_ARGUMENT"))
    assert (error.status, error.message) == (422, "DIMENSIONS must be between 1 and 32, got 999")


def test_a_stage_failure_is_424_naming_the_engine_error():
    refusal = StageError(StageErrorKind.STAGE_FAILED, "InvalidArgument: [ONNXRuntimeError] : 2 : INVALID_ARGUMENT : "
                         "Non-zero status code returned while running Gather node.")
    for ensemble in ("m_ids", None):  # through the ensemble, or the step called alone
        error = translate(tagged(refusal, "StatusCode.INTERNAL", ensemble))
        assert error.kind is ErrorKind.BACKEND_FAILED and not isinstance(error, TritonUnreachable)
        assert "Gather" in error.message and "trident-error" not in error.message


@pytest.mark.parametrize(("message", "status"), [
    ("failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:1: Connection refused",
     "StatusCode.UNAVAILABLE"),
    ("in ensemble 'm', [request id: <id_unknown>] Server is stopping, scheduler for model has stopped accepting "
     "new inference requests", "StatusCode.UNAVAILABLE"),
])
def test_unreachable_is_503_and_lets_the_pool_fail_over(message, status):
    error = translate(failure(message, status))
    assert isinstance(error, TritonUnreachable) and error.status == 503 and error.error_type == "unavailable"


def test_a_deadline_names_the_flag_that_sets_it():
    error = translate(failure("Deadline Exceeded", "StatusCode.DEADLINE_EXCEEDED"))
    assert error.status == 503 and not isinstance(error, TritonUnreachable)
    assert error.message == ("no answer from the inference server within the gateway's --request-timeout: "
                             "Deadline Exceeded")


@pytest.mark.parametrize(("message", "status"), [
    ("Locally cancelled by application!", "StatusCode.CANCELLED"),
    ("in ensemble 'm', Stub process 'm_tokenizer_0_0' is not healthy.", "StatusCode.INTERNAL"),
    ("Request for unknown model: 'm' has no available versions", "StatusCode.NOT_FOUND"),
    ("in ensemble 'm', some failure of Triton's own", "StatusCode.INTERNAL"),
])
def test_triton_failing_or_restarting_is_a_retryable_503(message, status):
    error = translate(failure(message, status))
    assert error.status == 503 and not isinstance(error, TritonUnreachable)
    assert error.message == f"the inference server is unavailable: {message}"


@pytest.mark.parametrize(("message", "status"), [
    ("[request id: <id_unknown>] inference request batch-size must be <= 256 for 'm'", "StatusCode.INVALID_ARGUMENT"),
    ("something without a status", None),
])
def test_anything_else_is_424(message, status):
    error = translate(failure(message, status))
    assert error.status == 424 and error.message == f"the inference server failed: {message}"


def test_the_words_do_not_decide():
    """English that used to be matched ("is not healthy", the too-long sentence) means nothing untagged."""
    sentence = stage_errors.too_long_message(0, 602, 128)
    assert translate(failure(sentence, "StatusCode.INVALID_ARGUMENT")).status == 424
    assert translate(failure("Stub process 'x' is not healthy.", "StatusCode.INVALID_ARGUMENT")).status == 424


def test_bodies_keep_their_shapes():
    error = ApiError(ErrorKind.PAYLOAD_TOO_LARGE, "too big", param="input", headers={"Retry-After": "1"})
    openai = error_response(error, "/v1/embeddings")
    assert openai.status_code == 413 and openai.headers["retry-after"] == "1"
    assert orjson.loads(openai.body) == {"error": {"message": "too big", "type": "payload_too_large", "param": "input",
                                                   "code": 413}}
    assert orjson.loads(error_response(error, "/embed").body) == {"error": "too big", "error_type": "payload_too_large"}
    assert orjson.loads(status_response(405, "Method Not Allowed", "/embed").body) == {
        "error": "Method Not Allowed", "error_type": "error"}


def test_a_wrong_method_is_405_with_allow():
    client = TestClient(create_app(GatewaySettings(triton_urls=["127.0.0.1:1"])))  # no lifespan: no Triton
    response = client.get("/v1/embeddings")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json()["error"]["type"] == "error"
