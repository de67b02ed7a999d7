"""The engine package type-checks cleanly under the project's mypy config (pyproject.toml).

Kept as a test so a type regression fails the suite, not only a separate lint step.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 90  # a cold run takes ~15 s; the bound only stops a hung or runaway checker


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                    reason="mypy is not installed (pip install -e '.[test]')")
def test_engine_type_checks(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
           "--cache-dir", str(tmp_path / "mypy-cache")]  # packages come from the config
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"mypy did not finish within {TIMEOUT_S} s")
    output = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0, f"mypy exited {proc.returncode}:\n{output}"
