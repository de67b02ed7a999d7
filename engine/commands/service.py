"""Verbs of the service (``byod serve``) that need no web framework: API tokens, signed
end-user page tokens and links, and starting the server.

API tokens are random (``byod_`` + 32 random bytes, URL-safe), shown once at creation;
only their SHA-256 is stored, with scopes ``settings``, ``data`` and ``admin``. End-user
page tokens are short-lived and signed with ``BYOD_SERVE_SECRET`` (itsdangerous' timed
HMAC serializer): the app's backend (or an operator) mints one for a signed-in user and
the page exchanges it for a session cookie. The serve package (one layer up, beside the
CLI) builds the web app on these.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import SecretStr

from engine.commands.workspace import Workspace
from engine.errors import ConfigError, RegistryError

if TYPE_CHECKING:
    from engine.ports.serve import ApiToken

__all__ = ["SECRET_ENV", "create_token", "hash_token", "list_tokens", "mint_user_token",
           "revoke_token", "serve", "serve_secret", "user_link", "verify_user_token"]

SECRET_ENV = "BYOD_SERVE_SECRET"
MIN_SECRET_CHARS = 32
TOKEN_PREFIX = "byod_"
_USER_TOKEN_SALT = "byod-user-page-token"
_SCOPES = ("settings", "data", "admin")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


# -- the signing secret -------------------------------------------------------------------------

def serve_secret(env: Mapping[str, str] | None = None) -> SecretStr:
    """The service's signing secret from ``BYOD_SERVE_SECRET``; a ``ConfigError`` naming
    the variable when it is missing or too short (never echoing it)."""

    value = (os.environ if env is None else env).get(SECRET_ENV, "").strip()
    if not value:
        raise ConfigError(
            f"{SECRET_ENV} is not set: the service signs end-user page tokens and sessions "
            f"with it; set it to a long random string (e.g. `byod keys generate`)")
    if len(value) < MIN_SECRET_CHARS:
        raise ConfigError(f"{SECRET_ENV} is too short ({len(value)} characters): use at "
                          f"least {MIN_SECRET_CHARS} random characters")
    return SecretStr(value)


# -- API tokens ---------------------------------------------------------------------------------

def hash_token(token: str) -> str:
    """The stored form of an API token (SHA-256, hex): the token has 256 random bits, so a
    plain hash is enough (no password stretching needed)."""

    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _scopes(scopes: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    items = scopes.split(",") if isinstance(scopes, str) else list(scopes)
    cleaned = tuple(dict.fromkeys(s.strip() for s in items if s.strip()))
    if not cleaned:
        raise RegistryError(f"a token needs at least one scope: {', '.join(_SCOPES)}")
    bad = [s for s in cleaned if s not in _SCOPES]
    if bad:
        raise RegistryError(f"unknown scope {bad[0]!r}: the scopes are {', '.join(_SCOPES)}")
    return cleaned


def create_token(ws: Workspace, name: str, scopes: str | list[str] | tuple[str, ...]
                 ) -> tuple["ApiToken", str]:
    """A new API token: its stored record and the token itself, shown this once."""

    if not isinstance(name, str) or not _NAME.match(name):
        raise RegistryError("a token name is 1-64 characters: letters, digits, space, "
                            "'.', '_' or '-', starting with a letter or digit")
    chosen = _scopes(scopes)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ws.store.add_token(secrets.token_hex(6), name, hash_token(token), chosen)
    ws.store.audit("*", "api_token_created", {"token_id": record.token_id, "name": name,
                                              "scopes": list(chosen)})
    return record, token


def list_tokens(ws: Workspace) -> list["ApiToken"]:
    """Every API token (revoked ones too), oldest first; never the tokens themselves."""

    if not ws.registry_exists():
        return []
    return ws.store.list_tokens()


def revoke_token(ws: Workspace, token_id: str) -> "ApiToken":
    """Revoke a token by id (idempotent); ``RegistryError`` for an unknown id."""

    record = ws.store.revoke_token(token_id)
    if record is None:
        known = [t.token_id for t in ws.store.list_tokens()]
        raise RegistryError(f"no API token with id {token_id!r}"
                            + (f" (known: {', '.join(known)})" if known else ""))
    ws.store.audit("*", "api_token_revoked", {"token_id": token_id, "name": record.name})
    return record


# -- end-user page tokens ----------------------------------------------------------------------

def mint_user_token(secret: SecretStr, user_id: str) -> str:
    """A signed, timestamped token naming ``user_id`` (its age is checked on use)."""

    from itsdangerous import URLSafeTimedSerializer

    serializer = URLSafeTimedSerializer(secret.get_secret_value(), salt=_USER_TOKEN_SALT)
    return str(serializer.dumps({"u": user_id}))


def verify_user_token(secret: SecretStr, token: str, max_age_s: float) -> str:
    """The user id a token names; ``PermissionError`` when it is forged, damaged or older
    than ``max_age_s`` (the message never repeats the token)."""

    from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

    serializer = URLSafeTimedSerializer(secret.get_secret_value(), salt=_USER_TOKEN_SALT)
    try:
        data: Any = serializer.loads(token, max_age=int(max_age_s))
    except SignatureExpired:
        raise PermissionError("the page link has expired: ask the app for a new one") from None
    except BadData:
        raise PermissionError("the page link is not valid") from None
    if not isinstance(data, dict) or not isinstance(data.get("u"), str) or not data["u"]:
        raise PermissionError("the page link is not valid")
    return str(data["u"])


def base_url(ws: Workspace) -> str:
    """Where users reach the service: ``serve.public_url``, else ``http://host:port``."""

    serve_config = ws.config.serve
    if serve_config.public_url:
        return serve_config.public_url
    return f"http://{serve_config.host}:{serve_config.port}"


