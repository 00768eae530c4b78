"""Schema-driven fuzzing with schemathesis against the gateway's own `/openapi.json`, the gateway in front
of the fake Triton (the real tokenizer and postprocess stages, a fake engine: tests/unit/conftest.py).

Every operation gets requests the schema allows and requests it rejects (wrong types, missing fields,
odd Unicode, huge numbers). Whatever comes in, the gateway must answer with a status and body its
OpenAPI document declares, never a 5xx, and keep serving. Generation is derandomized (a fixed seed),
so a failure reproduces; `make fuzz` runs the same with many more examples (TRIDENT_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("TRIDENT_FUZZ_EXAMPLES", "60"))  # per operation and mode
KEEP = "(keep the generated value)"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]


@pytest.fixture(scope="module")
def api_schema(gateway):
    schema = schemathesis.openapi.from_url(f"{gateway.base_url}/openapi.json")
    schema.config.update(base_url=gateway.base_url, request_timeout=60)
    return schema


def steer(case, model: str | None) -> None:
    """Positive cases: most random `model` names are (rightly) 404 and random `prompt_name`s 422, which
    would stop the fuzzing at the door; point a share of them at served models to reach Triton."""
    if isinstance(case.body, dict) and model != KEEP:
        if "model" in case.body:
            case.body["model"] = model
        case.body.pop("prompt_name", None)
    if isinstance(case.query, dict) and "model" in case.query and model != KEEP:
        case.query["model"] = model


def fuzz(operation, mode: GenerationMode, served: list[str]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode), model=st.sampled_from([KEEP, *served]))
    def run(case, model) -> None:
        if mode.is_positive:
            steer(case, model)
        case.call_and_validate(checks=CHECKS)

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(gateway, api_schema, mode):
    """Every documented operation, one after the other; all failures are reported together."""
    failures = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    served = [m["id"] for m in gateway.get("/v1/models").json()["data"]]
    assert len(operations) >= 8
    for operation in operations:
        try:
            fuzz(operation, mode, served)
        except Unsatisfiable:  # nothing to negate: an operation without parameters or body
            continue
        except Exception as exc:  # a failed check, with the request that produced it
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert gateway.get("/health").status_code == 200  # and still serving
    response = gateway.post("/v1/embeddings", {"input": "still here"})
    assert response.status_code == 200 and len(response.json()["data"][0]["embedding"]) == 32
