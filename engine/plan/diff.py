"""Typed, classified changes between two schemas: the safety lint behind ``byod diff``.

Pure: two ``Schema`` values, the target version's hints and consent in, a ``Diff`` out.
Every change carries a stable code (``BYOD-Dnnn``, documented in docs/lint-codes.md), a
classification (safe / data_step / destructive / impossible), the data steps that realize
it, and its inverse (or why it has none), so down paths can be planned from the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from engine.errors import UnsafeChange
from engine.plan.changes import CODES, Change, Classification
from engine.plan.compare import (
    field_changes,
    hint_applies,
    index_changes,
    step_for_hint,
)
from engine.plan.datasteps import DataStep, make_step
from engine.schema.models import Consent, Location, MigrationOp, Schema, Table
from engine.schema.typeops import table_key

__all__ = ["CODES", "Change", "Classification", "Diff", "diff"]

@dataclass(frozen=True)
class Diff:
    """The changes from one schema to another, and the data steps, in execution order."""

    changes: tuple[Change, ...]
    steps: tuple[DataStep, ...]
    skipped_hints: tuple[str, ...] = ()

    @property
    def blocking(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.blocking)

    @property
    def irreversible(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.inverse_change is None)

    @property
    def needs_data_steps(self) -> bool:
        return bool(self.steps)

    @property
    def only_safe(self) -> bool:
        return all(c.classification == "safe" for c in self.changes) and not self.steps

    def raise_if_blocked(self, label: str) -> None:
        """``UnsafeChange`` naming every blocking change and the hint that unblocks it."""

        blocked = self.blocking
        if not blocked:
            return
        lines = [f"{label}: {len(blocked)} change(s) cannot be planned:"]
        for c in blocked:
            lines.append(f"  [{c.code}] {c.subject}: {c.message}" + (f" -> {c.hint}" if c.hint else ""))
        raise UnsafeChange("\n".join(lines), changes=blocked)

    def inverse(self, label: str = "down path") -> "Diff":
        """The diff that undoes this one; ``UnsafeChange`` lists what does not reverse."""

        if self.irreversible:
            lines = [f"{label}: {len(self.irreversible)} change(s) cannot be reversed:"]
            for c in self.irreversible:
                lines.append(f"  [{c.code}] {c.subject}: {c.irreversible_reason or c.message}")
            raise UnsafeChange("\n".join(lines), changes=self.irreversible)
        # every change has an inverse here: the irreversible ones raised above
        inv = tuple(c.inverse_change for c in reversed(self.changes)
                    if c.inverse_change is not None)
        steps: list[DataStep] = []
        for back in inv:
            for s in back.steps:
                if s not in steps:
                    steps.append(s)
        return Diff(changes=inv, steps=tuple(steps))

    def counts(self) -> dict[str, int]:
        out = {"safe": 0, "data_step": 0, "destructive": 0, "impossible": 0}
        for c in self.changes:
            out[c.classification] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "changes": [c.to_dict() for c in self.changes],
            "steps": [s.to_dict() for s in self.steps],
            "summary": self.counts(),
            "blocking": len(self.blocking),
            "reversible": not self.irreversible,
            "skipped_hints": list(self.skipped_hints),
        }

    def render_text(self) -> str:
        if not self.changes:
            return "no changes"
        lines = []
        for c in self.changes:
            lines.append(f"{c.code}  {c.status():<14} {c.subject}: {c.message}")
            if c.hint and c.blocking:
                lines.append(f"{'':11}hint: {c.hint}")
        if self.steps:
            lines.append("")
            lines.append("data steps:")
            lines += [f"  {i}. {s.summary()}  [{s.id}]" for i, s in enumerate(self.steps, 1)]
        if self.skipped_hints:
            lines.append("")
            lines.append("hints not used by this diff:")
            lines += [f"  - {h}" for h in self.skipped_hints]
        n = self.counts()
        lines.append("")
        lines.append(
            f"{len(self.changes)} change(s): {n['safe']} safe, {n['data_step']} data step, "
            f"{n['destructive']} destructive, {n['impossible']} impossible; "
            f"{len(self.blocking)} blocking; "
            + ("reversible" if not self.irreversible else f"{len(self.irreversible)} irreversible")
        )
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------


def _bare(step: DataStep) -> str:
    """A step's summary without its ``table:`` prefix (the change already names it)."""

    return step.summary().split(": ", 1)[-1]


