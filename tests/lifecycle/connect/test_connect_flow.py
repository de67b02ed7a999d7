"""The connect flow against in-memory fake deployments: stages, failures, retry,
re-connect, the premium gate, leases, test-connection, and no secret anywhere."""

from __future__ import annotations

import pytest

from engine.bundle.compiler import compile_version
from engine.config import EngineConfig
from engine.errors import (
    DeployFailed,
    DeploymentTimeout,
    DeploymentUnauthorized,
    DeploymentUnreachable,
    InvalidCredentials,
    LeaseHeld,
    NotEntitled,
    RegistryError,
    SchemaValidationFailed,
)
from engine.lifecycle import connect as conn
from lifecycle.connect.fakes import FixedConnector

URL = "https://secret-deployment-4711.convex.cloud"
KEY = "prod:secret-deployment-4711|a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6"
URL2 = "https://other-deployment-99.convex.cloud"
KEY2 = "prod:other-deployment-99|ffeeddccbbaa00998877665544332211ffeeddcc"


@pytest.fixture()
def run(store, vault, config, fleet, head):
    """connect() with the fixtures filled in; records the stages it reports."""

    stages: list[str] = []

    def _run(user="u1", url=URL, key=KEY, **kw):
        kw.setdefault("config", config)
        return conn.connect(user, url, key, store=store, vault=vault,
                            connector=fleet, versions=head,
                            on_stage=lambda _u, s: stages.append(s), **kw)

    _run.stages = stages  # type: ignore[attr-defined]
    return _run


def _progress(store, user="u1") -> list[str]:
    return [e.detail["deployment_progress"] for e in store.audit_log(user, limit=1000)
            if e.event == "deployment" and "deployment_progress" in e.detail]


def test_happy_path(run, store, vault, fleet, head, config) -> None:
    dep = fleet.add(URL, KEY)
    user = run()
    bundle = compile_version(head, config)
    assert run.stages == ["validating", "testing", "saving", "deploying", "recording", "done"]
    assert (user.connection_status, user.deployment_status) == ("connected", "deployed")
    assert (user.schema_version, user.schema_fingerprint) == (head.id, bundle.fingerprint)
    assert user.deployment_progress == "done" and user.connection_error is None
    assert user.last_connection_test is not None
    assert dep.bundle == (head.id, bundle.fingerprint, "version") and dep.deploys == 1
    assert dep.recorded == [{"version": head.id, "fingerprint": bundle.fingerprint,
                             "kind": "version"}]
    target = vault.target_for(store.get_user("u1"))
    assert (target.url, target.admin_key) == (URL, KEY)
    assert _progress(store) == ["deploying", "recording", "done"]
    assert all(a.closed for a in fleet.adapters)
    assert store.current_lease("u1") is None  # released


@pytest.mark.parametrize("url, key, match", [
    ("http://secret-deployment-4711.convex.cloud", KEY, "plain http"),
    ("https://secret-deployment-4711.convex.cloud?key=1", KEY, "query"),
    (URL, "secret-deployment-4711", "no '\\|'"),
    (URL, "prod:secret-deployment-4711|abc", "too short"),
])
def test_bad_input_touches_nothing(run, store, fleet, url, key, match) -> None:
    fleet.add(URL, KEY)
    with pytest.raises(InvalidCredentials, match=match) as err:
        run(url=url, key=key)
    assert "secret-deployment" not in str(err.value)
    assert store.find_user("u1") is None and fleet.adapters == []


def test_bad_input_leaves_an_existing_row_as_it_was(run, store, fleet) -> None:
    fleet.add(URL, KEY)
    before = run()
    with pytest.raises(InvalidCredentials):
        run(url="http://nope.example")
    assert store.get_user("u1") == before


@pytest.mark.parametrize("fault, error", [("unreachable", DeploymentUnreachable),
                                          ("timeout", DeploymentTimeout),
                                          ("revoked", DeploymentUnauthorized)])
