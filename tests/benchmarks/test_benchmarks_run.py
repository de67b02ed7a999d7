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


def _record(path: Path, script: str) -> dict:
    """The run's record: what was run, when, on what load, and the numbers."""

    record = json.loads(path.read_text())
    assert record["benchmark"] == script
    assert record["command"].startswith(f"python benchmarks/{script}.py ")
    assert record["date"].endswith("Z")
    for when in ("machine_at_start", "machine_at_end"):
        assert record[when]["cpu_count"] >= 1 and len(record[when]["loadavg"]) == 3
    return record["results"]


def test_plan_fleet_benchmark_runs_small(tmp_path: Path) -> None:
    report = tmp_path / "plan.json"
    out = subprocess.run(
        [sys.executable, "benchmarks/plan_fleet.py", "--deployments", "2000", "--versions", "40",
         "--sources", "10", "--runs", "1", "--naive-sample", "5", "--json-out", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "plan_fleet (grouped)" in out.stdout
    assert "ratio naive / grouped" in out.stdout
    results = _record(report, "plan_fleet")
    assert results["deployments"] == 2000 and results["grouped_median_s"] > 0


def test_engine_ceiling_benchmark_runs_quick(tmp_path: Path) -> None:
    report = tmp_path / "ceiling.json"
    out = subprocess.run(
        [sys.executable, "benchmarks/engine_ceiling.py", "--quick", "--count", "4",
         "--bookkeeping", "--json-out", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "engine CPU ms/dep" in out.stdout and "round trips per deployment" in out.stdout
    results = _record(report, "engine_ceiling")
    run = results["runs"][0]
    assert run["deployments"] == 4 and run["status"] == "completed" and run["at_head"] == 4
    # every round trip went through the transport, split by endpoint
    assert run["round_trips_per_deployment"] == sum(run["round_trips_by_endpoint"].values())
    assert run["round_trips_by_endpoint"]["/api/deploy2/start_push"] >= 1
    assert run["sniffio_searches"] <= 1


def test_import_time_benchmark_runs(tmp_path: Path) -> None:
    report = tmp_path / "imports.json"
    out = subprocess.run(
        [sys.executable, "benchmarks/import_time.py", "--runs", "1", "--json-out", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert _record(report, "import_time")["imports_s"] > 0


def test_readme_numbers_match_the_newest_results() -> None:
    out = subprocess.run([sys.executable, "benchmarks/readme_table.py", "--check"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_readme_table_check_catches_a_stale_table(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    generated = subprocess.run([sys.executable, "benchmarks/readme_table.py"], cwd=ROOT,
                               capture_output=True, text=True, timeout=120, check=True).stdout
    readme.write_text("# x\n\n" + generated.replace("| what |", "| which |") + "\nrest\n")
    stale = subprocess.run([sys.executable, "benchmarks/readme_table.py", "--check",
                            "--readme", str(readme)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert stale.returncode == 1
    subprocess.run([sys.executable, "benchmarks/readme_table.py", "--write", "--readme",
                    str(readme)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                   check=True)
    assert readme.read_text() == "# x\n\n" + generated + "\nrest\n"


def test_check_versions_benchmark_runs_small(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    out = subprocess.run(
        [sys.executable, "benchmarks/check_versions.py", "--versions", "20", "--runs", "1",
         "--pure-runs", "1", "--json-out", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "of which YAML parse" in out.stdout and "rules" in out.stdout
    assert "libyaml and pure Python load equal versions: yes" in out.stdout
    data = _record(report, "check_versions")
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
         "--throughput-docs", "200", "--rtt-ms", "5", "--json-out", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "ratio" in out.stdout and "compares wall time per deployment" in out.stdout
    data = _record(report, "rollout")
    assert data["rtt_ms"] == 5 and data["engine"]["cpu_ms_per_deployment"] > 0
