"""Pure algebra on validators: subtyping, union flattening, widening.

Shared by the diff (is a type change a widening?) and by ``widen`` (the schema both old
and new documents satisfy). Conservative by design: ``is_subtype`` may answer False for
a true subtype (then the diff asks for a data step), never True for a non-subtype.
"""

from __future__ import annotations

from typing import Any

from engine.schema.models import (
    AnyV,
    ArrayV,
    BooleanV,
    FieldDef,
    Float64V,
    IdV,
    Int64V,
    LiteralV,
    ObjectV,
    RecordV,
    StringV,
    UnionV,
)

__all__ = ["flatten", "is_subtype", "literal_values", "render_type", "union_of", "widen_type"]


def flatten(t: Any) -> list[Any]:
    """The members of a (possibly nested) union, in order, without duplicates."""

    out: list[Any] = []
    stack = [t]
    while stack:
        cur = stack.pop(0)
        if isinstance(cur, UnionV):
            stack[0:0] = list(cur.members)
        elif cur not in out:
            out.append(cur)
    return out


def literal_values(t: Any) -> frozenset[tuple[str, Any, bool]] | None:
    """The literal set of a literal or union of literals, or None for any other type."""

    members = flatten(t)
    if not members or not all(isinstance(m, LiteralV) for m in members):
        return None
    return frozenset((type(m.value).__name__, m.value, m.bigint) for m in members)


def _literal_base(lit: LiteralV) -> Any:
    if lit.bigint:
        return Int64V()
    if isinstance(lit.value, bool):
        return BooleanV()
    if isinstance(lit.value, str):
        return StringV()
    return Float64V()


def _fields_subtype(a: dict[str, FieldDef], b: dict[str, FieldDef]) -> bool:
    for name, fa in a.items():
        fb = b.get(name)
        if fb is None or (fa.optional and not fb.optional) or not is_subtype(fa.type, fb.type):
            return False
    return all(fb.optional for name, fb in b.items() if name not in a)


def is_subtype(a: Any, b: Any) -> bool:
    """True when every value valid under ``a`` is valid under ``b``."""

    if a is b or isinstance(b, AnyV) or a == b:
        return True
    if isinstance(a, UnionV):
        return all(is_subtype(m, b) for m in flatten(a))
    if isinstance(b, UnionV):
        return any(is_subtype(a, m) for m in flatten(b))
    if isinstance(a, LiteralV):
        return _literal_base(a) == b
    if isinstance(a, IdV):
        return isinstance(b, StringV)
    if isinstance(a, ArrayV) and isinstance(b, ArrayV):
        return is_subtype(a.element, b.element)
    if isinstance(a, ObjectV) and isinstance(b, ObjectV):
        return _fields_subtype(a.fields, b.fields)
    if isinstance(a, RecordV) and isinstance(b, RecordV):
        return is_subtype(a.keys, b.keys) and is_subtype(a.values, b.values)
    return False


def union_of(members: list[Any]) -> Any:
    """One validator accepting any of ``members``: flattened, deduplicated, and without
    members another member already covers (``"a"`` beside ``string``)."""

    flat: list[Any] = []
    for m in members:
        for f in flatten(m):
            if f not in flat:
                flat.append(f)
    if any(isinstance(f, AnyV) for f in flat):
        return AnyV()
    kept = [
        f for i, f in enumerate(flat)
        if not any(j != i and g != f and is_subtype(f, g) for j, g in enumerate(flat))
    ]
    return kept[0] if len(kept) == 1 else UnionV(members=tuple(kept))


def widen_fields(a: dict[str, FieldDef], b: dict[str, FieldDef]) -> dict[str, FieldDef]:
    """Fields accepting objects valid under ``a`` or ``b``: ``b``'s order first, a field on
    one side only becomes optional, optional wins."""

    out: dict[str, FieldDef] = {}
    for name in list(b) + [n for n in a if n not in b]:
        fa, fb = a.get(name), b.get(name)
        if fa is None or fb is None:
            only = fa or fb
            assert only is not None
            out[name] = FieldDef.model_construct(type=only.type, optional=True)
        elif fa is fb or fa == fb:
            out[name] = fb
        else:
            out[name] = FieldDef.model_construct(
                type=widen_type(fa.type, fb.type), optional=fa.optional or fb.optional
            )
    return out


