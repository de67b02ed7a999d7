"""Hypothesis strategies for random *valid* schemas (identifiers, every validator kind,
references to existing tables, indexes on existing fields)."""

from __future__ import annotations

from hypothesis import strategies as st

from engine.schema.engine_tables import ENGINE_TABLE_NAMES
from engine.schema.models import (
    AnyV,
    ArrayV,
    BooleanV,
    BytesV,
    DbIndex,
    FieldDef,
    Float64V,
    IdV,
    Int64V,
    LiteralV,
    Location,
    NullV,
    ObjectV,
    RecordV,
    Schema,
    SearchIndex,
    StringV,
    Table,
    UnionV,
    VectorIndex,
)

# names that are valid Convex identifiers but special in JavaScript
_TRICKY = ["constructor", "toString", "default", "__proto__", "valueOf", "hasOwnProperty"]

identifiers = st.one_of(
    st.from_regex(r"[a-z][A-Za-z0-9_]{0,12}", fullmatch=True),
    st.sampled_from(_TRICKY),
)
table_names = st.from_regex(r"[a-z][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda n: n not in ENGINE_TABLE_NAMES
)

_MAX_SAFE = 2**53
literals = st.one_of(
    st.builds(LiteralV, value=st.text(max_size=12)),
    st.builds(LiteralV, value=st.integers(-_MAX_SAFE, _MAX_SAFE)),
    st.builds(
        LiteralV,
        value=st.floats(allow_nan=False, allow_infinity=False).filter(
            lambda x: not (x == 0.0 and str(x).startswith("-"))
        ),
    ),
    st.builds(LiteralV, value=st.booleans()),
    st.builds(LiteralV, value=st.integers(-(2**63), 2**63 - 1), bigint=st.just(True)),
)


def validators(tables: list[str]) -> st.SearchStrategy:
    ids = st.sampled_from(tables).map(lambda t: IdV(table=t))
    base = st.one_of(
        st.sampled_from([StringV(), Float64V(), Int64V(), BooleanV(), NullV(), BytesV(), AnyV()]),
        ids,
        literals,
    )
    record_keys = st.one_of(
        st.just(StringV()),
        ids,
        st.lists(st.one_of(st.just(StringV()), ids), min_size=1, max_size=2).map(
            lambda ms: UnionV(members=tuple(ms))
        ),
    )

    def extend(children: st.SearchStrategy) -> st.SearchStrategy:
        return st.one_of(
            st.builds(ArrayV, element=children),
            st.builds(
                ObjectV,
                fields=st.dictionaries(
                    identifiers,
                    st.builds(FieldDef, type=children, optional=st.booleans()),
                    max_size=3,
                ),
            ),
            st.builds(RecordV, keys=record_keys, values=children),
            st.lists(children, min_size=1, max_size=3).map(lambda ms: UnionV(members=tuple(ms))),
        )

    return st.recursive(base, extend, max_leaves=6)


@st.composite
def tables_of(draw, name: str, location: Location, refs: list[str]) -> Table:
    field_names = draw(
        st.lists(st.from_regex(r"[a-z][A-Za-z0-9_]{0,12}", fullmatch=True), max_size=5, unique=True)
    )
    fields: dict[str, FieldDef] = {}
    for field in field_names:
        kind = draw(st.sampled_from(["any", "string", "vector"]))
        if kind == "string":
            validator = StringV()
        elif kind == "vector":
            validator = ArrayV(element=Float64V())
        else:
            validator = draw(validators(refs))
        fields[field] = FieldDef(type=validator, optional=draw(st.booleans()))
    indexes = []
    used: set[tuple[str, ...]] = set()
    if field_names:
        for i in range(draw(st.integers(0, 3))):
            chosen = tuple(
                draw(
                    st.lists(
                        st.sampled_from(field_names),
                        min_size=1,
                        max_size=min(3, len(field_names)),
                        unique=True,
                    )
                )
            )
            if chosen in used:
                continue
            used.add(chosen)
            indexes.append(DbIndex(name=f"idx_{i}", fields=chosen, staged=draw(st.booleans())))
    strings = [n for n, f in fields.items() if isinstance(f.type, StringV)]
    vectors = [
        n
        for n, f in fields.items()
        if isinstance(f.type, ArrayV) and isinstance(f.type.element, Float64V)
    ]
    search = []
    if strings and draw(st.booleans()):
        search.append(
            SearchIndex(
                name="search_0",
                search_field=draw(st.sampled_from(strings)),
                filter_fields=tuple(
                    draw(st.lists(st.sampled_from(field_names), max_size=2, unique=True))
                ),
                staged=draw(st.booleans()),
            )
        )
    vector = []
    if vectors and draw(st.booleans()):
        vector.append(
            VectorIndex(
                name="vector_0",
                vector_field=draw(st.sampled_from(vectors)),
                dimensions=draw(st.integers(2, 4096)),
                filter_fields=tuple(
                    draw(st.lists(st.sampled_from(field_names), max_size=2, unique=True))
                ),
                staged=draw(st.booleans()),
            )
        )
    return Table(
        name=name,
        location=location,
        fields=fields,
        indexes=tuple(indexes),
        search_indexes=tuple(search),
        vector_indexes=tuple(vector),
    )


@st.composite
def schemas(draw) -> Schema:
    """1–3 tables; user-located tables reference only user-located ones (project rule)."""

    names = draw(st.lists(table_names, min_size=1, max_size=3, unique=True))
    locations = {
        n: draw(st.sampled_from([Location.USER, Location.USER, Location.MAIN])) for n in names
    }
    user = [n for n in names if locations[n] == Location.USER]
    tables = {
        n: draw(tables_of(n, locations[n], user if locations[n] == Location.USER else names))
        for n in names
    }
    return Schema(tables=tables, schema_validation=draw(st.booleans()))
