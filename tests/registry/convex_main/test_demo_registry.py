"""`byod demo --registry convex:main`: the whole demo with its registry on the demo's main
deployment, through the real CLI; no registry file, no secret in the output or reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli.main import cli

from .backend import MARKS

pytestmark = [*MARKS, pytest.mark.slow, pytest.mark.timeout(600)]


def test_the_demo_runs_with_its_registry_on_main(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BYOD_")}
    byod = Path(sys.executable).with_name("byod")
    proc = subprocess.run([str(byod), "demo", "--dir", str(directory), "--users", "2",
                           "--registry", "convex:main"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False, timeout=540)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "everything verified" in proc.stdout
    assert "the registry lives there (convex:main)" in proc.stdout
    demo = json.loads((directory / "reports" / "demo.json").read_text())
    assert demo["ok"] and demo["rollout"]["counts"] == {"succeeded": 2}
    assert demo["disconnect"]["verified"] and demo["disconnect"]["routing_after"] == "main"
    assert not list(directory.rglob("*.sqlite3"))  # the registry is main's tables

    stored = json.loads((directory / "fleet" / "secrets.json").read_text())
    secrets = [(directory / "encryption.key").read_text().strip()]
    for dep in stored["deployments"]:
        secrets += [dep["admin_key"], dep["admin_key"].split("|", 1)[1]]
    texts = [output, (directory / "fleet" / "harness.log").read_text()]
    texts += [p.read_text() for p in (directory / "reports").iterdir()]
    for secret in secrets:
        for text in texts:
            assert secret not in text


def test_the_demo_refuses_serve_with_the_registry_on_main(tmp_path: Path) -> None:
    done = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "d"), "--serve",
                                    "--registry", "convex:main"])
    assert done.exit_code == 2 and "SQLite registry" in done.output
    assert not (tmp_path / "d").exists()
