"""The rules behind ``engine.plan.diff``: the lint-code table, per-field and per-index
comparison, and which version hints apply to an edge. Pure."""

from __future__ import annotations

import dataclasses
import difflib
import json
from typing import Any, Sequence

from engine.plan.changes import CODES, Change
from engine.plan.datasteps import DataStep, js_string, make_step
from engine.schema.models import Consent, FieldDef, MigrationOp, Table
from engine.schema.typeops import is_subtype, literal_values, render_type

__all__ = ["field_changes", "hint_applies", "index_changes", "step_for_hint"]

def _desc(fdef: FieldDef) -> str:
    return render_type(fdef.type) + (" (optional)" if fdef.optional else "")


# ---------------------------------------------------------------------------------------
# Hints
# ---------------------------------------------------------------------------------------


def _source_def(h_field: str, ta: Table, earlier: Sequence[MigrationOp]) -> FieldDef | None:
    """The source shape of ``h_field``: itself, or what an earlier rename/copy moves in."""

    if h_field in ta.fields:
        return ta.fields[h_field]
    for e in earlier:
        if e.table == ta.name and e.op in ("rename", "copy") and e.field == h_field:
            if e.from_field in ta.fields:
                return ta.fields[e.from_field]
    return None


def hint_applies(h: MigrationOp, ta: Table | None, tb: Table | None,
                 earlier: Sequence[MigrationOp]) -> str:
    """Empty when hint ``h`` applies to the edge ``ta -> tb``, else why it does not.

    A merge version's hints serve every parent edge; a hint whose source shape is absent
    on an edge (already renamed, type already converted) does not apply to that edge.
    """

    if ta is None:
        return "the table is not in the source schema"
    if tb is None:  # deleting rows is the one hint that needs no target table
        return "" if h.op == "delete_rows" else "the table is not in the target schema"
    if h.op == "backfill":
        if h.field not in tb.fields:
            return "the field is not in the target schema"
        src = _source_def(h.field or "", ta, earlier)
        if src is not None and not src.optional:
            return "the field is already required in the source"
        return ""
    if h.op in ("rename", "copy"):
        if h.from_field not in ta.fields:
            return f"the source has no field {h.from_field!r} (already {h.op}d?)"
        if h.field not in tb.fields:
            return f"the target has no field {h.field!r}"
        return ""
    if h.op in ("map_values", "convert"):
        src = _source_def(h.field or "", ta, earlier)
        if src is None:
            return "the field is not in the source schema"
        dst = tb.fields.get(h.field or "")
        if dst is None:
            return "the field is not in the target schema"
        if is_subtype(src.type, dst.type):
            return "the source type already fits the target type"
        return ""
    if h.op == "drop_field":
        return "" if h.field in ta.fields else "the field is not in the source schema"
    return ""


def step_for_hint(h: MigrationOp, ta: Table | None, tb: Table | None) -> DataStep:
    """The data step a (applicable) hint turns into."""

    desc = h.description or ""
    params: dict[str, Any]
    if h.op == "backfill":
        return make_step(h.table, "backfill", {"field": h.field, "value": h.value}, description=desc)
    if h.op in ("rename", "copy"):
        params = {"from": h.from_field, "to": h.field}
        inverse = None
        if h.op == "rename":
            inverse = make_step(h.table, "rename", {"from": h.field, "to": h.from_field},
                                origin="inferred", description=f"undo rename of {h.from_field}")
        return make_step(h.table, h.op, params, description=desc, inverse=inverse)
    if h.op == "map_values":
        params = {"field": h.field, "mapping": dict(h.mapping or {}),
                                  "target": _target_json(tb, h.field)}
        if h.default is not None:
            params["default"] = h.default
        return make_step(h.table, "map_values", params, description=desc)
    if h.op == "convert":
        params = {"field": h.field, "target": _target_json(tb, h.field)}
        if h.code:
            params["code"] = h.code
        else:
            params["mapping"] = dict(h.mapping or {})
            if h.default is not None:
                params["default"] = h.default
        return make_step(h.table, "convert", params, description=desc,
                         inverse=_convert_inverse(h, ta))
    if h.op == "drop_field":
        return make_step(h.table, "drop_field", {"field": h.field}, description=desc)
    if h.op == "delete_rows":
        return make_step(h.table, "delete_rows", {"where": dict(h.where or {})}, description=desc)
    return make_step(h.table, "custom", {"code": h.code or ""}, description=desc)


def _target_json(tb: Table | None, fld: str | None) -> dict[str, Any]:
    """The target validator of a converted field (Convex JSON): values it accepts are left
    alone, which keeps conversions idempotent."""

    assert tb is not None and fld in tb.fields
    return tb.fields[fld].type.to_convex_json()


