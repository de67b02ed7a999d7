"""Which documents on the app's main deployment belong to one user (pure).

Before a user brings their own deployment, their content lives on main in the
user-located tables, mixed with everyone else's. A document belongs to the user when

* its table has a ``userId`` string field (the Clerk id) and that field equals the user
  id, or
* its table has no such field and every required top-level ``id(...)`` reference to
  another user-located table (outside the table's own reference cycle) points at a
  document the user owns — e.g. ``toolCalls.messageId`` or ``projectNotes.projectId`` +
  ``noteId``. Requiring *every* such reference keeps the copy closed: nothing copied can
  point at a document that was not.

Tables with neither (a cache such as ``ttsCache``) belong to nobody and are not copied.
Ownership by reference is decided in reference order (``remap.copy_order``), so the
parents' owned ids are known before their children are read. No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.lifecycle.remap import copy_order
from engine.schema.models import Table

__all__ = ["OwnerRule", "USER_FIELD", "owner_rules", "owns"]

USER_FIELD = "userId"


@dataclass(frozen=True)
class OwnerRule:
    """How ownership of one table's documents is decided."""

    table: str
    user_field: str | None = None  # the Clerk-id field, when the table has one
    index: str | None = None  # an index whose first field is ``user_field``
    refs: tuple[tuple[str, str], ...] = ()  # (field, referenced table), all must be owned

    @property
    def copied(self) -> bool:
        """False for a table no user owns (nothing of it is copied)."""

        return self.user_field is not None or bool(self.refs)

    def describe(self) -> str:
        if self.user_field is not None:
            return f"{self.user_field} = user"
        if self.refs:
            return "references " + ", ".join(f"{f} → {t}" for f, t in self.refs)
        return "no owner (not copied)"


def owner_rules(tables: Mapping[str, Table]) -> dict[str, OwnerRule]:
    """The rule of every table in ``tables`` (the user-located tables of one version)."""

    _, group = copy_order(tables)
    out: dict[str, OwnerRule] = {}
    for name, table in tables.items():
        fdef = table.fields.get(USER_FIELD)
        if fdef is not None and fdef.type.kind == "string":
            index = next((i.name for i in table.indexes
                          if i.fields and i.fields[0] == USER_FIELD), None)
            out[name] = OwnerRule(name, user_field=USER_FIELD, index=index)
            continue
        refs = tuple((fname, f.type.table) for fname, f in table.fields.items()
                     if not f.optional and f.type.kind == "id" and f.type.table in tables
                     and f.type.table not in group[name])
        out[name] = OwnerRule(name, refs=refs)
    return out


def owns(rule: OwnerRule, doc: Mapping[str, Any], user_id: str,
         owned: Callable[[str, str], bool]) -> bool:
    """Does ``doc`` belong to ``user_id``? ``owned(table, id)`` answers for documents of
    the tables before this one in reference order."""

    if rule.user_field is not None:
        return doc.get(rule.user_field) == user_id
    if not rule.refs:
        return False
    for fname, ref_table in rule.refs:
        value = doc.get(fname)
        if not isinstance(value, str) or not owned(ref_table, value):
            return False
    return True
