"""The verb about the registry file itself: is it sound? (``byod registry check``).

A damaged registry ends every other command with one clear error; this verb says what
exactly is wrong — SQLite's page check, dangling references, stored documents the engine
could not read — so the operator knows whether to restore a backup or rebuild with
``byod reconcile --apply`` before running anything else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.commands.workspace import Workspace
from engine.errors import RegistryError

__all__ = ["check_registry"]


def check_registry(ws: Workspace) -> dict[str, Any]:
    """``{"registry", "exists", "ok", "schema_version", "problems"}``; never creates a
    registry where there is none (that is reported, not repaired)."""

    path = str(Path(ws.config.registry_path))
    if not ws.registry_exists():
        return {"registry": path, "exists": False, "ok": False, "schema_version": None,
                "problems": [f"there is no registry at {path}"]}
    try:
        store = ws.store
        problems = store.verify()
        version: int | None = store.schema_version()
    except RegistryError as exc:
        problems, version = [str(exc)], None
    return {"registry": path, "exists": True, "ok": not problems, "schema_version": version,
            "problems": problems}