def _mk(code: str, table: str, fld: str | None, message: str, **kw: Any) -> Change:
    kind, cls = CODES[code][0], CODES[code][1]
    return Change(code=code, kind=kind, table=table, field=fld, classification=cls,
                  message=message, **kw)


def _table_changes(a: Table | None, b: Table | None, name: str,
                   consent: Consent) -> list[Change]:
    if a is None and b is not None:
        drop = make_step(name, "delete_rows", {"where": {}}, origin="inferred",
                         description=f"empty {name} before it leaves the schema")
        inv = _mk("BYOD-D102", name, None, "table removed (rolling back the version that added it)",
                  consented=True, generated=True, steps=(drop,), before=b,
                  irreversible_reason="its documents are deleted")
        return [_mk("BYOD-D101", name, None, f"table added ({b.location.value})", after=b,
                    inverse_change=inv)]
    if b is None and a is not None:
        ok = name in consent.drop_tables
        steps = (make_step(name, "delete_rows", {"where": {}}, origin="inferred",
                           description=f"empty {name} before it leaves the schema"),) if ok else ()
        return [_mk("BYOD-D102", name, None,
                    "table removed: its documents are deleted" if ok else
                    "table removed: its documents would be deleted",
                    consented=ok, generated=ok, steps=steps, before=a,
                    hint=f"add '{name}' to consent.drop_tables",
                    irreversible_reason="the table's documents are deleted")]
    return []


def _applicable_hints(a: Schema, b: Schema, hints: tuple[MigrationOp, ...],
                      location: Location | None) -> tuple[dict[int, DataStep], list[str]]:
    """Which hints apply to this edge, and their steps (file order is execution order);
    the others as ``op on table.field: why`` lines."""

    skipped: list[str] = []
    hint_steps: dict[int, DataStep] = {}
    for i, h in enumerate(hints):
        ta, tb = a.tables.get(h.table), b.tables.get(h.table)
        if location is not None and not any(t is not None and t.location == location for t in (ta, tb)):
            continue
        why = hint_applies(h, ta, tb, hints[:i])
        if why:
            skipped.append(f"{h.op} on {h.table}" + (f".{h.field}" if h.field else "") + f": {why}")
            continue
        hint_steps[i] = step_for_hint(h, ta, tb)
    return hint_steps, skipped


def _validation_changes(a: Schema, b: Schema) -> list[Change]:
    """Turning schema validation on or off, which concerns every table at once."""

    if a.schema_validation == b.schema_validation:
        return []
    if b.schema_validation:
        return [_mk(
            "BYOD-D105", "*", None, "schema validation turned on: every stored document "
            "is checked on push", hint="add custom hints that repair documents written "
            "while validation was off, or keep schemaValidation: false",
            irreversible_reason="turning validation off again is safe but not planned "
            "automatically")]
    inv = _mk("BYOD-D105", "*", None, "schema validation turned back on",
              generated=True)
    return [_mk("BYOD-D104", "*", None, "schema validation turned off",
                inverse_change=inv)]


