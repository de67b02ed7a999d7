"""Disconnect keep / migrate / delete over fake deployments with cross-table references."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ops_fakes import FakeDeployment, Fleet, table, version

from engine.errors import DeploymentBlocked, DisconnectError
from engine.lifecycle.disconnect import disconnect
from engine.lifecycle.remap import copy_order
from engine.lifecycle.routing import Router

TABLES = [
    table("messages", conversationId="id(conversations)", content="string",
          parentMessageId="optional(id(messages))",
          metadata="optional({cites: id(messages)[], by: optional(string)})"),
    table("conversations", title="string", userId="string"),
    table("tags", name="string"),
    table("conversationTags", conversationId="id(conversations)", tagId="id(tags)"),
    table("bookmarks", messageId="optional(id(messages))", note="optional(string)",
          refs="optional(record(id(tags), id(conversations)))",
          target="optional(id(conversations) | string)"),
    table("users", "main", name="string"),
]
V1 = version("v1", 1, *TABLES)
USER_TABLES = [t.name for t in TABLES if t.location.value == "user"]


def seed(dep: FakeDeployment) -> dict[str, Any]:
    c1 = dep.insert("conversations", {"title": "Trip", "userId": "u1"})
    c2 = dep.insert("conversations", {"title": "Work", "userId": "u1"})
    t1 = dep.insert("tags", {"name": "travel"})
    dep.insert("conversationTags", {"conversationId": c1, "tagId": t1})
    m1 = dep.insert("messages", {"conversationId": c1, "content": "hi"})
    m2 = dep.insert("messages", {"conversationId": c1, "content": "hello", "parentMessageId": m1})
    m3 = dep.insert("messages", {"conversationId": c2, "content": "ok", "parentMessageId": m2,
                                 "metadata": {"cites": [m1, m2], "by": "me"}})
    # a reply stored before its parent (parent inserted later): needs the patch pass
    m5 = dep.new_id("messages")
    m4 = dep.insert("messages", {"conversationId": c2, "content": "early", "parentMessageId": m5})
    dep.tables["messages"][m5] = {"_id": m5, "_creationTime": 9e9, "conversationId": c2,
                                  "content": "late"}
    dep.insert("bookmarks", {"messageId": m3, "refs": {t1: c2}, "target": c1})
    dep.insert("bookmarks", {"note": "plain string target", "target": "not-an-id"})
    dep.insert("bookmarks", {"messageId": "gone-message", "note": "dangling"})
    return {"c1": c1, "m1": m1, "m4": m4, "m5": m5}


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    f = Fleet(tmp_path)
    f.main = FakeDeployment("main", version="v1", tables=USER_TABLES + ["users"])
    return f


def connect(fleet: Fleet, uid: str = "u1") -> FakeDeployment:
    dep = fleet.add(uid, version="v1", tables=USER_TABLES)
    seed(dep)
    return dep


def go(fleet: Fleet, mode: str, uid: str = "u1", **kw: Any):  # type: ignore[no-untyped-def]
    return disconnect(uid, mode, store=fleet.store, vault=fleet.vault, graph=[V1],
                      main_client=fleet.main, connector=fleet, **kw)


def test_copy_order_puts_parents_first() -> None:
    order, group = copy_order({t.name: t for t in TABLES if t.location.value == "user"})
    assert order.index("conversations") < order.index("messages")
    assert order.index("tags") < order.index("conversationTags")
    assert order.index("messages") < order.index("bookmarks")
    assert group["messages"] == frozenset({"messages"})


def _resolve(main: FakeDeployment, table: str, by: str, value: Any) -> dict[str, Any]:
    [doc] = [d for d in main.docs(table) if d.get(by) == value]
    return doc


def test_keep_marks_disconnected_and_deletes_nothing(fleet: Fleet) -> None:
    dep = connect(fleet)
    before = {t: dep.docs(t) for t in USER_TABLES}
    report = go(fleet, "keep")
    assert report.status == "disconnected"
    assert fleet.store.get_user("u1").connection_status == "disconnected"
    assert {t: dep.docs(t) for t in USER_TABLES} == before
    assert all(not fleet.main.docs(t) for t in USER_TABLES)


def test_migrate_copies_everything_with_references_remapped(fleet: Fleet) -> None:
    dep = connect(fleet)
    report = go(fleet, "migrate", page_size=2)
    assert report.status == "disconnected" and report.verified
    after = fleet.store.get_user("u1")
    assert after.connection_status == "disconnected"
    assert after.connection_error is None  # the "copying to main" block reason is gone
    for name in USER_TABLES:
        assert len(fleet.main.docs(name)) == len(dep.docs(name)), name
        assert report.tables[name]["verified"]
    main = fleet.main
    trip = _resolve(main, "conversations", "title", "Trip")
    work = _resolve(main, "conversations", "title", "Work")
    travel = _resolve(main, "tags", "name", "travel")
    hi = _resolve(main, "messages", "content", "hi")
    hello = _resolve(main, "messages", "content", "hello")
    ok = _resolve(main, "messages", "content", "ok")
    early = _resolve(main, "messages", "content", "early")
    late = _resolve(main, "messages", "content", "late")
    assert hi["conversationId"] == trip["_id"] and "parentMessageId" not in hi
    assert hello["parentMessageId"] == hi["_id"]
    assert ok["parentMessageId"] == hello["_id"] and ok["conversationId"] == work["_id"]
    assert ok["metadata"] == {"cites": [hi["_id"], hello["_id"]], "by": "me"}
    assert early["parentMessageId"] == late["_id"]  # patched in the second pass
    assert report.patched >= 1
    ct = main.docs("conversationTags")[0]
    assert ct == {**ct, "conversationId": trip["_id"], "tagId": travel["_id"]}
    bm = _resolve(main, "bookmarks", "messageId", ok["_id"])
    assert bm["refs"] == {travel["_id"]: work["_id"]} and bm["target"] == trip["_id"]
    plain = _resolve(main, "bookmarks", "note", "plain string target")
    assert plain["target"] == "not-an-id"
    dangling = _resolve(main, "bookmarks", "note", "dangling")
    assert "messageId" not in dangling
    assert report.dangling == [{"table": "bookmarks", "id": report.dangling[0]["id"],
                                "field": "messageId", "references": "messages gone-message"}]
    # the source is left intact, receipts are cleaned up
    assert len(dep.docs("messages")) == 5 and main.receipts == {}
    assert fleet.store.load_progress("disconnect", "u1")["state"] == "done"


class Crash(Exception):
    pass


@pytest.mark.parametrize("crash_at", [
    ("byod:exportPage", 3),          # between pages
    ("byodMain:importPageOnce", 4),  # before an import
    ("after-import", 4),             # after an import committed, before progress was saved
    ("byodMain:patchPage", 1),       # in the patch pass
    ("byodMain:getByIds", 2),        # during verification
])
def test_interrupted_migrate_resumes_without_duplicates(fleet: Fleet, crash_at) -> None:  # type: ignore[no-untyped-def]
    dep = connect(fleet)
    where, nth = crash_at
    seen = {"n": 0}
    target = fleet.main if where.startswith("byodMain") or where == "after-import" else dep

    def hook(path: str, args: dict[str, Any]) -> None:
        name = "byodMain:importPageOnce" if where == "after-import" else where
        if path == name:
            seen["n"] += 1
            if seen["n"] == nth and where != "after-import":
                raise Crash(f"crash at {path}")

    target.before_call = hook
    if where == "after-import":
        original = fleet.main._fn_byodMain_importPageOnce

        def commit_then_crash(**kw: Any) -> list[str]:
            ids = original(**kw)
            if seen["n"] == nth:
                raise Crash("crash after the import committed")
            return ids

        fleet.main._fn_byodMain_importPageOnce = commit_then_crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        go(fleet, "migrate", page_size=2)
    user = fleet.store.get_user("u1")
    assert user.connection_status == "error"  # blocked, never disconnected early
    router = Router(fleet.store, fleet.vault, None, [V1], fleet.main,
                    connector=fleet)
    with pytest.raises(DeploymentBlocked):
        router.client_for("u1", "messages")
    target.before_call = None
    if where == "after-import":
        del fleet.main._fn_byodMain_importPageOnce
    report = go(fleet, "migrate", page_size=2)
    assert report.resumed and report.verified and report.status == "disconnected"
    for name in USER_TABLES:
        assert len(fleet.main.docs(name)) == len(dep.docs(name)), name
    early = _resolve(fleet.main, "messages", "content", "early")
    late = _resolve(fleet.main, "messages", "content", "late")
    assert early["parentMessageId"] == late["_id"]


def test_verification_failure_never_marks_disconnected(fleet: Fleet) -> None:
    connect(fleet)
    original = fleet.main._fn_byodMain_getByIds

    def tampered(table: str, ids: list[str]) -> list:
        docs = original(table, ids)
        if table == "conversations" and docs:
            docs[0] = {**docs[0], "title": "changed"}
        return docs

    fleet.main._fn_byodMain_getByIds = tampered  # type: ignore[method-assign]
    with pytest.raises(DisconnectError, match="verification failed for conversations"):
        go(fleet, "migrate")
    assert fleet.store.get_user("u1").connection_status == "error"


def test_migrate_refuses_when_main_is_on_another_version(fleet: Fleet) -> None:
    connect(fleet)
    fleet.main.version = "v2"
    with pytest.raises(DisconnectError, match="main deployment is on version v2"):
        go(fleet, "migrate")
    assert fleet.store.get_user("u1").connection_status == "connected"  # not blocked


def test_delete_needs_confirmation_then_leaves_nothing(fleet: Fleet) -> None:
    dep = connect(fleet)
    with pytest.raises(DisconnectError, match="--yes"):
        go(fleet, "delete")
    assert fleet.store.get_user("u1").connection_status == "connected"
    report = go(fleet, "delete", confirm=True, page_size=2)
    assert report.verified and report.status == "disconnected"
    assert all(dep.docs(t) == [] for t in USER_TABLES)
    assert report.tables["messages"]["deleted"] == 5


def test_interrupted_delete_resumes(fleet: Fleet) -> None:
    dep = connect(fleet)
    calls = {"n": 0}

    def hook(path: str, args: dict[str, Any]) -> None:
        if path == "byod:deletePage":
            calls["n"] += 1
            if calls["n"] == 3:
                raise Crash("crash")

    dep.before_call = hook
    with pytest.raises(Crash):
        go(fleet, "delete", confirm=True, page_size=2)
    assert fleet.store.get_user("u1").connection_status == "error"
    dep.before_call = None
    with pytest.raises(DisconnectError, match="finish it with --data delete"):
        go(fleet, "migrate")
    report = go(fleet, "delete", confirm=True, page_size=2)
    assert report.resumed and report.status == "disconnected"
    assert all(dep.docs(t) == [] for t in USER_TABLES)


def test_unreachable_deployment_fails_cleanly_and_keeps_user_blocked(fleet: Fleet) -> None:
    dep = connect(fleet)
    dep.fault = "down"
    with pytest.raises(DisconnectError, match="run the same command again") as info:
        go(fleet, "migrate")
    assert dep.key not in str(info.value)
    user = fleet.store.get_user("u1")
    assert user.connection_status == "error" and "interrupted" in user.connection_error
    dep.fault = None
    assert go(fleet, "migrate").status == "disconnected"


def test_already_disconnected_is_a_no_op(fleet: Fleet) -> None:
    connect(fleet)
    go(fleet, "keep")
    report = go(fleet, "delete", confirm=True)
    assert report.message.startswith("already disconnected")


def test_disconnect_invalidates_the_router_cache(fleet: Fleet) -> None:
    dep = connect(fleet)
    router = Router(fleet.store, fleet.vault, None, [V1], fleet.main,
                    connector=fleet)
    assert router.client_for("u1", "messages") is dep
    disconnect("u1", "migrate", store=fleet.store, vault=fleet.vault, graph=[V1],
               main_client=fleet.main, connector=fleet, router=router)
    assert router.cached_users() == []
    assert router.client_for("u1", "messages") is fleet.main
