"""`byod demo` end to end (the README's first command), through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from local_ops import ROOT, needs_toolchain

pytestmark = [pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow, needs_toolchain]


def _secrets(directory: Path) -> list[str]:
    out = [(directory / "encryption.key").read_text().strip()]
    stored = json.loads((directory / "fleet" / "secrets.json").read_text())
    for dep in stored["deployments"]:
        out += [dep["admin_key"], dep["admin_key"].split("|", 1)[1]]
    return out


def test_demo_runs_and_writes_a_report(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BYOD_")}
    byod = Path(sys.executable).with_name("byod")
    proc = subprocess.run([str(byod), "demo", "--dir", str(directory), "--users", "3"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=540)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "everything verified" in proc.stdout
    for step in ("starting 4 local deployments", "connecting 3 users", "rolling every user",
                 "health check", "disconnects", "deployments stopped"):
        assert step in proc.stdout

    reports = directory / "reports"
    demo = json.loads((reports / "demo.json").read_text())
    assert demo["ok"] is True
    assert demo["rollout"]["status"] == "completed"
    assert demo["rollout"]["counts"] == {"succeeded": 3}
    assert {r["state"] for r in demo["health"]["results"]} == {"healthy"}
    assert demo["disconnect"]["status"] == "disconnected" and demo["disconnect"]["verified"]
    assert demo["disconnect"]["routing_before"] == "user"
    assert demo["disconnect"]["routing_after"] == "main"
    seeded = demo["seeded"][demo["disconnect"]["user_id"]]
    for table, count in seeded.items():
        assert demo["disconnect"]["tables"][table]["main_count"] == count
    statuses = {u["user_id"]: u["connection_status"] for u in demo["fleet"]}
    assert sorted(statuses.values()) == ["connected", "connected", "disconnected"]
    assert all(u["schema_version"] == "0007_reference_indexes" for u in demo["fleet"])

    html = (reports / "demo.html").read_text()
    assert "everything verified" in html and "user_1" in html and "0007_reference_indexes" in html
    rollout_html = Path(demo["reports"]["rollout_html"])
    assert rollout_html.is_file() and rollout_html.parent == reports.resolve()

    # no secret anywhere it could leak: output, reports, the harness log
    texts = [output] + [p.read_text() for p in reports.iterdir()]
    texts.append((directory / "fleet" / "harness.log").read_text())
    for secret in _secrets(directory):
        for text in texts:
            assert secret not in text
    assert oct((directory / "encryption.key").stat().st_mode & 0o777) == "0o600"
    fleet = json.loads((directory / "fleet" / "fleet.json").read_text())
    assert fleet["running"] is False  # every deployment was stopped


def test_demo_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "something").write_text("x")
    byod = Path(sys.executable).with_name("byod")
    proc = subprocess.run([str(byod), "demo", "--dir", str(tmp_path / "demo")], cwd=ROOT,
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 1
    assert "is not empty" in proc.stderr and "Traceback" not in proc.stderr
