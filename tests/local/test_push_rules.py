"""Pushes refuse what Convex refuses when it evaluates a schema, with Convex's error codes:
every corpus case of tests/check/corpus is pushed to a running local deployment (its
schema export in a schema module, through ``/api/deploy2/start_push``) and the answer
must be the case's expected verdict, the same one ``byod check`` gives
(tests/check/test_corpus.py). A few cases also go through the real ``convex deploy`` CLI.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.local import LocalDeployment, LocalFleet
from tests.check.corpus_cases import Case, load_cases
from tests.check.test_corpus import export_of

from .conftest import Project, needs_toolchain

pytestmark = [pytest.mark.local, needs_toolchain]

CASES = load_cases()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    f = LocalFleet.start(1, tmp_path_factory.mktemp("push-rules") / "fleet", timeout=60)
    try:
        yield f
    finally:
        f.stop()


def _module(export: dict[str, Any]) -> dict[str, Any]:
    """A schema module whose default export answers ``export()`` like ``defineSchema``'s."""

    text = json.dumps(export)  # lone surrogates stay \\ud800 escapes, as V8 writes them
    source = f"export default {{ export() {{ return {json.dumps(text)}; }} }};\n"
    return {"path": "schema.js", "source": source, "sourceMap": None, "environment": "isolate"}


def start_push(dep: LocalDeployment, export: dict[str, Any] | None,
               source: str | None = None) -> httpx.Response:
    schema = _module(export) if export is not None else None
    if source is not None:
        schema = {"path": "schema.js", "source": source, "sourceMap": None,
                  "environment": "isolate"}
    body = {
        "dryRun": False,
        "functions": "convex/",
        "appDefinition": {
            "definition": None, "dependencies": [],
            "schema": schema,
            "changedModules": [], "unchangedModuleHashes": [], "udfServerVersion": "1.48.0",
        },
        "componentDefinitions": [],
        "nodeDependencies": [],
    }
    return httpx.post(f"{dep.url}/api/deploy2/start_push", json=body, timeout=60,
                      headers={"Authorization": f"Convex {dep.admin_key}"})


def finish_push(dep: LocalDeployment, started: dict[str, Any]) -> None:
    r = httpx.post(f"{dep.url}/api/deploy2/finish_push", json={"startPush": started,
                   "dryRun": False}, timeout=60,
                   headers={"Authorization": f"Convex {dep.admin_key}"})
    assert r.status_code == 200, r.text


def _verdict(r: httpx.Response) -> str:
    if r.status_code == 200:
        return "ok"
    assert r.status_code == 400, r.text
    return str(r.json()["code"])


@pytest.mark.parametrize("case", [c for c in CASES if not c.existing_tables],
                         ids=[c.id for c in CASES if not c.existing_tables])
def test_push_verdict(fleet: LocalFleet, case: Case, tmp_path: Path) -> None:
    export, _ = export_of(case, tmp_path)
    r = start_push(fleet.deployments[0], export)
    assert _verdict(r) == case.push, r.text
    if case.push != "ok":
        assert r.json()["message"].startswith("Hit an error while evaluating your schema:\n")


def _tables(names: list[str]) -> dict[str, Any]:
    doc = {"type": "object", "value": {}}
    return {"tables": [{"tableName": n, "indexes": [], "documentType": doc} for n in names],
            "schemaValidation": True}


def test_table_limit_counts_tables_already_on_the_deployment(tmp_path: Path) -> None:
    """crates/database/src/bootstrap_model/table.rs:532: MAX_USER_TABLES counts the tables
    the deployment holds, not only the pushed schema's."""

    fleet = LocalFleet.start(1, tmp_path / "fleet", timeout=60)
    try:
        dep = fleet.deployments[0]
        # a real defineSchema (finishing a push activates it): 9,999 tables
        first = start_push(dep, None, source=(
            'import { defineSchema, defineTable } from "convex/server";\n'
            "const tables = {};\n"
            'for (let i = 0; i < 9999; i++) tables["old" + i] = defineTable({});\n'
            "export default defineSchema(tables);\n"))
        assert first.status_code == 200, first.text
        finish_push(dep, first.json())
        assert _verdict(start_push(dep, _tables(["new0"]))) == "ok"        # 10,000 in all
        r = start_push(dep, _tables(["new0", "new1"]))                     # 10,001
        assert _verdict(r) == "TooManyTables"
        assert "Number of tables cannot exceed 10000." in r.json()["message"]
    finally:
        fleet.stop()