def _convert_inverse(h: MigrationOp, ta: Table | None) -> DataStep | None:
    """An injective value mapping over string values can be mapped back. The inverse is
    keyed by ``String(value)`` as the mutation looks it up, so only scalar targets whose
    ``String`` forms differ (``1`` and ``"1"`` do not) are invertible."""

    if h.code or h.default is not None or not h.mapping or ta is None:
        return None
    src = ta.fields.get(h.field or "")
    lits = literal_values(src.type) if src else None
    strings = src is not None and (render_type(src.type) == "string" or (
        lits is not None and all(kind == "str" for kind, _, _ in lits)))
    values = list(h.mapping.values())
    if not strings or not all(v is None or isinstance(v, (str, int, float)) for v in values):
        return None
    targets = [js_string(v) for v in values]
    if len(set(targets)) != len(targets):
        return None
    back = {js_string(v): k for k, v in h.mapping.items()}
    target = ta.fields[h.field or ""].type.to_convex_json()
    return make_step(h.table, "convert", {"field": h.field, "mapping": back, "target": target},
                     origin="inferred",
                     description=f"undo conversion of {h.field}")


# ---------------------------------------------------------------------------------------
# Fields
# ---------------------------------------------------------------------------------------


def _change(code: str, table: str, fld: str | None, message: str, **kw: Any) -> Change:

    kind, cls = CODES[code][0], CODES[code][1]
    return Change(code=code, kind=kind, table=table, field=fld, classification=cls,
                  message=message, **kw)


def _hinted(table: str, fld: str, ops: tuple[str, ...], hints: Sequence[MigrationOp],
            hint_steps: dict[int, DataStep], used: set[int], *, by_to: bool = False
            ) -> list[DataStep]:
    """Steps of applicable hints of kind ``ops`` on ``table.fld`` (custom: any field)."""

    out = []
    for i, step in hint_steps.items():
        h = hints[i]
        if h.table != table or h.op not in ops:
            continue
        if h.op == "custom" or h.field == fld:
            out.append(step)
            used.add(i)
    return out


def _drop(table: str, fld: str, why: str) -> DataStep:
    return make_step(table, "drop_field", {"field": fld}, origin="inferred", description=why)


def _renames(ta: Table, tb: Table, hints: Sequence[MigrationOp],
             hint_steps: dict[int, DataStep], used: set[int]
             ) -> tuple[list[Change], list[tuple[str, str]]]:
    """Changes of the rename hints that apply to this table, and their (from, to) pairs:
    a renamed field is neither removed nor added, its two ends are compared instead."""

    name = ta.name
    out: list[Change] = []
    pairs: list[tuple[str, str]] = []
    for i, step in hint_steps.items():
        h = hints[i]
        if h.table == name and h.op == "rename" and h.from_field not in tb.fields \
                and h.from_field in ta.fields and h.field in tb.fields:
            used.add(i)
            pairs.append((h.from_field or "", h.field or ""))
            inv = None
            if step.inverse is not None:
                inv = _change("BYOD-D204", name, h.from_field,
                              f"renamed back from {h.field}", generated=True,
                              steps=(step.inverse,))
            out.append(_change("BYOD-D204", name, h.field, f"renamed from {h.from_field}",
                               generated=True, steps=(step,), before=ta.fields[h.from_field or ""],
                               after=tb.fields[h.field or ""], inverse_change=inv))
    return out, pairs


def _removed_fields(ta: Table, tb: Table, renamed_from: set[str],
                    hints: Sequence[MigrationOp], hint_steps: dict[int, DataStep],
                    used: set[int], consent: Consent) -> list[Change]:
    """Fields only in the source: their values are deleted, so each needs consent."""

    name = ta.name
    out: list[Change] = []
    for fld, fdef in ta.fields.items():
        if fld in tb.fields or fld in renamed_from:
            continue
        key = f"{name}.{fld}"
        ok = key in consent.drop_fields
        steps = _hinted(name, fld, ("drop_field",), hints, hint_steps, used)
        if ok and not steps:
            steps = [_drop(name, fld, f"{key} leaves the schema")]
        out.append(_change("BYOD-D203", name, fld,
                           f"field removed ({_desc(fdef)}): its values are deleted",
                           consented=ok, generated=ok, steps=tuple(steps) if ok else (),
                           hint=f"add '{key}' to consent.drop_fields", before=fdef,
                           irreversible_reason="removed values cannot be restored"))
    return out


