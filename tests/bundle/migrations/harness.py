"""Builds one vitest project that runs every edge's generated data steps with convex-test.

For each case: the widened bundle (schema + ``byodMigrations.ts``) as the deployed code, the
target version's ``schema.ts`` as the oracle, and ``case.json`` with deterministic seed
documents valid under the source (missing optionals, every literal, several pages per table).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from engine.bundle.compiler import compile_bundle
from engine.bundle.write import write_bundle
from engine.config import EngineConfig
from engine.plan.datasteps import DataStep, apply_step
from engine.plan.widen import widen
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
    Location,
    NullV,
    ObjectV,
    RecordV,
    Schema,
    StringV,
    UnionV,
)
from engine.schema.validate_doc import Int64, validate_document, validate_value

DOCS_PER_TABLE = 25
BATCH_SIZE = 7  # several pages per table

Override = Callable[[int], Any]


@dataclass(frozen=True)
class Case:
    name: str
    source: Schema
    target: Schema
    steps: tuple[DataStep, ...]
    overrides: dict[str, Override]
    expect_error_at: int | None = None  # index of the seed document the first step rejects


def _value(t: Any, k: int, ids: dict[str, int]) -> Any:
    if isinstance(t, StringV):
        return f"s{k}"
    if isinstance(t, Float64V):
        return float(k) + 0.5
    if isinstance(t, Int64V):
        return {"$int64": str(k)}
    if isinstance(t, BooleanV):
        return k % 2 == 0
    if isinstance(t, NullV):
        return None
    if isinstance(t, BytesV):
        return {"$bytes": base64.b64encode(bytes([k % 256])).decode()}
    if isinstance(t, AnyV):
        return {"k": k}
    if isinstance(t, LiteralV):
        return t.value
    if isinstance(t, IdV):
        return {"$ref": [t.table, k % ids[t.table]]}
    if isinstance(t, UnionV):
        members = [m for m in t.members if not (isinstance(m, IdV) and not ids.get(m.table))]
        return _value(members[k % len(members)], k, ids)
    if isinstance(t, ArrayV):
        return [_value(t.element, k + i, ids) for i in range(2)]
    if isinstance(t, ObjectV):
        return _fields(t.fields, k, ids, "", {})
    if isinstance(t, RecordV):
        return {"key": _value(t.values, k, ids)}
    raise TypeError(t)


def _fields(fields: dict[str, FieldDef], k: int, ids: dict[str, int], prefix: str,
            overrides: dict[str, Override]) -> dict[str, Any]:
    out = {}
    for i, (name, f) in enumerate(fields.items()):
        refs = [m.table for m in _ids_in(f.type)]
        if f.optional and ((k + i) % 3 == 0 or any(not ids.get(r) for r in refs)):
            continue  # missing optionals (and references not seeded yet)
        key = f"{prefix}{name}"
        value = overrides[key](k) if key in overrides else None
        if value is None or validate_value(_pythonic(value), f.type):  # not for this type
            value = _value(f.type, k, ids)
        out[name] = value
    return out


def _ids_in(t: Any) -> list[IdV]:
    if isinstance(t, IdV):
        return [t]
    if isinstance(t, UnionV):
        return [i for m in t.members for i in _ids_in(m)]
    return []


def seed(schema: Schema, overrides: dict[str, Override]) -> tuple[list[str], dict[str, list[dict]]]:
    """Tables in an order where required references point to seeded tables, and docs."""

    order: list[str] = []
    pending = list(schema.tables)
    while pending:
        for name in pending:
            t = schema.tables[name]
            needs = {i.table for f in t.fields.values() if not f.optional for i in _ids_in(f.type)}
            if needs <= set(order):
                order.append(name)
                pending.remove(name)
                break
        else:
            raise AssertionError(f"cyclic required references among {pending}")
    ids: dict[str, int] = {}
    docs: dict[str, list[dict]] = {}
    for name in order:
        table = schema.tables[name]
        prefix = f"{name}."
        rows = [_fields(table.fields, k, ids, prefix, overrides) for k in range(DOCS_PER_TABLE)]
        for row in rows:
            assert validate_document(_pythonic(row), table) == [], (name, row)
        docs[name] = rows
        ids[name] = len(rows)
    return order, docs


def _pythonic(value: Any) -> Any:
    """Seed JSON (with $ref/$int64/$bytes markers) as validate_doc's Python values."""

    if isinstance(value, dict):
        if "$ref" in value:
            return "ref"
        if "$int64" in value:
            return Int64(int(value["$int64"]))
        if "$bytes" in value:
            return base64.b64decode(value["$bytes"])
        return {k: _pythonic(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_pythonic(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return value
    return value


def expected_counts(docs: dict[str, list[dict]], steps: tuple[DataStep, ...]) -> dict[str, int]:
    """Rows left after the steps (only ``delete_rows`` changes a count)."""

    counts = {name: len(rows) for name, rows in docs.items()}
    for step in steps:
        if step.op == "delete_rows":
            rows = [_pythonic(r) for r in docs.get(step.table, [])]
            counts[step.table] = sum(1 for r in rows if apply_step(r, step) is not None)
    return counts


def write_case(root: Path, case: Case, config: EngineConfig) -> None:
    src = case.source.located(Location.USER)
    dst = case.target.located(Location.USER)
    wide = widen(src, dst)
    bundle = compile_bundle(wide, version_id=f"{case.name}__widen", kind="widen",
                            data_steps=case.steps, config=config)
    target = compile_bundle(dst, version_id=case.name, config=config)
    out = root / "edges" / case.name
    write_bundle(bundle, out / "bundle")
    gen = out / "bundle" / "convex" / "_generated"
    gen.mkdir(parents=True, exist_ok=True)
    (gen / "api.js").write_text("// convex-test locates the functions root by this folder\nexport {};\n")
    (out / "target").mkdir(parents=True, exist_ok=True)
    (out / "target" / "schema.ts").write_text(target.files["convex/schema.ts"])
    order, docs = seed(src, case.overrides)
    payload = {
        "name": case.name,
        "batchSize": BATCH_SIZE,
        "order": order,
        "seeds": docs,
        "steps": [{"fn": s.function_name, "table": s.table} for s in case.steps],
        "expectedCounts": expected_counts(docs, case.steps),
        "targetTables": list(dst.tables),
    }
    if case.expect_error_at is not None:
        payload["expectError"] = str(case.expect_error_at)
    (out / "case.json").write_text(json.dumps(payload, indent=1, sort_keys=True))


class _AnyId:
    """Stands for a seeded reference: any id string matches."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, (str, _AnyId))

    def __repr__(self) -> str:
        return "<id>"


def _comparable(value: Any) -> Any:
    if isinstance(value, dict):
        if "$ref" in value:
            return _AnyId()
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def expected_docs(docs: dict[str, list[dict]], steps: tuple[DataStep, ...]
                  ) -> tuple[dict[str, list[dict]], set[str]]:
    """The documents the Python reference semantics predict, and the ``table.field`` (or
    ``table.*``) values that only TypeScript code decides (not compared)."""

    out = {t: [_comparable(d) for d in rows] for t, rows in docs.items()}
    opaque: set[str] = set()
    for step in steps:
        if step.op == "custom":
            opaque.add(f"{step.table}.*")
            continue
        if step.params.get("code"):
            opaque.add(f"{step.table}.{step.params['field']}")
            continue
        out[step.table] = [n for n in (apply_step(d, step) for d in out.get(step.table, []))
                           if n is not None]
    return out, opaque
