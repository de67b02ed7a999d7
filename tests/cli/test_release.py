"""``byod release`` and the lock's part of ``byod check``, over a copy of the shipped
versions and their shipped lock."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from engine import assets
from engine.cli.main import cli
from engine.cli.output import schema_for
from engine.schema.lock import LOCK_NAME, parse_lock

SHIPPED = assets.example_versions_dir()


@pytest.fixture
def versions(tmp_path: Path) -> Path:
    target = tmp_path / "versions"
    target.mkdir()
    for path in [*SHIPPED.glob("*.yaml"), SHIPPED / LOCK_NAME]:
        shutil.copy(path, target)
    return target


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_the_shipped_lock_covers_every_shipped_version_and_check_passes() -> None:
    lock = parse_lock((SHIPPED / LOCK_NAME).read_text())
    assert lock.intact
    assert sorted(lock.entries) == sorted(p.stem for p in SHIPPED.glob("*.yaml"))
    code, out = run("check", "--versions", str(SHIPPED))
    assert code == 0, out


def test_editing_a_released_version_fails_check_naming_the_file(versions: Path) -> None:
    v4 = versions / "0004_task_priorities.yaml"
    v4.write_text("# a comment is fine\n" + v4.read_text())
    code, out = run("check", "--versions", str(versions))
    assert code == 0, out
    v4.write_text(v4.read_text().replace("Tasks: priority becomes", "Tasks: priority is", 1))
    code, out = run("check", "--versions", str(versions))
    assert code == 1
    [line] = [line for line in out.splitlines() if "BYOD-E180" in line]
    assert line.startswith(f"{v4.as_posix()}: error [BYOD-E180]")
    assert "released version 0004_task_priorities changed" in line
    assert "`byod new NAME`" in line and "--rehash 0004_task_priorities --yes" in line
    # release refuses to lock over it, and --rehash needs --yes
    code, out = run("release", "--versions", str(versions))
    assert code == 1 and "0004_task_priorities changed since" in out
    code, out = run("release", "--rehash", "4", "--versions", str(versions))
    assert code == 1 and "add --yes" in out
    before = (versions / LOCK_NAME).read_text()
    code, out = run("release", "--rehash", "4", "--yes", "--json", "--versions", str(versions))
    assert code == 0, out
    data = json.loads(out)
    jsonschema.validate(data, schema_for("release"))
    [row] = data["rehashed"]
    assert row["id"] == "0004_task_priorities" and row["file"] == v4.as_posix()
    assert row["old"] in before and row["new"] not in before and data["written"]
    code, out = run("check", "--versions", str(versions))
    assert code == 0, out


def test_editing_the_lock_by_hand_fails_check(versions: Path) -> None:
    lock = versions / LOCK_NAME
    text = lock.read_text()
    first = next(line for line in text.splitlines() if line.startswith("0001_"))
    lock.write_text(text.replace(first, first[:-1] + ("0" if first[-1] != "0" else "1")))
    code, out = run("check", "--versions", str(versions))
    assert code == 1
    assert f"{lock.as_posix()}:3: error [BYOD-E181]" in out and "edited by hand" in out
    code, out = run("release", "--versions", str(versions))
    assert code == 1 and "not intact" in out and "--rehash all --yes" in out
    code, out = run("release", "--rehash", "all", "--yes", "--versions", str(versions))
    assert code == 0 and "rehashed 0001_initial" in out, out
    assert lock.read_text() == text
    code, out = run("check", "--versions", str(versions))
    assert code == 0, out


def test_a_new_version_passes_until_released_then_is_locked(versions: Path) -> None:
    code, out = run("new", "reminders", "--versions", str(versions))
    assert code == 0, out
    new = versions / "0008_reminders.yaml"
    new.write_text(new.read_text().replace("tables:\n", "tables:\n  reminders:\n"
                                           "    location: user\n    fields: {at: number}\n", 1))
    code, out = run("check", "--versions", str(versions))
    assert code == 0, out
    code, out = run("release", "--versions", str(versions))
    assert code == 0 and "released 0008_reminders" in out, out
    assert "0008_reminders" in parse_lock((versions / LOCK_NAME).read_text()).entries
    code, out = run("release", "--versions", str(versions))
    assert code == 0 and "unchanged: 8 released version(s)" in out, out
    new.write_text(new.read_text().replace("at: number", "at: string"))
    code, out = run("check", "--versions", str(versions))
    assert code == 1 and f"{new.as_posix()}: error [BYOD-E180]" in out


def test_release_names_versions_with_their_ancestors_and_refuses_failing_ones(
        tmp_path: Path, versions: Path) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    for path in SHIPPED.glob("*.yaml"):
        shutil.copy(path, fresh)
    code, out = run("release", "3", "--versions", str(fresh))
    assert code == 0, out
    assert sorted(parse_lock((fresh / LOCK_NAME).read_text()).entries) == [
        "0001_initial", "0002_tags", "0003_content_package"]
    code, out = run("release", "--rehash", "5", "--yes", "--versions", str(fresh))
    assert code == 1 and "not released yet" in out
    (versions / "0007_reference_indexes.yaml").unlink()
    code, out = run("check", "--versions", str(versions))
    assert code == 1 and "[BYOD-E182]" in out and "0007_reference_indexes" in out
    code, out = run("release", "--versions", str(versions))
    assert code == 1 and "no version file any more" in out
