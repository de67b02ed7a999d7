"""Rolling out to chosen users: ``only`` runs the named users alone, ``exclude`` never
touches the named ones, both are saved and kept on resume, unknown ids are refused before
anything runs (with a "did you mean"), each named user gets an audit row, and the CLI's
``--only`` / ``--exclude`` / ``--from-file``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.errors import RolloutError
from engine.fleet.rollout import RolloutOptions, load_state

from .test_rollout_unit import Fleet
from .test_rollout_unit import fleet as fleet  # noqa: F401 - the fixture


def _audit(fleet: Fleet, event: str) -> dict[str, dict]:
    return {e.user_id: e.detail for e in fleet.store.audit_log(limit=1000) if e.event == event}


def test_options_keep_the_selection_and_refuse_both():
    options = RolloutOptions(only=["u1", " u2 ", "u1", ""])
    assert options.only == ("u1", "u2") and options.exclude == ()
    saved = options.to_json()
    assert saved["only"] == ["u1", "u2"] and saved["exclude"] == []
    assert RolloutOptions.from_json(saved) == options
    assert RolloutOptions.from_json({}).only == ()  # a record from before the option
    with pytest.raises(RolloutError, match="not both"):
        RolloutOptions(only=("u1",), exclude=("u2",))


def test_only_the_chosen_users_run(fleet: Fleet):
    for i in range(4):
        fleet.add(f"u{i}")
    report = fleet.run(canary=0, waves=("100%",), only=("u1", "u3"))
    assert report.status == "completed" and report.counts == {"succeeded": 2}
    assert sorted(r["user_id"] for r in report.rows) == ["u1", "u3"]
    assert fleet.on_v3("u1") and fleet.on_v3("u3")
    assert fleet.deps["u0"].deploys == 0 and fleet.deps["u2"].deploys == 0
    assert fleet.store.get_user("u0").schema_version == "v1"
    assert report.options["only"] == ["u1", "u3"]


def test_excluded_users_are_never_touched(fleet: Fleet):
    for i in range(4):
        fleet.add(f"u{i}")
    fleet.deps["u2"].fault = "revoked"  # the known-bad one: it would halt the canary
    report = fleet.run(canary=1, waves=("100%",), max_failures="0", exclude=("u2",))
    assert report.status == "completed" and report.counts == {"succeeded": 3}
    assert "u2" not in {r["user_id"] for r in report.rows}
    assert fleet.deps["u2"].deploys == 0 and fleet.store.get_user("u2").schema_version == "v1"
    assert all(fleet.on_v3(u) for u in ("u0", "u1", "u3"))


def test_resume_keeps_the_selection(fleet: Fleet):
    for i in range(5):
        fleet.add(f"u{i}")
    fleet.deps["u1"].fault = "revoked"
    first = fleet.run(canary=1, waves=("100%",), concurrency=1, max_failures="0",
                      exclude=("u4",))
    assert first.status == "halted"
    saved = load_state(fleet.store, first.rollout_id)
    assert saved.options.exclude == ("u4",) and "u4" not in saved.deployments
    fleet.deps["u1"].fault = None
    fleet.add("u5")  # connected since: a resume works the rollout's own users only
    again = fleet.run(resume=first.rollout_id)  # default options: the saved ones win
    assert again.status == "completed" and again.counts == {"succeeded": 4}
    assert again.options["exclude"] == ["u4"]
    assert fleet.deps["u4"].deploys == 0 and fleet.deps["u5"].deploys == 0
    assert load_state(fleet.store, first.rollout_id).options.exclude == ("u4",)
    # the selection was audited once, when the rollout started
    assert list(_audit(fleet, "rollout_excluded")) == ["u4"]


def test_unknown_ids_are_refused_before_anything_runs(fleet: Fleet):
    for uid in ("alice", "bob"):
        fleet.add(uid)
    with pytest.raises(RolloutError) as caught:
        fleet.run(only=("alice", "bobb"))
    message = str(caught.value)
    assert "'bobb'" in message and "did you mean 'bob'" in message and "'alice'" not in message
    with pytest.raises(RolloutError, match="'zed'"):
        fleet.run(exclude=("zed",))
    assert fleet.store.list_rollouts() == []
    assert all(dep.deploys == 0 for dep in fleet.deps.values())
    assert not _audit(fleet, "rollout_selected") and not _audit(fleet, "rollout_excluded")


def test_the_selection_is_audited(fleet: Fleet):
    for i in range(3):
        fleet.add(f"u{i}")
    fleet.add("done", "v3")  # named, but already on the target: selected, nothing to do
    report = fleet.run(canary=0, waves=("100%",), only=("u0", "done"))
    selected = _audit(fleet, "rollout_selected")
    assert set(selected) == {"u0", "done"}
    assert selected["u0"]["rollout_id"] == report.rollout_id
    assert selected["u0"]["target"] == "v3" and selected["u0"]["scheduled"] is True
    assert selected["done"]["scheduled"] is False
    assert _audit(fleet, "rollout_excluded") == {}

    again = fleet.run(canary=0, waves=("100%",), exclude=("u1",))
    excluded = _audit(fleet, "rollout_excluded")
    assert excluded == {"u1": {"rollout_id": again.rollout_id, "target": "v3",
                               "scheduled": False}}


def test_a_dry_run_writes_no_audit_rows(fleet: Fleet):
    for i in range(2):
        fleet.add(f"u{i}")
    report = fleet.run(dry_run=True, only=("u1",))
    assert [r["user_id"] for r in report.rows] == ["u1"]
    assert not _audit(fleet, "rollout_selected")


VERSION_1 = """\
description: Notes.
parents: []
tables:
  notes:
    location: user
    fields:
      userId: string
      title: string