def _suggest_renames(table: str, removed: list[Change], added: list[Change],
                     ) -> tuple[list[Change], list[Change]]:
    """A field that leaves without consent while a field of the same type arrives without a
    hint is most likely a rename: point both changes at the rename hint, and say that the
    other way out (consenting to the drop) deletes every stored value."""

    drops = [c for c in removed if c.code == "BYOD-D203" and not c.consented and not c.steps]
    arrivals = [c for c in added if c.code in ("BYOD-D201", "BYOD-D202") and not c.steps]
    pairs: dict[str, str] = {}
    for drop in drops:
        old: FieldDef = drop.before
        fits = [c.field for c in arrivals if c.field not in pairs.values()
                and c.after.type == old.type and (c.after.optional or not old.optional)]
        if not fits:
            continue
        best = difflib.get_close_matches(drop.field or "", [f or "" for f in fits], n=1,
                                         cutoff=0.0)
        pairs[drop.field or ""] = best[0] if best else fits[0] or ""
    if not pairs:
        return removed, added
    back = {to: frm for frm, to in pairs.items()}

    def rename(frm: str, to: str) -> str:
        return f"{{op: rename, table: {table}, from: {frm}, to: {to}}}"

    def hinted(change: Change) -> Change:
        if change in drops and change.field in pairs:
            frm, to = change.field or "", pairs[change.field or ""]
            hint = (f"if {frm} became {to}, add a hint: {rename(frm, to)}; adding "
                    f"'{table}.{frm}' to consent.drop_fields instead DELETES every stored "
                    f"{frm} value")
        elif change in arrivals and change.field in back:
            frm, to = back[change.field or ""], change.field or ""
            if change.code == "BYOD-D201":  # optional: nothing blocks, but the values go
                return change
            hint = (f"if {to} is {frm} renamed, add a hint: {rename(frm, to)}; otherwise "
                    f"{change.hint.removeprefix('add a hint: ')}")
        else:
            return change
        return dataclasses.replace(change, hint=hint)

    return [hinted(c) for c in removed], [hinted(c) for c in added]


def _added_fields(ta: Table, tb: Table, renamed_to: set[str], hints: Sequence[MigrationOp],
                  hint_steps: dict[int, DataStep], used: set[int]) -> list[Change]:
    """Fields only in the target: an optional one is free, a required one needs a step
    that fills it."""

    name = ta.name
    out: list[Change] = []
    for fld, fdef in tb.fields.items():
        if fld in ta.fields or fld in renamed_to:
            continue
        undo = _change("BYOD-D203", name, fld, "field removed (rolling back the version that "
                       "added it)", consented=True, generated=True,
                       steps=(_drop(name, fld, f"roll back {name}.{fld}"),), before=fdef,
                       irreversible_reason="removed values cannot be restored")
        if fdef.optional:
            out.append(_change("BYOD-D201", name, fld, f"optional field added ({_desc(fdef)})",
                               after=fdef, inverse_change=undo))
            continue
        steps = _hinted(name, fld, ("backfill", "copy", "custom"), hints, hint_steps, used)
        out.append(_change("BYOD-D202", name, fld, f"required field added ({_desc(fdef)})",
                           generated=bool(steps), steps=tuple(steps), after=fdef,
                           hint=f"add a hint: {{op: backfill, table: {name}, field: {fld}, value: ...}}",
                           inverse_change=undo))
    return out


def field_changes(ta: Table, tb: Table, hints: Sequence[MigrationOp],
                  hint_steps: dict[int, DataStep], used: set[int], consent: Consent) -> list:
    """Field-level changes of one table present on both sides."""

    name = ta.name
    out: list = []
    renames, pairs = _renames(ta, tb, hints, hint_steps, used)
    out += renames
    renamed_from = {frm for frm, _ in pairs}
    renamed_to = {to for _, to in pairs}
    removed = _removed_fields(ta, tb, renamed_from, hints, hint_steps, used, consent)
    added = _added_fields(ta, tb, renamed_to, hints, hint_steps, used)
    removed, added = _suggest_renames(name, removed, added)
    out += removed + added
    for fld, fdef in tb.fields.items():
        if fld in ta.fields and fld not in renamed_to:
            out += _compare_field(name, fld, ta.fields[fld], fdef, hints, hint_steps, used)
    for frm, to in pairs:
        out += _compare_field(name, to, ta.fields[frm], tb.fields[to], hints, hint_steps, used)
    return out