def _gate_children(harness_pid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True,
                         check=True).stdout
    return [int(line.split()[0]) for line in out.splitlines()[1:]
            if "engine.check.push_gate" in line and int(line.split()[1]) == harness_pid]


def test_gate_child_is_lazy_quiet_and_ends_with_the_harness(tmp_path: Path) -> None:
    fleet = LocalFleet.start(1, tmp_path / "fleet", timeout=60)
    pid = fleet.pid
    try:
        assert pid is not None and _gate_children(pid) == []   # lazily: no push yet
        dep = fleet.deployments[0]
        assert _verdict(start_push(dep, _tables(["a"]))) == "ok"
        [child] = _gate_children(pid)
        environ = Path(f"/proc/{child}/environ").read_bytes().decode(errors="replace")
        assert dep.admin_key not in environ and "BYOD_" not in environ.replace(
            "BYOD_HARNESS_PYTHON", "")
        assert _verdict(start_push(dep, _tables(["a", "b"]))) == "ok"
        assert _gate_children(pid) == [child]                    # started once
    finally:
        fleet.stop()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{child}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists() or _zombie(child)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_gate_child_ends_when_the_harness_is_killed(tmp_path: Path) -> None:
    fleet = LocalFleet.start(1, tmp_path / "fleet", timeout=60)
    pid = fleet.pid
    assert pid is not None
    try:
        assert _verdict(start_push(fleet.deployments[0], _tables(["a"]))) == "ok"
        [child] = _gate_children(pid)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{child}").exists() \
                and not _zombie(child):
            time.sleep(0.1)
        assert not Path(f"/proc/{child}").exists() or _zombie(child)
    finally:
        fleet.stop()


# ---------------------------------------------------------------------------------------
# The real CLI
# ---------------------------------------------------------------------------------------

CLI_SCHEMAS = {
    "by_id": ('defineTable({ a: v.string() }).index("by_id", ["a"])', "IndexNameReserved"),
    "creation_time": ('defineTable({ a: v.string() }).index("by_a", ["a", "_creationTime"])',
                      "IndexFieldsContainCreationTime"),
    "missing_field": ('defineTable({ a: v.string() }).index("by_b", ["b"] as any)',
                      "SchemaDefinitionError"),
    "dimensions_1": ('defineTable({ e: v.array(v.float64()) }).vectorIndex("v", '
                     '{ vectorField: "e", dimensions: 1 })', "InvalidVectorDimensionError"),
}


def _schema_ts(table: str) -> str:
    return ('import { defineSchema, defineTable } from "convex/server";\n'
            'import { v } from "convex/values";\n'
            f"export default defineSchema({{ t: {table} }});\n")


@pytest.mark.toolchain
@pytest.mark.parametrize("name", sorted(CLI_SCHEMAS))
def test_cli_deploy_is_refused_with_convex_code(project: Project, fleet: LocalFleet,
                                               name: str) -> None:
    table, code = CLI_SCHEMAS[name]
    project.write({"schema.ts": _schema_ts(table)})
    result = project.deploy(fleet.deployments[0])
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert code in output and "Hit an error while evaluating your schema" in output
    assert fleet.deployments[0].admin_key not in output


def test_push_overhead(fleet: LocalFleet, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The gate adds little to a push: a typical schema (30 tables, 20 fields and 5 indexes
    each) pushed with the gate on and, on a second fleet, with it off (no interpreter)."""

    export = _tables([f"t{i}" for i in range(30)])
    for t in export["tables"]:
        t["documentType"] = {"type": "object", "value": {
            f"f{i}": {"fieldType": {"type": "string"}, "optional": False} for i in range(20)}}
        t["indexes"] = [{"indexDescriptor": f"by_f{i}", "fields": [f"f{i}"]} for i in range(5)]

    def median_push(dep: LocalDeployment) -> float:
        def timed() -> float:
            started = time.perf_counter()
            assert start_push(dep, export).status_code == 200
            return time.perf_counter() - started
        timed()  # warm: module set stored and loaded, gate started
        return statistics.median(timed() for _ in range(11))

    with_gate = median_push(fleet.deployments[0])
    monkeypatch.setattr(sys, "executable", "")
    off = LocalFleet.start(1, tmp_path / "off", timeout=60)
    monkeypatch.undo()
    try:
        without = median_push(off.deployments[0])
    finally:
        off.stop()
    print(f"start_push median: {with_gate * 1000:.1f} ms with the gate, "
          f"{without * 1000:.1f} ms without (+{(with_gate - without) * 1000:.1f} ms)")
    assert with_gate - without < 0.1
