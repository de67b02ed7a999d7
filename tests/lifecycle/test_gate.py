"""The premium gate for a user whose first connect failed: they have saved credentials
and an ``error`` status but no version yet, so they have no working setup to keep. When
they retry while availability is ``premium`` the gate applies as to anyone new — refused
unless entitled (registry column, or the app's callable when given) — and nothing is
deployed on a refusal. Only a user who reached a version is grandfathered."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.errors import NotEntitled, SchemaValidationFailed
from engine.lifecycle import connect as conn
from engine.lifecycle.connect import head_version
from engine.lifecycle.gate import grandfathered, is_entitled
from engine.registry.sqlite import SqliteStore
from engine.vault import Vault, generate_key
from lifecycle.connect.fakes import FakeFleet

ROOT = Path(__file__).resolve().parents[2]
URL = "https://first-try-0042.convex.cloud"
KEY = "prod:first-try-0042|0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a7b"


@pytest.fixture()
def env(tmp_path):
    config = EngineConfig(versions_dir=ROOT / "schema_versions",
                          registry_path=tmp_path / "registry.sqlite3")
    premium = config.model_copy(update={"availability": "premium"})
    store = SqliteStore(config.registry_path)
    fleet = FakeFleet()
    head = head_version(None, config)
    yield config, premium, store, Vault.from_hex(generate_key()), fleet, head
    store.close()


def _failed_first_connect(env):
    """Connect while the gate is open; the deploy fails, leaving no version."""

    config, _premium, store, vault, fleet, head = env
    dep = fleet.add(URL, KEY)
    dep.fault = "deploy_fails"
    with pytest.raises(SchemaValidationFailed):
        conn.connect("u1", URL, KEY, store=store, vault=vault, connector=fleet,
                     versions=head, config=config)
    dep.fault = None
    user = store.get_user("u1")
    assert (user.connection_status, user.schema_version) == ("error", None)
    assert user.url_ct and user.key_ct  # credentials saved: a retry is possible
    return dep


def _retry(env, config, **kw):
    _c, _p, store, vault, fleet, head = env
    return conn.retry_connect("u1", store=store, vault=vault, connector=fleet,
                              versions=head, config=config, **kw)


def test_a_failed_first_connect_is_not_grandfathered(env):
    _failed_first_connect(env)
    _config, premium, store, *_ = env
    user = store.get_user("u1")
    assert not grandfathered(user)
    assert not is_entitled("u1", config=premium, store=store)
    assert is_entitled("u1", config=premium, store=store, entitlement=lambda uid: True)


def test_retry_while_premium_is_refused_unless_entitled(env):
    dep = _failed_first_connect(env)
    config, premium, store, *_ = env
    deploys = dep.deploys
    with pytest.raises(NotEntitled, match="u1"):
        _retry(env, premium)
    assert dep.deploys == deploys  # refused before anything was deployed
    user = store.get_user("u1")
    assert (user.connection_status, user.schema_version) == ("error", None)

    store.set_entitled("u1", True)
    assert _retry(env, premium).connection_status == "connected"


def test_retry_while_premium_follows_the_apps_entitlement_callable(env):
    _failed_first_connect(env)
    _config, premium, store, *_ = env
    store.set_entitled("u1", True)  # the callable is authoritative when given
    with pytest.raises(NotEntitled):
        _retry(env, premium, entitlement=lambda uid: False)
    assert _retry(env, premium, entitlement=lambda uid: uid == "u1"
                  ).connection_status == "connected"


def test_a_user_who_reached_a_version_retries_past_a_closed_gate(env):
    config, premium, store, vault, fleet, head = env
    dep = fleet.add(URL, KEY)
    conn.connect("u1", URL, KEY, store=store, vault=vault, connector=fleet, versions=head,
                 config=config)
    store.set_connection_status("u1", "error", error="probe failed")
    assert grandfathered(store.get_user("u1"))
    assert dep.deploys == 1
    assert _retry(env, premium).connection_status == "connected"
