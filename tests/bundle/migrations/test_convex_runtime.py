"""Every generated data migration of every edge of schema_versions/, run with the real
Convex test runtime (convex-test + vitest, one vitest run for all edges)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.convex.toolchain import Toolchain, node_executable
from engine.plan.diff import diff
from engine.plan.graph import VersionGraph
from engine.plan.planner import edge_diff
from engine.schema.loader import load_versions
from engine.schema.models import (
    Consent,
    FieldDef,
    Float64V,
    LiteralV,
    MigrationOp,
    Schema,
    StringV,
    Table,
    UnionV,
)
from engine.schema.validate_doc import validate_document
from tests.bundle.migrations.harness import Case, _pythonic, expected_docs, write_case

pytestmark = [pytest.mark.toolchain, pytest.mark.slow]

PROJECT = Path(__file__).resolve().parent / "project"

# Realistic values where a step's code depends on them (everything else is generic).
OVERRIDES = {
    "usageRecords.date": lambda k: f"2024-03-{k % 28 + 1:02d}",
    "ttsCache.voice": lambda k: ["legacy", "alloy", "echo"][k % 3],
    "attachments.mimeType": lambda k: ["image/png", "text/plain", "application/pdf",
                                       "application/zip"][k % 4],
    "items.code": lambda k: ["1", "2", "x"][k % 3],
}


def _lits(*values: str) -> FieldDef:
    return FieldDef(type=UnionV(members=tuple(LiteralV(value=v) for v in values)))


def fixture_case() -> Case:
    """The operations the shipped versions do not use: copy, convert by mapping with a
    default, map_values with a default, a drop by hint, delete-all-matching."""

    src = Schema(tables={"items": Table(name="items", fields={
        "title": FieldDef(type=StringV()),
        "code": FieldDef(type=StringV(), optional=True),
        "state": _lits("a", "b", "c", "z"),
        "legacy": FieldDef(type=Float64V(), optional=True),
    })})
    dst = Schema(tables={"items": Table(name="items", fields={
        "title": FieldDef(type=StringV()),
        "heading": FieldDef(type=StringV()),
        "code": FieldDef(type=Float64V(), optional=True),
        "state": _lits("a", "b"),
    })})
    hints = (
        MigrationOp(op="copy", table="items", from_field="title", field="heading"),
        MigrationOp(op="convert", table="items", field="code", mapping={"1": 1, "2": 2}, default=0),
        MigrationOp(op="map_values", table="items", field="state", mapping={"c": "a"}, default="b"),
        MigrationOp(op="drop_field", table="items", field="legacy"),
    )
    d = diff(src, dst, hints, Consent(drop_fields=("items.legacy",)))
    assert not d.blocking
    return Case("fixture_all_ops", src, dst, d.steps, OVERRIDES)


def failing_case() -> Case:
    """An unmapped value: the step must fail, name the document, and write nothing."""

    src = Schema(tables={"items": Table(name="items", fields={"state": _lits("a", "b", "z")})})
    dst = Schema(tables={"items": Table(name="items", fields={"state": _lits("a", "b")})})
    step = diff(src, dst, [MigrationOp(op="map_values", table="items", field="state",
                                       mapping={"z": "zz"})]).changes[0].steps[0]
    # seeds cycle a, b, z: document 2 is the first "z", mapped to a value the target rejects
    return Case("fixture_failing_document", src, dst, (step,), {}, expect_error_at=2)


def shipped_cases(versions_dir: Path) -> list[Case]:
    g = VersionGraph(load_versions(versions_dir))
    cases = []
    for parent, child in sorted(g.graph.edges):
        d = edge_diff(g, parent, child)
        cases.append(Case(f"{parent}__{child}", g.get(parent).schema, g.get(child).schema,
                          d.steps, OVERRIDES))
    return cases


def test_generated_migrations_on_every_edge(tmp_path: Path, versions_dir: Path) -> None:
    toolchain = Toolchain.find()
    if not (toolchain.node_modules / "vitest").exists():
        pytest.skip("the npm toolchain is not installed (byod toolchain install)")
    for name in ("migrations.test.ts", "vitest.config.mjs"):
        shutil.copy(PROJECT / name, tmp_path / name)
    (tmp_path / "package.json").write_text('{"type": "module", "private": true}\n')
    toolchain.link_node_modules(tmp_path)
    cases = shipped_cases(versions_dir) + [fixture_case(), failing_case()]
    assert len(cases) >= 8
    assert {op for c in cases for op in (s.op for s in c.steps)} == {
        "backfill", "rename", "copy", "map_values", "convert", "drop_field", "delete_rows", "custom"}
    for case in cases:
        write_case(tmp_path, case, EngineConfig())
    vitest = toolchain.node_modules / "vitest" / "vitest.mjs"
    proc = subprocess.run(
        [node_executable(), str(vitest), "run", "--reporter=json", "--outputFile=results.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    results_file = tmp_path / "results.json"
    assert results_file.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(results_file.read_text())
    outcomes = {a["title"]: (a["status"], a.get("failureMessages"))
                for f in results["testResults"] for a in f["assertionResults"]}
    failed = {k: v for k, v in outcomes.items() if v[0] != "passed"}
    assert not failed, json.dumps(failed, indent=1)[:6000]
    assert set(outcomes) == {c.name for c in cases}, proc.stderr[-2000:]

    # The Python oracle also checks what convex-test does not (record values), and the
    # values themselves against the reference semantics of each declarative step.
    for case in cases:
        if case.expect_error_at is not None:
            continue
        report = json.loads((tmp_path / "out" / f"{case.name}.json").read_text())
        seeds = json.loads((tmp_path / "edges" / case.name / "case.json").read_text())["seeds"]
        want, opaque = expected_docs(seeds, case.steps)
        for table, rows in want.items():
            if f"{table}.*" in opaque:
                continue
            got = report["docs"][table]
            assert len(got) == len(rows), (case.name, table)
            for doc, exp in zip(got, rows):
                body = {k: v for k, v in doc.items() if not k.startswith("_")}
                keys = {k for k in set(body) | set(exp) if f"{table}.{k}" not in opaque}
                assert {k: body.get(k) for k in keys} == {k: exp.get(k) for k in keys}, (
                    case.name, table, doc["_id"])
        for table, docs in report["docs"].items():
            if table not in case.target.tables:
                continue
            for doc in docs:
                errors = validate_document(_pythonic(doc), case.target.tables[table])
                assert errors == [], (case.name, table, doc["_id"], errors)
        for step in case.steps:
            assert report["steps"][step.function_name]["again"]["changed"] == 0


def test_custom_code_is_type_checked_in_the_bundle() -> None:
    """tsc over a widened bundle accepts well-typed custom code and rejects a transform
    that returns a value the schema does not allow."""

    from engine.bundle.compiler import compile_bundle
    from engine.check.deep import CheckItem, check_bundles

    toolchain = Toolchain.find()
    if not (toolchain.node_modules / "typescript").exists():
        pytest.skip("the npm toolchain is not installed (byod toolchain install)")
    src = Schema(tables={"items": Table(name="items", fields={
        "title": FieldDef(type=StringV()), "size": FieldDef(type=Float64V(), optional=True)})})
    items = []
    for label, code in (("good", "return doc.size === undefined ? { size: doc.title.length } : null;"),
                        ("bad", "return { size: doc.title };")):
        d = diff(src, src, [MigrationOp(op="custom", table="items", code=code)])
        bundle = compile_bundle(src, version_id=f"custom_{label}", kind="widen",
                                data_steps=d.steps, config=EngineConfig())
        items.append(CheckItem(label=label, file=label, schema=src, bundle=bundle))
    problems = check_bundles(items, toolchain)
    tsc = [p for p in problems if p.code.startswith("TS") or "byodMigrations" in p.render()]
    assert tsc, [p.render() for p in problems]
    assert all("bad" in p.render() or p.file == "bad" for p in tsc), [p.render() for p in tsc]
