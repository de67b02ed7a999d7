"""The in-memory fleet of the health, routing, disconnect and copy-from-main tests:
``engine.testing``'s deployment and fleet with this suite's defaults (a fixed key secret
the tests look for in every output, a ``v1``/``fp1`` version marker, nothing recorded on
the deployment).

The registry and the vault are the real ones (a SQLite file in a temp dir, a fresh key).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.ports.registry import ConnectionStatus
from engine.schema.models import Location, Schema, SchemaVersion, Table
from engine.schema.types import parse_field_type
from engine.testing.deployment import AsyncInMemoryDeployment, InMemoryDeployment
from engine.testing.fleet import InMemoryFleet

ADMIN_KEY_SECRET = "7f3a9c1e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a"


def admin_key(name: str) -> str:
    return f"{name}|{ADMIN_KEY_SECRET}"


class FakeDeployment(InMemoryDeployment):
    """An in-memory deployment answering ``v1``/``fp1`` unless told otherwise."""

    def __init__(self, name: str, *, version: str | None = "v1",
                 fingerprint: str | None = "fp1", kind: str = "version",
                 tables: list[str] | None = None, **options: Any):
        options.setdefault("key", admin_key(name))
        super().__init__(name, version=version, fingerprint=fingerprint, kind=kind,
                         tables=tables, **options)


AsyncFake = AsyncInMemoryDeployment
"""The async client health uses (a real delay for ``delay``); ``AsyncFake.peak`` counts
concurrent reads across all of them."""


class Fleet(InMemoryFleet):
    """Fake deployments by URL, a real SQLite registry and a real vault in ``tmp``."""

    deployment_class = FakeDeployment

    def __init__(self, tmp: Path):
        super().__init__(tmp)

    def add(self, user_id: str, *, status: ConnectionStatus = "connected",  # type: ignore[override]
            version: str = "v1", fingerprint: str = "fp1", tables: list[str] | None = None,
            record: bool = False) -> FakeDeployment:
        dep = super().add(user_id, status=status, version=version, fingerprint=fingerprint,
                          tables=tables, record=record,
                          error="boom" if status == "error" else None)
        assert isinstance(dep, FakeDeployment)
        return dep


def table(name: str, location: str = "user", /, **fields: str) -> Table:
    """A table from type expressions (``optional(T)`` for optional fields)."""

    defs = {key: parse_field_type(expr) for key, expr in fields.items()}
    return Table(name=name, location=Location(location), fields=defs)


def version(vid: str, number: int, *tables: Table, parents: tuple[str, ...] = ()) -> SchemaVersion:
    return SchemaVersion(id=vid, number=number, parents=parents,
                         schema=Schema(tables={t.name: t for t in tables}))


__all__ = ["ADMIN_KEY_SECRET", "AsyncFake", "FakeDeployment", "Fleet", "admin_key", "table",
           "version"]
