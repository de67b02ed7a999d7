"""The end-user pages (``/ui``) over an in-memory fleet, through FastAPI's TestClient: every
page renders with its elements, forms refuse a missing or wrong CSRF token, a user never
reaches another user's jobs, the whole connect → block → retry → disconnect path works
without scripts, and no page ever carries a deploy key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .pages_kit import Served, csrf_of, serve


@pytest.fixture()
def served(tmp_path: Path) -> Served:
    return serve(tmp_path)


def _keys(served: Served) -> list[str]:
    return [d.key for d in served.fleet.deployments.values()] + [served.fleet.key_hex]


def _assert_no_secret(served: Served) -> None:
    assert served.pages, "no page was recorded"
    for secret in _keys(served):
        for page in served.pages:
            assert secret not in page
            assert secret.split("|")[-1] not in page  # not even the key's secret half


def test_settings_page_for_a_new_user_has_the_connect_form(served: Served) -> None:
    c = served.login("alice")
    r = served.get(c, "/ui/settings")
    assert r.status_code == 200
    html = r.text
    assert "Connect your database" in html and "Before you start" in html
    for step in ("Create a project", "deployment URL", "generate a production deploy key"):
        assert step in html
    # every input labelled; the key masked with a show/hide toggle and where to find it
    assert '<label for="url">Deployment URL</label>' in html
    assert '<label for="deploy_key">Deploy key</label>' in html
    assert 'type="password" id="deploy_key"' in html and 'class="toggle-key"' in html
    assert "Where do I find the deploy key?" in html
    assert 'id="test-button"' in html and "Save &amp; Deploy" in html
    assert 'aria-live="polite"' in html
    # the page can be embedded (CSP frame-ancestors, not X-Frame-Options DENY), not cached
    assert "frame-ancestors" in r.headers["content-security-policy"]
    assert r.headers.get("x-frame-options") is None
    assert r.headers["cache-control"] == "no-store"
    # styles and scripts from the service, never inline
    assert "<script>" not in html and 'href="/static/serve.css"' in html
    assert served.client().get("/static/serve.js").status_code == 200


def test_pages_need_a_session(served: Served) -> None:
    c = served.client()
    for path in ("/ui/settings", "/ui/blocked", "/ui/disconnect"):
        assert c.get(path).status_code == 401
    r = c.get("/ui/login", params={"token": "forged.token.value"})
    assert r.status_code == 401 and "byod_session" not in r.headers.get("set-cookie", "")


@pytest.mark.parametrize("path", ["/ui/test", "/ui/connect", "/ui/update", "/ui/retry",
                                  "/ui/disconnect", "/ui/blocked/retry"])
def test_every_form_post_refuses_a_missing_or_wrong_csrf_token(served: Served, path: str) -> None:
    c = served.login("alice")
    data = {"url": "https://x.convex.cloud", "deploy_key": "prod:x|" + "a" * 64,
            "mode": "keep"}
    assert served.post(c, path, data=data).status_code == 403
    assert served.post(c, path, data={**data, "csrf_token": "0" * 64}).status_code == 403
    # another session's token is not this session's
    other = served.login("bob")
    token = csrf_of(served.get(other, "/ui/settings").text)
    assert served.post(c, path, data={**data, "csrf_token": token}).status_code == 403
    assert served.service.store.list_jobs() == []


def test_test_connection_inline_and_without_scripts(served: Served) -> None:
    dep = served.fleet.add_deployment("alice-own")
    c = served.login("alice")
    token = csrf_of(served.get(c, "/ui/settings").text)
    form = {"url": dep.url, "deploy_key": dep.key, "csrf_token": token}
    r = served.post(c, "/ui/test", data=form, headers={"accept": "application/json"})
    assert r.status_code == 200 and r.json()["ok"] is True, r.text
    assert "accepted the key" in r.json()["message"]
    # without scripts: the page again, the result inline, the URL echoed, the key not
    r = served.post(c, "/ui/test", data=form)
    assert r.status_code == 200 and "Connection works" in r.text
    assert f'value="{dep.url}"' in r.text and 'value=""' in r.text
    assert "paste it again" in r.text
    # a wrong key: the reason, nothing saved
    r = served.post(c, "/ui/test", data={**form, "deploy_key": dep.key[:-4] + "beef"},
                    headers={"accept": "application/json"})
    assert r.json()["ok"] is False and r.json()["message"].startswith("The test failed")
    assert served.service.store.find_user("alice") is None
    _assert_no_secret(served)


def test_bad_url_is_named_under_its_field(served: Served) -> None:
    c = served.login("alice")
    token = csrf_of(served.get(c, "/ui/settings").text)
    r = served.post(c, "/ui/test", data={"url": "http://example.com", "deploy_key":
                                         "prod:x|" + "a" * 64, "csrf_token": token})
    assert r.status_code == 422
    assert re.search(r'id="url"[^>]*aria-invalid="true"', r.text, re.S)
    assert re.search(r'<p class="field-error" id="url-error" *>[^<]*https', r.text)
    r = served.post(c, "/ui/connect", data={"url": "ftp://nope", "deploy_key": "k",
                                            "csrf_token": token},
                    headers={"accept": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "url"
    r = served.post(c, "/ui/test", data={"url": "", "deploy_key": "", "csrf_token": token},
                    headers={"accept": "application/json"})
    assert r.status_code == 422 and set(r.json()["errors"]) == {"url", "deploy_key"}


def test_save_and_deploy_then_status_block_retry_and_disconnect(served: Served) -> None:
    fleet = served.fleet
    dep = fleet.add_deployment("alice-own")
    c = served.login("alice")
    token = csrf_of(served.get(c, "/ui/settings").text)
    r = served.post(c, "/ui/connect", data={"url": dep.url, "deploy_key": dep.key,
                                            "csrf_token": token})
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/settings?job=")
    job_id = r.headers["location"].split("=", 1)[1]
    page = served.get(c, r.headers["location"]).text
    assert 'id="job"' in page and "Connecting your database" in page and "Waiting" in page
    assert served.run_jobs() == 1
    job = c.get(f"/ui/jobs/{job_id}").json()
    assert job["state"] == "succeeded" and job["finished"]
    names = [s["name"] for s in job["stages"]]
    assert {"testing", "deploying", "recording"} <= set(names)
    assert all(s["state"] == "done" for s in job["stages"])

    page = served.get(c, "/ui/settings").text
    head = served.service.head_version()
    assert re.search(r'id="status-badge">Connected<', page)
    assert f'id="instance-version">{head}<' in page
    assert 'id="migration-card"' in page and 'id="update"' in page
    assert 'id="disconnect-dialog"' in page and "Connect your database" not in page

    # the key is revoked and a health check blocks the user: the blocker screen
    dep.fault = "revoked"
    served.service.start_health()
    served.run_jobs()
    assert served.service.store.get_user("alice").connection_status == "error"
    page = served.get(c, "/ui/blocked").text
    assert "Your database is unavailable" in page and "Possible causes" in page
    assert "revoked or rotated" in page and 'id="retry-button"' in page
    assert "Still having issues?" not in page
    token = csrf_of(page)
    for attempt in range(1, 4):
        r = served.post(c, "/ui/blocked/retry", data={"csrf_token": token})
        assert r.status_code == 303
        page = served.get(c, r.headers["location"]).text
        assert "does not answer correctly" in page
        assert ("Still having issues?" in page) == (attempt >= 3), attempt
    dep.fault = None
    r = served.post(c, "/ui/blocked/retry", data={"csrf_token": token})
    page = served.get(c, r.headers["location"]).text
    assert "Your database is available" in page and "answered again" in page
    assert served.service.store.get_user("alice").connection_status == "connected"

    # disconnect: delete needs the typed word; migrate back needs main's bundle
    page = served.get(c, "/ui/disconnect").text
    for mode in ("keep", "migrate", "delete"):
        assert f'id="mode-{mode}"' in page
    r = served.post(c, "/ui/disconnect", data={"mode": "delete", "confirm": "yes",
                                               "csrf_token": token})
    assert r.status_code == 422 and 'id="confirm-error"' in r.text
    fleet.deploy_main()
    r = served.post(c, "/ui/disconnect", data={"mode": "migrate", "csrf_token": token})
    assert r.status_code == 303, r.text
    assert served.run_jobs() == 1
    job = c.get(f"/ui/jobs/{r.headers['location'].split('=', 1)[1]}").json()
    assert job["state"] == "succeeded", job
    assert served.service.store.get_user("alice").connection_status == "disconnected"
    page = served.get(c, "/ui/settings").text
    assert "Connect your database" in page and 'id="status-card"' not in page
    _assert_no_secret(served)


def test_delete_with_the_typed_confirmation(served: Served) -> None:
    served.fleet.connect_user("carol")
    c = served.login("carol")
    token = csrf_of(served.get(c, "/ui/settings").text)
    r = served.post(c, "/ui/disconnect", data={"mode": "delete", "confirm": "carol",
                                               "csrf_token": token})
    assert r.status_code == 303
    served.run_jobs()
    assert served.service.store.get_user("carol").connection_status == "disconnected"
    r = served.post(c, "/ui/disconnect", data={"mode": "bogus", "csrf_token": token})
    assert r.status_code == 422 and 'id="mode-error"' in r.text


def test_a_user_never_reaches_another_users_job(served: Served) -> None:
    served.fleet.connect_user("bob")
    bob = served.login("bob")
    token = csrf_of(served.get(bob, "/ui/settings").text)
    r = served.post(bob, "/ui/disconnect", data={"mode": "keep", "csrf_token": token})
    job_id = r.headers["location"].split("=", 1)[1]
    assert bob.get(f"/ui/jobs/{job_id}").status_code == 200
    alice = served.login("alice")
    for path in (f"/ui/jobs/{job_id}", f"/ui/jobs/{job_id}/events",
                 f"/ui/jobs/{job_id}/view", f"/ui/settings?job={job_id}"):
        r = served.get(alice, path)
        assert r.status_code == 404, (path, r.status_code)
        assert "bob" not in r.text
    assert served.get(alice, "/ui/jobs/job_doesnotexist").status_code == 404


def test_job_events_stream_until_the_job_finishes(served: Served) -> None:
    served.fleet.connect_user("dave")
    c = served.login("dave")
    token = csrf_of(served.get(c, "/ui/settings").text)
    r = served.post(c, "/ui/disconnect", data={"mode": "keep", "csrf_token": token})
    job_id = r.headers["location"].split("=", 1)[1]
    served.run_jobs()
    with c.stream("GET", f"/ui/jobs/{job_id}/events") as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        body = "".join(s.iter_text())
    events = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
    assert events and '"finished": true' in events[-1]
    page = served.get(c, f"/ui/jobs/{job_id}/view").text
    assert "Disconnecting your database" in page and "Done" in page


def test_a_closed_gate_shows_the_upsell(tmp_path: Path) -> None:
    served = serve(tmp_path, config={"availability": "premium"},
                   upgrade_url="https://app.example.com/upgrade")
    c = served.login("erin")
    page = served.get(c, "/ui/settings").text
    assert 'id="upsell"' in page and 'href="https://app.example.com/upgrade"' in page
    assert "Connect your database" not in page


def test_the_kill_switch_says_not_available(tmp_path: Path) -> None:
    served = serve(tmp_path, enabled=False)
    c = served.login("frank")
    page = served.get(c, "/ui/settings").text
    assert "Not available right now" in page and "Connect your database" not in page
    # an existing connection keeps its page
    served.fleet.connect_user("gina")
    page = served.get(served.login("gina"), "/ui/settings").text
    assert 'id="status-card"' in page


def test_credential_tests_are_rate_limited(tmp_path: Path) -> None:
    served = serve(tmp_path, credential_tests_per_minute=2)
    dep = served.fleet.add_deployment("hal-own")
    c = served.login("hal")
    token = csrf_of(served.get(c, "/ui/settings").text)
    form = {"url": dep.url, "deploy_key": dep.key, "csrf_token": token}
    json = {"accept": "application/json"}
    assert [served.post(c, "/ui/test", data=form, headers=json).status_code
            for _ in range(2)] == [200, 200]
    r = served.post(c, "/ui/test", data=form, headers=json)
    assert r.status_code == 429 and "too many" in r.json()["message"]
    r = served.post(c, "/ui/update", data=form)
    assert r.status_code == 429 and r.headers["retry-after"] and "Too many tests" in r.text
    # another user has their own budget
    other = served.login("ida")
    token = csrf_of(served.get(other, "/ui/settings").text)
    assert served.post(other, "/ui/test", data={**form, "csrf_token": token},
                       headers=json).status_code == 200
    _assert_no_secret(served)


def test_a_blocked_user_sees_why_from_the_settings_page(served: Served) -> None:
    served.fleet.add("jon", status="error", version="head", error="cannot connect: refused")
    page = served.get(served.login("jon"), "/ui/settings").text
    assert re.search(r'id="status-badge">Unavailable<', page)
    assert "cannot connect: refused" in page and 'href="/ui/blocked"' in page


def test_a_failed_deploy_shows_its_stage_and_connect_again_works(served: Served) -> None:
    dep = served.fleet.add_deployment("kim-own")
    dep.fault = "deploy_fails"
    c = served.login("kim")
    token = csrf_of(served.get(c, "/ui/settings").text)
    r = served.post(c, "/ui/connect", data={"url": dep.url, "deploy_key": dep.key,
                                            "csrf_token": token})
    job_id = r.headers["location"].split("=", 1)[1]
    served.run_jobs()
    job = c.get(f"/ui/jobs/{job_id}").json()
    assert job["state"] == "failed" and job["tone"] == "bad" and job["message"]
    assert job["stages"][-1]["state"] == "failed"
    page = served.get(c, f"/ui/settings?job={job_id}").text
    assert 'data-finished="true"' in page and 'data-state="failed"' in page
    assert 'id="retry-connect"' in page and 'id="status-badge">Setup failed<' in page
    assert "Schema validation failed" in page and 'id="why-blocked"' not in page
    dep.fault = None
    r = served.post(c, "/ui/retry", data={"csrf_token": token})
    assert r.status_code == 303
    served.run_jobs()
    assert served.service.store.get_user("kim").connection_status == "connected"
    _assert_no_secret(served)


def test_pages_are_framed_only_by_the_configured_app_origins(tmp_path: Path) -> None:
    alone = serve(tmp_path / "alone")
    page = alone.get(alone.login("ivy"), "/ui/settings")
    assert "frame-ancestors 'self'" in page.headers["content-security-policy"]
    assert "x-frame-options" not in page.headers  # the CSP decides, so the app can embed

    embedded = serve(tmp_path / "embedded", frame_ancestors=("https://app.example.com",))
    from fastapi.testclient import TestClient

    from engine.serve.auth import mint_user_token

    c = TestClient(embedded.app, base_url="https://testserver", follow_redirects=False,
                   headers={"accept": "text/html"})
    r = c.get("/ui/login", params={"token": mint_user_token(embedded.settings, "ivy")})
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"].lower()
    # inside a cross-site iframe the session cookie must be SameSite=None, hence Secure
    assert "samesite=none" in cookie and "secure" in cookie and "httponly" in cookie
    page = c.get("/ui/settings")
    assert page.status_code == 200, page.text
    assert ("frame-ancestors 'self' https://app.example.com"
            in page.headers["content-security-policy"])


def test_frame_ancestors_must_be_https_origins() -> None:
    from pydantic import ValidationError

    from engine.config import ServeConfig

    with pytest.raises(ValidationError, match="not an https origin"):
        ServeConfig(frame_ancestors=("http://app.example.com",))
    with pytest.raises(ValidationError, match="not an https origin"):
        ServeConfig(frame_ancestors=("https://app.example.com/settings",))
    assert ServeConfig(frame_ancestors=("https://app.example.com/",)).frame_ancestors == (
        "https://app.example.com",)
