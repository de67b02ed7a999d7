"""Who may call what: API tokens for the app's backend, signed user tokens and cookie
sessions for the end-user pages, admin sessions for the dashboard, CSRF for forms, and the
rate limit on credential tests.

* **API tokens** (``Authorization: Bearer byod_…``): random, only a SHA-256 at rest, scopes
  ``settings`` (status, connect, disconnect, page tokens), ``data`` (the data plane) and
  ``admin`` (fleet, health runs, rollouts, the dashboard). Missing or invalid: 401; a
  token without the route's scope: 403.
* **User tokens**: short-lived, signed with ``BYOD_SERVE_SECRET`` (itsdangerous' timed
  HMAC), minted by the app's backend for one signed-in user
  (``POST /v1/users/{id}/page-token``). As a bearer token on ``/v1`` a user token acts
  with the ``settings`` scope on that user's own routes only (another user's: 403). On
  ``GET /ui/login?token=…`` it becomes an HttpOnly, SameSite=Strict session cookie
  (SameSite=None; Secure when ``frame_ancestors`` lets the app embed the pages).
* **Admin sessions**: ``/admin/login`` takes an admin-scope API token and sets a cookie
  naming the token; the token is checked again (not revoked, still admin) on each page.
* **CSRF**: a form carries ``csrf_token``, an HMAC of the session's random nonce; a POST
  without the matching one is refused (403). SameSite=Strict cookies are the first wall,
  the token the second.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadData, URLSafeTimedSerializer

from engine.commands import service as verbs
from engine.errors import ByodError
from engine.ports.registry import check_user_id
from engine.ports.serve import FLEET_USER
from engine.serve.errors import ApiError
from engine.serve.settings import ServeSettings

__all__ = ["ADMIN_COOKIE", "Principal", "SESSION_COOKIE", "authenticate", "csrf_token",
           "limit_credential_tests", "mint_user_token", "page_admin", "page_user",
           "require_csrf", "require_scope", "require_user_scope", "router",
           "verify_user_token"]

SESSION_COOKIE = "byod_session"
ADMIN_COOKIE = "byod_admin"
SESSION_MAX_AGE_S = 12 * 3600
_SESSION_SALT = "byod-page-session"
_ADMIN_SALT = "byod-admin-session"
_CSRF_FIELD = "csrf_token"
_CSRF_HEADER = "x-csrf-token"

@dataclass(frozen=True)
class Principal:
    """Who is calling: an API token (``kind="api"``, its id and scopes) or a user token
    (``kind="user"``, the user it names; ``settings`` scope on that user only)."""

    kind: str
    scopes: frozenset[str]
    token_id: str | None = None
    name: str | None = None
    user_id: str | None = None
    rate_keys: tuple[str, ...] = field(default=())

    def may_act_for(self, user_id: str) -> bool:
        return self.kind == "api" or self.user_id == user_id

# -- user tokens ------------------------------------------------------------------------------

def mint_user_token(settings: ServeSettings, user_id: str) -> str:
    """A signed token for ``user_id``'s pages, valid ``settings.user_token_ttl_s``."""

    try:
        check_user_id(user_id)
    except ByodError as exc:
        raise ApiError(422, "invalid_user_id", str(exc), field="user_id") from None
    if user_id == FLEET_USER:
        raise ApiError(422, "invalid_user_id", f"the user id {FLEET_USER!r} is reserved",
                       field="user_id")
    return verbs.mint_user_token(settings.secret, user_id)

def verify_user_token(settings: ServeSettings, token: str) -> str:
    """The user a token names; ``ApiError`` 401 when forged, damaged or expired."""

    try:
        user_id = verbs.verify_user_token(settings.secret, token, settings.user_token_ttl_s)
    except PermissionError as exc:
        raise ApiError(401, "invalid_token", str(exc)) from None
    if user_id == FLEET_USER:
        raise ApiError(401, "invalid_token", "the page link is not valid")
    return user_id

