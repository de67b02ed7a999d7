"""``byod diff``, ``byod plan`` and ``byod graph`` as a user runs them."""

from __future__ import annotations

import json
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
    code, out = run("diff", "0003_content_package", "head", "--json", "--versions", str(versions_dir))
    data = json.loads(out)
    assert data["target"] == "0006_merge" and data["blocking"] == 0
    assert {c["code"] for c in data["changes"]} >= {"BYOD-D203", "BYOD-D205", "BYOD-D210", "BYOD-D301"}


def test_plan_text_json_and_errors(versions_dir: Path, tmp_path: Path) -> None:
    code, out = run("plan", "--from", "1", "--to", "5", "--versions", str(versions_dir))
    assert code == 0 and "2 deploy(s)" in out and "rename content -> body" in out
    code, out = run("plan", "--from", "1", "--json", "--versions", str(versions_dir))
    assert json.loads(out)["target"] == "0006_merge"
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
    assert code == 0 and out.startswith("graph LR") and "0006_merge (head)" in out
    assert out.count("-->") == 6
    code, out = run("graph", "--format", "dot", "--versions", str(versions_dir))
    assert "digraph versions" in out and "peripheries=2" in out
    from engine.cli.planning import render_graph
    from engine.graph import VersionGraph
    from engine.schema.loader import load_versions

    text = render_graph(VersionGraph(load_versions(versions_dir)), counts={"0003_content_package": 7})
    assert "7 deployment(s)" in text
