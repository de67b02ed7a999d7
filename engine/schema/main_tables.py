"""Engine tables that exist only on the app's main deployment.

``byodImports`` holds one receipt per page copied back from a user's deployment during a
``migrate`` disconnect. The receipt is written in the same transaction as the page's
documents, so a page retried after a crash returns the ids it already created instead of
inserting duplicates.
"""

from __future__ import annotations

from engine.schema.main_registry_tables import REGISTRY_TABLES
from engine.schema.models import (
    ArrayV,
    DbIndex,
    FieldDef,
    Float64V,
    Location,
    StringV,
    Table,
)

__all__ = ["MAIN_ENGINE_TABLES", "MAIN_ENGINE_TABLE_NAMES"]

MAIN_ENGINE_TABLES: dict[str, Table] = {
    "byodImports": Table(
        name="byodImports",
        location=Location.MAIN,
        fields={
            "receipt": FieldDef(type=StringV()),
            "run": FieldDef(type=StringV()),
            "table": FieldDef(type=StringV()),
            "ids": FieldDef(type=ArrayV(element=StringV())),
            "importedAt": FieldDef(type=Float64V()),
        },
        indexes=(
            DbIndex(name="by_receipt", fields=("receipt",)),
            DbIndex(name="by_run", fields=("run",)),
        ),
    ),
}

# the registry's tables, for a registry kept on main (``BYOD_REGISTRY=convex:main``)
MAIN_ENGINE_TABLES.update(REGISTRY_TABLES)

MAIN_ENGINE_TABLE_NAMES = frozenset(MAIN_ENGINE_TABLES)
