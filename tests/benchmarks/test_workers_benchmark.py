"""``benchmarks/workers.py`` keeps working: tiny, two worker counts and the SIGKILL round,
its table printed and its record written with every deployment at the target."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow,
              pytest.mark.timeout(900)]


def test_workers_benchmark_runs_tiny(tmp_path: Path) -> None:
    report = tmp_path / "workers.json"
    out = subprocess.run(
        [sys.executable, "benchmarks/workers.py", "--count", "6", "--workers", "1,2",
         "--rtt-ms", "0", "--lease-ttl", "2", "--kill", "--json-out", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=800)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert "deployments/s" in out.stdout and "SIGKILL of one of 4 workers" in out.stdout
    record = json.loads(report.read_text())
    assert record["benchmark"] == "workers"
    results = record["results"]
    assert [r["workers"] for r in results["rounds"]] == [1, 2]
    for row in [*results["rounds"], results["kill"]]:
        assert row["status"] == "completed" and row["problems"] == [], row
        assert row["deployments_per_s"] > 0
    assert results["kill"]["killed_pid"] is not None