def test_test_stage_failures_save_nothing(run, store, fleet, fault, error) -> None:
    fleet.add(URL, KEY).fault = fault
    with pytest.raises(error):
        run()
    assert store.find_user("u1") is None
    assert run.stages == ["validating", "testing"]


def test_wrong_key_is_unauthorized(run, fleet) -> None:
    fleet.add(URL, KEY)
    with pytest.raises(DeploymentUnauthorized) as err:
        run(key=KEY2)
    assert KEY2 not in str(err.value) and KEY2.split("|")[1] not in str(err.value)


def test_unknown_host_is_unreachable(run, store) -> None:
    with pytest.raises(DeploymentUnreachable):
        run()
    assert store.find_user("u1") is None


def test_test_failure_on_a_pending_row_records_the_reason(run, store, fleet) -> None:
    store.set_entitled("u1", True)  # a row exists, still pending
    fleet.add(URL, KEY).fault = "unreachable"
    with pytest.raises(DeploymentUnreachable):
        run()
    user = store.get_user("u1")
    assert user.connection_status == "pending" and user.url_ct == ""
    assert user.connection_error.startswith("testing: ")
    assert user.deployment_progress == "failed at testing"


def test_deploy_failure_leaves_error_then_retry_succeeds(run, store, vault, fleet, head,
                                                         config) -> None:
    dep = fleet.add(URL, KEY)
    dep.fault = "deploy_fails"
    with pytest.raises(SchemaValidationFailed):
        run()
    user = store.get_user("u1")
    assert (user.connection_status, user.deployment_status) == ("error", "failed")
    assert user.deployment_progress == "failed at deploying"
    assert user.connection_error.startswith("deploying: ") and "Schema validation" in user.connection_error
    assert vault.target_for(user).url == URL  # saved, so a retry needs no key

    dep.fault = None
    stages: list[str] = []
    user = conn.retry_connect("u1", store=store, vault=vault, config=config,
                              connector=fleet, versions=head,
                              on_stage=lambda _u, s: stages.append(s))
    assert stages == ["validating", "testing", "deploying", "recording", "done"]
    assert (user.connection_status, user.deployment_status, user.schema_version) == (
        "connected", "deployed", head.id)
    assert user.connection_error is None and dep.deploys == 1


def test_retry_without_saved_credentials_is_a_clear_error(store, vault, config, fleet) -> None:
    with pytest.raises(RegistryError, match="no BYOD configuration"):
        conn.retry_connect("ghost", store=store, vault=vault, config=config,
                           connector=fleet)
    store.set_entitled("u2", True)
    with pytest.raises(RegistryError, match="no saved credentials"):
        conn.retry_connect("u2", store=store, vault=vault, config=config,
                           connector=fleet)


def test_post_deploy_verification_catches_a_deploy_that_did_not_take(run, store, fleet) -> None:
    fleet.add(URL, KEY).fault = "ignore_deploy"
    with pytest.raises(DeployFailed, match="the deploy did not take"):
        run()
    assert store.get_user("u1").connection_status == "error"


def test_reconnect_updates_in_place_without_redeploying(run, store, vault, fleet) -> None:
    dep = fleet.add(URL, KEY)
    first = run()
    second = run()
    assert dep.deploys == 1 and len(dep.recorded) == 1  # already on head: nothing to redo
    assert [u.user_id for u in store.list_users()] == ["u1"]
    assert second.created_at == first.created_at
    assert second.url_ct != first.url_ct  # fresh nonce, same plaintext
    # new credentials (the user rotated their deploy key) replace the old ones in place
    dep.key = KEY2
    third = run(key=KEY2)
    assert vault.target_for(third).admin_key == KEY2
    assert len(store.list_users()) == 1 and third.connection_status == "connected"
    saved = [e.detail["replaced"] for e in store.audit_log("u1") if e.event == "credentials_saved"]
    assert saved == [False, True, True]


