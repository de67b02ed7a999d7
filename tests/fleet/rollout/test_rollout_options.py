"""Typed rollout options and state: validation, the saved JSON shape (old records still
load), every option saved with the rollout and used again on resume (the page size and the
deployer too), bundles captured once into the connector's cache for ``push``, the CLI's
workspace deploying a resumed rollout the way it was started, the rollout listing, one row
saved per outcome (the header only when it changes), and a record in the layout earlier
engines wrote (rows inside the document) resuming."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.errors import RolloutError
from engine.events import EventLog, RolloutStarted
from engine.fleet.rollout import (
    RolloutOptions,
    RolloutState,
    load_state,
    summarize_rollouts,
)

from .test_rollout_unit import FakeConnector, Fleet
from .test_rollout_unit import fleet as fleet  # noqa: F401 - the fixture


class CachingConnector(FakeConnector):
    """A fake connector with a payload cache that records what it was asked to capture."""

    def __init__(self, make):
        super().__init__(make)
        self.cache = RecordingCache()

    def payloads(self) -> "RecordingCache":
        return self.cache


class RecordingCache:
    def __init__(self) -> None:
        self.prepared: list[list[Any]] = []

    def prepare(self, bundles, *, strict: bool = True) -> None:
        assert strict is False  # a bundle that cannot be captured fails its deployments only
        self.prepared.append(list(bundles))


def test_options_are_validated_and_normalized():
    options = RolloutOptions(waves="10%, 50%,100%", max_failures=3)
    assert options.waves == ("10%", "50%", "100%") and options.max_failures == "3"
    for bad in (dict(waves="10%,abc"), dict(max_failures="120%"), dict(deployer="ftp"),
                dict(concurrency=0), dict(canary=-1), dict(max_batch=0),
                dict(deploy_slots=0), dict(lease_ttl_s=0)):
        with pytest.raises(RolloutError):
            RolloutOptions(**bad)
    full = RolloutOptions(canary=0, waves=("5", "100%"), concurrency=3, max_failures="1",
                          dry_run=True, max_batch=7, deployer="cli", allow_destructive=True,
                          lease_ttl_s=9.0, deploy_slots=2)
    saved = full.to_json()
    assert "dry_run" not in saved  # a mode of one run, never saved
    assert RolloutOptions.from_json(saved, dry_run=True) == full


def test_records_written_before_the_types_still_load():
    old = {"rollout_id": "r-1", "target": "v3", "status": "halted", "created_at": 1.0,
           "max_failures": 0, "updated_at": 2.0, "halted_reason": "canary u0 failed",
           "options": {"canary": 1, "waves": ["100%"], "concurrency": 2,
                       "max_failures": "0", "deployer": "custom", "allow_destructive": False},
           "waves": [{"name": "canary", "deployments": ["u0"]}],
           "deployments": {"u0": {"user_id": "u0", "status": "failed", "before": "v1",
                                  "wave": "canary", "action": "migrate", "error": "boom",
                                  "deploys": 0}},
           "something_newer": {"kept": True}}
    state = RolloutState.from_json(old)
    assert state.options.deployer == "cli" and state.options.max_batch is None
    assert state.deployments["u0"].outcome == {"error": "boom", "deploys": 0}
    again = state.to_json()
    assert again["something_newer"] == {"kept": True}
    assert again["deployments"] == old["deployments"]
    assert {k: again[k] for k in ("target", "status", "max_failures", "waves")} == \
        {k: old[k] for k in ("target", "status", "max_failures", "waves")}


def test_saved_record_keeps_its_shape(fleet: Fleet):
    for i in range(3):
        fleet.add(f"u{i}")
    report = fleet.run(canary=1, waves=("100%",))
    doc = fleet.store.load_rollout(report.rollout_id)
    assert RolloutState.from_json(doc).to_json() == doc
    assert set(doc) >= {"rollout_id", "target", "status", "created_at", "max_failures",
                        "options", "waves", "deployments", "updated_at"}
    row = doc["deployments"]["u1"]
    assert row["status"] == "succeeded" and row["wave"] == "100%" and row["deploys"] == 2
    assert report.rows == list(doc["deployments"].values())


def test_resume_uses_every_saved_option(fleet: Fleet):
    """The page size and the deployer a rollout was started with are saved, and a resumed
    run uses them (and the rest of the saved options), whatever it is given."""

    for i in range(3):
        fleet.add(f"u{i}", docs=12)
    fleet.deps["u0"].fault = "revoked"
    connector = CachingConnector(fleet.adapters)
    first = fleet.run(canary=1, waves=("100%",), concurrency=1, max_batch=4, deployer="cli",
                      max_failures="0", lease_ttl_s=7.0, connector=connector)
    assert first.status == "halted"
    saved = load_state(fleet.store, first.rollout_id).options
    assert (saved.max_batch, saved.deployer, saved.concurrency, saved.lease_ttl_s) == (
        4, "cli", 1, 7.0)
    fleet.deps["u0"].fault = None
    fleet.kit.max_batch = None  # a fresh process: nothing left of the first run
    log = EventLog()
    again = fleet.run(resume=first.rollout_id, connector=connector, emit=log)  # defaults
    assert again.status == "completed" and again.counts == {"succeeded": 3}
    assert connector.cache.prepared == []  # cli: nothing captured, on either run
    assert fleet.kit.max_batch == 4
    assert all(row["pages"] == 6 for row in again.rows)  # 2 data steps, 12 docs, 4 a page
    assert log.of(RolloutStarted)[0].concurrency == 1
    assert again.options == saved.to_json()
    assert load_state(fleet.store, first.rollout_id).options == saved


def test_push_captures_each_bundle_once_into_the_connectors_cache(fleet: Fleet):
    for i in range(3):
        fleet.add(f"u{i}")
    connector = CachingConnector(fleet.adapters)
    report = fleet.run(canary=0, waves=("100%",), connector=connector)
    assert report.status == "completed"
    [bundles] = connector.cache.prepared  # one capture pass, before any deployment
    assert [b.version_id for b in bundles][-1] == "v3" and len(bundles) == 2
    dry = CachingConnector(fleet.adapters)
    fleet.add("u9")
    fleet.run(dry_run=True, connector=dry)
    assert dry.cache.prepared == []


def test_resume_through_the_workspace_deploys_as_it_was_started(fleet: Fleet, monkeypatch):
    import engine.convex.connector as connector_mod
    import engine.fleet.rollout as flow_mod
    from engine.commands import fleet as verbs
    from engine.commands.workspace import Workspace

    fleet.add("u0")
    fleet.deps["u0"].fault = "revoked"
    first = fleet.run(canary=1, deployer="cli")
    assert first.status == "halted"
    built: list[str] = []
    seen: dict[str, Any] = {}

    class Recording:
        def __init__(self, config, kind="cli", **_kw):
            built.append(kind)

    def flow(target, **kw):
        seen.update(kw, target=target)
        return "report"

    monkeypatch.setattr(connector_mod, "HttpConnector", Recording)
    monkeypatch.setattr(flow_mod, "rollout", flow)
    ws = Workspace.open(fleet.kit.config, deployer="push", store=fleet.store,
                        vault=fleet.vault, graph=fleet.kit.graph)
    assert verbs.rollout(ws, None, RolloutOptions(), resume=first.rollout_id) == "report"
    assert built == ["cli"] and isinstance(seen["connector"], Recording)
    assert seen["resume"] == first.rollout_id and seen["store"] is fleet.store
    verbs.rollout(ws, "v3", canary=0)  # keyword options; the workspace's deployer
    assert built == ["cli", "push"] and seen["options"] == RolloutOptions(canary=0)


def test_summaries_list_rollouts_only(fleet: Fleet):
    fleet.add("u0")
    report = fleet.run(canary=0)
    fleet.store.save_rollout("disconnect:u3", {"state": "running", "tables": {}})
    fleet.store.save_rollout("r-odd", {"rollout_id": "r-odd", "tables": {}})
    [row] = summarize_rollouts(fleet.store)
    assert row["rollout_id"] == report.rollout_id and row["counts"] == {"succeeded": 1}
    assert (row["target"], row["status"]) == ("v3", "completed") and row["updated_at"]


def _spy_saves(fleet: Fleet, monkeypatch) -> list[tuple[str, str]]:
    """Record which save the rollout makes (whole record, header, one row) and for whom."""

    calls: list[tuple[str, str]] = []
    for name in ("save_rollout", "save_rollout_header", "save_deployment_row"):
        real = getattr(fleet.store, name)

        def spy(rollout_id, *args, _real=real, _name=name):
            calls.append((_name, args[0] if _name == "save_deployment_row" else rollout_id))
            return _real(rollout_id, *args)

        monkeypatch.setattr(fleet.store, name, spy)
    return calls


def test_a_run_saves_one_row_per_outcome_and_the_header_when_it_changes(fleet: Fleet,
                                                                        monkeypatch):
    for i in range(4):
        fleet.add(f"u{i}")
    fleet.deps["u2"].fault = "revoked"
    calls = _spy_saves(fleet, monkeypatch)
    first = fleet.run(canary=0, waves=("100%",), concurrency=1, max_failures="0")
    assert first.status == "halted"
    rid = first.rollout_id
    # the whole record once (created), one row per outcome, the header when the run ends
    assert calls[0] == ("save_rollout", rid) and calls[-1] == ("save_rollout_header", rid)
    assert sorted(u for kind, u in calls if kind == "save_deployment_row") == \
        ["u0", "u1", "u2"]
    assert len(calls) == 5
    assert fleet.store.rollout_counts(rid) == {"failed": 1, "pending": 1, "succeeded": 2}
    calls.clear()
    fleet.deps["u2"].fault = None
    again = fleet.run(resume=rid)
    assert again.status == "completed" and again.counts == {"succeeded": 4}
    # a resume: the header when it starts and ends, a row for each deployment it worked
    assert [k for k, _ in calls] == ["save_rollout_header", "save_deployment_row",
                                     "save_deployment_row", "save_rollout_header"]
    assert sorted(u for kind, u in calls if kind == "save_deployment_row") == ["u2", "u3"]
    [listed] = summarize_rollouts(fleet.store)
    assert listed["counts"] == {"succeeded": 4} and listed["status"] == "completed"
    doc = fleet.store.load_rollout(rid)
    assert doc["resumed"] == 1 and RolloutState.from_json(doc).to_json() == doc


def test_a_record_in_the_old_layout_resumes(fleet: Fleet):
    """A rollout saved by an engine that kept every row inside the document resumes with
    its options, skips what is done, and from then on keeps its rows apart."""

    for i in range(3):
        fleet.add(f"u{i}", docs=12)
    fleet.deps["u1"].fault = "revoked"
    first = fleet.run(canary=0, waves=("100%",), concurrency=1, max_failures="0",
                      max_batch=4)
    assert first.status == "halted"
    rid = first.rollout_id
    whole = fleet.store.load_rollout(rid)
    with fleet.store._write() as conn:  # as the previous engine stored it
        conn.execute("DELETE FROM rollout_deployments WHERE rollout_id = ?", (rid,))
        conn.execute("DELETE FROM rollout_counts WHERE rollout_id = ?", (rid,))
        conn.execute("UPDATE rollouts SET data = ?, layout = 'document' WHERE rollout_id = ?",
                      (json.dumps(whole, sort_keys=True), rid))
    assert fleet.store.load_rollout(rid) == whole
    assert summarize_rollouts(fleet.store)[0]["counts"] == {
        "failed": 1, "pending": 1, "succeeded": 1}
    done = [u for u, row in whole["deployments"].items() if row["status"] == "succeeded"]
    deploys = {u: fleet.deps[u].deploys for u in done}
    fleet.deps["u1"].fault = None
    again = fleet.run(resume=rid)
    assert again.status == "completed" and again.counts == {"succeeded": 3}
    assert {u: fleet.deps[u].deploys for u in done} == deploys  # done rows are skipped
    assert all(row["pages"] == 6 for row in again.rows if row["user_id"] not in done)
    layout = fleet.store._read("SELECT layout FROM rollouts WHERE rollout_id = ?", (rid,))
    assert layout[0][0] == "rows"
    assert fleet.store.rollout_counts(rid) == {"succeeded": 3}
    assert load_state(fleet.store, rid).options.max_batch == 4
    assert fleet.store.verify() == []
