"""The API key (`trident serve --api-key`, or TRIDENT_API_KEY): every route but /health (and SageMaker's
/ping) needs it, both schemes are accepted, and neither the key nor a wrong one ever reaches the log."""

from __future__ import annotations

import inspect
import time

import httpx
import pytest

from gateway import auth
from gateway.paths import gates

KEY = "test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
REFUSED = ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"})


@pytest.fixture
def keyed(make_gateway):
    return make_gateway(api_key=KEY, healthy=True)


def test_every_route_but_health_needs_the_key(keyed):
    doc = keyed.get("/openapi.json", headers=AUTH).json()
    operations = [(path, method) for path, item in doc["paths"].items() for method in item]
    assert len(operations) >= 8
    for path, method in operations:
        for headers in REFUSED:
            response = httpx.request(method, f"{keyed.base_url}{path}", headers=headers, json={}, timeout=10)
            if not gates(path).key:  # /health, /ping: a load balancer's probes
                assert response.status_code == 200
                continue
            assert response.status_code == 401, (path, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            body = response.json()
            assert (body["error"]["type"] if path.startswith("/v1/") else body["error_type"]) == "authentication_error"
    assert keyed.get("/openapi.json").status_code == 401


def test_bearer_and_api_key_schemes_are_accepted(keyed):
    for scheme in ("Bearer", "bearer", "Api-Key"):
        response = keyed.post("/embed", {"inputs": "let me in"}, headers={"Authorization": f"{scheme} {KEY}"})
        assert response.status_code == 200, (scheme, response.text)


def test_the_key_is_never_logged(keyed, gateway_log):
    keyed.post("/embed", {"inputs": "log me, not my key"}, headers=AUTH)
    keyed.post("/embed", {"inputs": "x"}, headers={"Authorization": "Bearer wrong-key-in-log?"})
    deadline = time.monotonic() + 5  # the access line is written just after the answer is sent
    # Wait for both lines themselves: other requests' lines (a health probe's) may be in the log too.
    while not ('"status":401' in gateway_log.getvalue() and '"status":200' in gateway_log.getvalue()):
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    log = gateway_log.getvalue()
    assert '"status":401' in log and '"status":200' in log
    assert KEY not in log and "wrong-key-in-log?" not in log


def test_api_keys_are_compared_in_constant_time():
    source = inspect.getsource(auth.ApiKeyMiddleware)
    assert "hmac.compare_digest" in source and "==" not in source
