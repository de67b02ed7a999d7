"""The operator dashboard (``/admin``) over an in-memory fleet: only an admin session gets
in, totals and the fleet by version match the registry, users in error come first, the
filter works without scripts, the audit log shows, and the health and rollout buttons ask
for confirmation and refuse a missing CSRF token."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.commands.service import create_token

from .pages_kit import Served, csrf_of, serve


@pytest.fixture()
def served(tmp_path: Path) -> Served:
    s = serve(tmp_path)
    s.fleet.connect_user("alice")
    s.fleet.connect_user("bob", 1)
    s.fleet.connect_user("zoe", 1)
    s.fleet.add("carol", status="error", version="head", error="the deployment rejected the key")
    s.fleet.add("dan", status="disconnected", version=1)
    return s


def _rows(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<tr class="row-[a-z]+" data-user="([^"]+)" data-status="([a-z]+)"', html)


def test_only_an_admin_session_gets_in(served: Served) -> None:
    c = served.client()
    r = c.get("/admin/")
    assert r.status_code == 303 and r.headers["location"] == "/admin/login"
    _, token = create_token(served.ws, "app", "settings,data")
    r = c.post("/admin/login", data={"token": token})
    assert r.status_code == 401
    assert c.get("/admin/rollouts.json", headers={"accept": "application/json"}).status_code == 401
    # a user's page session is not an admin session
    user = served.login("alice")
    assert user.get("/admin/").status_code == 303


def test_totals_versions_failures_first_and_audit(served: Served) -> None:
    c = served.admin()
    r = served.get(c, "/admin/")
    assert r.status_code == 200, r.text
    html = r.text
    totals = dict(re.findall(r'data-total="([a-z_]+)"><span class="muted">[^<]*</span><b>(\d+)</b>',
                             html))
    assert totals == {"connected": "3", "error": "1", "pending_migrations": "2", "pending": "0",
                      "disconnected": "1", "users": "5"}
    rows = _rows(html)
    assert rows[0] == ("carol", "error")
    assert [u for u, _ in rows] == ["carol", "alice", "bob", "zoe", "dan"]
    head = served.service.head_version()
    v1 = served.ws.graph.resolve(1).id
    counts = dict(re.findall(r'<g class="node" data-id="([^"]+)" data-count="(\d+)"', html))
    assert counts[head] == "2" and counts[v1] == "2"
    assert len(counts) == len(served.ws.graph.topological_order())
    assert html.count('class="edge"') >= len(counts) - 1
    assert 'id="audit"' in html and "credentials_saved" in html and "connection_status" in html
    assert "frame-ancestors" in r.headers["content-security-policy"]
    for dep in served.fleet.deployments.values():
        assert dep.key not in html


def test_the_filter_works_without_scripts(served: Served) -> None:
    c = served.admin()
    assert _rows(served.get(c, "/admin/?status=error").text) == [("carol", "error")]
    assert [u for u, _ in _rows(served.get(c, "/admin/?q=o").text)] == ["carol", "bob", "zoe"]


def test_health_asks_for_confirmation_then_runs(served: Served) -> None:
    c = served.admin()
    token = csrf_of(served.get(c, "/admin/").text)
    assert served.post(c, "/admin/health", data={}).status_code == 403
    assert served.post(c, "/admin/health", data={"csrf_token": "0" * 64}).status_code == 403
    r = served.post(c, "/admin/health", data={"csrf_token": token})
    assert r.status_code == 200 and 'id="confirm"' in r.text and "(4)" in r.text
    assert served.service.store.list_jobs() == []
    served.fleet.deployment("alice").fault = "down"
    r = served.post(c, "/admin/health", data={"csrf_token": token, "confirmed": "yes"})
    assert r.status_code == 303 and r.headers["location"].startswith("/admin/?job=")
    live = c.get("/admin/rollouts.json").json()
    assert live["live"] is True and [j["state"] for j in live["jobs"]] == ["queued"]
    assert 'data-live="true"' in served.get(c, "/admin/").text
    assert served.run_jobs() == 1
    done = c.get("/admin/rollouts.json").json()
    assert done["live"] is False and done["jobs"][0]["state"] == "succeeded"
    html = served.get(c, r.headers["location"]).text
    assert re.search(r"The health job job_\w+ is finished", html)
    # alice's deployment is down now; carol's answers again, so the check unblocked her
    assert [u for u, s in _rows(html) if s == "error"] == ["alice"]
    assert ("carol", "connected") in _rows(html)
    assert re.search(r'<tr data-job="job_\w+" data-state="succeeded"><td><code>job_\w+</code></td>'
                     r'<td>health</td>', html)


def test_rollout_asks_for_confirmation_then_runs(served: Served) -> None:
    c = served.admin()
    html = served.get(c, "/admin/").text
    token = csrf_of(html)
    head = served.service.head_version()
    assert f'<option value="{head}">' in html
    r = served.post(c, "/admin/rollout", data={"csrf_token": token, "target": head})
    assert r.status_code == 200 and "2 of 3 connected deployment(s)" in r.text
    assert f'name="target" value="{head}"' in r.text
    r = served.post(c, "/admin/rollout", data={"csrf_token": token, "target": head,
                                               "confirmed": "yes"})
    assert r.status_code == 303
    assert served.run_jobs() == 1
    html = served.get(c, "/admin/").text
    assert re.search(r'<tr data-rollout="[^"]+">', html)
    rollouts = c.get("/admin/rollouts.json").json()["rollouts"]
    assert rollouts and rollouts[0]["target"] == head and rollouts[0]["status"] == "completed"
    assert rollouts[0]["total"] == rollouts[0]["done"] == 2  # the two behind the head
    assert "2 of 2 done" in html
    r = served.post(c, "/admin/rollout", data={"csrf_token": token, "target": "nope",
                                               "confirmed": "yes"})
    assert r.status_code == 422 and "nope" in r.text
