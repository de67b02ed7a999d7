"""A garbage, truncated or corrupted registry file ends a command with one clear error line
(which file, what to do), never a traceback."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from engine.errors import RegistryError
from engine.registry.sqlite import SqliteStore

HINT = "byod reconcile --apply"

# seeded, so the damage is the same on every run
_GARBAGE = random.Random(20261129)


def _status(tmp_path: Path, registry: Path):  # type: ignore[no-untyped-def]
    config = tmp_path / "byod.toml"
    config.write_text("")
    env = {"BYOD_REGISTRY": str(registry), "BYOD_CONFIG": str(config)}
    return CliRunner().invoke(cli, ["status"], env=env)


def _assert_one_error_line(result, registry: Path) -> None:  # type: ignore[no-untyped-def]
    out = result.output  # stdout and stderr, interleaved
    assert "Traceback" not in out
    assert not isinstance(result.exception, sqlite3.Error), result.exception
    assert result.exit_code == 1, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    assert str(registry) in errors[0] and HINT in errors[0]


def _damage_tables(path: Path) -> None:
    """A real registry whose pages after the first (its tables) are overwritten."""

    with SqliteStore(path) as store:
        for i in range(50):
            store.upsert_credentials(f"user-{i}", url_ct="u" * 200, key_ct="k" * 200)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    size = path.stat().st_size
    page = 4096
    assert size > page
    with path.open("r+b") as fh:
        fh.seek(page)
        fh.write(_GARBAGE.randbytes(size - page))


def test_status_on_random_bytes_is_one_error_line(tmp_path: Path) -> None:
    registry = tmp_path / "registry.db"
    registry.write_bytes(_GARBAGE.randbytes(100))
    result = _status(tmp_path, registry)
    _assert_one_error_line(result, registry)


def test_status_on_truncated_registry_is_one_error_line(tmp_path: Path) -> None:
    registry = tmp_path / "registry.db"
    with SqliteStore(registry):
        pass
    data = registry.read_bytes()
    registry.write_bytes(data[:150])  # the header survives, the rest is gone
    result = _status(tmp_path, registry)
    _assert_one_error_line(result, registry)


def test_damaged_tables_raise_registry_error_naming_the_file(tmp_path: Path) -> None:
    registry = tmp_path / "registry.db"
    _damage_tables(registry)
    with pytest.raises(RegistryError) as err:
        store = SqliteStore(registry)
        try:
            store.list_users()
        finally:
            store.close()
    assert str(registry) in str(err.value) and HINT in str(err.value)
