"""Who may call what: every ``/v1`` route of the published OpenAPI refuses a missing token
(401), a token without its scope (403) and another user's token (403); API tokens are
stored as hashes and revocable; user tokens expire and cannot be forged; page sessions are
HttpOnly SameSite=Strict cookies; forms need the CSRF token."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine import commands
from engine.commands.service import hash_token
from engine.errors import RegistryError
from engine.serve.auth import mint_user_token, verify_user_token
from engine.serve.errors import ApiError

from .api_kit import Api, make_api


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    api = make_api(tmp_path_factory.mktemp("auth"))
    dep = api.deployment("d-alice")
    api.finish(api.call("POST", "/v1/users/alice/connect",
                        json={"url": dep.url, "deploy_key": dep.key}))
    api.alice_job = api.service.store.list_jobs("alice")[0].job_id  # type: ignore[attr-defined]
    yield api
    api.fleet.close()


def _routes() -> list[tuple[str, str, str]]:
    """(method, path template, scope) of every /v1 operation in the OpenAPI."""

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        api = make_api(Path(tmp))
        schema = api.client.get("/openapi.json").json()
        api.fleet.close()
    out = []
    for path, ops in schema["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            tag = (op.get("tags") or ["settings"])[0]
            out.append((method.upper(), path, {"data": "data", "admin": "admin",
                                               "jobs": "settings"}.get(tag, "settings")))
    return sorted(out)


ROUTES = _routes()


def test_the_route_list_covers_the_api() -> None:
    paths = {p for _, p, _ in ROUTES}
    assert {"/v1/users/{user_id}", "/v1/users/{user_id}/run", "/v1/jobs/{job_id}/events",
            "/v1/fleet", "/v1/credentials/test", "/v1/rollouts"} <= paths
    assert len(ROUTES) >= 17


def _url(api: Api, path: str, user: str = "alice") -> str:
    return path.replace("{user_id}", user).replace("{job_id}", api.alice_job)  # type: ignore[attr-defined]


def _send(api: Api, method: str, url: str, headers: dict[str, str]) -> Any:
    return api.client.request(method, url, headers=headers,
                              json={} if method in ("POST", "PUT") else None)


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
def test_missing_and_invalid_tokens_are_401(served: Api, method: str, path: str,
                                            scope: str) -> None:
    for headers in ({}, {"Authorization": "Bearer byod_not-a-token"},
                    {"Authorization": "Bearer forged.user.token"},
                    {"Authorization": "Basic abc"}):
        r = _send(served, method, _url(served, path), headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["error"]["code"] in ("unauthenticated", "invalid_token")


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
def test_a_token_without_the_scope_is_403(served: Api, method: str, path: str,
                                          scope: str) -> None:
    wrong = "data" if scope != "data" else "settings"
    r = _send(served, method, _url(served, path), served.auth(wrong))
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
def test_another_user_s_token_is_403(served: Api, method: str, path: str, scope: str) -> None:
    url = _url(served, path)
    if path == "/v1/credentials/test":
        r = served.client.post(url, headers=served.user_auth("mallory"), json={
            "url": "https://x.convex.cloud", "deploy_key": "prod:x|" + "ab" * 20,
            "user_id": "alice"})
    else:
        r = _send(served, method, url, served.user_auth("mallory"))
    assert r.status_code == 403, r.text


def test_a_user_token_works_on_its_own_settings_routes_only(served: Api) -> None:
    mine = served.user_auth("alice")
    assert served.client.get("/v1/users/alice", headers=mine).status_code == 200
    assert served.client.get(f"/v1/jobs/{served.alice_job}",  # type: ignore[attr-defined]
                             headers=mine).status_code == 200
    r = served.client.post("/v1/users/alice/run", headers=mine,
                           json={"kind": "query", "path": "notes:listForUser", "args": {}})
    assert r.status_code == 403  # the data plane is the backend's (data scope)
    r = served.client.post("/v1/users/alice/page-token", headers=mine)
    assert r.status_code == 403  # only the backend mints page tokens


def test_revoked_tokens_are_refused_and_only_hashes_are_stored(tmp_path: Path) -> None:
    api = make_api(tmp_path)
    record, token = commands.create_token(api.ws, "ci", "admin")
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/v1/fleet", headers=headers).status_code == 200
    path = api.service.store.path
    raw = b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal"))
                   if p.exists())
    assert token.encode() not in raw and hash_token(token).encode() in raw
    commands.revoke_token(api.ws, record.token_id)
    assert api.client.get("/v1/fleet", headers=headers).status_code == 401
    listed = {t.token_id: t for t in commands.list_tokens(api.ws)}
    assert listed[record.token_id].revoked_at is not None
    assert listed[record.token_id].last_used_at is not None
    with pytest.raises(RegistryError, match="unknown scope 'root'"):
        commands.create_token(api.ws, "x", "settings,root")
    with pytest.raises(RegistryError, match="no API token with id"):
        commands.revoke_token(api.ws, "nope")
    api.fleet.close()


def test_user_tokens_expire_and_cannot_be_forged(served: Api) -> None:
    settings = served.settings
    token = mint_user_token(settings, "alice")
    assert verify_user_token(settings, token) == "alice"
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    with pytest.raises(ApiError, match="not valid"):
        verify_user_token(settings, tampered)
    other = settings.model_copy(update={"secret": type(settings.secret)("z" * 40)})
    with pytest.raises(ApiError, match="not valid"):
        verify_user_token(other, token)
    short = settings.model_copy(update={"user_token_ttl_s": 1.0})
    old = mint_user_token(short, "alice")
    time.sleep(2.1)
    with pytest.raises(ApiError, match="expired"):
        verify_user_token(short, old)


def test_page_login_sets_a_strict_httponly_cookie(served: Api) -> None:
    client = TestClient(served.app, follow_redirects=False)
    r = client.get("/ui/login", params={"token": mint_user_token(served.settings, "alice")})
    assert r.status_code == 303 and r.headers["location"] == "/ui/settings"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and re.search(r"SameSite=strict", cookie, re.I)
    assert "alice" not in cookie.split(";")[0] or "." in cookie  # signed, not a bare id
    bad = client.get("/ui/login", params={"token": "forged"})
    assert bad.status_code == 401


def test_forms_need_the_csrf_token(served: Api) -> None:
    client = TestClient(served.app, follow_redirects=False)
    client.get("/ui/login", params={"token": mint_user_token(served.settings, "alice")})
    assert client.post("/ui/logout", data={}).status_code == 403
    assert client.post("/ui/logout", data={"csrf_token": "0" * 64}).status_code == 403
    from engine.serve.auth import csrf_token

    class _Req:  # csrf_token reads only the cookies, the path and the app's settings
        cookies = dict(client.cookies)
        app = served.app

        class url:
            path = "/ui/settings"

    token = csrf_token(_Req())  # type: ignore[arg-type]
    assert token
    assert client.post("/ui/logout", data={"csrf_token": token}).status_code == 303


def test_admin_login_needs_an_admin_token(served: Api) -> None:
    client = TestClient(served.app, follow_redirects=False)
    assert client.get("/admin/login").status_code == 200
    r = client.post("/admin/login", data={"token": served.tokens["settings"]})
    assert r.status_code == 401
    r = client.post("/admin/login", data={"token": served.tokens["admin"]})
    assert r.status_code == 303 and r.headers["location"] == "/admin"
    assert served.tokens["admin"] not in r.headers["set-cookie"]


def test_the_fleet_s_reserved_user_id_gets_no_user_token(served: Api) -> None:
    from engine.commands.service import mint_user_token as sign

    r = served.client.post("/v1/users/*/page-token", headers=served.auth("settings"))
    assert r.status_code == 422
    health = served.call("POST", "/v1/health/run").json()["job_id"]
    signed = sign(served.settings.secret, "*")  # even a correctly signed one
    r = served.client.get(f"/v1/jobs/{health}", headers={"Authorization": f"Bearer {signed}"})
    assert r.status_code == 401
    r = served.client.get(f"/v1/jobs/{health}", headers=served.user_auth("alice"))
    assert r.status_code == 403
    served.run_jobs()
