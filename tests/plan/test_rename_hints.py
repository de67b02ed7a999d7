"""Rename-aware hints: a field that leaves while one of the same type arrives points at the
rename hint, and the drop alternative is called out as deleting data."""

from __future__ import annotations

from engine.plan.diff import diff
from engine.schema.models import (
    Consent,
    FieldDef,
    Float64V,
    MigrationOp,
    Schema,
    StringV,
    Table,
)

S, N = FieldDef(type=StringV()), FieldDef(type=Float64V())
OS = FieldDef(type=StringV(), optional=True)


def bookmarks(**fields: FieldDef) -> Schema:
    return Schema(tables={"bookmarks": Table(name="bookmarks",
                                             fields={"userId": S, **fields})})


def by_code(d) -> dict[str, object]:
    return {c.code: c for c in d.changes}


def test_a_dropped_and_an_added_field_of_one_type_propose_the_rename() -> None:
    changes = by_code(diff(bookmarks(note=S), bookmarks(comment=S)))
    rename = "{op: rename, table: bookmarks, from: note, to: comment}"
    drop, add = changes["BYOD-D203"], changes["BYOD-D202"]
    assert rename in drop.hint and rename in add.hint
    assert "consent.drop_fields instead DELETES every stored note value" in drop.hint
    assert "{op: backfill, table: bookmarks, field: comment" in add.hint  # still offered


def test_an_optional_arrival_still_turns_the_drop_into_a_rename_suggestion() -> None:
    changes = by_code(diff(bookmarks(note=S), bookmarks(comment=OS)))
    assert "from: note, to: comment" in changes["BYOD-D203"].hint
    assert changes["BYOD-D201"].hint == ""


def test_no_rename_is_proposed_across_types_or_once_resolved() -> None:
    plain = by_code(diff(bookmarks(note=S), bookmarks(comment=N)))
    assert plain["BYOD-D203"].hint == "add 'bookmarks.note' to consent.drop_fields"
    consented = by_code(diff(bookmarks(note=S), bookmarks(comment=S),
                             [MigrationOp(op="backfill", table="bookmarks", field="comment",
                                          value="")],
                             Consent(drop_fields=("bookmarks.note",))))
    assert "rename" not in consented["BYOD-D203"].hint  # the author chose the drop
    renamed = diff(bookmarks(note=S), bookmarks(comment=S),
                   [MigrationOp(op="rename", table="bookmarks", from_field="note",
                                field="comment")])
    assert [c.code for c in renamed.changes] == ["BYOD-D204"]


def test_several_candidates_pair_by_name() -> None:
    changes = diff(bookmarks(note=S, label=S), bookmarks(notes=S, labels=S)).changes
    hints = {c.field: c.hint for c in changes if c.code == "BYOD-D203"}
    assert "from: note, to: notes" in hints["note"]
    assert "from: label, to: labels" in hints["label"]
