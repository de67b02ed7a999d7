"""httpx's request log keeps the path of a Convex API call (useful when debugging) but
never the deployment's host."""

from __future__ import annotations

import logging

import httpx
import pytest

from engine.convex.http import ConvexHttpClient
from engine.ports.deployment import DeploymentTarget

KEY = "acme-prod-42|" + "0123456789abcdef" * 4


def test_convex_calls_log_the_api_path_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    target = DeploymentTarget("user_7", "https://secret-host-77.convex.cloud", KEY)
    reply = {"status": "success", "value": 1}
    with ConvexHttpClient(target, transport=httpx.MockTransport(
            lambda request: httpx.Response(200, json=reply))) as client:
        assert client.query("m:q") == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert messages and all("/api/query" in m for m in messages)
    assert not any("secret-host-77" in m for m in messages)
