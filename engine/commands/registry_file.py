"""The verbs about the registry itself: is it sound? (``byod registry check``); is its schema
the one this engine needs, and if not, bring it there (``byod registry upgrade``).

A damaged registry ends every other command with one clear error; this verb says what
exactly is wrong — SQLite's page check, dangling references, stored documents the engine
could not read — so the operator knows whether to restore a backup or rebuild with
``byod reconcile --apply`` before running anything else."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from engine.commands.workspace import Workspace
from engine.config import registry_display
from engine.errors import RegistryError

if TYPE_CHECKING:
    from engine.registry.tables import RegistryTables

__all__ = ["check_registry", "copy_registry", "upgrade_registry"]


def check_registry(ws: Workspace) -> dict[str, Any]:
    """``{"registry", "exists", "ok", "schema_version", "revision", "problems"}``
    (``revision``: the Alembic revision the schema is at); never creates a registry where
    there is none (that is reported, not repaired)."""

    path = registry_display(ws.config)  # a server URL without its password
    if not ws.registry_exists():
        return {"registry": path, "exists": False, "ok": False, "schema_version": None,
                "revision": None, "problems": [f"there is no registry at {path}"]}
    try:
        store = ws.store
        problems = store.verify()
        version: int | None = store.schema_version()
    except RegistryError as exc:
        problems, version = [str(exc)], None
    from engine.registry.schema_upgrade import revision_id

    return {"registry": path, "exists": True, "ok": not problems, "schema_version": version,
            "revision": revision_id(version) if version else None, "problems": problems}


def upgrade_registry(ws: Workspace, *, check: bool = False) -> dict[str, Any]:
    """Bring the registry's schema to this engine's (``engine.registry.schema_upgrade``:
    Alembic, under the registry's lock), or with ``check`` only say whether it is there.

    ``{"registry", "check", "from", "to", "up_to_date", "upgraded"}``: ``from`` is the
    schema version found (None: an empty database), ``to`` this engine's. A PostgreSQL
    registry shared by several machines is upgraded only this way (its stores refuse an
    older schema); a SQLite file is upgraded by any command that opens it, so this verb
    mostly checks it. A schema newer than this engine, or a SQLite file that is not there,
    is refused (``RegistryError``); nothing is written with ``check``."""

    from engine.config import is_registry_url, registry_location
    from engine.registry import schema_upgrade

    location = registry_location(ws.config)
    shown = registry_display(location)  # a server URL without its password
    if is_registry_url(location) and not schema_upgrade.is_postgres(location):
        raise RegistryError(f"the registry {shown} has no SQL schema to upgrade: its tables "
                            "and functions come with the main bundle (`byod deploy head "
                            "--target main`)")
    if not schema_upgrade.is_postgres(location) and not Path(location).exists():
        raise RegistryError(f"there is no registry at {shown}: nothing to upgrade (the first "
                            "command that needs one creates it)")
    if check:
        before = schema_upgrade.current(location)  # refuses a newer schema itself
        upgraded = False
    else:
        before, after = schema_upgrade.upgrade(location)
        upgraded = before != after
    return {"registry": shown, "check": check, "from": before, "to": schema_upgrade.HEAD,
            "up_to_date": before == schema_upgrade.HEAD, "upgraded": upgraded}


def copy_registry(ws: Workspace, to: str, *, force: bool = False, page_size: int = 1000,
                  progress: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Copy the configured registry to the store at ``to`` (a SQLite path, a
    ``postgresql://`` URL or ``convex:main``), then verify every table's count and checksum
    on both sides (``engine.registry.copy``).

    ``{"source", "target", "forced", "rows", "seconds", "ok", "mismatches", "tables"}``:
    locations redacted, one entry per table with both counts and checksums. Refused
    (``RegistryError``, nothing written) for the same store, a source that does not exist or
    is not at this engine's schema, a source being worked on (leases, running jobs, claimed
    rollout rows) or a target holding rows; ``force`` overrides the last two, emptying the
    target first. A verification mismatch is returned (``ok`` false), not raised.
    ``progress(table, rows)`` is told as each table is copied."""

    import time

    from engine.config import registry_location
    from engine.registry.copy import (
        copy_tables,
        live_work,
        occupied_tables,
        same_location,
        verify_copy,
    )
    from engine.registry.open import open_store

    source_at = registry_location(ws.config)
    shown_source, shown_target = registry_display(source_at), registry_display(to)
    if same_location(source_at, to):
        raise RegistryError(f"the target {shown_target} is the configured registry itself; "
                            "copy to another location")
    if not ws.registry_exists():
        raise RegistryError(f"there is no registry at {shown_source} to copy")
    source = _tables(ws.store, shown_source)
    if not force:
        busy = live_work(source, time.time(), page_size=page_size)
        if busy:
            more = f"; and {len(busy) - 10} more" if len(busy) > 10 else ""
            raise RegistryError(f"the registry {shown_source} is in use: "
                                f"{'; '.join(busy[:10])}{more}. Let it finish (or stop it) "
                                "first, or pass --force")
    store = open_store(to, connector=ws.connector)
    try:
        target = _tables(store, shown_target)
        full = occupied_tables(target)
        if full and not force:
            rows = ", ".join(f"{name} ({n} row{'' if n == 1 else 's'})"
                             for name, n in full.items())
            raise RegistryError(f"the target {shown_target} is not empty: {rows}; pass "
                                "--force to empty it and copy over it")
        started = time.monotonic()
        if full:
            for name in reversed(target.table_names()):  # referring tables first
                target.clear_rows(name)
        copied = copy_tables(source, target, page_size=page_size, on_table=progress)
        checks = verify_copy(source, target, page_size=page_size)
        seconds = time.monotonic() - started
    finally:
        store.close()
    mismatches = [c.table for c in checks if not c.ok]
    return {"source": shown_source, "target": shown_target, "forced": force,
            "rows": sum(copied.values()), "seconds": round(seconds, 3),
            "ok": not mismatches, "mismatches": mismatches,
            "tables": [c.to_dict() for c in checks]}


def _tables(store: object, shown: str) -> "RegistryTables":
    """The store as tables, refused when it cannot be copied from or into: no table
    access, or a schema other than this engine's (the copy moves rows column for column)."""

    from engine.registry.ddl import SCHEMA_VERSION
    from engine.registry.tables import RegistryTables

    if not isinstance(store, RegistryTables):
        raise RegistryError(f"the registry {shown} cannot be copied table by table "
                            f"({type(store).__name__})")
    read_version = getattr(store, "schema_version", None)
    version = read_version() if callable(read_version) else None
    if version != SCHEMA_VERSION:
        raise RegistryError(f"the registry {shown} has schema version {version}; this engine "
                            f"copies version {SCHEMA_VERSION}: run `byod registry upgrade` "
                            "first")
    return store
