"""``byod diff``, ``byod plan`` and ``byod graph`` as a user runs them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from engine.cli.main import cli


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_diff_text_and_json(versions_dir: Path) -> None:
    code, out = run("diff", "3", "5", "--versions", str(versions_dir))
    assert code == 0
    assert "BYOD-D204" in out and "notes.body: renamed from content" in out
    assert "usageRecords.date: type changed: string -> number" in out
    # the hints are those of the target: 0006 carries them (the head, 0007, adds indexes only)
    code, out = run("diff", "0003_content_package", "6", "--json", "--versions", str(versions_dir))
    data = json.loads(out)
    assert data["target"] == "0006_merge" and data["blocking"] == 0
    assert {c["code"] for c in data["changes"]} >= {"BYOD-D203", "BYOD-D205", "BYOD-D210", "BYOD-D301"}


def test_plan_text_json_and_errors(versions_dir: Path, tmp_path: Path) -> None:
    code, out = run("plan", "--from", "1", "--to", "5", "--versions", str(versions_dir))
    assert code == 0 and "2 deploy(s)" in out and "rename content -> body" in out
    code, out = run("plan", "--from", "1", "--json", "--versions", str(versions_dir))
    assert json.loads(out)["target"] == "0007_reference_indexes"
    code, out = run("plan", "--from", "6", "--to", "4", "--versions", str(versions_dir))
    assert code == 1
    code, out = run("plan", "--from", "99", "--json", "--versions", str(versions_dir))
    assert code == 1 and json.loads(out)["error"] == "UnknownVersion"
    fleet = tmp_path / "fleet.json"
    fleet.write_text(json.dumps([{"deployment": "a", "version": "3"},
                                 {"deployment": "b", "version": "0005_notes_usage"}]))
    code, out = run("plan", "--fleet", str(fleet), "--versions", str(versions_dir))
    assert code == 0 and "2 deployment(s) in 2 source version(s)" in out
    fleet.write_text("{}")
    code, out = run("plan", "--fleet", str(fleet), "--versions", str(versions_dir))
    assert code == 1


def test_graph_formats(versions_dir: Path) -> None:
    code, out = run("graph", "--versions", str(versions_dir))
    assert code == 0 and out.startswith("graph LR") and "0007_reference_indexes (head)" in out
    assert out.count("-->") == 7
    code, out = run("graph", "--format", "dot", "--versions", str(versions_dir))
    assert "digraph versions" in out and "peripheries=2" in out
    from engine.plan.graph import VersionGraph
    from engine.plan.render import render_graph
    from engine.schema.loader import load_versions

    text = render_graph(VersionGraph(load_versions(versions_dir)), counts={"0003_content_package": 7})
    assert "7 deployment(s)" in text


def test_plan_refuses_a_destructive_down_path_unless_allowed(versions_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["plan", "--from", "2", "--to", "1",
                                      "--versions", str(versions_dir)])
    assert result.exit_code == 3  # refused for safety: nothing changed, a flag lets it go
    assert "down path 0002_tags -> 0001_initial deletes data" in result.output
    assert "every row of conversationTags" in result.output
    assert "--allow-destructive" in result.output and "Traceback" not in result.output
    code, out = run("plan", "--from", "2", "--to", "1", "--json", "--versions", str(versions_dir))
    refused = json.loads(out)
    assert code == 3 and refused["error"] == "DestructivePath"
    assert "every row of tags" in refused["deletes"] and len(refused["deletes"]) == 4
    code, out = run("plan", "--from", "2", "--to", "1", "--allow-destructive",
                    "--versions", str(versions_dir))
    assert code == 0 and out.count("[destructive: deletes data]") == 4
    code, out = run("plan", "--from", "2", "--to", "1", "--allow-destructive", "--json",
                    "--versions", str(versions_dir))
    data = json.loads(out)
    assert len(data["destructive"]) == 4
    assert all(s["data_step"]["op"] == "delete_rows" for s in data["steps"]
               if s.get("destructive"))


def _without_backfill(versions_dir: Path, tmp_path: Path) -> Path:
    import shutil

    work = tmp_path / "versions"
    shutil.copytree(versions_dir, work)
    v4 = work / "0004_task_priorities.yaml"
    text = v4.read_text()
    start = text.index("  - op: backfill\n    table: tasks\n    field: priority\n")
    v4.write_text(text[:start] + text[text.index("  - op:", start + 1):])
    return work


def test_diff_exits_1_when_a_change_blocks(versions_dir: Path, tmp_path: Path) -> None:
    work = _without_backfill(versions_dir, tmp_path)
    code, out = run("diff", "3", "4", "--versions", str(work))
    assert code == 1
    last = out.strip().splitlines()[-1]
    assert last.startswith("diff blocked: 1 change(s) need a hint or consent")
    assert "0003_content_package -> 0004_task_priorities" in last
    code, out = run("diff", "3", "4", "--json", "--versions", str(work))
    assert code == 1 and json.loads(out)["blocking"] == 1
    code, out = run("diff", "3", "4", "--versions", str(versions_dir))
    assert code == 0 and "diff blocked" not in out


def _registry(path: Path, versions: dict[str, str]) -> None:
    from engine.registry.open import open_store

    store = open_store(path)
    try:
        for user, version in versions.items():
            store.upsert_credentials(user, url_ct="ct", key_ct="ct")
            store.set_deployment(user, version=version)
    finally:
        store.close()


def test_graph_reads_the_configured_registry_by_default(
        versions_dir: Path, tmp_path: Path, monkeypatch) -> None:
    configured = tmp_path / "registry.sqlite3"
    monkeypatch.setenv("BYOD_CONFIG", os.devnull)
    monkeypatch.setenv("BYOD_REGISTRY", str(configured))
    code, out = run("graph", "--versions", str(versions_dir))
    assert code == 0 and "deployment(s)" not in out  # no registry file yet: plain graph
    _registry(configured, {"u1": "0003_content_package", "u2": "0003_content_package",
                           "u3": "0006_merge"})
    code, out = run("graph", "--versions", str(versions_dir))
    assert code == 0 and "2 deployment(s)" in out and "1 deployment(s)" in out
    code, out = run("graph", "--json", "--versions", str(versions_dir))
    counts = {v["id"]: v["deployments"] for v in json.loads(out)["versions"]}
    assert counts["0003_content_package"] == 2 and counts["0001_initial"] == 0
    code, out = run("graph", "--no-registry", "--versions", str(versions_dir))
    assert code == 0 and "deployment(s)" not in out
    other = tmp_path / "other.sqlite3"
    _registry(other, {"u9": "0001_initial"})
    code, out = run("graph", "--registry", str(other), "--json", "--versions", str(versions_dir))
    counts = {v["id"]: v["deployments"] for v in json.loads(out)["versions"]}
    assert counts["0001_initial"] == 1 and counts["0003_content_package"] == 0
    result = CliRunner().invoke(cli, ["graph", "--registry", str(other), "--no-registry",
                                      "--versions", str(versions_dir)])
    assert result.exit_code == 2 and "exclude each other" in result.output
