"""Every corpus case through ``byod check`` (the CLI, ``--json``) and through the rule set
the local deployments' push gate runs; both must give the case's expected verdict.
tests/local/test_push_rules.py pushes the same cases to a running local deployment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.check.convex_rules import RULES, refusals
from engine.schema.loader import load_version_file
from engine.schema.models import Location

from .corpus_cases import Case, load_cases
from .test_cli_check import invoke

CASES = load_cases()
YAML_CASES = [c for c in CASES if c.check is not None]


def export_of(case: Case, work: Path) -> tuple[dict, list[str]]:
    """The schema export a push of this case carries, and the tables already there."""

    if case.export is not None:
        existing = [f"existing{i}" for i in range(case.existing_tables)]
        return case.export, existing
    work.mkdir(parents=True, exist_ok=True)
    path = work / "0001_case.yaml"
    shutil.copy(case.path, path)
    version = load_version_file(path)
    return version.schema.located(Location.USER).to_convex_json(), []


def test_corpus_covers_every_rule() -> None:
    """At least one case per rule (byod-only rules need a Python-built version and are
    tested in test_rules.py), and every case cites a backend source file."""

    covered = {code for c in CASES for code in (c.check or ())} | {
        c.code for c in CASES if c.code}
    missing = {code for code, rule in RULES.items() if rule.kind != "byod"} - covered
    assert not missing, f"rules without a corpus case: {sorted(missing)}"
    for c in CASES:
        assert c.source.startswith("crates/") and ":" in c.source, c.id
    assert len(CASES) >= 70


@pytest.mark.parametrize("case", YAML_CASES, ids=[c.id for c in YAML_CASES])
def test_byod_check_verdict(case: Case, tmp_path: Path) -> None:
    versions = tmp_path / "v"
    versions.mkdir()
    shutil.copy(case.path, versions / "0001_case.yaml")
    result = invoke(tmp_path, "--versions", str(versions), "--json")
    report = json.loads(result.output)
    got = sorted({p["code"] for p in report["problems"]})
    assert got == sorted(case.check or ()), result.output
    errors = [c for c in got if c.startswith("BYOD-E")]
    assert result.exit_code == (1 if errors else 0)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_push_gate_rules_verdict(case: Case, tmp_path: Path) -> None:
    """The gate's answer (first refusal) is the Convex code the case expects."""

    export, existing = export_of(case, tmp_path)
    answer = refusals(export, existing)
    got = answer[0]["code"] if answer else "ok"
    assert got == case.push, answer
    if answer:
        assert answer[0]["message"].startswith("Hit an error while evaluating your schema:\n")
        if case.code:
            assert answer[0]["rule"] == case.code
        else:
            assert answer[0]["rule"] in (case.check or ())