def user_link(ws: Workspace, user_id: str, *, env: Mapping[str, str] | None = None) -> str:
    """A sign-in link to ``user_id``'s settings page, valid for ``serve.user_token_ttl_s``.
    The link is a credential: hand it to that user only."""

    from engine.ports.registry import check_user_id

    check_user_id(user_id)
    token = mint_user_token(serve_secret(env), user_id)
    return f"{base_url(ws)}/ui/login?token={quote(token)}"


# -- the server --------------------------------------------------------------------------------

def require_service_store(ws: Workspace) -> None:
    """The service keeps its background jobs and API tokens in the registry: refuse,
    before anything starts, a registry that cannot (the main deployment's, which keeps
    the engine's own records only)."""

    from engine.config import registry_display
    from engine.ports.serve import JobStore, TokenStore

    store = ws.store
    if not (isinstance(store, JobStore) and isinstance(store, TokenStore)):
        raise ConfigError(
            f"byod serve needs a SQLite or PostgreSQL registry (its jobs and API tokens "
            f"live there); the registry {registry_display(ws.config)} cannot keep them. Set "
            "BYOD_REGISTRY to a file path or a postgresql:// URL (`byod registry copy` "
            "moves a registry)")


def serve(ws: Workspace, *, host: str | None = None, port: int | None = None,
          log_level: str = "info") -> None:
    """Run the service in this process until interrupted (uvicorn). The web app is built
    by ``engine.serve.app.app_from_env`` from the same configuration and environment."""

    import uvicorn

    serve_secret()  # fail before binding the port when the secret is missing
    ws.graph  # and when the schema versions do not load: every route needs them
    require_service_store(ws)  # and when the registry cannot keep jobs and tokens
    uvicorn.run("engine.serve.app:app_from_env", factory=True,
                host=host or ws.config.serve.host,
                port=ws.config.serve.port if port is None else port,
                log_level=log_level, access_log=False,  # the app logs requests itself
                proxy_headers=True, server_header=False)
