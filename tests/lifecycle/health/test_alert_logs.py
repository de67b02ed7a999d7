"""An alert's webhook URL (whose path is often its token) never reaches a log, not even
httpx's own request log at INFO."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from engine.lifecycle.alerts import send_alert

TOKEN = "T0ken-in-the-path-9f8e7d6c"
HOOK = f"https://hooks.example.com/services/T01/B02/{TOKEN}"


def test_webhook_url_and_token_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    result = asyncio.run(send_alert(HOOK, {"event": "unhealthy", "count": 1},
                                    transport=transport))
    assert result.delivered
    assert any(r.name == "httpx" for r in caplog.records)  # the request was logged ...
    for record in caplog.records:  # ... without the URL or its token
        text = record.getMessage()
        assert TOKEN not in text and "hooks.example.com" not in text, text
