"""A Convex call is logged (at debug) by its deployment's label and function path, never
its host or key; httpx's own request log, which other senders (alert webhooks) still go
through, keeps the path of a Convex API call and hides any other URL whole."""

from __future__ import annotations

import logging

import httpx
import pytest

from engine.convex.http import ConvexHttpClient, hide_request_urls
from engine.ports.deployment import DeploymentTarget

KEY = "acme-prod-42|" + "0123456789abcdef" * 4


def test_convex_calls_log_label_and_path_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    target = DeploymentTarget("user_7", "https://secret-host-77.convex.cloud", KEY)
    reply = {"status": "success", "value": 1}
    with ConvexHttpClient(target, transport=httpx.MockTransport(
            lambda request: httpx.Response(200, json=reply))) as client:
        assert client.query("m:q") == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("user_7" in m and "m:q" in m for m in messages)
    for m in messages:
        assert "secret-host-77" not in m and KEY.split("|")[1] not in m


def test_httpx_request_log_keeps_only_api_paths(caplog: pytest.LogCaptureFixture) -> None:
    hide_request_urls()
    caplog.set_level(logging.DEBUG)
    with httpx.Client(transport=httpx.MockTransport(
            lambda request: httpx.Response(200, json={}))) as client:
        client.post("https://secret-host-77.convex.cloud/api/query", json={})
        client.post("https://hooks.example.com/T0KEN-in-path", json={})
    messages = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert len(messages) == 2
    assert "/api/query" in messages[0]
    assert not any("secret-host-77" in m or "T0KEN" in m or "hooks.example" in m
                   for m in messages)