def widen_type(a: Any, b: Any) -> Any:
    """The narrowest validator (within this algebra) accepting values of ``a`` or ``b``.

    Objects merge field by field and arrays element-wise, which keeps vector fields
    ``float64[]`` when both sides agree; other differences become a flattened union.
    """

    if is_subtype(a, b):
        return b
    if is_subtype(b, a):
        return a
    if isinstance(a, ObjectV) and isinstance(b, ObjectV):
        return ObjectV(fields=widen_fields(a.fields, b.fields))
    if isinstance(a, ArrayV) and isinstance(b, ArrayV):
        return ArrayV(element=widen_type(a.element, b.element))
    if isinstance(a, RecordV) and isinstance(b, RecordV):
        return RecordV(keys=widen_type(a.keys, b.keys), values=widen_type(a.values, b.values))
    return union_of([a, b])


def render_type(t: Any) -> str:
    """A type in the version-file notation, for messages (``"a" | "b"``, ``string[]``)."""

    if isinstance(t, LiteralV):
        if t.bigint:
            return f"{int(t.value)}n"
        if isinstance(t.value, str):
            return '"' + t.value + '"'
        return str(t.value).lower() if isinstance(t.value, bool) else str(t.value)
    if isinstance(t, IdV):
        return f"id({t.table})"
    if isinstance(t, ArrayV):
        inner = render_type(t.element)
        return f"({inner})[]" if isinstance(t.element, UnionV) else f"{inner}[]"
    if isinstance(t, UnionV):
        return " | ".join(render_type(m) for m in t.members)
    if isinstance(t, ObjectV):
        body = ", ".join(
            f"{n}{'?' if f.optional else ''}: {render_type(f.type)}" for n, f in t.fields.items()
        )
        return "{" + body + "}"
    if isinstance(t, RecordV):
        return f"record({render_type(t.keys)}, {render_type(t.values)})"
    return {"number": "number", "int64": "int64"}.get(t.kind, t.kind)


# ---------------------------------------------------------------------------------------
# Structural keys: cheap exact identity of a table definition (planning hot path)
# ---------------------------------------------------------------------------------------

_KEYS: dict[int, tuple[Any, tuple]] = {}


def _type_key(t: Any) -> tuple:
    kind = t.kind
    if kind == "literal":
        return (kind, type(t.value).__name__, t.value, t.bigint)
    if kind == "id":
        return (kind, t.table)
    if kind == "array":
        return (kind, _type_key(t.element))
    if kind == "object":
        return (kind, tuple((n, f.optional, _type_key(f.type)) for n, f in t.fields.items()))
    if kind == "record":
        return (kind, _type_key(t.keys), _type_key(t.values))
    if kind == "union":
        return (kind, tuple(_type_key(m) for m in t.members))
    return (kind,)


def table_key(table: Any) -> tuple:
    """A hashable value equal for two tables exactly when their definitions are equal.
    Cached per object (the cache entry dies with the object)."""

    import weakref

    k = id(table)
    hit = _KEYS.get(k)
    if hit is not None and hit[0]() is table:
        return hit[1]
    key = (
        table.name, table.location.value,
        tuple((n, f.optional, _type_key(f.type)) for n, f in table.fields.items()),
        tuple((i.name, i.fields, i.staged) for i in table.indexes),
        tuple((i.name, i.search_field, i.filter_fields, i.staged) for i in table.search_indexes),
        tuple((i.name, i.vector_field, i.dimensions, i.filter_fields, i.staged)
              for i in table.vector_indexes),
    )

    def _forget(_ref: weakref.ref[Any]) -> None:
        _KEYS.pop(k, None)

    _KEYS[k] = (weakref.ref(table, _forget), key)
    return key
