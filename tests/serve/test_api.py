"""The ``/v1`` API over an in-memory fleet (FastAPI's TestClient): credential tests that
write nothing, connect/retry/update/disconnect as jobs, status, access and the kill switch,
the blocker, the data plane's routing and typed refusals, immediate blocking, the fleet
overview, errors as JSON, and no secret in any response."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.ports.serve import Job

from .api_kit import Api, api_fixture, make_api  # noqa: F401 - the fixture

NOTES = {"kind": "query", "path": "notes:listForUser", "args": {"userId": "alice"}}


def connect(api: Api, user: str = "alice") -> tuple[object, dict]:
    dep = api.deployment(f"dep-{user}")
    job = api.finish(api.call("POST", f"/v1/users/{user}/connect",
                              json={"url": dep.url, "deploy_key": dep.key}))
    return dep, job


# -- credential tests -------------------------------------------------------------------------

def test_testing_unsaved_credentials_writes_nothing(api: Api) -> None:
    dep = api.deployment("fresh")
    before = api.service.store.list_users()
    r = api.call("POST", "/v1/credentials/test", json={"url": dep.url, "deploy_key": dep.key})
    assert r.status_code == 200 and r.json()["ok"] is True
    assert r.json()["state"] == "empty"
    dep.fault = "revoked"
    r = api.call("POST", "/v1/credentials/test", json={"url": dep.url, "deploy_key": dep.key})
    assert r.status_code == 200
    assert (r.json()["ok"], r.json()["state"]) == (False, "unauthorized")
    assert api.service.store.list_users() == before
    assert api.service.store.list_jobs() == []


@pytest.mark.parametrize(("body", "field"), [
    ({"url": "http://example.com", "deploy_key": "prod:x|" + "a1" * 20}, "url"),
    ({"url": "https://x.convex.cloud", "deploy_key": "nope"}, "deploy_key"),
    ({"url": "https://x.convex.cloud"}, "deploy_key"),
    ({"url": "https://x.convex.cloud", "deploy_key": "k", "extra": 1}, "extra"),
])
def test_validation_errors_name_the_field_and_never_echo_input(api: Api, body: dict,
                                                               field: str) -> None:
    r = api.call("POST", "/v1/credentials/test", json=body)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["field"] == field
    assert "a1a1a1" not in r.text and "nope" not in r.text


def test_credential_tests_are_rate_limited_per_token(tmp_path: Path) -> None:
    served = make_api(tmp_path, credential_tests_per_minute=3,
                      credential_tests_per_token_per_minute=4)
    dep = served.deployment("d")
    body = {"url": dep.url, "deploy_key": dep.key}
    codes = [served.call("POST", "/v1/credentials/test", json=body).status_code
             for _ in range(5)]
    assert codes == [200, 200, 200, 200, 429]
    r = served.call("POST", "/v1/credentials/test", json=body)
    assert int(r.headers["Retry-After"]) >= 1 and r.json()["error"]["code"] == "rate_limited"
    # another token has its own budget, but one user's budget is shared by every token
    assert served.call("POST", "/v1/credentials/test", json=body, who="settings"
                       ).status_code == 200
    user = {**body, "user_id": "bob"}
    codes = [served.call("POST", "/v1/credentials/test", json=user, who=None,
                         headers=served.user_auth("bob")).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    served.fleet.close()


# -- connect, status, access ----------------------------------------------------------------

def test_connect_job_then_status(api: Api) -> None:
    assert api.call("GET", "/v1/users/alice").json()["connection_status"] == "none"
    dep, job = connect(api)
    assert job["state"] == "succeeded", job
    stages = [e["stage"] for e in job["progress"]]
    assert stages[:2] == ["validating", "testing"] and stages[-1] == "done"
    status = api.call("GET", "/v1/users/alice").json()
    assert status["connection_status"] == "connected"
    assert status["schema_version"] == status["head_version"]
    assert status["deployment_status"] == "deployed" and status["job"] is None
    assert status["last_schema_deploy"] >= job["created_at"]
    assert dep.version == status["head_version"]


def test_a_second_job_for_the_same_user_is_refused_while_one_is_open(api: Api) -> None:
    dep = api.deployment("d")
    body = {"url": dep.url, "deploy_key": dep.key}
    first = api.call("POST", "/v1/users/alice/connect", json=body)
    assert first.status_code == 202
    again = api.call("POST", "/v1/users/alice/retry")
    assert again.status_code == 409
    assert again.json()["error"]["job_id"] == first.json()["job_id"]
    api.run_jobs()


def test_a_failing_connect_job_fails_with_a_sanitized_error(api: Api) -> None:
    dep = api.deployment("d")
    dep.fault = "down"
    job = api.finish(api.call("POST", "/v1/users/alice/connect",
                              json={"url": dep.url, "deploy_key": dep.key}))
    assert job["state"] == "failed" and "connection refused" in job["error"]
    status = api.call("GET", "/v1/users/alice").json()
    assert status["connection_status"] == "pending"
    dep.fault = None
    job = api.finish(api.call("POST", "/v1/users/alice/retry"))
    assert job["state"] == "succeeded"
    assert api.call("GET", "/v1/users/alice").json()["connection_status"] == "connected"


def test_kill_switch_refuses_new_connections_only(api: Api) -> None:
    connect(api, "alice")
    api.service.enabled = False
    dep = api.deployment("d2")
    r = api.call("POST", "/v1/users/bob/connect", json={"url": dep.url, "deploy_key": dep.key})
    assert r.status_code == 503 and r.json()["error"]["code"] == "connections_disabled"
    assert api.service.store.find_user("bob") is None
    assert api.call("GET", "/v1/users/bob/access").json()["can_connect"] is False
    access = api.call("GET", "/v1/users/alice/access").json()
    assert access["connected"] and access["can_connect"]
    assert api.call("POST", "/v1/users/alice/run", json=NOTES).status_code == 200
    assert api.call("POST", "/v1/users/alice/retry").status_code == 202


def test_premium_gate_refuses_a_user_not_entitled(tmp_path: Path) -> None:
    served = make_api(tmp_path)
    served.ws.config = served.ws.config.model_copy(update={"availability": "premium"})
    dep = served.deployment("d")
    r = served.call("POST", "/v1/users/carol/connect",
                    json={"url": dep.url, "deploy_key": dep.key})
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_entitled"
    access = served.call("GET", "/v1/users/carol/access").json()
    assert (access["entitled"], access["availability"]) == (False, "premium")
    served.fleet.close()


def test_update_credentials_tests_first_and_keeps_the_old_ones_on_failure(api: Api) -> None:
    old, _ = connect(api)
    new = api.deployment("new")
    new.fault = "revoked"
    before = api.service.store.get_user("alice")
    r = api.call("PUT", "/v1/users/alice/credentials",
                 json={"url": new.url, "deploy_key": new.key})
    assert r.status_code == 422 and r.json()["error"]["code"] == "credentials_failed"
    assert api.service.store.get_user("alice").key_ct == before.key_ct
    new.fault = None
    job = api.finish(api.call("PUT", "/v1/users/alice/credentials",
                              json={"url": new.url, "deploy_key": new.key}))
    assert job["state"] == "succeeded", job
    assert api.service.store.get_user("alice").key_ct != before.key_ct
    assert api.ws.vault.target_for(api.service.store.get_user("alice")).url == new.url


# -- blocking and the data plane --------------------------------------------------------------

def test_routed_call_goes_to_the_user_deployment_or_main(api: Api) -> None:
    api.fleet.main._insert("notes", {"userId": "bob", "title": "t", "body": "on main",
                                     "createdAt": 1.0, "updatedAt": 1.0}, validate=False)
    r = api.call("POST", "/v1/users/bob/run",
                 json={**NOTES, "args": {"userId": "bob"}})
    assert r.status_code == 200 and r.json()["value"][0]["body"] == "on main"
    dep, _ = connect(api)
    r = api.call("POST", "/v1/users/alice/run", json={
        "kind": "mutation", "path": "notes:create",
        "args": {"userId": "alice", "title": "x", "body": "mine"}})
    assert r.status_code == 200, r.text
    assert [d["body"] for d in dep.tables["notes"].values()] == ["mine"]
    assert not [d for d in api.fleet.main.tables["notes"].values() if d["userId"] == "alice"]


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"kind": "query", "path": "notes:nope", "args": {}}, 404, "unknown_function"),
    ({"kind": "query", "path": "byod:version", "args": {}}, 404, "unknown_function"),
    ({"kind": "mutation", "path": "notes:listForUser", "args": {}}, 400, "wrong_kind"),
    ({"kind": "delete", "path": "notes:listForUser", "args": {}}, 422, "invalid_request"),
])
def test_data_plane_typed_refusals(api: Api, body: dict, status: int, code: str) -> None:
    connect(api)
    r = api.call("POST", "/v1/users/alice/run", json=body)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code)


def test_a_routed_call_to_a_revoked_key_blocks_at_once_and_retry_unblocks(api: Api) -> None:
    dep, _ = connect(api)
    assert api.call("GET", "/v1/users/alice/blocker").json()["blocked"] is False
    dep.fault = "revoked"
    r = api.call("POST", "/v1/users/alice/run", json=NOTES)
    assert r.status_code == 423
    error = r.json()["error"]
    assert error["code"] == "blocked" and error["blocked_now"] is True
    assert "blocked" in error["message"]
    blocker = api.call("GET", "/v1/users/alice/blocker").json()
    assert blocker["blocked"] and blocker["retry_allowed"] and "unauthorized" in blocker["reason"]
    assert blocker["since"] is not None
    # the next call is refused before reaching the deployment
    calls = len(dep.calls)
    r = api.call("POST", "/v1/users/alice/run", json=NOTES)
    assert r.status_code == 423 and len(dep.calls) == calls
    notice = api.call("GET", "/v1/users/alice/notice").json()["notice"]
    # the monitor's notice: what happened and since when, never a URL or key
    assert notice["code"] == "blocked" and notice["cause"] == "unauthorized"
    assert notice["since"] and "refused the app's deploy key" in notice["message"]
    # retries while still broken count; then the fix unblocks
    for n in range(3):
        retry = api.call("POST", "/v1/users/alice/blocker/retry").json()
        assert retry["blocked"] and retry["failed_retries"] == n + 1
    assert retry["needs_help"] is True
    dep.fault = None
    retry = api.call("POST", "/v1/users/alice/blocker/retry").json()
    assert retry["blocked"] is False and retry["test"]["ok"] is True
    assert api.call("POST", "/v1/users/alice/run", json=NOTES).status_code == 200


def test_an_unreachable_deployment_blocks_too_but_main_failures_do_not(api: Api) -> None:
    dep, _ = connect(api)
    dep.fault = "down"
    assert api.call("POST", "/v1/users/alice/run", json=NOTES).status_code == 423
    assert api.service.store.get_user("alice").connection_status == "error"
    api.fleet.main.fault = "down"
    r = api.call("POST", "/v1/users/bob/run", json={**NOTES, "args": {"userId": "bob"}})
    assert r.status_code == 502 and r.json()["error"]["code"] == "main_unavailable"


# -- disconnect ------------------------------------------------------------------------------

def test_disconnect_delete_needs_confirm(api: Api) -> None:
    connect(api)
    r = api.call("POST", "/v1/users/alice/disconnect", json={"mode": "delete"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "confirm"
    r = api.call("POST", "/v1/users/alice/disconnect", json={"mode": "later"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "mode"


@pytest.mark.parametrize("mode", ["keep", "migrate", "delete"])
def test_disconnect_job(api: Api, mode: str) -> None:
    dep, _ = connect(api)
    api.call("POST", "/v1/users/alice/run", json={
        "kind": "mutation", "path": "notes:create",
        "args": {"userId": "alice", "title": "x", "body": "mine"}})
    job = api.finish(api.call("POST", "/v1/users/alice/disconnect",
                              json={"mode": mode, "confirm": mode == "delete"}))
    assert job["state"] == "succeeded", job
    assert job["result"]["status"] == "disconnected"
    assert api.call("GET", "/v1/users/alice").json()["connection_status"] == "disconnected"
    on_main = [d for d in api.fleet.main.tables.get("notes", {}).values()
               if d["userId"] == "alice"]
    assert len(on_main) == (1 if mode == "migrate" else 0)
    assert len(dep.tables.get("notes", {})) == (0 if mode == "delete" else 1)
    # content now routes to main
    r = api.call("POST", "/v1/users/alice/run", json=NOTES)
    assert r.status_code == 200 and len(r.json()["value"]) == len(on_main)


def test_a_call_while_a_disconnect_moves_data_is_told_to_retry_later(api: Api) -> None:
    connect(api)
    api.service.store.save_progress("disconnect", "alice", {"state": "running"})
    r = api.call("POST", "/v1/users/alice/run", json=NOTES)
    assert r.status_code == 503 and r.json()["error"]["code"] == "migrating"
    assert int(r.headers["Retry-After"]) > 0


# -- operators, jobs, errors -----------------------------------------------------------------

def test_fleet_overview_puts_failures_first(api: Api) -> None:
    connect(api, "alice")
    dep, _ = connect(api, "bob")
    dep.fault = "down"
    api.call("POST", "/v1/users/bob/run", json={**NOTES, "args": {"userId": "bob"}})
    fleet = api.call("GET", "/v1/fleet").json()
    assert [u["user_id"] for u in fleet["users"]] == ["bob", "alice"]
    assert fleet["totals"]["connected"] == 1 and fleet["totals"]["error"] == 1
    head = [v for v in fleet["versions"] if v["id"] == fleet["head_version"]]
    assert head[0]["count"] == 2 and head[0]["head"]
    assert any(e["event"] == "routing_blocked" for e in fleet["audit"])


def test_health_run_and_rollout_jobs(api: Api) -> None:
    dep, _ = connect(api)
    dep.fault = "down"
    job = api.finish(api.call("POST", "/v1/health/run"))
    assert job["state"] == "succeeded" and job["result"]["unhealthy"] == ["alice"]
    r = api.call("POST", "/v1/rollouts", json={"to": "head"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "confirm"
    job = api.finish(api.call("POST", "/v1/rollouts", json={"to": "head", "confirm": True}))
    assert job["state"] == "succeeded", job


def test_job_events_stream_progress_then_done(api: Api) -> None:
    dep = api.deployment("d")
    r = api.call("POST", "/v1/users/alice/connect", json={"url": dep.url, "deploy_key": dep.key})
    api.run_jobs()
    with api.client.stream("GET", f"/v1/jobs/{r.json()['job_id']}/events",
                           headers=api.auth()) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    assert "event: progress" in text and text.rstrip().splitlines()[-2] == "event: done"


def test_unknown_routes_users_and_jobs_are_json_errors(api: Api) -> None:
    r = api.call("GET", "/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = api.call("GET", "/v1/jobs/job_missing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_job"
    connect(api, "alice")
    r = api.call("POST", "/v1/users/alicee/retry")
    assert r.status_code == 404 and "alice'" not in r.text  # no "did you mean" other users


def test_health_metrics_and_openapi(api: Api) -> None:
    connect(api)
    assert api.client.get("/healthz").json()["ok"] is True
    metrics = api.client.get("/metrics").text
    assert 'byod_users{status="connected"} 1.0' in metrics
    assert "byod_http_requests_total" in metrics and "byod_jobs_finished_total" in metrics
    api.call("POST", "/v1/users/alice/run", json=NOTES)
    api.call("POST", "/v1/users/alice/run", json={**NOTES, "path": "notes:nope"})
    metrics = api.client.get("/metrics").text
    assert 'byod_dataplane_calls_total{outcome="user"} 1.0' in metrics
    assert 'byod_dataplane_calls_total{outcome="refused"} 1.0' in metrics
    schema = api.client.get("/openapi.json").json()
    assert "/v1/users/{user_id}/run" in schema["paths"]
    assert "UserStatus" in schema["components"]["schemas"]


def test_job_record_has_no_credentials(api: Api) -> None:
    dep, job = connect(api)
    stored: Job | None = api.service.store.get_job(job["job_id"])
    assert stored is not None
    assert dep.key not in repr(stored) and dep.url not in repr(stored)


def test_no_response_carries_a_secret(api: Api) -> None:
    dep, _ = connect(api)
    dep.fault = "revoked"
    api.call("POST", "/v1/users/alice/run", json=NOTES)
    api.call("POST", "/v1/users/alice/blocker/retry")
    api.call("GET", "/v1/users/alice")
    api.call("GET", "/v1/fleet")
    api.call("POST", "/v1/credentials/test", json={"url": dep.url, "deploy_key": dep.key})
    secret_part = dep.key.split("|", 1)[1]
    for body in api.bodies:
        assert secret_part not in body
        assert api.fleet.key_hex not in body and SECRET_PART not in body
    for token in api.tokens.values():
        assert all(token not in body for body in api.bodies)


SECRET_PART = "api-test-signing-secret"


@pytest.mark.parametrize("user_id", ["%0A", "a%00b", "x" * 300, "%F0%9F%98%80", "*"])
def test_odd_user_ids_are_refused_never_a_5xx(api: Api, user_id: str) -> None:
    creds = {"url": "https://a.convex.cloud", "deploy_key": "prod:a|" + "ab" * 20}
    for method, path, body in [
            ("GET", "/v1/users/{u}", None), ("GET", "/v1/users/{u}/blocker", None),
            ("POST", "/v1/users/{u}/retry", None), ("POST", "/v1/users/{u}/connect", creds),
            ("PUT", "/v1/users/{u}/credentials", creds),
            ("POST", "/v1/users/{u}/disconnect", {"mode": "keep"}),
            ("POST", "/v1/users/{u}/page-token", None), ("POST", "/v1/users/{u}/run", NOTES)]:
        r = api.call(method, path.replace("{u}", user_id), json=body)
        assert r.status_code < 500, (method, path, r.text)
        assert "error" in r.json() or r.status_code == 200
