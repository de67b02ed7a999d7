"""Checking a ``DeploymentTarget`` before any I/O, and telling key shapes apart.

Both adapters call ``check_target`` first so a bad URL or key fails fast with a message
that names the deployment by its label and never echoes the URL or the key.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from engine.errors import ConfigError, InvalidCredentials
from engine.ports.deployment import DeploymentTarget

__all__ = ["ENV_MAIN_KEY", "ENV_MAIN_URL", "KeyKind", "base_url", "check_target", "is_loopback_host",
           "key_kind", "main_target_from_env"]

ENV_MAIN_URL = "BYOD_MAIN_URL"
ENV_MAIN_KEY = "BYOD_MAIN_ADMIN_KEY"

KeyKind = Literal["cloud", "self_hosted"]

# Prefixes of keys issued by Convex cloud (docs: deploy-key-types). The CLI resolves the URL
# of such a key itself; every other ``name|secret`` key is an admin key used with a URL.
_CLOUD_PREFIXES = ("prod:", "dev:", "preview:", "project:")


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def key_kind(admin_key: str) -> KeyKind:
    """``cloud`` for ``prod:``/``dev:``/``preview:``/``project:`` deploy keys, else
    ``self_hosted`` (``<instance>|<hex>`` admin keys, also valid against cloud URLs)."""

    return "cloud" if admin_key.startswith(_CLOUD_PREFIXES) else "self_hosted"


def check_target(target: DeploymentTarget) -> None:
    """Raise ``InvalidCredentials`` unless the URL is https (or plain http to a loopback
    host with ``allow_insecure_local``), carries no credentials, and the key is shaped like
    a Convex key. Never includes the URL or key in the message."""

    label = target.label or "(unnamed)"

    def bad(message: str) -> InvalidCredentials:
        return InvalidCredentials(message, deployment=label)

    if not target.label:
        raise bad("the deployment has no label to name it by")
    try:
        parts = urlsplit(target.url.strip())
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise bad("the deployment URL is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise bad("the deployment URL must be an http(s) URL with a host name")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise bad(
            "the deployment URL must not carry credentials, a query or a fragment; "
            "pass the key separately"
        )
    if parts.path not in ("", "/"):
        raise bad("the deployment URL must be the deployment's root URL (no path)")
    if parts.scheme == "http":
        if not is_loopback_host(host):
            raise bad("plain http is only allowed for a loopback deployment; use https")
        if not target.allow_insecure_local:
            raise bad(
                "plain http to a loopback deployment needs allow_insecure_local "
                "(--allow-insecure-local)"
            )
    key = target.admin_key
    if not key or "|" not in key or any(c.isspace() or not c.isprintable() for c in key):
        raise bad(
            "the key is not a Convex deploy or admin key "
            "(expected 'prod:<deployment>|<secret>' or '<instance>|<hex>')"
        )


def base_url(target: DeploymentTarget) -> str:
    return target.url.strip().rstrip("/")


def main_target_from_env(env: Mapping[str, str] | None = None) -> DeploymentTarget:
    """The main deployment from ``BYOD_MAIN_URL`` + ``BYOD_MAIN_ADMIN_KEY``."""

    env = os.environ if env is None else env
    url, key = env.get(ENV_MAIN_URL, "").strip(), env.get(ENV_MAIN_KEY, "").strip()
    if not url or not key:
        raise ConfigError(
            f"the main deployment is not configured: set {ENV_MAIN_URL} and {ENV_MAIN_KEY}")
    return DeploymentTarget(label="main", url=url, admin_key=key,
                            allow_insecure_local=url.lower().startswith("http://"))
