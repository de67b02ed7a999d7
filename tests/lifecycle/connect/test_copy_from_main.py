"""Connect's copy of a user's existing content from main, over in-memory deployments:
ownership (userId, or references for tables without one), threads, other users' content
left alone, interrupted copies resumed without duplicates, verification gating connect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ops_fakes import FakeDeployment, Fleet, version

from engine.config import EngineConfig
from engine.errors import CopyFromMainError
from engine.lifecycle.connect import STAGES, connect, retry_connect
from engine.lifecycle.copy_from_main import copy_from_main
from engine.lifecycle.ownership import owner_rules
from engine.lifecycle.progress import disconnect_in_progress
from engine.ports.deployment import DeployResult, VersionInfo
from engine.schema.models import DbIndex, Location, Table
from engine.schema.types import parse_field_type
from lifecycle.connect.fakes import FixedConnector


def _t(table_name: str, location: str = "user", /, index: bool = False,
       **fields: str) -> Table:
    defs = {k: parse_field_type(v) for k, v in fields.items()}
    idx = (DbIndex(name="by_user", fields=("userId",)),) if index else ()
    return Table(name=table_name, location=Location(location), fields=defs, indexes=idx)


TABLES = [
    _t("conversations", index=True, userId="string", title="string"),
    _t("messages", index=True, userId="string", conversationId="id(conversations)",
       content="string", parentMessageId="optional(id(messages))"),
    _t("toolCalls", messageId="id(messages)", name="string"),
    _t("tags", userId="string", name="string"),  # no index: a filtered full scan
    _t("conversationTags", conversationId="id(conversations)", tagId="id(tags)"),
    _t("ttsCache", hash="string"),  # nobody's: never copied
    _t("users", "main", name="string"),
]
V1 = version("v1", 1, *TABLES)
USER_TABLES = [t.name for t in TABLES if t.location.value == "user"]
USER_SCHEMA = {t.name: t for t in TABLES if t.location.value == "user"}


def seed_main(main: FakeDeployment, uid: str) -> dict[str, str]:
    c1 = main.insert("conversations", {"userId": uid, "title": f"{uid} trip"})
    c2 = main.insert("conversations", {"userId": uid, "title": f"{uid} work"})
    m1 = main.insert("messages", {"userId": uid, "conversationId": c1, "content": f"{uid} hi"})
    m2 = main.insert("messages", {"userId": uid, "conversationId": c1,
                                  "content": f"{uid} hello", "parentMessageId": m1})
    # a reply stored before its parent (the parent comes in a later page)
    late = main.new_id("messages")
    main.insert("messages", {"userId": uid, "conversationId": c2, "content": f"{uid} early",
                             "parentMessageId": late})
    for k in range(3):
        main.insert("messages", {"userId": uid, "conversationId": c2,
                                 "content": f"{uid} filler {k}"})
    main.tables["messages"][late] = {"_id": late, "_creationTime": 9e9, "userId": uid,
                                     "conversationId": c2, "content": f"{uid} late"}
    main.insert("toolCalls", {"messageId": m2, "name": f"{uid} search"})
    t1 = main.insert("tags", {"userId": uid, "name": f"{uid} travel"})
    main.insert("conversationTags", {"conversationId": c1, "tagId": t1})
    main.insert("ttsCache", {"hash": f"{uid}-h"})
    return {"c1": c1, "m1": m1, "m2": m2, "t1": t1}


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    f = Fleet(tmp_path)
    f.main = FakeDeployment("main", version="v1", tables=USER_TABLES + ["users"])
    a = seed_main(f.main, "u1")
    b = seed_main(f.main, "u2")
    # cross-user: u1's reply to u2's message (optional ref: left out), a link of u1's
    # conversation to u2's tag (not every reference owned: not u1's)
    f.main.insert("messages", {"userId": "u1", "conversationId": a["c1"],
                               "content": "u1 reply to another user", "parentMessageId": b["m1"]})
    f.main.insert("conversationTags", {"conversationId": a["c1"], "tagId": b["t1"]})
    return f


def dest_for(fleet: Fleet) -> FakeDeployment:
    return fleet.add("u1", status="pending", version="v1", tables=USER_TABLES)


def run(fleet: Fleet, dest: FakeDeployment, page_size: int = 2, **kw: Any):  # type: ignore[no-untyped-def]
    return copy_from_main("u1", store=fleet.store, tables=USER_SCHEMA, version="v1",
                          main=fleet.main, dest=dest, page_size=page_size, **kw)


def by(dep: FakeDeployment, table: str, field: str, value: Any) -> dict[str, Any]:
    [doc] = [d for d in dep.docs(table) if d.get(field) == value]
    return doc


def plain(dep: FakeDeployment, table: str) -> list[str]:
    """Documents with ids resolved to a readable form (content, not ids)."""

    names = {d["_id"]: d.get("content") or d.get("title") or d.get("name")
             for t in USER_TABLES for d in dep.docs(t)}
    out = []
    for d in dep.docs(table):
        body = {k: names.get(v, v) if isinstance(v, str) else v
                for k, v in d.items() if k not in ("_id", "_creationTime")}
        out.append(repr(sorted(body.items())))
    return sorted(out)


def test_ownership_rules_from_the_schema() -> None:
    rules = owner_rules(USER_SCHEMA)
    assert rules["conversations"].user_field == "userId"
    assert rules["conversations"].index == "by_user"
    assert rules["tags"].user_field == "userId" and rules["tags"].index is None
    assert rules["toolCalls"].refs == (("messageId", "messages"),)
    assert rules["conversationTags"].refs == (("conversationId", "conversations"),
                                             ("tagId", "tags"))
    assert not rules["ttsCache"].copied


def test_copies_only_the_users_content_with_references_remapped(fleet: Fleet) -> None:
    dest = dest_for(fleet)
    main_before = {t: fleet.main.docs(t) for t in USER_TABLES}
    report = run(fleet, dest)
    assert report.verified and report.copied == 13
    assert report.not_copied == {"ttsCache": "no owner (not copied)"}
    assert {t: len(dest.docs(t)) for t in USER_TABLES} == {
        "conversations": 2, "messages": 8, "toolCalls": 1, "tags": 1,
        "conversationTags": 1, "ttsCache": 0}
    assert all(d.get("userId", "u1") == "u1" for t in USER_TABLES for d in dest.docs(t))
    assert not any("u2" in repr(d) for t in USER_TABLES for d in dest.docs(t))
    trip = by(dest, "conversations", "title", "u1 trip")
    hi = by(dest, "messages", "content", "u1 hi")
    hello = by(dest, "messages", "content", "u1 hello")
    early = by(dest, "messages", "content", "u1 early")
    late = by(dest, "messages", "content", "u1 late")
    assert hi["conversationId"] == trip["_id"] and hello["parentMessageId"] == hi["_id"]
    assert early["parentMessageId"] == late["_id"]  # held back until its parent was in
    assert "parentMessageId" not in by(dest, "messages", "content", "u1 reply to another user")
    assert report.dangling[0]["field"] == "parentMessageId"
    assert by(dest, "toolCalls", "name", "u1 search")["messageId"] == hello["_id"]
    ct = dest.docs("conversationTags")[0]
    assert ct["conversationId"] == trip["_id"]
    assert ct["tagId"] == by(dest, "tags", "name", "u1 travel")["_id"]
    assert {t: fleet.main.docs(t) for t in USER_TABLES} == main_before  # main left as is
    assert fleet.store.load_progress("copy_from_main", "u1")["state"] == "done"
    again = run(fleet, dest)  # a finished copy is not repeated
    assert again.already_done and len(dest.docs("messages")) == 8


class Crash(Exception):
    pass


@pytest.mark.parametrize("where,nth", [
    ("main:byodMain:exportOwnedPage", 3),  # between pages
    ("dest:byod:importPage", 3),           # before an import
    ("after-import", 2),                   # the import committed, its ids not saved
    ("after-import", 6),
    ("dest:byod:exportPage", 1),           # during verification
])
def test_interrupted_copy_resumes_without_duplicates(fleet: Fleet, where: str,
                                                     nth: int) -> None:
    dest = dest_for(fleet)
    seen = {"n": 0}
    if where == "after-import":
        original = dest._fn_byod_importPage

        def commit_then_crash(**kw: Any) -> list[str]:
            ids = original(**kw)
            seen["n"] += 1
            if seen["n"] == nth:
                raise Crash("crash after the import committed")
            return ids

        dest._fn_byod_importPage = commit_then_crash  # type: ignore[method-assign]
    else:
        side, path = where.split(":", 1)
        target = fleet.main if side == "main" else dest

        def hook(p: str, args: dict[str, Any]) -> None:
            if p == path:
                seen["n"] += 1
                if seen["n"] == nth:
                    raise Crash(f"crash at {p}")

        target.before_call = hook
    with pytest.raises(Crash):
        run(fleet, dest)
    assert disconnect_in_progress(fleet.store, "u1")  # health leaves the user alone
    fleet.main.before_call = dest.before_call = None
    if where == "after-import":
        del dest._fn_byod_importPage
    report = run(fleet, dest)
    assert report.resumed and report.verified
    # the same content as an uninterrupted copy, ids remapped, nothing twice
    assert {t: len(dest.docs(t)) for t in USER_TABLES} == {
        "conversations": 2, "messages": 8, "toolCalls": 1, "tags": 1,
        "conversationTags": 1, "ttsCache": 0}
    early = by(dest, "messages", "content", "u1 early")
    assert early["parentMessageId"] == by(dest, "messages", "content", "u1 late")["_id"]
    assert not disconnect_in_progress(fleet.store, "u1")


def test_resumed_copy_equals_an_uninterrupted_one(fleet: Fleet, tmp_path: Path) -> None:
    dest = dest_for(fleet)
    seen = {"n": 0}
    original = dest._fn_byod_importPage

    def commit_then_crash(**kw: Any) -> list[str]:
        ids = original(**kw)
        seen["n"] += 1
        if seen["n"] == 4:
            raise Crash("after commit")
        return ids

    dest._fn_byod_importPage = commit_then_crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        run(fleet, dest)
    del dest._fn_byod_importPage
    run(fleet, dest)
    other = Fleet(tmp_path / "other")
    other.main = fleet.main
    clean = other.add("u1", status="pending", version="v1", tables=USER_TABLES)
    copy_from_main("u1", store=other.store, tables=USER_SCHEMA, version="v1",
                   main=fleet.main, dest=clean, page_size=2)
    for t in USER_TABLES:
        assert plain(dest, t) == plain(clean, t), t


def test_a_foreign_write_during_an_interrupted_import_stops_the_resume(fleet: Fleet) -> None:
    dest = dest_for(fleet)
    original = dest._fn_byod_importPage

    def commit_then_crash(**kw: Any) -> list[str]:
        original(**kw)
        raise Crash("after commit")

    dest._fn_byod_importPage = commit_then_crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        run(fleet, dest)
    del dest._fn_byod_importPage
    dest.insert("conversations", {"userId": "u1", "title": "written meanwhile"})
    with pytest.raises(CopyFromMainError, match="Something else wrote to it"):
        run(fleet, dest)


def test_main_on_another_version_is_refused(fleet: Fleet) -> None:
    fleet.main.version = "v0"
    with pytest.raises(CopyFromMainError, match="main deployment is on version v0"):
        run(fleet, dest_for(fleet))


# -- through the connect flow -------------------------------------------------------------------

class Deployable(FakeDeployment):
    """A fake user deployment that can also be deployed to (the connect flow's adapter)."""

    recorded: dict[str, Any] | None = None

    def deploy(self, bundle: Any) -> DeployResult:
        self.version, self.fingerprint = bundle.version_id, bundle.fingerprint
        return DeployResult(self.name, bundle.version_id, bundle.fingerprint, 0.0)

    def read_version(self) -> VersionInfo:
        self.query("byod:version")
        return VersionInfo(self.version, self.fingerprint, self.kind, self.recorded)

    def _fn_byod_recordVersion(self, version: str, fingerprint: str, kind: str) -> str:
        self.recorded = {"version": version, "fingerprint": fingerprint}
        return "rec1"


def _connect(fleet: Fleet, dest: Deployable, stages: list[str], **kw: Any):  # type: ignore[no-untyped-def]
    return connect("u1", dest.url, dest.key, store=fleet.store, vault=fleet.vault,
                   config=EngineConfig(), connector=FixedConnector(lambda t: dest), versions=V1,
                   on_stage=lambda u, s: stages.append(s), copy_from_main=True,
                   main_client=fleet.main, copy_page_size=3, **kw)


def test_connect_copies_then_marks_connected(fleet: Fleet) -> None:
    dest = Deployable("dep-u1", version="v1", fingerprint="stale", tables=USER_TABLES)
    stages: list[str] = []
    user = _connect(fleet, dest, stages)
    assert stages == list(STAGES)
    assert user.connection_status == "connected" and user.connection_error is None
    assert "copied from main" in (user.deployment_progress or "")
    assert len(dest.docs("messages")) == 8


def test_failed_copy_never_connects_and_retry_resumes(fleet: Fleet) -> None:
    dest = Deployable("dep-u1", version="v1", fingerprint="stale", tables=USER_TABLES)
    original = dest._fn_byod_exportPage

    def tampered(table: str, cursor: str | None, numItems: int) -> dict:
        res = original(table, cursor, numItems)
        if table == "conversations":
            res["page"] = [{**d, "title": "changed"} for d in res["page"]]
        return res

    dest._fn_byod_exportPage = tampered  # type: ignore[method-assign]
    with pytest.raises(CopyFromMainError, match="verification failed for conversations"):
        _connect(fleet, dest, [])
    user = fleet.store.get_user("u1")
    assert user.connection_status == "error"
    assert "copying" in (user.connection_error or "")
    assert user.deployment_progress == "failed at copying"
    del dest._fn_byod_exportPage
    stages: list[str] = []
    user = retry_connect("u1", store=fleet.store, vault=fleet.vault, config=EngineConfig(),
                         connector=FixedConnector(lambda t: dest), versions=V1,
                         on_stage=lambda u, s: stages.append(s), main_client=fleet.main)
    assert "copying" in stages and user.connection_status == "connected"
    assert len(dest.docs("conversations")) == 2  # resumed: nothing imported twice


def test_missing_main_configuration_fails_before_anything_is_stored(
        fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BYOD_MAIN_URL", raising=False)
    monkeypatch.delenv("BYOD_MAIN_ADMIN_KEY", raising=False)
    dest = Deployable("dep-u1", tables=USER_TABLES)
    with pytest.raises(Exception, match="BYOD_MAIN_URL"):
        connect("u1", dest.url, dest.key, store=fleet.store, vault=fleet.vault,
                config=EngineConfig(), connector=FixedConnector(lambda t: dest), versions=V1,
                copy_from_main=True)
    assert fleet.store.find_user("u1") is None
