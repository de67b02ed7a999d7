"""The configuration verb: the effective settings, each with where it came from.

``config_show`` never returns a secret: the webhook URL (which may carry a token in its path
or query) is cut to its scheme and host; the service's signing secret and the SMTP password
(environment variables) show only whether they are set."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine.commands.workspace import Workspace
from engine.config import is_registry_url, registry_display, resolve_config

__all__ = ["ConfigEntry", "ConfigView", "config_show", "redact_webhook"]

# Settings whose value may hold a secret, and how each is shown.
_REDACTED = {"webhook_url"}
# Secrets read from the environment where they are used (never settings): shown only as
# set or not set, so an operator can tell whether the service and email alerts can start.
SECRET_VARIABLES = {"serve.secret": "BYOD_SERVE_SECRET",
                    "alerts.email.password": "BYOD_SMTP_PASSWORD"}


def redact_webhook(url: str | None) -> str | None:
    """``https://hooks.example.com/T0/B0/secret?token=x`` -> ``https://hooks.example.com``."""

    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class ConfigEntry:
    key: str  # dotted: ``auth.issuer_domain``
    value: Any  # JSON-ready; secrets already cut
    source: str  # ``default``, ``file <path>:<line>``, ``env <VAR>`` or ``workspace``
    redacted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "source": self.source,
                "redacted": self.redacted}


@dataclass(frozen=True)
class ConfigView:
    file: Path | None  # the config file read, if any
    entries: tuple[ConfigEntry, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"file": str(self.file) if self.file else None,
                "settings": [e.to_dict() for e in self.entries]}


def config_show(ws: Workspace, *, path: Path | None = None,
                env: Mapping[str, str] | None = None) -> ConfigView:
    """The workspace's effective configuration, each value with its source: ``default``,
    ``file <path>:<line>``, ``env <VAR>``, or ``workspace`` for a value the caller set on
    the workspace itself (``--versions``, a config an app passed). Secrets redacted."""

    resolved = resolve_config(path, env)
    entries: list[ConfigEntry] = []
    for key, source in resolved.sources.items():
        value: Any = ws.config
        loaded: Any = resolved.config
        for part in key.split("."):
            value, loaded = getattr(value, part), getattr(loaded, part)
        if value != loaded:
            source = "workspace"
        redacted = key in _REDACTED and value is not None
        shown = redact_webhook(value) if redacted else _plain(value)
        if key == "registry_path" and is_registry_url(value):  # may carry a password
            redacted, shown = True, registry_display(value)
        entries.append(ConfigEntry(key, shown, source, redacted))
    variables = os.environ if env is None else env
    for key, variable in SECRET_VARIABLES.items():
        present = bool(variables.get(variable))
        entries.append(ConfigEntry(key, "(set)" if present else None,
                                   f"env {variable}" if present else "unset", present))
    return ConfigView(resolved.file, tuple(entries))
