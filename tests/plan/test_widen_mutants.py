"""Which indexes survive a widening, path by path: dotted paths through objects and unions
of objects, search fields that must be strings, vector fields that must be ``float64[]``,
filter fields that must exist; and the exact errors of ``widen_all`` and
``data_steps_for`` (mutation testing, scripts/mutation.py, found these unpinned)."""

from __future__ import annotations

import pytest

from engine.errors import UnsafeChange
from engine.plan.widen import data_steps_for, widen, widen_all
from engine.schema.models import (
    DbIndex,
    FieldDef,
    Location,
    Schema,
    SearchIndex,
    Table,
    VectorIndex,
)
from engine.schema.types import parse_type

NESTED = "{a: string, b: {c: string}} | {d: float64, e: float64[]}"


def _fields(**types: str) -> dict[str, FieldDef]:
    return {name: FieldDef(type=parse_type(t)) for name, t in types.items()}


def _widened_indexes(a_fields: dict[str, FieldDef], b_fields: dict[str, FieldDef],
                     *, db=(), search=(), vector=()) -> set[str]:
    """The names of ``a``'s indexes the widening of ``a`` -> ``b`` keeps (b has none)."""

    a = Table(name="t", fields=a_fields, indexes=tuple(db), search_indexes=tuple(search),
              vector_indexes=tuple(vector))
    b = Table(name="t", fields=b_fields)
    out = widen(Schema(tables={"t": a}), Schema(tables={"t": b})).tables["t"]
    return {ix.name for ix in (*out.indexes, *out.search_indexes, *out.vector_indexes)}


A = _fields(meta=NESTED, title="string", n="float64", vec="float64[]", other="boolean")
B = _fields(x="string")  # a's fields all become optional, so a's paths all still exist


@pytest.mark.parametrize("path,kept", [
    ("title", True), ("meta.a", True), ("meta.b.c", True), ("meta.d", True),
    ("meta.e", True), ("missing", False), ("meta.missing", False), ("meta.b.missing", False),
    ("meta.a.deeper", False), ("title.x", False), ("meta.b.c.d", False),
])
def test_db_index_on_dotted_paths(path: str, kept: bool):
    names = _widened_indexes(A, B, db=[DbIndex(name="by_path", fields=(path,))])
    assert ("by_path" in names) is kept


@pytest.mark.parametrize("field,kept", [
    ("title", True), ("meta.a", True), ("meta.b.c", True),
    ("n", False), ("meta.d", False), ("meta.b", False), ("missing", False),
])
def test_search_index_needs_a_string_field(field: str, kept: bool):
    names = _widened_indexes(A, B, search=[SearchIndex(name="search", search_field=field)])
    assert ("search" in names) is kept


@pytest.mark.parametrize("filters,kept", [
    ((), True), (("n",), True), (("meta.b.c", "n"), True), (("missing",), False),
    (("n", "missing"), False),
])
def test_search_and_vector_filter_fields_must_exist(filters: tuple[str, ...], kept: bool):
    names = _widened_indexes(A, B, search=[SearchIndex(name="search", search_field="title",
                                                       filter_fields=filters)],
                             vector=[VectorIndex(name="vector", vector_field="vec",
                                                 dimensions=3, filter_fields=filters)])
    assert names == ({"search", "vector"} if kept else set())


@pytest.mark.parametrize("field,kept", [
    ("vec", True), ("meta.e", True), ("n", False), ("title", False), ("missing", False),
])
def test_vector_index_needs_a_float64_array(field: str, kept: bool):
    names = _widened_indexes(A, B, vector=[VectorIndex(name="vector", vector_field=field,
                                                       dimensions=3)])
    assert ("vector" in names) is kept


def test_widen_all_of_nothing_is_an_error():
    with pytest.raises(ValueError) as info:
        widen_all([])
    assert str(info.value) == "widen_all needs at least one schema"


def test_blocked_data_steps_name_the_label_or_migration():
    a = Schema(tables={"t": Table(name="t", fields=_fields(x="string"))})
    b = Schema(tables={"t": Table(name="t", fields=_fields(x="string", y="string"))})
    with pytest.raises(UnsafeChange) as info:
        data_steps_for(a, b)
    assert str(info.value).startswith("migration: 1 change(s) cannot be planned:")
    with pytest.raises(UnsafeChange) as info:
        data_steps_for(a, b, label="0001 -> 0002")
    assert str(info.value).startswith("0001 -> 0002: 1 change(s) cannot be planned:")


def _table(fields: dict[str, FieldDef], **kw) -> Table:
    return Table.model_construct(name="t", location=kw.pop("location", Location.USER),
                                 fields=fields, indexes=tuple(kw.pop("db", ())),
                                 search_indexes=tuple(kw.pop("search", ())),
                                 vector_indexes=tuple(kw.pop("vector", ())))


def _widen_tables(a: Table, b: Table, **kw) -> Table:
    return widen(Schema(tables={"t": a}), Schema(tables={"t": b}), **kw).tables["t"]


def test_at_most_32_indexes_of_which_search_and_vector_take_their_share():
    many = _fields(**{f"f{i}": "string" for i in range(40)}, vec="float64[]")
    db = [DbIndex(name=f"by_f{i}", fields=(f"f{i}",)) for i in range(40)]
    out = _widen_tables(_table(many, db=db), _table(_fields(x="string")))
    assert len(out.indexes) == 32
    search = [SearchIndex(name=f"s{i}", search_field=f"f{i}") for i in range(4)]
    vector = [VectorIndex(name=f"v{i}", vector_field="vec", dimensions=3) for i in range(2)]
    out = _widen_tables(_table(many, db=db, search=search, vector=vector),
                        _table(_fields(x="string")))
    assert (len(out.search_indexes), len(out.vector_indexes), len(out.indexes)) == (4, 2, 26)


def test_indexes_over_the_same_fields_are_kept_once():
    fields = _fields(x="string", y="string")
    a = _table(fields, db=[DbIndex(name="one", fields=("x", "y")),
                           DbIndex(name="two", fields=("x", "y")),
                           DbIndex(name="three", fields=("y",))])
    b = _table(_fields(x="string", y="string", z="string"),
               db=[DbIndex(name="by_y", fields=("y",))])
    assert [ix.name for ix in _widen_tables(a, b).indexes] == ["by_y", "one"]


def test_the_targets_valid_indexes_come_first_and_stay():
    a = _table(_fields(title="string"), search=[SearchIndex(name="s", search_field="title")])
    b = _table(_fields(title="float64", x="string"),
               db=[DbIndex(name="by_x", fields=("x",))])
    out = _widen_tables(a, b)
    assert [ix.name for ix in out.indexes] == ["by_x"]
    # the title is a string or a number now: no search index on it
    assert out.search_indexes == ()


def test_the_widened_table_keeps_its_location():
    a = _table(_fields(x="string"), location=Location.MAIN)
    b = _table(_fields(x="float64"), location=Location.MAIN)
    assert _widen_tables(a, b).location == Location.MAIN


def test_a_covered_table_is_taken_from_the_target_as_it_is():
    a = _table(_fields(x="string"))
    b = _table(_fields(x="float64"))
    assert _widen_tables(a, b, covered=frozenset({"t"})) is b
    assert _widen_tables(a, b) is not b
