"""``benchmarks/registry_pool.py`` keeps working: a tiny run through its delay proxy
prints both rates and their ratio, writes its record, and never shows the password."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.timeout(300)]


def test_registry_pool_benchmark_runs_tiny(pg_database: str, tmp_path: Path) -> None:
    report = tmp_path / "pool.json"
    out = subprocess.run(
        [sys.executable, "benchmarks/registry_pool.py", "--registry", pg_database,
         "--threads", "3", "--writes", "4", "--rtt-ms", "2", "--json-out", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert "one connection" in out.stdout and "a pool of 8" in out.stdout
    record = json.loads(report.read_text())
    results = record["results"]
    assert results["one_connection_writes_per_s"] > 0 and results["pool_writes_per_s"] > 0
    assert results["ratio"] > 0
    password = urlsplit(pg_database).password
    assert password and password not in out.stdout + out.stderr + report.read_text()
