"""Routing: every location × status combination, the client cache, blocked users."""

from __future__ import annotations

from pathlib import Path

import pytest
from ops_fakes import FakeDeployment, Fleet, table, version

from engine.errors import DeploymentBlocked, UnknownTable
from engine.lifecycle.routing import Router
from engine.plan.graph import VersionGraph

V1 = version("v1", 1, table("notes", title="string"), table("users", "main", name="string"))
V2 = version("v2", 2, table("notes", title="string"), table("tags", name="string"),
             table("users", "main", name="string"), parents=("v1",))


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet(tmp_path)


@pytest.fixture
def router(fleet: Fleet) -> Router:
    return Router(fleet.store, fleet.vault, None, VersionGraph([V1, V2]), fleet.main,
                  connector=fleet)


@pytest.mark.parametrize("status,table_name,expected", [
    ("connected", "notes", "user"),
    ("connected", "users", "main"),
    ("pending", "notes", "main"),
    ("pending", "users", "main"),
    ("disconnected", "notes", "main"),
    ("disconnected", "users", "main"),
])
def test_location_and_status_matrix(fleet: Fleet, router: Router, status: str,
                                    table_name: str, expected: str) -> None:
    dep = fleet.add("u1", status="connected" if status == "disconnected" else status)
    if status == "disconnected":
        fleet.store.set_connection_status("u1", "disconnected")
    client = router.client_for("u1", table_name)
    assert (client is dep) == (expected == "user")
    assert (client is fleet.main) == (expected == "main")
    assert router.route("u1", table_name).destination == expected


def test_user_without_byod_goes_to_main_and_follows_head(router: Router, fleet: Fleet) -> None:
    assert router.client_for("nobody", "notes") is fleet.main
    assert router.client_for("nobody", "tags") is fleet.main  # tags exists at head (v2)


@pytest.mark.parametrize("table_name", ["notes", "users"])
def test_error_status_blocks_every_table(fleet: Fleet, router: Router, table_name: str) -> None:
    fleet.add("u1", status="connected")
    fleet.store.set_connection_status("u1", "error", error="deployment u1: cannot connect")
    with pytest.raises(DeploymentBlocked) as info:
        router.client_for("u1", table_name)
    assert info.value.user_id == "u1"
    assert "cannot connect" in info.value.reason
    with pytest.raises(DeploymentBlocked):
        router.query("u1", table_name, "notes:list")


def test_unknown_table_is_an_error_naming_the_version(fleet: Fleet, router: Router) -> None:
    fleet.add("u1", version="v1")
    with pytest.raises(UnknownTable) as info:
        router.client_for("u1", "tags")  # tags only exists from v2
    assert info.value.version == "v1" and "notes" in info.value.known
    with pytest.raises(UnknownTable):
        router.client_for("nobody", "nope")


def test_location_map_comes_from_the_users_version(fleet: Fleet, router: Router) -> None:
    fleet.add("old", version="v1")
    fleet.add("new", version="v2")
    assert "tags" not in router.location_map("old")
    assert router.location_map("new")["tags"].value == "user"
    assert router.location_map("new")["users"].value == "main"
    assert router.location_map("new")["byodVersions"].value == "user"


class CountingConnector:
    """Counts the clients the router asks its connector for."""

    def __init__(self, inner: Fleet):
        self.inner, self.built = inner, []

    def client(self, target):  # type: ignore[no-untyped-def]
        self.built.append(target.label)
        return self.inner.client(target)


def test_client_is_cached_per_user(fleet: Fleet) -> None:
    dep = fleet.add("u1")
    counting = CountingConnector(fleet)
    router = Router(fleet.store, fleet.vault, None, VersionGraph([V1, V2]), fleet.main,
                    connector=counting)  # type: ignore[arg-type]
    built = counting.built
    assert router.client_for("u1", "notes") is dep
    assert router.client_for("u1", "byodVersions") is dep
    router.client_for("u1", "notes")
    assert built == ["u1"]
    assert router.cached_users() == ["u1"]


def test_cache_invalidated_on_credential_change(fleet: Fleet, router: Router) -> None:
    old = fleet.add("u1")
    assert router.client_for("u1", "notes") is old
    new = FakeDeployment("dep-u1-new")
    fleet.reconnect("u1", new)
    fleet.store.set_connection_status("u1", "connected")
    assert router.client_for("u1", "notes") is new
    assert old.closed == 1


def test_cache_invalidated_on_disconnect_and_on_error(fleet: Fleet, router: Router) -> None:
    dep = fleet.add("u1")
    router.client_for("u1", "notes")
    fleet.store.set_connection_status("u1", "disconnected")
    assert router.client_for("u1", "notes") is fleet.main
    assert router.cached_users() == [] and dep.closed == 1

    dep2 = fleet.add("u2")
    router.client_for("u2", "notes")
    fleet.store.set_connection_status("u2", "error", error="down")
    with pytest.raises(DeploymentBlocked):
        router.client_for("u2", "notes")
    assert "u2" not in router.cached_users() and dep2.closed == 1


def test_recovered_user_is_routed_again(fleet: Fleet, router: Router) -> None:
    dep = fleet.add("u1", status="error")
    with pytest.raises(DeploymentBlocked):
        router.client_for("u1", "notes")
    fleet.store.set_connection_status("u1", "connected")
    assert router.client_for("u1", "notes") is dep


def test_helpers_run_functions_where_the_table_lives(fleet: Fleet, router: Router) -> None:
    dep = fleet.add("u1", tables=["notes"])
    dep.insert("notes", {"title": "hello"})
    page = router.query("u1", "notes", "byod:exportPage",
                        {"table": "notes", "cursor": None, "numItems": 10})
    assert [d["title"] for d in page["page"]] == ["hello"]
    assert "byod:exportPage" in dep.calls and "byod:exportPage" not in fleet.main.calls