def _schema_changes(a: Schema, b: Schema, hints: tuple[MigrationOp, ...],
                    hint_steps: dict[int, DataStep], used: set[int], consent: Consent,
                    location: Location | None) -> list[Change]:
    """Per table (the source's order, then tables new in the target): moves, additions,
    removals, field and index changes; marks the hints they use in ``used``."""

    changes: list[Change] = []
    names = list(a.tables) + [n for n in b.tables if n not in a.tables]
    for name in names:
        ta, tb = a.tables.get(name), b.tables.get(name)
        if ta is not None and tb is not None and ta.location != tb.location:
            changes.append(_mk(
                "BYOD-D103", name, None,
                f"table moves from {ta.location.value} to {tb.location.value}: the engine "
                "migrates one deployment at a time and cannot move documents between them",
                hint="add a new table at the new location and copy the data with an "
                "application job", before=ta, after=tb,
                irreversible_reason="moving data between deployments is not a schema step"))
            continue
        if location is not None and all(t is None or t.location != location for t in (ta, tb)):
            continue
        if ta is None or tb is None:
            changes += _table_changes(ta, tb, name, consent)
            continue
        if ta is tb or table_key(ta) == table_key(tb):
            continue  # unchanged; data-only hints on it are reported below
        changes += field_changes(ta, tb, hints, hint_steps, used, consent)
        changes += index_changes(ta, tb)
    return changes


def _data_only_changes(hints: tuple[MigrationOp, ...], hint_steps: dict[int, DataStep],
                       used: set[int], consent: Consent) -> list[Change]:
    """Hints that realize no schema change are data-only changes of their own."""

    changes: list[Change] = []
    for i, step in hint_steps.items():
        if i in used:
            continue
        h = hints[i]
        if h.op == "delete_rows":
            ok = h.table in consent.delete_rows
            changes.append(_mk("BYOD-D401", h.table, None, _bare(step), consented=ok,
                               generated=True, steps=(step,),
                               hint=f"add '{h.table}' to consent.delete_rows",
                               irreversible_reason="deleted documents cannot be restored"))
        elif h.op == "drop_field":
            ok = f"{h.table}.{h.field}" in consent.drop_fields
            changes.append(_mk("BYOD-D203", h.table, h.field,
                               f"field values removed ({h.field} stays in the schema)",
                               consented=ok, generated=True, steps=(step,),
                               hint=f"add '{h.table}.{h.field}' to consent.drop_fields",
                               irreversible_reason="removed values cannot be restored"))
        elif h.op == "custom":
            changes.append(_mk("BYOD-D402", h.table, None, "custom per-document transform",
                               generated=True, steps=(step,),
                               irreversible_reason="custom transforms have no inverse"))
        else:
            changes.append(_mk("BYOD-D403", h.table, h.field, _bare(step), generated=True,
                               steps=(step,),
                               irreversible_reason="a data-only change has no inverse"))
    return changes


def _ordered_steps(changes: list[Change], hint_steps: dict[int, DataStep]) -> list[DataStep]:
    """Hint steps first in file order, then inferred ones in change order; a blocked
    change contributes none."""

    blocked = {s.id for c in changes if c.blocking for s in c.steps}
    ordered: list[DataStep] = [hint_steps[i] for i in sorted(hint_steps)
                               if hint_steps[i].id not in blocked]
    for c in changes:
        if c.blocking:
            continue
        for s in c.steps:
            if s not in ordered:
                ordered.append(s)
    return ordered


def diff(a: Schema, b: Schema, hints: Iterable[MigrationOp] = (), consent: Consent = Consent(),
         *, location: Location | None = None) -> Diff:
    """The classified changes from ``a`` to ``b`` given the target version's ``hints`` and
    ``consent``. With ``location``, only tables at that location (on either side) are
    compared; moving a table between locations is always reported."""

    hints = tuple(hints)
    hint_steps, skipped = _applicable_hints(a, b, hints, location)
    used: set[int] = set()
    changes = _validation_changes(a, b)
    changes += _schema_changes(a, b, hints, hint_steps, used, consent, location)
    changes += _data_only_changes(hints, hint_steps, used, consent)
    ordered = _ordered_steps(changes, hint_steps)
    return Diff(changes=tuple(changes), steps=tuple(ordered), skipped_hints=tuple(skipped))
