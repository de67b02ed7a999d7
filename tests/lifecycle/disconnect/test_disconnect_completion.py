"""The end of a migrate disconnect: a run stopped after its copy verified but before the
user was marked disconnected only finishes (never copies again); a copy that stopped
verifying because something else wrote to the user's deployment is re-copied on the
next run; and a migrate that cannot be made to verify can be given up, audited."""

from __future__ import annotations

from typing import Any

import pytest
from ops_fakes import Fleet

from engine.errors import ConfirmationRequired, DisconnectError
from engine.lifecycle.progress import disconnect_in_progress

from .test_disconnect import USER_TABLES, connect, go  # noqa: F401 - shared setup
from .test_disconnect import fleet as fleet  # noqa: F401 - the fixture


class Crash(Exception):
    pass


def _counts(dep: Any) -> dict[str, int]:
    return {t: len(dep.docs(t)) for t in USER_TABLES}


def _fail_once(monkeypatch: pytest.MonkeyPatch, obj: Any, name: str,
               when: Any) -> None:
    original = getattr(obj, name)
    fired = {"done": False}

    def wrapped(*args: Any, **kw: Any) -> Any:
        if not fired["done"] and when(*args, **kw):
            fired["done"] = True
            raise Crash(f"crash in {name}")
        return original(*args, **kw)

    monkeypatch.setattr(obj, name, wrapped)


