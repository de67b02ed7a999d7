"""Who may call what on a local deployment, as on Convex: anonymous callers run public
functions, internal functions need the admin key, and user JWTs are verified against the
app's `auth.config.ts` providers (crates/authentication/src/lib.rs) so `ctx.auth` works."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from .conftest import needs_toolchain
from .fidelity_app import App, app, run

__all__ = ["app"]

pytestmark = [pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow, needs_toolchain,
              pytest.mark.timeout(240)]


def test_anonymous_callers_run_public_functions_only(app: App) -> None:
    public = run(app.dep, "query", "app:listUsers",
                 {"paginationOpts": {"numItems": 5, "cursor": None}}, auth=None)
    assert public.status_code == 200 and public.json()["status"] == "success"
    internal = run(app.dep, "query", "app:secret", auth=None).json()
    assert internal == {"status": "error", "errorMessage": "Could not find public function for 'app:secret'."}
    assert run(app.dep, "query", "app:secret").json()["value"] == "secret"
    assert run(app.dep, "query", "app:whoami", auth=None).json()["value"] is None


def test_user_token_gives_the_function_an_identity(app: App) -> None:
    token = app.idp.token("alice", email="alice@example.com", name="Alice", org="acme")
    body = run(app.dep, "query", "app:whoami", auth=token).json()
    assert body["status"] == "success", body
    identity = body["value"]
    assert identity["subject"] == "alice" and identity["issuer"] == app.idp.issuer
    assert identity["tokenIdentifier"] == f"{app.idp.issuer}|alice"
    assert identity["email"] == "alice@example.com" and identity["name"] == "Alice"
    assert identity["org"] == "acme"
    # A user may not run internal functions either.
    assert run(app.dep, "query", "app:secret", auth=token).json()["status"] == "error"


def test_refused_tokens_get_convex_codes(app: App) -> None:
    def refused(token: str) -> tuple[int, str, str]:
        r = run(app.dep, "query", "app:whoami", auth=token)
        return r.status_code, r.json()["code"], r.json()["message"]

    status, code, message = refused("not-a-jwt")
    assert (status, code) == (401, "InvalidAuthHeader") and "Could not parse JWT payload" in message
    status, code, message = refused(app.idp.token(audience="someone-else"))
    assert (status, code) == (401, "NoAuthProvider")
    assert f"OIDC(domain={app.idp.issuer}, app_id=byod-local-test)" in message
    assert refused(app.idp.token(issuer="https://elsewhere.example"))[1] == "NoAuthProvider"
    expired = app.idp.token(expires_in=-600)
    assert refused(expired)[:2] == (401, "Unauthenticated")
    forged = app.idp.token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    status, code, message = refused(forged)
    assert (status, code) == (401, "Unauthenticated") and "Could not verify OIDC token claim" in message


def test_admin_routes_still_need_the_admin_key(app: App) -> None:
    import httpx

    token = app.idp.token()
    r = httpx.post(f"{app.dep.url}/api/get_config_hashes", json={},
                   headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 401 and r.json()["code"] == "MissingAccessToken"
    basic = httpx.post(f"{app.dep.url}/api/query", json={"path": "app:whoami", "args": {}},
                       headers={"Authorization": "Basic abc"}, timeout=30)
    assert basic.status_code == 401
    assert basic.json() == {"code": "InvalidAuthHeader", "message": "Header must begin with `bearer `"}
