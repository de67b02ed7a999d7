"""Checking a ``DeploymentTarget`` before any I/O, and telling key shapes apart.

Both adapters call ``check_target`` first so a bad URL or key fails fast with a message
that names the deployment by its label and never echoes the URL or the key.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Literal, NamedTuple
from urllib.parse import urlsplit

from engine.errors import ConfigError, InvalidCredentials
from engine.ports.deployment import DeploymentTarget

__all__ = ["ENV_MAIN_KEY", "ENV_MAIN_URL", "DeployKeyKind", "KeyKind", "KeyShape", "base_url",
           "check_target", "is_loopback_host", "key_kind", "main_target_from_env",
           "validate_deploy_key", "validate_url"]

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


_SLUG = r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?"
DeployKeyKind = Literal["prod", "dev", "preview", "project", "admin"]
_KEY_PREFIXES: dict[DeployKeyKind, re.Pattern[str]] = {
    "prod": re.compile(rf"prod:({_SLUG})"),
    "dev": re.compile(rf"dev:({_SLUG})"),
    "preview": re.compile(rf"preview:({_SLUG}):({_SLUG})"),
    "project": re.compile(rf"project:({_SLUG}):({_SLUG})"),
    "admin": re.compile(rf"({_SLUG})"),  # raw admin key or self-hosted "<instance>|<hex>"
}
_SECRET = re.compile(r"[A-Za-z0-9+/=_-]+")
_MIN_SECRET_CHARS = 16
_MIN_SECRET_DISTINCT = 6


class KeyShape(NamedTuple):
    """What kind of key was given (never the key itself)."""

    kind: DeployKeyKind


def validate_url(url: str, allow_insecure_local: bool = False, *, label: str = "") -> str:
    """The deployment's root URL, normalized (no trailing slash). https only; plain http only
    to a loopback host (127.0.0.0/8, ::1, localhost, *.localhost) and only when explicitly
    allowed. Messages never
    repeat the URL."""

    def bad(message: str) -> InvalidCredentials:
        return InvalidCredentials(message, deployment=label)

    if not isinstance(url, str) or not url.strip():
        raise bad("the deployment URL is empty")
    text = url.strip()
    if any(c.isspace() or not c.isprintable() for c in text):
        raise bad("the deployment URL contains spaces or control characters")
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise bad("the deployment URL is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise bad("the deployment URL must start with https:// "
                  "(e.g. https://<deployment>.convex.cloud)")
    if not host:
        raise bad("the deployment URL has no host name")
    if parts.username is not None or parts.password is not None:
        raise bad("the deployment URL must not contain credentials; give the key separately")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise bad("the deployment URL must not have a query string or fragment; "
                  "give the key separately")
    if parts.path not in ("", "/"):
        raise bad("the deployment URL must be the deployment's root URL, without a path")
    if parts.scheme == "http":
        if not is_loopback_host(host):
            raise bad("plain http is not allowed: use https (http is accepted only for a "
                      "loopback deployment on 127.0.0.0/8, ::1 or localhost)")
        if not allow_insecure_local:
            raise bad("plain http to a loopback deployment needs --allow-insecure-local")
    return text.rstrip("/")


def validate_deploy_key(key: str, *, label: str = "") -> KeyShape:
    """Check a Convex deploy or admin key's shape: ``prod:<name>|secret``,
    ``dev:<name>|secret``, ``preview:<team>:<project>|secret``,
    ``project:<team>:<project>|secret``, ``<name>|secret`` or self-hosted
    ``<instance>|<hex>``. Messages never repeat the key."""

    def bad(message: str) -> InvalidCredentials:
        return InvalidCredentials(
            message + " (expected e.g. 'prod:<deployment>|<secret>' or '<instance>|<hex>')",
            deployment=label)

    if not isinstance(key, str) or not key.strip():
        raise bad("the deploy key is empty")
    text = key.strip()
    if any(c.isspace() or not c.isprintable() or not c.isascii() for c in text):
        raise bad("the deploy key contains spaces, control or non-ASCII characters")
    if "|" not in text:
        raise bad("the deploy key has no '|' separating its name from its secret")
    prefix, secret = text.split("|", 1)
    kind = next((k for k, rx in _KEY_PREFIXES.items() if rx.fullmatch(prefix)), None)
    if kind is None:
        head = prefix.split(":", 1)[0] if ":" in prefix else ""
        if head in ("prod", "dev", "preview", "project"):
            raise bad(f"the deploy key's {head!r} part is malformed")
        raise bad("the deploy key's name part is not a known key type")
    if not _SECRET.fullmatch(secret):
        raise bad("the deploy key's secret part has characters no Convex key uses")
    if len(secret) < _MIN_SECRET_CHARS or len(set(secret)) < _MIN_SECRET_DISTINCT:
        raise bad("the deploy key's secret part is too short or trivial to be a real key")
    return KeyShape(kind)



def key_kind(admin_key: str) -> KeyKind:
    """``cloud`` for ``prod:``/``dev:``/``preview:``/``project:`` deploy keys, else
    ``self_hosted`` (``<instance>|<hex>`` admin keys, also valid against cloud URLs)."""

    return "cloud" if admin_key.startswith(_CLOUD_PREFIXES) else "self_hosted"


def check_target(target: DeploymentTarget) -> None:
    """Raise ``InvalidCredentials`` unless the target would pass connect's own checks: the
    same ``validate_url`` and ``validate_deploy_key`` (one validator for every door), plus
    a label to name it by. Never includes the URL or key in the message."""

    if not target.label:
        raise InvalidCredentials("the deployment has no label to name it by",
                                 deployment="(unnamed)")
    validate_url(target.url, target.allow_insecure_local, label=target.label)
    validate_deploy_key(target.admin_key, label=target.label)


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
