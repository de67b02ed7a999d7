"""Disconnect's reports and refusals, pinned where mutation testing (scripts/mutation.py)
showed a changed disconnect would pass: the page-size bounds, the report of a run that
only finishes an interrupted one, the report of a user already disconnected, the per-table
counts, the event of a re-copied table, a read that never finishes naming the deployment,
and the lease holder in a refusal."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
from ops_fakes import Fleet

import engine.lifecycle.disconnect as disconnect_module
from engine.errors import DisconnectError, LeaseHeld

from .disconnect.test_disconnect import USER_TABLES, connect, go
from .disconnect.test_disconnect import fleet as fleet  # noqa: F401 - the fixture
from .disconnect.test_disconnect_completion import _write_during_copy


class Died(BaseException):
    """The process ends here: nothing after it runs (what a SIGKILL does to the flow)."""


@pytest.mark.parametrize("size,ok", [(0, False), (1, True), (8192, True), (8193, False)])
def test_page_size_bounds(fleet: Fleet, size: int, ok: bool) -> None:
    connect(fleet)
    if ok:
        assert go(fleet, "keep", page_size=size).status == "disconnected"
    else:
        with pytest.raises(DisconnectError) as info:
            go(fleet, "keep", page_size=size)
        assert str(info.value) == "page_size must be between 1 and 8192"


def test_a_user_already_disconnected_is_reported_as_such(fleet: Fleet) -> None:
    connect(fleet)
    go(fleet, "keep")
    again = go(fleet, "keep")
    assert (again.status, again.message) == ("disconnected", "already disconnected; nothing to do")


def test_the_report_counts_each_table(fleet: Fleet) -> None:
    dep = connect(fleet)
    report = go(fleet, "migrate", page_size=2)
    for name in USER_TABLES:
        count = len(dep.docs(name))
        row = report.tables[name]
        assert (row["source_count"], row["copied"], row["main_count"], row["verified"]) == (
            count, count, count, True), name


def test_finishing_an_interrupted_run_reports_what_was_verified(
        fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    connect(fleet)
    real = disconnect_module.crash_point

    def die_after_verified(name: str) -> None:
        if name == "disconnect.verified":
            raise Died(name)
        real(name)

    monkeypatch.setattr(disconnect_module, "crash_point", die_after_verified)
    with pytest.raises(Died):
        go(fleet, "migrate", page_size=2)
    monkeypatch.setattr(disconnect_module, "crash_point", real)
    verified = fleet.store.load_progress("disconnect", "u1")["verified"]
    report = go(fleet, "migrate", page_size=2)
    assert report.status == "disconnected" and report.resumed
    assert report.tables == verified and report.verified
    [entry] = [e for e in fleet.store.audit_log("u1") if e.event == "disconnected"]
    assert entry.detail["finished_after_interruption"] is True
    assert entry.detail["tables"] == len(verified)


def test_a_recopied_table_is_announced(fleet: Fleet) -> None:
    dep = connect(fleet)
    _write_during_copy(fleet, dep, lambda d: d.insert("conversations",
                                                      {"title": "Late", "userId": "u1"}))
    with pytest.raises(DisconnectError):
        go(fleet, "migrate", page_size=2)
    dep.before_call = None
    events: list[tuple[str, dict[str, Any]]] = []
    report = go(fleet, "migrate", page_size=2, hook=lambda e, d: events.append((e, d)))
    assert report.verified
    recopied = [d for e, d in events if e == "recopied"]
    assert recopied and recopied[0]["table"] == "conversations" and recopied[0]["added"] == 1


def test_a_verify_read_that_never_finishes_names_the_deployment(fleet: Fleet) -> None:
    dep = connect(fleet)
    original = dep.run
    starts: Counter[str] = Counter()

    def run(kind: str, path: str, args: dict[str, Any] | None = None) -> Any:
        if path == "byod:exportPage" and (args or {}).get("cursor") is None:
            starts[args["table"]] += 1  # type: ignore[index]
            if starts[args["table"]] == 2:  # type: ignore[index]
                # the verify pass: a page that neither finishes nor moves on
                return {"page": [], "isDone": False, "continueCursor": None}
        return original(kind, path, args)

    dep.run = run  # type: ignore[method-assign]
    with pytest.raises(DisconnectError) as info:
        go(fleet, "migrate", page_size=50)
    assert "u1" in str(info.value) and "neither finished nor moved its cursor" in str(info.value)
    assert info.value.__cause__ is not None
    assert getattr(info.value.__cause__, "deployment", None) == "u1"


def test_a_refusal_names_the_lease_holder_and_how_to_end_it() -> None:
    exc = LeaseHeld("u1", "disconnect:42:abc", 0.0)
    tail = ("lease until 1970-01-01T00:00:00Z; `byod leases` shows it, `byod leases break "
            "u1 --yes` ends it if that process is gone")
    describe = disconnect_module._describe_lease
    nobody = SimpleNamespace(current_lease=lambda deployment: None)
    assert describe(nobody, exc) == f"disconnect:42:abc, {tail}"
    other = SimpleNamespace(current_lease=lambda deployment: SimpleNamespace(
        holder="someone-else", pid=7, host="h"))
    assert describe(other, exc) == f"disconnect:42:abc, {tail}"
    no_pid = SimpleNamespace(current_lease=lambda deployment: SimpleNamespace(
        holder="disconnect:42:abc", pid=None, host="h"))
    assert describe(no_pid, exc) == f"disconnect:42:abc, {tail}"
    same = SimpleNamespace(current_lease=lambda deployment: SimpleNamespace(
        holder="disconnect:42:abc", pid=42, host="box"))
    assert describe(same, exc) == f"disconnect:42:abc, process 42 on box, {tail}"
