"""A pure-Python document validator: the oracle the planner's tests check data against.

It follows what Convex enforces for a stored document (and, unlike ``convex-test``, it
also checks ``record`` values). Python values stand for Convex values as follows:
``str`` string/id, ``float``/``int`` float64, :class:`Int64` int64, ``bool`` boolean,
``None`` null, ``bytes`` bytes, ``list`` array, ``dict`` object/record. A missing key is
an absent (optional) field; Convex cannot store ``undefined``.
"""

from __future__ import annotations

import re
from typing import Any

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
    Table,
    UnionV,
)

__all__ = ["Int64", "validate_document", "validate_value"]

_SYSTEM_FIELDS = ("_id", "_creationTime")
_KEY_RE = re.compile(r"^[^$\x00-\x1f][^\x00-\x1f]{0,1023}$")


class Int64(int):
    """An int64 value (``bigint`` in TypeScript); a plain ``int`` is a float64."""

    def __repr__(self) -> str:
        return f"{int(self)}n"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, (bool, Int64))


def _literal_matches(value: Any, lit: LiteralV) -> bool:
    if lit.bigint:
        return isinstance(value, Int64) and int(value) == int(lit.value)
    if isinstance(lit.value, bool):
        return isinstance(value, bool) and value is lit.value
    if isinstance(lit.value, str):
        return isinstance(value, str) and value == lit.value
    return _is_number(value) and value == lit.value


def validate_value(value: Any, validator: Any, path: str = "") -> list[str]:
    """Every reason ``value`` does not satisfy ``validator`` (empty when it does)."""

    where = path or "value"
    if isinstance(validator, AnyV):
        return []
    if isinstance(validator, StringV):
        return [] if isinstance(value, str) else [f"{where}: expected a string"]
    if isinstance(validator, IdV):
        ok = isinstance(value, str) and value != ""
        return [] if ok else [f"{where}: expected an id of table {validator.table!r}"]
    if isinstance(validator, Float64V):
        return [] if _is_number(value) else [f"{where}: expected a number"]
    if isinstance(validator, Int64V):
        return [] if isinstance(value, Int64) else [f"{where}: expected an int64"]
    if isinstance(validator, BooleanV):
        return [] if isinstance(value, bool) else [f"{where}: expected a boolean"]
    if isinstance(validator, NullV):
        return [] if value is None else [f"{where}: expected null"]
    if isinstance(validator, BytesV):
        return [] if isinstance(value, bytes) else [f"{where}: expected bytes"]
    if isinstance(validator, LiteralV):
        ok = _literal_matches(value, validator)
        return [] if ok else [f"{where}: expected the literal {validator.value!r}"]
    if isinstance(validator, ArrayV):
        if not isinstance(value, list):
            return [f"{where}: expected an array"]
        errors: list[str] = []
        for i, item in enumerate(value):
            errors += validate_value(item, validator.element, f"{where}[{i}]")
        return errors
    if isinstance(validator, ObjectV):
        return _validate_object(value, validator.fields, where)
    if isinstance(validator, RecordV):
        if not isinstance(value, dict):
            return [f"{where}: expected a record"]
        errors = []
        for key, item in value.items():
            if not isinstance(key, str) or not _KEY_RE.match(key):
                errors.append(f"{where}: invalid record key {key!r}")
                continue
            errors += validate_value(key, validator.keys, f"{where} key {key!r}")
            errors += validate_value(item, validator.values, f"{where}.{key}")
        return errors
    if isinstance(validator, UnionV):
        if any(not validate_value(value, m, where) for m in validator.members):
            return []
        return [f"{where}: matches no member of the union"]
    raise TypeError(f"unknown validator {type(validator).__name__}")


def _validate_object(value: Any, fields: dict[str, FieldDef], where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: expected an object"]
    errors: list[str] = []
    for name, fdef in fields.items():
        if name not in value:
            if not fdef.optional:
                errors.append(f"{where}.{name}: required field is missing")
            continue
        errors += validate_value(value[name], fdef.type, f"{where}.{name}")
    for name in value:
        if name not in fields:
            errors.append(f"{where}.{name}: unexpected field")
    return errors


def validate_document(doc: dict[str, Any], table: Table) -> list[str]:
    """Every reason ``doc`` would be rejected by ``table`` (system fields are ignored)."""

    body = {k: v for k, v in doc.items() if k not in _SYSTEM_FIELDS}
    bad_system = [k for k in body if k.startswith("_")]
    errors = [f"{table.name}.{k}: top-level fields may not start with '_'" for k in bad_system]
    errors += _validate_object(
        {k: v for k, v in body.items() if k not in bad_system}, table.fields, table.name
    )
    return errors
