"""Rollouts after a config change: stale deployments at the target are selected and
refreshed with one deploy, stale ones on older versions get their normal plan, fresh ones
are left alone; the dry run, the CLI summary and the reports say "refresh". Also the CLI's
small promises: a dry run never creates a registry, ``--allow-destructive`` reaches the
planner, and ``test-connection`` shows a routable user's state and note."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from engine.cli.rollout import _summary
from engine.config import AuthConfig, EngineConfig
from engine.errors import DestructivePath
from engine.fleet.artifacts import PlanKit
from engine.fleet.report import render_html
from engine.lifecycle.connect import ConnectionTest
from engine.plan.graph import VersionGraph
from engine.registry.sqlite import SqliteStore
from engine.schema.loader import load_versions
from engine.vault import generate_key
from fleet.runner.fakes import RecordingKit

from .test_rollout_unit import Fleet

ROOT = Path(__file__).resolve().parents[3]
CHANGED = EngineConfig(auth=AuthConfig(issuer_domain="https://auth.changed.example"))


@pytest.fixture()
def fleet(tmp_path):
    f = Fleet(tmp_path)
    for uid in ("s0", "s1"):
        f.add(uid, "v3", docs=4)
    f.add("a0", "v1", docs=6)
    f.kit = RecordingKit(f.book, CHANGED)  # byod.toml's auth changed
    f.add("c0", "v3", docs=3)  # connected after the change: fresh
    yield f
    f.store.close()


def test_dry_run_plans_refreshes_and_says_so(fleet):
    report = fleet.run(dry_run=True, canary=0)
    rows = {r["user_id"]: r for r in report.rows}
    assert set(rows) == {"s0", "s1", "a0"}  # c0 is healthy at the target
    for uid in ("s0", "s1"):
        assert (rows[uid]["action"], rows[uid]["deploys"]) == ("refresh", 1)
        assert [s.split(":")[-1] for s in rows[uid]["steps"]] == ["deploy_target", "verify",
                                                                   "record"]
    assert (rows["a0"]["action"], rows["a0"]["deploys"]) == ("migrate", 2)
    assert set(report.plans) == {"v1"}
    fresh = fleet.kit.version_bundle("v3").fingerprint
    assert report.refresh["deployments"] == ["s0", "s1"]
    assert report.refresh["fingerprint"] == fresh
    text = "\n".join(_summary(report, None))
    assert f"refresh v3 (2 deployment(s), stale: recorded with another fingerprint; v3 now " \
           f"compiles to {fresh[:12]}): 1 deploy(s), 3 step(s), no data steps" in text
    assert "2 of them refreshes" in text
    assert all(d.deploys == 0 and d.mutations == 0 for d in fleet.deps.values())
    assert fleet.store.list_rollouts() == []


def test_rollout_refreshes_stale_deployments_with_one_deploy(fleet):
    report = fleet.run(canary=1, waves=("100%",))
    assert report.status == "completed" and report.counts == {"succeeded": 3}
    fresh = fleet.kit.version_bundle("v3").fingerprint
    for uid in ("s0", "s1"):
        row = next(r for r in report.rows if r["user_id"] == uid)
        assert (row["action"], row["refresh"], row["deploys"]) == ("refresh", True, 1)
        assert fleet.deps[uid].deploys == 1 and fleet.deps[uid].mutations == 1  # record
    assert fleet.deps["a0"].deploys == 2 and fleet.on_v3("a0")
    assert fleet.deps["c0"].deploys == 0
    for uid in ("s0", "s1", "a0", "c0"):
        user = fleet.store.get_user(uid)
        assert (user.schema_version, user.schema_fingerprint) == ("v3", fresh)
        assert fleet.deps[uid].deployed.fingerprint == fresh
    html = render_html(report)
    assert "Refresh of stale deployments" in html and html.count(">refresh<") == 2
    again = fleet.run()
    assert again.counts == {} and again.refresh == {}


def _registry_with(tmp_path: Path, version: str, fingerprint: str | None = "f" * 64) -> Path:
    registry = tmp_path / "registry.sqlite3"
    with SqliteStore(registry) as store:
        store.upsert_credentials("u1", url_ct="ct-url", key_ct="ct-key")
        store.set_connection_status("u1", "connected")
        store.set_deployment("u1", status="deployed", version=version, fingerprint=fingerprint)
    return registry


def _cli(monkeypatch, tmp_path: Path, registry: Path, *args: str):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BYOD_REGISTRY", str(registry))
    monkeypatch.setenv("BYOD_VERSIONS_DIR", str(ROOT / "schema_versions"))
    return CliRunner().invoke(cli, list(args), prog_name="byod")


def test_dry_run_without_a_registry_creates_none(tmp_path, monkeypatch):
    registry = tmp_path / "state" / "registry.sqlite3"
    plain = _cli(monkeypatch, tmp_path, registry, "rollout", "--to", "head", "--dry-run")
    assert plain.exit_code == 0, plain.output
    assert plain.output.strip() == f"no registry at {registry}: nothing to roll out"
    as_json = _cli(monkeypatch, tmp_path, registry, "rollout", "--to", "head", "--dry-run",
                   "--json")
    data = json.loads(as_json.output)
    head = VersionGraph(load_versions(ROOT / "schema_versions")).resolve("head").id
    assert (data["status"], data["deployments"], data["target"]) == ("dry_run", [], head)
    listed = _cli(monkeypatch, tmp_path, registry, "rollout", "--list")
    assert (listed.exit_code, listed.output.strip()) == (0, "no rollouts yet")
    assert not registry.exists() and not registry.parent.exists()


def test_allow_destructive_reaches_the_planner(tmp_path, monkeypatch):
    versions = load_versions(ROOT / "schema_versions")
    with pytest.raises(DestructivePath):
        PlanKit(versions, EngineConfig()).plan("0002_tags", "0001_initial")
    allowed = PlanKit(versions, EngineConfig(), allow_destructive=True)
    assert allowed.plan("0002_tags", "0001_initial").destructive_steps
    registry = _registry_with(tmp_path, "0002_tags")
    refused = _cli(monkeypatch, tmp_path, registry, "rollout", "--to", "0001_initial",
                   "--dry-run")
    assert refused.exit_code == 0, refused.output
    assert "from 0002_tags: cannot plan: down path 0002_tags -> 0001_initial deletes data" \
        in refused.output
    ok = _cli(monkeypatch, tmp_path, registry, "rollout", "--to", "0001_initial", "--dry-run",
              "--allow-destructive", "--json")
    data = json.loads(ok.output)
    assert data["plan_errors"] == {} and data["options"]["allow_destructive"] is True
    assert data["plans"]["0002_tags"]["destructive"]


@pytest.mark.parametrize("state, note", [
    ("stale", "stale: runs 0001_initial as the registry recorded it"),
    ("migrating", "migrating: on the widened bundle a__b__widen bridging a -> b"),
    ("healthy", None),
])
def test_test_connection_shows_state_and_note(tmp_path, monkeypatch, state, note):
    import engine.lifecycle.connect as connect_mod

    def fake(user_id, **_kw):
        return ConnectionTest(user_id, True, "connected", 12.0, deployed_version="0001_initial",
                              state=state, note=note)

    monkeypatch.setattr(connect_mod, "test_connection", fake)
    monkeypatch.setenv("BYOD_ENCRYPTION_KEY", generate_key())
    result = _cli(monkeypatch, tmp_path, tmp_path / "r.sqlite3", "test-connection", "--user",
                  "u1")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == (f"user u1: ok ({state}) in 12 ms, deployment on 0001_initial; "
                        "status connected")
    assert lines[1:] == ([f"  note: {note}"] if note else [])