"""

VERSION_2 = """\
description: Notes can be pinned.
parents: [0001_initial]
tables:
  notes:
    location: user
    fields:
      userId: string
      title: string
      pinned: boolean
migrations:
  - {op: backfill, table: notes, field: pinned, value: false}
"""


def test_the_verb_selects_over_the_in_memory_fleet(tmp_path: Path):
    """``commands.rollout`` with keyword options, ``InMemoryFleet`` as the connector."""

    from engine import commands
    from engine.commands import Workspace
    from engine.config import EngineConfig
    from engine.testing import InMemoryFleet

    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "0001_initial.yaml").write_text(VERSION_1)
    (versions / "0002_pinned.yaml").write_text(VERSION_2)
    config = EngineConfig(versions_dir=versions, registry_path=tmp_path / "registry.sqlite3")
    with InMemoryFleet(tmp_path / "fleet", versions=versions, config=config) as memory:
        users = {uid: memory.connect_user(uid, "0001") for uid in ("ann", "ben", "cat")}
        ws = Workspace.open(config, store=memory.store, vault=memory.vault, connector=memory)
        report = commands.rollout(ws, "head", canary=0, exclude=["ben"])
        assert report.ok and sorted(r["user_id"] for r in report.rows) == ["ann", "cat"]
        assert users["ann"].deployment.version == "0002_pinned"
        assert users["ben"].deployment.version == "0001_initial"
        assert memory.store.get_user("ben").schema_version == "0001_initial"
        with pytest.raises(RolloutError, match="did you mean 'ben'"):
            commands.rollout(ws, "head", only=["benn"])


def test_cli_reads_the_file_and_refuses_both(tmp_path: Path):
    from engine.cli.rollout import _read_user_file, rollout_cmd

    listed = tmp_path / "users.txt"
    listed.write_text("# the pilot group\nalice\n\n  bob  # asked for it\n#carol\n")
    assert _read_user_file(listed) == ("alice", "bob")
    runner = CliRunner()
    both = runner.invoke(rollout_cmd, ["--to", "head", "--only", "a", "--exclude", "b"])
    assert both.exit_code == 2 and "cannot be used together" in both.output
    file_and_exclude = runner.invoke(rollout_cmd, ["--to", "head", "--from-file", str(listed),
                                                   "--exclude", "b"])
    assert file_and_exclude.exit_code == 2
    resumed = runner.invoke(rollout_cmd, ["--resume", "r-1", "--only", "a"])
    assert resumed.exit_code == 2 and "--resume" in resumed.output
    empty = tmp_path / "empty.txt"
    empty.write_text("# nobody\n")
    nobody = runner.invoke(rollout_cmd, ["--to", "head", "--from-file", str(empty)])
    assert nobody.exit_code == 2 and "names no user" in nobody.output
