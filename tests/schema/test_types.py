"""Type expressions: parsing, errors with columns, canonical formatting, round trip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.schema.models import (
    AnyV,
    ArrayV,
    BooleanV,
    BytesV,
    FieldDef,
    Float64V,
    IdV,
    Int64V,
    LiteralV,
    NullV,
    ObjectV,
    RecordV,
    StringV,
    UnionV,
)
from engine.schema.types import (
    TypeSyntaxError,
    format_field_type,
    format_type,
    parse_field_type,
    parse_type,
)

S, N = StringV(), Float64V()


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("string", S),
        ("number", N),
        ("float64", N),
        ("int64", Int64V()),
        ("bigint", Int64V()),
        ("boolean", BooleanV()),
        ("bool", BooleanV()),
        ("null", NullV()),
        ("bytes", BytesV()),
        ("any", AnyV()),
        ("storage", S),
        ("id(conversations)", IdV(table="conversations")),
        ('id("_storage")', IdV(table="_storage")),
        ('"user"', LiteralV(value="user")),
        ("42", LiteralV(value=42)),
        ("-1.5", LiteralV(value=-1.5)),
        ("7n", LiteralV(value=7, bigint=True)),
        ("-7n", LiteralV(value=-7, bigint=True)),
        ("true", LiteralV(value=True)),
        ("false", LiteralV(value=False)),
        ('literal("x")', LiteralV(value="x")),
        ("literal(3n)", LiteralV(value=3, bigint=True)),
        ("float64[]", ArrayV(element=N)),
        ("array(string)", ArrayV(element=S)),
        ("string[][]", ArrayV(element=ArrayV(element=S))),
        ('"a" | "b" | "c"', UnionV(members=tuple(LiteralV(value=x) for x in "abc"))),
        ("(string | number)[]", ArrayV(element=UnionV(members=(S, N)))),
        ("string | number[]", UnionV(members=(S, ArrayV(element=N)))),
        ("nullable(string)", UnionV(members=(S, NullV()))),
        ("record(string, any)", RecordV(keys=S, values=AnyV())),
        ("record(id(users), number)", RecordV(keys=IdV(table="users"), values=N)),
        ("union()", UnionV(members=())),
        ("union(string)", UnionV(members=(S,))),
        ("{}", ObjectV()),
        ("{a: string, b?: number}",
         ObjectV(fields={"a": FieldDef(type=S), "b": FieldDef(type=N, optional=True)})),
        ("{a: optional(bool)}", ObjectV(fields={"a": FieldDef(type=BooleanV(), optional=True)})),
        ('{"odd key": string}', ObjectV(fields={"odd key": FieldDef(type=S)})),
        ("{ meta : { tags : string [ ] } }", ObjectV(fields={"meta": FieldDef(
            type=ObjectV(fields={"tags": FieldDef(type=ArrayV(element=S))}))})),
        ("((string))", S),
        ("(string | number) | null", UnionV(members=(UnionV(members=(S, N)), NullV()))),
    ],
)
def test_parse(expr: str, expected: object) -> None:
    assert parse_type(expr) == expected


def test_single_quoted_literals_allow_escapes() -> None:
    assert parse_type("'it\\'s \"x\"'") == LiteralV(value='it\'s "x"')
    assert parse_type('"a\\nb"') == LiteralV(value="a\nb")


def test_optional_only_at_field_level() -> None:
    assert parse_field_type("optional(string | null)") == FieldDef(
        type=UnionV(members=(S, NullV())), optional=True)
    assert parse_field_type("string") == FieldDef(type=S)
    with pytest.raises(TypeSyntaxError, match="only allowed as a whole field"):
        parse_type("optional(string)")
    with pytest.raises(TypeSyntaxError, match="only allowed as a whole field"):
        parse_field_type("optional(string) | null")
    with pytest.raises(TypeSyntaxError, match="only allowed as a whole field"):
        parse_type("optional(string)[]")
    with pytest.raises(TypeSyntaxError, match="record values cannot be optional"):
        parse_type("record(string, optional(number))")


@pytest.mark.parametrize(
    ("expr", "message", "column"),
    [
        ("stirng", "unknown type 'stirng'", 1),
        ("string | nubmer", "unknown type 'nubmer'", 10),
        ("string |", "expected a type", 9),
        ("string number", "unexpected 'number'", 8),
        ('"open', "unterminated string", 1),
        ("(string", "expected ')'", 8),
        ("string[", "expected ']'", 8),
        ("id()", "takes a table name", 4),
        ("record(string)", "expected ','", 14),
        ("literal(null)", "literal(...) takes", 9),
        ("literal", "needs arguments", 1),
        ("{a string}", "expected ':'", 4),
        ("{a: string, a: number}", "duplicate field 'a'", 13),
        ("1.5n", "must be an integer", 1),
        ("9223372036854775808n", "does not fit in int64", 1),
        ("1e999", "not a finite number", 1),
        ("string & number", "unexpected character '&'", 8),
        ("", "expected a type, found the end", 1),
        ("(" * 500 + "string" + ")" * 500, "nested more than 100 levels", 101),
    ],
)
def test_errors_have_message_and_column(expr: str, message: str, column: int) -> None:
    with pytest.raises(TypeSyntaxError) as info:
        parse_type(expr)
    assert message in info.value.message
    assert info.value.column == column


def test_unknown_type_suggests_a_name() -> None:
    with pytest.raises(TypeSyntaxError) as info:
        parse_type("booleen")
    assert "did you mean 'boolean'" in info.value.hint
    with pytest.raises(TypeSyntaxError) as info:
        parse_type("zzzzzz")
    assert "known types:" in info.value.hint


@pytest.mark.parametrize(
    ("validator", "text"),
    [
        (UnionV(members=(LiteralV(value="a"), LiteralV(value=1), LiteralV(value=True))),
         '"a" | 1 | true'),
        (ArrayV(element=UnionV(members=(S, NullV()))), "(string | null)[]"),
        (RecordV(keys=S, values=ArrayV(element=Int64V())), "record(string, int64[])"),
        (ObjectV(fields={"a": FieldDef(type=S, optional=True), "b c": FieldDef(type=N)}),
         '{a?: string, "b c": number}'),
        (IdV(table="users"), "id(users)"),
        (LiteralV(value=5, bigint=True), "5n"),
        (LiteralV(value=2.0), "2.0"),
    ],
)
def test_format_is_canonical(validator: object, text: str) -> None:
    assert format_type(validator) == text
    assert parse_type(text) == validator


def test_format_field_type() -> None:
    assert format_field_type(FieldDef(type=S, optional=True)) == "optional(string)"
    assert parse_field_type(format_field_type(FieldDef(type=S, optional=True))).optional


# ---------------------------------------------------------------------------------------
# Round trip over random validators
# ---------------------------------------------------------------------------------------

_names = st.text(min_size=1, max_size=12)
_literals = st.one_of(
    st.text(max_size=10).map(lambda s: LiteralV(value=s)),
    st.integers(-(2**53), 2**53).map(lambda i: LiteralV(value=i)),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: LiteralV(value=f)),
    st.booleans().map(lambda b: LiteralV(value=b)),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: LiteralV(value=i, bigint=True)),
)
_leaves = st.one_of(
    st.sampled_from([S, N, Int64V(), BooleanV(), NullV(), BytesV(), AnyV()]),
    _names.map(lambda t: IdV(table=t)),
    _literals,
)


def _extend(children: st.SearchStrategy) -> st.SearchStrategy:
    fields = st.dictionaries(_names, st.builds(FieldDef, type=children, optional=st.booleans()),
                             max_size=4)
    return st.one_of(
        children.map(lambda c: ArrayV(element=c)),
        fields.map(lambda f: ObjectV(fields=f)),
        st.builds(RecordV, keys=st.sampled_from([S, IdV(table="t")]), values=children),
        st.lists(children, max_size=4).map(lambda m: UnionV(members=tuple(m))),
    )


validators = st.recursive(_leaves, _extend, max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(validators)
def test_round_trip(v: object) -> None:
    text = format_type(v)
    assert parse_type(text) == v
    assert format_type(parse_type(text)) == text