def test_stopped_before_marking_disconnected_only_finishes(
        fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    dep = connect(fleet)
    _fail_once(monkeypatch, fleet.store, "set_connection_status",
               lambda uid, status, **kw: status == "disconnected")
    with pytest.raises(Crash):
        go(fleet, "migrate", page_size=2)
    assert fleet.store.get_user("u1").connection_status == "error"
    state = fleet.store.load_progress("disconnect", "u1")["state"]
    in_progress = disconnect_in_progress(fleet.store, "u1")
    copied = _counts(fleet.main)
    assert copied == _counts(dep)

    report = go(fleet, "migrate", page_size=2)
    assert _counts(fleet.main) == copied  # nothing copied a second time
    assert report.status == "disconnected" and report.verified and report.resumed
    assert "interrupted disconnect finished" in report.message
    assert state == "verified" and in_progress  # health left the user alone meanwhile
    assert fleet.store.get_user("u1").connection_status == "disconnected"
    assert fleet.store.load_progress("disconnect", "u1")["state"] == "done"
    assert go(fleet, "migrate").message == "already disconnected; nothing to do"


def test_stopped_after_marking_closes_the_progress(
        fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    dep = connect(fleet)
    _fail_once(monkeypatch, fleet.store, "save_progress",
               lambda kind, uid, doc: doc.get("state") == "done")
    with pytest.raises(Crash):
        go(fleet, "migrate", page_size=2)
    assert fleet.store.get_user("u1").connection_status == "disconnected"
    report = go(fleet, "migrate", page_size=2)
    assert report.status == "disconnected" and report.verified
    assert _counts(fleet.main) == _counts(dep)
    assert fleet.store.load_progress("disconnect", "u1")["state"] == "done"
    assert not disconnect_in_progress(fleet.store, "u1")
    events = [e.event for e in fleet.store.audit_log("u1")]
    assert events.count("disconnected") == 1


def test_finishing_refuses_another_mode(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    connect(fleet)
    _fail_once(monkeypatch, fleet.store, "set_connection_status",
               lambda uid, status, **kw: status == "disconnected")
    with pytest.raises(Crash):
        go(fleet, "migrate")
    with pytest.raises(DisconnectError, match="finish it with --data migrate"):
        go(fleet, "keep")


def _write_during_copy(fleet: Fleet, dep: Any, write: Any) -> None:
    """Run ``write(dep)`` once, when the copy first reads messages (conversations are
    copied by then): a write the router did not make (it blocks the user)."""

    done = {"n": 0}

    def hook(path: str, args: dict[str, Any]) -> None:
        if path == "byod:exportPage" and args.get("table") == "messages" and not done["n"]:
            done["n"] = 1
            write(dep)

    dep.before_call = hook


def test_a_document_written_during_the_copy_is_recopied_on_the_next_run(fleet: Fleet) -> None:
    dep = connect(fleet)
    trip = next(d for d in dep.docs("conversations") if d["title"] == "Trip")

    def write(d: Any) -> None:
        d.insert("conversations", {"title": "Late", "userId": "u1"})
        d.tables["conversations"][trip["_id"]]["title"] = "Trip (renamed)"

    _write_during_copy(fleet, dep, write)
    with pytest.raises(DisconnectError, match="verification failed for conversations"):
        go(fleet, "migrate", page_size=2)
    dep.before_call = None
    assert fleet.store.get_user("u1").connection_status == "error"

    report = go(fleet, "migrate", page_size=2)
    assert report.status == "disconnected" and report.verified
    titles = sorted(d["title"] for d in fleet.main.docs("conversations"))
    assert titles == ["Late", "Trip (renamed)", "Work"]  # each exactly once
    assert _counts(fleet.main) == _counts(dep)


def test_a_migrate_that_cannot_verify_can_be_given_up(fleet: Fleet) -> None:
    dep = connect(fleet)
    work = next(d for d in dep.docs("conversations") if d["title"] == "Work")
    _write_during_copy(fleet, dep, lambda d: d.tables["conversations"].pop(work["_id"]))
    for _ in range(2):  # a deletion cannot be undone on main: it fails every time
        with pytest.raises(DisconnectError, match="--abandon-migrate"):
            go(fleet, "migrate", page_size=2)
        dep.before_call = None
    with pytest.raises(DisconnectError, match="--abandon-migrate"):
        go(fleet, "keep")
    with pytest.raises(ConfirmationRequired):
        go(fleet, "delete", abandon_migrate=True)
    report = go(fleet, "keep", abandon_migrate=True)
    assert report.status == "disconnected"
    [entry] = [e for e in fleet.store.audit_log("u1")
               if e.event == "disconnect_migrate_abandoned"]
    assert entry.detail["for"] == "keep" and entry.detail["copied_to_main"]["conversations"] == 2
    assert fleet.store.load_progress("disconnect", "u1")["state"] == "abandoned"
    assert dep.docs("messages")  # keep: the user's data is untouched


def test_abandon_without_an_interrupted_migrate_is_refused(fleet: Fleet) -> None:
    connect(fleet)
    with pytest.raises(DisconnectError, match="no interrupted migrate to abandon"):
        go(fleet, "keep", abandon_migrate=True)
    with pytest.raises(DisconnectError, match="for --data keep or --data delete"):
        go(fleet, "migrate", abandon_migrate=True)
    assert fleet.store.get_user("u1").connection_status == "connected"


def test_a_recopy_interrupted_after_its_import_committed_imports_nothing_twice(
        fleet: Fleet) -> None:
    dep = connect(fleet)
    _write_during_copy(fleet, dep, lambda d: d.insert("conversations",
                                                      {"title": "Late", "userId": "u1"}))
    with pytest.raises(DisconnectError, match="verification failed"):
        go(fleet, "migrate", page_size=2)
    dep.before_call = None
    original = fleet.main._fn_byodMain_importPageOnce
    crashed = {"n": 0}

    def commit_then_crash(**kw: Any) -> list[str]:
        ids = original(**kw)
        if ":recopy:" in kw["receipt"] and not crashed["n"]:
            crashed["n"] = 1
            raise Crash("killed after the re-copy's import committed")
        return ids

    fleet.main._fn_byodMain_importPageOnce = commit_then_crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        go(fleet, "migrate", page_size=2)
    del fleet.main._fn_byodMain_importPageOnce
    report = go(fleet, "migrate", page_size=2)
    assert report.verified and report.status == "disconnected"
    titles = sorted(d["title"] for d in fleet.main.docs("conversations"))
    assert titles == ["Late", "Trip", "Work"]