def test_reconnect_to_a_new_deployment_deploys_there(run, store, fleet) -> None:
    fleet.add(URL, KEY)
    run()
    other = fleet.add(URL2, KEY2)
    user = run(url=URL2, key=KEY2)
    assert other.deploys == 1 and user.connection_status == "connected"


def test_deployment_on_another_byod_version_is_recorded_not_overwritten(run, store, fleet,
                                                                        head) -> None:
    dep = fleet.add(URL, KEY)
    dep.bundle = ("0001_initial", "f" * 64, "version")
    user = run()
    assert dep.deploys == 0
    assert (user.connection_status, user.schema_version, user.schema_fingerprint) == (
        "connected", "0001_initial", "f" * 64)
    assert head.id in user.deployment_progress and "rollout" in user.deployment_progress


def test_head_with_drifted_fingerprint_is_redeployed(run, fleet, head, config) -> None:
    dep = fleet.add(URL, KEY)
    dep.bundle = (head.id, "0" * 64, "version")
    user = run()
    assert dep.deploys == 1 and user.schema_fingerprint == compile_version(head, config).fingerprint


def test_a_held_lease_refuses_and_changes_nothing(run, store, fleet) -> None:
    fleet.add(URL, KEY)
    before = run()
    store.acquire_lease("u1", "rollout-42", 600)
    with pytest.raises(LeaseHeld, match="rollout-42"):
        run(url=URL2, key=KEY2)
    assert store.get_user("u1") == before


# -- the premium gate ---------------------------------------------------------------------------

def test_gate_everyone_lets_anyone_connect(run, fleet) -> None:
    fleet.add(URL, KEY)
    assert run().connection_status == "connected"


def test_gate_premium_refuses_then_admits_by_registry_column(run, store, fleet,
                                                             tmp_path) -> None:
    fleet.add(URL, KEY)
    premium = EngineConfig(availability="premium", registry_path=tmp_path / "x")
    with pytest.raises(NotEntitled, match="u1") as err:
        run(config=premium)
    assert "premium" in str(err.value)
    assert store.find_user("u1") is None and fleet.adapters == []
    store.set_entitled("u1", True)
    assert run(config=premium).connection_status == "connected"


def test_gate_premium_with_app_callable(run, store, fleet, tmp_path) -> None:
    fleet.add(URL, KEY)
    fleet.add(URL2, KEY2)
    premium = EngineConfig(availability="premium", registry_path=tmp_path / "x")
    paying = {"u2"}
    store.set_entitled("u1", True)  # the callable is authoritative when given
    with pytest.raises(NotEntitled):
        run("u1", config=premium, entitlement=lambda uid: uid in paying)
    assert run("u2", url=URL2, key=KEY2, config=premium,
               entitlement=lambda uid: uid in paying).connection_status == "connected"


def test_closing_the_gate_keeps_connected_users_working(run, store, vault, fleet, head,
                                                        tmp_path) -> None:
    dep = fleet.add(URL, KEY)
    run()  # connected while availability was "everyone"
    premium = EngineConfig(availability="premium", registry_path=tmp_path / "x")
    result = conn.test_connection("u1", store=store, vault=vault, config=premium,
                                  connector=fleet)
    assert result.ok and result.connection_status == "connected"
    dep.key = KEY2  # they rotate their key: re-connecting is still allowed
    assert run(key=KEY2, config=premium).connection_status == "connected"
    dep.fault = "deploy_fails"
    dep.bundle = None
    with pytest.raises(SchemaValidationFailed):
        run(key=KEY2, config=premium)
    dep.fault = None
    assert conn.retry_connect("u1", store=store, vault=vault, config=premium,
                              connector=fleet, versions=head,
                              ).connection_status == "connected"
    # a user never connected before is refused
    with pytest.raises(NotEntitled):
        run("u3", config=premium)


# -- test_connection -----------------------------------------------------------------------------