# -- bearer tokens ------------------------------------------------------------------------------

def _settings(request: Request) -> ServeSettings:
    settings: ServeSettings = request.app.state.service.settings
    return settings

def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()

def authenticate(request: Request) -> Principal:
    """The caller of a ``/v1`` request; ``ApiError`` 401 when there is none or it is not
    valid. Sets ``request.state.principal`` (the request log names it, never the token)."""

    token = _bearer(request)
    if token is None:
        raise ApiError(401, "unauthenticated", "an API token is required in the Authorization header (scheme Bearer)")
    service = request.app.state.service
    if token.startswith(verbs.TOKEN_PREFIX):
        record = service.store.token_by_hash(verbs.hash_token(token))
        if record is None or not record.active:
            raise ApiError(401, "invalid_token", "the API token is not valid or was revoked")
        if record.last_used_at is None or record.last_used_at < service.started_at:
            service.store.touch_token(record.token_id)
        principal = Principal("api", frozenset(record.scopes), token_id=record.token_id,
                              name=record.name, rate_keys=(f"token:{record.token_id}",))
    else:
        user_id = verify_user_token(service.settings, token)
        principal = Principal("user", frozenset({"settings"}), user_id=user_id,
                              rate_keys=(f"user:{user_id}",))
    request.state.principal = principal
    return principal

def require_scope(scope: str) -> Callable[[Request], Principal]:
    """A dependency: the caller, who must hold ``scope`` (401 / 403 otherwise)."""

    def dependency(request: Request) -> Principal:
        principal = authenticate(request)
        if scope not in principal.scopes:
            raise ApiError(403, "forbidden", f"this token lacks the {scope!r} scope")
        return principal

    dependency.__name__ = f"require_{scope}"
    return dependency

def require_user_scope(scope: str) -> Callable[[Request, str], Principal]:
    """A dependency for ``/v1/users/{user_id}/…``: ``scope`` and, for a user token, the
    same user (403 for another user's routes)."""

    def dependency(request: Request, user_id: str) -> Principal:
        principal = require_scope(scope)(request)
        if not principal.may_act_for(user_id):
            raise ApiError(403, "forbidden", "this token may not act for another user")
        request.state.user_id = user_id
        return principal

    dependency.__name__ = f"require_user_{scope}"
    return dependency

def limit_credential_tests(request: Request, *keys: str) -> None:
    """Count one credential test for each key (``user:ID``, ``token:ID``); 429 with
    ``Retry-After`` once a user is over ``serve.credential_tests_per_minute`` or a token
    over ``serve.credential_tests_per_token_per_minute``."""

    service = request.app.state.service
    per_token = service.settings.credential_tests_per_token_per_minute
    for key in dict.fromkeys(keys):
        wait = service.limiter.hit(key, per_token if key.startswith("token:") else None)
        if wait is not None:
            raise ApiError(429, "rate_limited", "too many credential tests; wait and try "
                           "again", retry_after=wait)

# -- page sessions ------------------------------------------------------------------------------

def _serializer(settings: ServeSettings, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret.get_secret_value(), salt=salt)

def _session(request: Request, cookie: str, salt: str) -> dict[str, Any] | None:
    value = request.cookies.get(cookie)
    if not value:
        return None
    try:
        data = _serializer(_settings(request), salt).loads(value, max_age=SESSION_MAX_AGE_S)
    except BadData:
        return None
    return data if isinstance(data, dict) else None

def _set_cookie(response: Response, settings: ServeSettings, name: str, value: str,
                path: str) -> None:
    response.set_cookie(name, value, max_age=SESSION_MAX_AGE_S, path=path, httponly=True,
                        samesite="none" if settings.embedded else "strict",
                        secure=settings.secure_cookies)

def page_user(request: Request) -> str:
    """The signed-in end user of a page (401 ``login_required`` without a session)."""

    data = _session(request, SESSION_COOKIE, _SESSION_SALT)
    if data is None or not isinstance(data.get("u"), str):
        raise ApiError(401, "login_required", "open the settings page from the app again "
                                              "(your session has ended)")
    request.state.user_id = data["u"]
    return str(data["u"])