def _compare_field(table: str, fld: str, old: FieldDef, new: FieldDef,
                   hints: Sequence[MigrationOp], hint_steps: dict[int, DataStep],
                   used: set[int]) -> list:
    out: list = []
    if old.type != new.type:
        la, lb = literal_values(old.type), literal_values(new.type)
        if la is not None and lb is not None and la <= lb:
            out.append(_change("BYOD-D209", table, fld,
                               f"literal set widened: {render_type(old.type)} -> {render_type(new.type)}",
                               before=old, after=new,
                               irreversible_reason="stored values may use the new literals"))
        elif la is not None and lb is not None:
            removed = sorted(js_string(v) for _, v, _ in la - lb)
            steps = _hinted(table, fld, ("map_values", "convert", "custom"), hints, hint_steps, used)
            covered = any(s.op in ("convert", "custom") for s in steps) or any(
                s.op == "map_values" and ("default" in s.params or all(
                    r in s.params["mapping"] for r in removed)) for s in steps)
            inv = _change("BYOD-D209", table, fld, "literal set widened back", before=new, after=old)
            out.append(_change("BYOD-D210", table, fld,
                               f"literal set narrowed: {', '.join(removed)} no longer allowed",
                               generated=covered, steps=tuple(steps), before=old, after=new,
                               hint=f"add {{op: map_values, table: {table}, field: {fld}, "
                               f"mapping: {{{', '.join(r + ': ...' for r in removed)}}}}}",
                               inverse_change=inv))
        elif is_subtype(old.type, new.type):
            out.append(_change("BYOD-D207", table, fld,
                               f"type widened: {render_type(old.type)} -> {render_type(new.type)}",
                               before=old, after=new,
                               irreversible_reason="stored values may use the wider type"))
        else:
            steps = _hinted(table, fld, ("convert", "map_values", "custom"), hints, hint_steps, used)
            inv = None
            conv = [s for s in steps if s.op == "convert"]
            if len(steps) == 1 and conv and conv[0].inverse is not None:
                inv = _change("BYOD-D208", table, fld, "type changed back", generated=True,
                              steps=(conv[0].inverse,), before=new, after=old)
            out.append(_change("BYOD-D208", table, fld,
                               f"type changed: {render_type(old.type)} -> {render_type(new.type)}",
                               generated=bool(steps), steps=tuple(steps), before=old, after=new,
                               hint=f"add {{op: convert, table: {table}, field: {fld}, code: ...}}",
                               inverse_change=inv,
                               irreversible_reason="the conversion cannot be undone"))
    if old.optional and not new.optional:
        steps = _hinted(table, fld, ("backfill", "custom"), hints, hint_steps, used)
        inv = _change("BYOD-D206", table, fld, "made optional again", before=new, after=old)
        out.append(_change("BYOD-D205", table, fld, "optional field made required",
                           generated=bool(steps), steps=tuple(steps), before=old, after=new,
                           hint=f"add {{op: backfill, table: {table}, field: {fld}, value: ...}}",
                           inverse_change=inv))
    elif not old.optional and new.optional:
        out.append(_change("BYOD-D206", table, fld, "required field made optional",
                           before=old, after=new,
                           irreversible_reason="documents written without the field would "
                           "need a backfill on the way back"))
    return out


# ---------------------------------------------------------------------------------------
# Indexes
# ---------------------------------------------------------------------------------------


def _index_desc(ix: Any) -> str:
    d = ix.to_convex_json()
    d.pop("indexDescriptor", None)
    if ix.staged:
        d["staged"] = True
    return json.dumps(d, sort_keys=True)


def index_changes(ta: Table, tb: Table) -> list:
    out: list = []
    for attr, (add, rem, chg), label in (
        ("indexes", ("BYOD-D301", "BYOD-D302", "BYOD-D303"), "index"),
        ("search_indexes", ("BYOD-D311", "BYOD-D312", "BYOD-D313"), "search index"),
        ("vector_indexes", ("BYOD-D321", "BYOD-D322", "BYOD-D323"), "vector index"),
    ):
        old = {i.name: i for i in getattr(ta, attr)}
        new = {i.name: i for i in getattr(tb, attr)}
        for n, ix in new.items():
            if n not in old:
                inv = _change(rem, ta.name, None, f"{label} {n} removed", before=ix)
                note = " (built during the push)" if attr == "indexes" and not ix.staged else ""
                out.append(_change(add, ta.name, None, f"{label} {n} added {_index_desc(ix)}{note}",
                                   after=ix, inverse_change=inv))
            elif old[n] != ix:
                inv = _change(chg, ta.name, None, f"{label} {n} changed back", before=ix,
                              after=old[n])
                out.append(_change(chg, ta.name, None, f"{label} {n} changed: "
                                   f"{_index_desc(old[n])} -> {_index_desc(ix)}",
                                   before=old[n], after=ix, inverse_change=inv))
        for n, ix in old.items():
            if n not in new:
                inv = _change(add, ta.name, None, f"{label} {n} added back", after=ix)
                out.append(_change(rem, ta.name, None, f"{label} {n} removed", before=ix,
                                   inverse_change=inv))
    return out
