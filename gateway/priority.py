"""A request's priority (`trident.priorities`): the body's `priority`, else the `x-trident-priority` header,
else by size: more inputs than `--bulk-threshold` is bulk (an indexing batch), anything else interactive."""

from __future__ import annotations

from gateway.errors import ApiError, ErrorKind
from gateway.observe import PRIORITY_HEADER, asked_priority
from trident.priorities import PRIORITY_NAMES, Priority


def request_priority(sent: str | None, inputs: int, bulk_threshold: int) -> Priority:
    name = sent or header_priority()
    if name is not None:
        return Priority[name.upper()]
    return Priority.BULK if inputs > bulk_threshold else Priority.INTERACTIVE


def header_priority() -> str | None:
    """The header's value, checked here, where it is first needed (routes without model work ignore it)."""
    value = asked_priority()
    if value is None:
        return None
    name = value.strip().lower()
    if name not in PRIORITY_NAMES:
        raise ApiError(ErrorKind.INVALID_REQUEST,
                       f"header {PRIORITY_HEADER} must be one of {', '.join(PRIORITY_NAMES)}, got {value!r}")
    return name
