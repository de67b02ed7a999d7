"""The benchmark scripts keep working: each runs small, prints its table and its JSON.

These check that the scripts run end to end and report the numbers they promise; the
numbers themselves are judged by running the scripts at full size (see the operator guide),
not here: timing assertions on a shared machine would only be noise.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_plan_fleet_benchmark_runs_small() -> None:
    out = subprocess.run(
        [sys.executable, "benchmarks/plan_fleet.py", "--deployments", "2000", "--versions", "40",
         "--sources", "10", "--runs", "1", "--naive-sample", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "plan_fleet (grouped)" in out.stdout
    assert "ratio naive / grouped" in out.stdout


def test_check_versions_benchmark_runs_small(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    out = subprocess.run(
        [sys.executable, "benchmarks/check_versions.py", "--versions", "20", "--runs", "1",
         "--pure-runs", "1", "--json", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "of which YAML parse" in out.stdout and "rules" in out.stdout
    assert "libyaml and pure Python load equal versions: yes" in out.stdout
    data = json.loads(report.read_text())
    assert [r["set"] for r in data] == ["shipped", "generated-20"]
    assert data[1]["files"] == 20
    assert all(r["errors"] == 0 and r["same_versions"] for r in data)


@pytest.mark.local
@pytest.mark.toolchain
@pytest.mark.slow
def test_rollout_benchmark_runs_small(tmp_path: Path, toolchain) -> None:
    report = tmp_path / "bench.json"
    out = subprocess.run(
        [sys.executable, "benchmarks/rollout.py", "--count", "2", "--reference-sample", "1",
         "--throughput-docs", "200", "--json", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "ratio" in out.stdout
    data = json.loads(report.read_text())
    assert data, "the benchmark wrote an empty result"