def test_test_connection_moves_connected_and_error(run, store, vault, config, fleet) -> None:
    dep = fleet.add(URL, KEY)
    run()
    dep.fault = "revoked"
    result = conn.test_connection("u1", store=store, vault=vault, config=config,
                                  connector=fleet)
    assert not result.ok and result.error_kind == "auth"
    user = store.get_user("u1")
    assert user.connection_status == "error" and "rejected the key" in user.connection_error
    tested = user.last_connection_test
    dep.fault = None
    result = conn.test_connection("u1", store=store, vault=vault, config=config,
                                  connector=fleet)
    assert result.ok and result.deployed_version == user.schema_version
    user = store.get_user("u1")
    assert user.connection_status == "connected" and user.connection_error is None
    assert user.last_connection_test >= tested
    assert set(result.to_dict()) >= {"user_id", "ok", "connection_status", "latency_ms"}


def test_test_connection_without_bundle_is_an_error_for_connected(run, store, vault, config,
                                                                  fleet) -> None:
    dep = fleet.add(URL, KEY)
    run()
    dep.bundle = None
    result = conn.test_connection("u1", store=store, vault=vault, config=config,
                                  connector=fleet)
    assert not result.ok and "no byod bundle" in result.error
    assert store.get_user("u1").connection_status == "error"


def test_test_connection_keeps_pending_pending(store, vault, config, fleet) -> None:
    fleet.add(URL, KEY)
    url_ct, key_ct = vault.encrypt_credentials("u1", URL, KEY)
    store.upsert_credentials("u1", url_ct=url_ct, key_ct=key_ct)
    result = conn.test_connection("u1", store=store, vault=vault, config=config,
                                  connector=fleet)
    assert not result.ok and result.connection_status == "pending"
    assert store.get_user("u1").last_connection_test is not None


# -- secrets ------------------------------------------------------------------------------------

class LeakyAdapter:
    """An adapter that puts the URL and key into every error (what we must never pass on)."""

    def __init__(self, target, exc_type):
        self.target, self.exc_type = target, exc_type

    def read_version(self):
        text = f"failed {self.target.url} with {self.target.admin_key}"
        if self.exc_type is DeploymentUnreachable:
            raise DeploymentUnreachable(text, deployment=self.target.label)
        raise self.exc_type(text)


@pytest.mark.parametrize("exc_type", [DeploymentUnreachable, RuntimeError])
def test_leaky_adapter_errors_are_sanitized(store, vault, config, head, exc_type) -> None:
    store.set_entitled("u1", True)
    with pytest.raises(Exception) as err:
        conn.connect("u1", URL, KEY, store=store, vault=vault, config=config, versions=head,
                     connector=FixedConnector(lambda t: LeakyAdapter(t, exc_type)))
    for text in (str(err.value), repr(err.value), store.get_user("u1").connection_error,
                 str([e.detail for e in store.audit_log("u1")])):
        assert URL not in text and KEY not in text and KEY.split("|")[1] not in text
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_registry_file_holds_no_plaintext(run, store, fleet, config, key_hex) -> None:
    fleet.add(URL, KEY)
    run()
    store.close()
    blob = b"".join(p.read_bytes() for p in config.registry_path.parent.iterdir())
    for secret in (URL, KEY, KEY.split("|")[1], "secret-deployment-4711", key_hex):
        assert secret.encode() not in blob


def test_reconnect_of_a_user_in_error_never_passes_through_pending(run, store, vault, config,
                                                                  fleet, head) -> None:
    dep = fleet.add(URL, KEY)
    run()
    store.set_connection_status("u1", "error", error="health: unreachable")
    dep.key = KEY2
    seen: list[str] = []

    class Watching:
        """The store, recording every status it is asked to set."""

        def __getattr__(self, name):
            return getattr(store, name)

        def set_connection_status(self, user_id, status, **kw):
            seen.append(status)
            return store.set_connection_status(user_id, status, **kw)

    user = conn.connect("u1", URL, KEY2, store=Watching(), vault=vault, config=config,
                        connector=fleet, versions=head)
    assert seen and "pending" not in seen and user.connection_status == "connected"