def page_admin(request: Request) -> Principal:
    """The operator of a dashboard page: a session whose admin token is still valid."""

    data = _session(request, ADMIN_COOKIE, _ADMIN_SALT)
    store = request.app.state.service.store
    record = store.get_token(data["t"]) if data and isinstance(data.get("t"), str) else None
    if record is None or not record.active or "admin" not in record.scopes:
        raise ApiError(401, "login_required", "sign in at /admin/login with an admin token")
    return Principal("api", frozenset(record.scopes), token_id=record.token_id,
                     name=record.name)

def csrf_token(request: Request) -> str:
    """The CSRF token for forms of this session ("" without a session)."""

    data = _session(request, SESSION_COOKIE, _SESSION_SALT) if \
        not request.url.path.startswith("/admin") else \
        _session(request, ADMIN_COOKIE, _ADMIN_SALT)
    if data is None or not isinstance(data.get("n"), str):
        return ""
    secret = _settings(request).secret.get_secret_value().encode()
    return hmac.new(secret, f"csrf:{data['n']}".encode(), hashlib.sha256).hexdigest()

async def require_csrf(request: Request) -> None:
    """A dependency for form POSTs: the form's ``csrf_token`` (or ``X-CSRF-Token``) must
    match the session's (403 otherwise)."""

    expected = csrf_token(request)
    sent = request.headers.get(_CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(_CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not expected or not sent or not hmac.compare_digest(expected, sent):
        raise ApiError(403, "csrf", "the form has expired; reload the page and try again")

# -- login and logout ---------------------------------------------------------------------------

router = APIRouter(include_in_schema=False)

_ADMIN_LOGIN_HTML = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>byod operator sign-in</title></head><body><main>
<h1>Operator sign-in</h1>{error}
<form method="post" action="/admin/login">
<label for="token">Admin API token</label>
<input id="token" name="token" type="password" autocomplete="off" required>
<button type="submit">Sign in</button></form></main></body></html>"""

@router.get("/ui/login")
def ui_login(request: Request, token: str = "") -> Response:
    """Exchange a user token (from the app) for a session cookie; on to the settings."""

    user_id = verify_user_token(_settings(request), token)
    value = _serializer(_settings(request), _SESSION_SALT).dumps(
        {"u": user_id, "n": secrets.token_urlsafe(16)})
    response = RedirectResponse("/ui/settings", status_code=303)
    _set_cookie(response, _settings(request), SESSION_COOKIE, value, "/")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response

@router.post("/ui/logout", dependencies=[])
async def ui_logout(request: Request) -> Response:
    await require_csrf(request)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response

@router.get("/admin/login")
def admin_login_form(request: Request) -> Response:
    return HTMLResponse(_ADMIN_LOGIN_HTML.format(error=""),
                        headers={"Cache-Control": "no-store"})

@router.post("/admin/login")
def admin_login(request: Request, token: str = Form("")) -> Response:
    """Sign an operator in with an admin-scope API token (the cookie names the token id,
    never the token)."""

    store = request.app.state.service.store
    record = store.token_by_hash(verbs.hash_token(token)) if token else None
    if record is None or not record.active or "admin" not in record.scopes:
        html = _ADMIN_LOGIN_HTML.format(
            error='<p role="alert">That is not a valid admin token.</p>')
        return HTMLResponse(html, status_code=401)
    value = _serializer(_settings(request), _ADMIN_SALT).dumps(
        {"t": record.token_id, "n": secrets.token_urlsafe(16)})
    response = RedirectResponse("/admin", status_code=303)
    _set_cookie(response, _settings(request), ADMIN_COOKIE, value, "/")
    return response

@router.post("/admin/logout")
async def admin_logout(request: Request) -> Response:
    await require_csrf(request)
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(ADMIN_COOKIE, path="/")
    return response
