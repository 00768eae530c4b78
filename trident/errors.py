"""Failures that cross the Triton boundary, in one tagged format.

A stage that refuses a request raises a `StageError`; the Triton adapter sends it as
`TritonError(encode(error), code)` where `code` is INVALID_ARG for the client's fault and INTERNAL
for ours. Triton may put words in front of the message (an ensemble adds "in ensemble 'x', "), so the
receiver looks for `TAG` and reads the JSON after it: the HTTP side switches on the gRPC status and
`kind`, never on English text.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

TAG = "trident-error "


class StageErrorKind(str, Enum):
    """Why a stage refused a request; the HTTP side maps each to an answer."""

    INPUT_TOO_LONG = "input_too_long"  # details: index, num_tokens, max_length
    INVALID_INPUT = "invalid_input"  # the request's tensors make no sense to the stage
    STAGE_FAILED = "stage_failed"  # the stage itself broke (an engine error, a bug): not the client's fault


class StageError(ValueError):
    """A stage's refusal of one request: a kind, a message for the client, and details (JSON values)."""

    def __init__(self, kind: StageErrorKind, message: str, **details: Any) -> None:
        super().__init__(message)
        self.kind = StageErrorKind(kind)
        self.message = message
        self.details = details

    @property
    def client_fault(self) -> bool:
        return self.kind is not StageErrorKind.STAGE_FAILED


class InputTooLongError(StageError):
    """An input has more tokens than the model accepts and truncation was not asked for."""

    def __init__(self, index: int, num_tokens: int, max_length: int) -> None:
        super().__init__(StageErrorKind.INPUT_TOO_LONG, too_long_message(index, num_tokens, max_length),
                         index=index, num_tokens=num_tokens, max_length=max_length)
        self.index, self.num_tokens, self.max_length = index, num_tokens, max_length


def too_long_message(index: int, num_tokens: int, max_length: int) -> str:
    """The one wording of an over-long input, wherever it is found (a stage, or the HTTP side)."""
    return (f"input {index} has {num_tokens} tokens, more than the model's maximum of {max_length}; "
            "send truncate=true to cut it")


def encode(error: StageError) -> str:
    return TAG + json.dumps({"kind": error.kind.value, "message": error.message, "details": error.details},
                            ensure_ascii=False, separators=(",", ":"))


def decode(text: str) -> StageError | None:
    """The StageError tagged inside a Triton error message, or None if Triton itself failed."""
    start = text.find(TAG)
    if start < 0:
        return None
    try:
        payload, _ = json.JSONDecoder().raw_decode(text, start + len(TAG))
        return StageError(StageErrorKind(payload["kind"]), str(payload["message"]), **payload.get("details", {}))
    except (ValueError, KeyError, TypeError):
        return None
