"""The paths that skip some of the gates every other request passes, in one table read by the API-key
check, the concurrency limit and `/openapi.json`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gates:
    key: bool = True  # needs the API key (when --api-key is set)
    admitted: bool = True  # counts against --max-concurrent-requests (429 past it)
    drains: bool = True  # refused with 503 while the server drains (SIGTERM)


OPEN_PATHS = {
    # A load balancer's probe: no key, never 429; 503 while draining, so it stops sending here.
    "/health": Gates(key=False, admitted=False),
    "/ping": Gates(key=False, admitted=False),  # SageMaker's /health
    # Scraped under overload and while draining, but only with the key.
    "/metrics": Gates(admitted=False, drains=False),
}
EVERY_GATE = Gates()


def gates(path: str) -> Gates:
    return OPEN_PATHS.get(path, EVERY_GATE)
