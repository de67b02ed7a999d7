"""`byod local up|status|down`: a background fleet, found again by its data directory;
admin keys only in the 0600 keys file."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from engine.errors import LocalFleetError
from engine.local import LocalFleet

from .conftest import needs_toolchain

pytestmark = [pytest.mark.local, pytest.mark.toolchain, needs_toolchain, pytest.mark.timeout(120)]


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Iterator[Path]:
    data = tmp_path / "fleet"
    yield data
    try:  # stop whatever a failed test left running
        LocalFleet.attach(data).stop()
    except LocalFleetError:
        pass


def test_up_status_down(fleet_dir: Path) -> None:
    runner = CliRunner()
    up = runner.invoke(cli, ["local", "up", "--count", "2", "--dir", str(fleet_dir), "--json"])
    assert up.exit_code == 0, up.output
    summary = json.loads(up.output)
    assert summary["status"] == "running" and len(summary["deployments"]) == 2
    keys = json.loads((fleet_dir / "secrets.json").read_text())["deployments"]
    assert stat.S_IMODE((fleet_dir / "secrets.json").stat().st_mode) == 0o600
    for spec in keys:
        assert spec["admin_key"] not in up.output
        assert spec["admin_key"].split("|")[1] not in (fleet_dir / "fleet.json").read_text()

    url = summary["deployments"][0]["url"]
    assert httpx.get(f"{url}/instance_name").text == summary["deployments"][0]["name"]

    status = runner.invoke(cli, ["local", "status", "--dir", str(fleet_dir)])
    assert status.exit_code == 0 and "running: 2 local deployment(s)" in status.output
    assert url in status.output
    assert all(spec["admin_key"] not in status.output for spec in keys)

    again = runner.invoke(cli, ["local", "up", "--dir", str(fleet_dir)])
    assert again.exit_code == 1 and "already running" in again.output

    down = runner.invoke(cli, ["local", "down", "--dir", str(fleet_dir)])
    assert down.exit_code == 0, down.output
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/version", timeout=2)
    stopped = runner.invoke(cli, ["local", "status", "--dir", str(fleet_dir), "--json"])
    assert json.loads(stopped.output)["status"] == "stopped"
    assert "no local fleet is running" in runner.invoke(cli, ["local", "down", "--dir", str(fleet_dir)]).output
