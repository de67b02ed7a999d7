"""Bundles checked with the real toolchain: tsc, the convex library's export, and the
engine's own functions executed by convex-test."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from bundle.schemas import (  # tests/bundle (pytest puts tests/ on sys.path)
    rich_schema,
    version,
)
from engine.bundle.compiler import compile_bundle, compile_version
from engine.bundle.write import write_bundle
from engine.check.deep import CheckItem, check_bundles, deep_check
from engine.config import EngineConfig
from engine.schema.loader import load_versions
from engine.schema.models import (
    DbIndex,
    FieldDef,
    Schema,
    SchemaVersion,
    StringV,
    Table,
)

pytestmark = pytest.mark.toolchain

CONFIG = EngineConfig()
VERSIONS_DIR = Path(__file__).resolve().parents[2] / "schema_versions"
RUN_FUNCTIONS = Path(__file__).resolve().parent / "js" / "run_functions.mjs"


def test_every_shipped_version_passes_the_deep_check(toolchain) -> None:
    versions = load_versions(VERSIONS_DIR)
    assert len(versions) >= 3
    problems = deep_check(versions, CONFIG, toolchain)
    assert problems == [], "\n".join(p.render() for p in problems)


def test_a_literal_schema_with_every_validator_passes(toolchain) -> None:
    problems = deep_check([version()], CONFIG, toolchain)
    assert problems == [], "\n".join(p.render() for p in problems)


def test_export_differences_name_version_table_and_path(toolchain) -> None:
    bundle = compile_version(version("0009_tampered", 9), CONFIG)
    files = dict(bundle.files)
    files["convex/schema.ts"] = files["convex/schema.ts"].replace(
        "body: v.string(),", "body: v.number(),", 1
    )
    assert files["convex/schema.ts"] != bundle.files["convex/schema.ts"]
    tampered = dataclasses.replace(bundle, files=files)
    item = CheckItem(
        label="0009_tampered",
        file="schema_versions/0009_tampered.yaml",
        schema=rich_schema(),
        bundle=tampered,
    )
    problems = check_bundles([item], toolchain)
    assert [p.code for p in problems] == ["deep-export"]
    problem = problems[0]
    assert problem.file == "schema_versions/0009_tampered.yaml"
    assert problem.location == "tables.messages"
    assert "0009_tampered" in problem.message
    assert "documentType.value.body.fieldType.type" in problem.message
    assert '"string"' in problem.message and '"number"' in problem.message


def test_type_errors_are_reported_per_version(toolchain) -> None:
    broken = Schema(
        tables={
            "notes": Table(
                name="notes",
                fields={"text": FieldDef(type=StringV())},
                indexes=(DbIndex(name="by_missing", fields=("missing",)),),
            )
        }
    )
    good = version("0001_good", 1)
    bad = SchemaVersion(id="0002_bad", number=2, schema=broken)
    problems = deep_check([good, bad], CONFIG, toolchain)
    assert problems and all(p.code == "deep-tsc" for p in problems)
    assert all("0002_bad" in p.message for p in problems)
    assert problems[0].location.startswith("convex/schema.ts:")


def _tsc(toolchain, project: Path) -> subprocess.CompletedProcess[str]:
    tsc = toolchain.node_modules / "typescript" / "bin" / "tsc"
    return toolchain.run_node(tsc, ["-p", str(project), "--pretty", "false"], timeout=300)


def test_a_written_bundle_type_checks_on_its_own(toolchain, tmp_path: Path) -> None:
    """What `npx convex deploy` sees: the bundle directory with node_modules linked in; the
    CLI type-checks with convex/tsconfig.json."""

    out = write_bundle(compile_version(version(), CONFIG), tmp_path / "bundle")
    toolchain.link_node_modules(out)
    for project in (out / "tsconfig.json", out / "convex" / "tsconfig.json"):
        result = _tsc(toolchain, project)
        assert result.returncode == 0, result.stdout + result.stderr


def _run(toolchain, bundle_dir: Path, calls: list[dict]) -> list[dict]:
    job = {"toolchain": str(toolchain.root), "bundleDir": str(bundle_dir), "calls": calls}
    result = toolchain.run_node(RUN_FUNCTIONS, input=json.dumps(job), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def _ok(result: dict):
    assert result["ok"], result.get("error")
    return result["value"]


def test_engine_functions_behave(toolchain, tmp_path: Path) -> None:
    schema = Schema(
        tables={"notes": Table(name="notes", fields={"text": FieldDef(type=StringV())})}
    )
    bundle = compile_bundle(schema, version_id="0004_notes", config=CONFIG)
    out = write_bundle(bundle, tmp_path / "bundle")
    toolchain.link_node_modules(out)
    docs = [{"_id": "old1", "_creationTime": 1.0, "text": "a"}, {"text": "b"}, {"text": "c"}]
    calls = [
        {"kind": "query", "path": "byod:version"},
        {"kind": "query", "path": "byod:ping"},
        {
            "kind": "mutation",
            "path": "byod:recordVersion",
            "args": {
                "version": "0004_notes",
                "fingerprint": bundle.fingerprint,
                "kind": "version",
                "planId": "p1",
            },
        },
        {"kind": "query", "path": "byod:version"},
        {
            "kind": "mutation",
            "path": "byod:importPage",
            "args": {"table": "notes", "documents": docs},
        },
        {
            "kind": "query",
            "path": "byod:exportPage",
            "args": {"table": "notes", "cursor": None, "numItems": 2},
        },
        {
            "kind": "query",
            "path": "byod:countPage",
            "args": {"table": "notes", "cursor": None, "numItems": 2},
        },
        {"kind": "mutation", "path": "byod:deletePage", "args": {"table": "notes", "numItems": 2}},
        {"kind": "mutation", "path": "byod:deletePage", "args": {"table": "notes", "numItems": 2}},
        {
            "kind": "query",
            "path": "byod:countPage",
            "args": {"table": "notes", "cursor": None, "numItems": 10},
        },
        {
            "kind": "query",
            "path": "byod:exportPage",
            "args": {"table": "accounts", "cursor": None, "numItems": 1},
        },
        {
            "kind": "query",
            "path": "byod:exportPage",
            "args": {"table": "notes", "cursor": None, "numItems": 0},
        },
        {
            "kind": "mutation",
            "path": "byod:importPage",
            "args": {"table": "notes", "documents": [{"text": 5, "_id": "src9"}]},
        },
        {
            "kind": "mutation",
            "path": "byod:recordStep",
            "args": {
                "stepId": "s1",
                "version": "0004_notes",
                "status": "running",
                "cursor": "c1",
                "processed": 10,
            },
        },
        {
            "kind": "mutation",
            "path": "byod:recordStep",
            "args": {
                "stepId": "s1",
                "version": "0004_notes",
                "status": "completed",
                "processed": 20,
            },
        },
        {
            "kind": "mutation",
            "path": "byod:recordStep",
            "args": {"stepId": "s2", "version": "0004_notes", "status": "running", "processed": 0},
        },
        {"kind": "query", "path": "byod:appliedSteps"},
    ]
    (
        v0,
        ping,
        recorded_id,
        v1,
        imported,
        page,
        count,
        del1,
        del2,
        count2,
        unknown,
        bad_size,
        rejected,
        step1,
        step1b,
        step2,
        steps,
    ) = _run(toolchain, out, calls)

    assert _ok(v0) == {
        "version": "0004_notes",
        "fingerprint": bundle.fingerprint,
        "kind": "version",
        "convexVersion": CONFIG.convex_version,
        "recorded": None,
    }
    assert _ok(ping) == {"ok": True, "version": "0004_notes"}
    recorded = _ok(v1)["recorded"]
    assert recorded["_id"] == _ok(recorded_id)
    assert {k: recorded[k] for k in ("version", "fingerprint", "kind", "planId")} == {
        "version": "0004_notes",
        "fingerprint": bundle.fingerprint,
        "kind": "version",
        "planId": "p1",
    }

    ids = _ok(imported)
    assert len(ids) == 3 and "old1" not in ids
    first = _ok(page)
    assert [d["text"] for d in first["page"]] == ["a", "b"]
    assert [d["_id"] for d in first["page"]] == ids[:2]
    assert all("_creationTime" in d for d in first["page"]) and first["isDone"] is False
    assert _ok(count)["count"] == 2 and _ok(count)["isDone"] is False
    assert _ok(del1) == {"deleted": 2, "isDone": False}
    assert _ok(del2) == {"deleted": 1, "isDone": True}
    assert _ok(count2) == {
        "count": 0,
        "continueCursor": _ok(count2)["continueCursor"],
        "isDone": True,
    }

    assert not unknown["ok"] and 'unknown table "accounts"' in unknown["error"]
    assert "notes, byodVersions, byodSteps" in unknown["error"]
    assert not bad_size["ok"] and "numItems" in bad_size["error"]
    assert not rejected["ok"] and "src9" in rejected["error"]

    assert _ok(step1) == _ok(step1b)  # upsert by stepId
    rows = {r["stepId"]: r for r in _ok(steps)}
    assert set(rows) == {"s1", "s2"}
    assert rows["s1"]["status"] == "completed" and rows["s1"]["processed"] == 20
    assert rows["s1"]["cursor"] == "c1"  # kept when not given
    assert "cursor" not in rows["s2"]


def test_a_bundle_with_real_data_steps_passes(toolchain) -> None:
    from engine.plan.datasteps import make_step

    steps = [
        make_step("conversations", "backfill", {"field": "title", "value": "untitled"}),
        make_step("messages", "custom", {"code": "return doc.flag ? null : { flag: true };"}),
    ]
    schema = rich_schema()
    bundle = compile_bundle(schema, version_id="0001_steps", data_steps=steps, config=CONFIG)
    assert "convex/byodMigrations.ts" in bundle.files
    problems = check_bundles([CheckItem("0001_steps", "0001_steps", schema, bundle)], toolchain)
    assert problems == [], "\n".join(p.render() for p in problems)
