"""Data steps: the batched, idempotent document transforms a migration runs, and their
rendering as Convex internal mutations (``convex/byodMigrations.ts``).

A ``DataStep`` is frozen data with a content-derived id, so the same hint on the same edge
always yields the same step (and the same journal entry). Each step renders to one
internal mutation that processes one page from a cursor and reports progress; the runner
loops on ``continueCursor`` and halves ``batchSize`` when Convex reports a transaction
limit.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from engine.schema.models import Table
from engine.schema.validate_doc import Int64

__all__ = [
    "DataStep",
    "MAX_BATCH_SIZE",
    "StepOp",
    "estimate_doc_bytes",
    "apply_step",
    "json_accepts",
    "js_string",
    "make_step",
    "suggest_batch_size",
]

StepOp = Literal[
    "backfill", "rename", "copy", "map_values", "convert", "drop_field", "delete_rows", "custom"
]

# Convex per-transaction limits (reference: convex-facts §1) and our safety margins.
TX_MAX_WRITES = 16_000
TX_MAX_READ_ROWS = 32_000
TX_MAX_BYTES = 16 * 1024 * 1024
BYTES_MARGIN = 0.5  # use at most half of the read/write byte budget
MAX_BATCH_SIZE = 1_000  # user code has 1 s per mutation; keep pages short
MIN_BATCH_SIZE = 1

class DataStep(BaseModel):
    """One data transform over one table.

    ``params`` by op: backfill ``{field, value}``; rename/copy ``{from, to}``; map_values
    ``{field, mapping, default?}`` (mapping keyed by ``String(old value)``); convert
    ``{field, mapping?, default?, code?}``; drop_field ``{field}``; delete_rows ``{where}``
    (all rows when ``where`` is empty); custom ``{code}``. ``inverse`` is the step that
    undoes this one, when one exists.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    table: str
    op: StepOp
    params: dict[str, Any]
    origin: Literal["hint", "inferred"] = "hint"
    description: str = ""
    inverse: "DataStep | None" = None

    @property
    def reversible(self) -> bool:
        return self.inverse is not None

    @property
    def function_name(self) -> str:
        """The mutation's export name: ``byodMigrations:<function_name>``."""

        return self.id

    @property
    def function_path(self) -> str:
        return f"byodMigrations:{self.id}"

    def to_dict(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "table": self.table,
            "op": self.op,
            "params": self.params,
            "origin": self.origin,
            "function": self.function_path,
            "reversible": self.reversible,
        }
        if self.description:
            out["description"] = self.description
        return out

    def summary(self) -> str:
        p = self.params
        if self.op == "backfill":
            return f"{self.table}: set {p['field']} = {json.dumps(p['value'])} where missing"
        if self.op in ("rename", "copy"):
            verb = "rename" if self.op == "rename" else "copy"
            return f"{self.table}: {verb} {p['from']} -> {p['to']}"
        if self.op == "map_values":
            pairs = ", ".join(f"{k} -> {json.dumps(v)}" for k, v in p["mapping"].items())
            dflt = f", otherwise {json.dumps(p['default'])}" if "default" in p else ""
            return f"{self.table}: map {p['field']} ({pairs}{dflt})"
        if self.op == "convert":
            how = "custom code" if p.get("code") else "a value mapping"
            return f"{self.table}: convert {p['field']} with {how}"
        if self.op == "drop_field":
            return f"{self.table}: remove field {p['field']}"
        if self.op == "delete_rows":
            cond = p.get("where") or {}
            where = " and ".join(f"{k} = {json.dumps(v)}" for k, v in cond.items())
            return f"{self.table}: delete rows" + (f" where {where}" if where else " (all)")
        return f"{self.table}: custom transform"


DataStep.model_rebuild()


def js_string(value: Any) -> str:
    """``String(value)`` as JavaScript renders it: the key of a mapping entry."""

    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)[:limit]


def make_step(table: str, op: StepOp, params: dict[str, Any], *,
              origin: Literal["hint", "inferred"] = "hint",
              description: str = "", inverse: DataStep | None = None) -> DataStep:
    """A step with its stable, content-derived id (``<op>_<table>[_<field>]_<hash>``)."""

    canon = json.dumps({"table": table, "op": op, "params": params}, sort_keys=True,
                       default=str, separators=(",", ":"))
    digest = hashlib.sha256(canon.encode()).hexdigest()[:8]
    field = params.get("field") or params.get("to") or ""
    parts = [op, _slug(table, 24)] + ([_slug(str(field), 20)] if field else []) + [digest]
    return DataStep(id="_".join(parts), table=table, op=op, params=params,
                    origin=origin,
                    description=description, inverse=inverse)


# ---------------------------------------------------------------------------------------
# Batch size
# ---------------------------------------------------------------------------------------


def _type_bytes(t: Any, vector_dims: int | None = None) -> int:
    kind = getattr(t, "kind", "any")
    if kind == "array":
        if vector_dims:
            return 8 * vector_dims + 16
        return 16 + 10 * _type_bytes(t.element)
    if kind == "object":
        return 8 + sum(len(n) + _type_bytes(f.type) for n, f in t.fields.items())
    if kind == "record":
        return 16 + 10 * (32 + _type_bytes(t.values))
    if kind == "union":
        return max(_type_bytes(m) for m in t.members)
    return {"string": 256, "id": 40, "number": 9, "int64": 9, "boolean": 2, "null": 1,
            "bytes": 1024, "any": 4096, "literal": 24}.get(kind, 64)


def estimate_doc_bytes(table: Table) -> int:
    """A rough upper estimate of one document's size from its validators."""

    dims = {vi.vector_field: vi.dimensions for vi in table.vector_indexes}
    total = 64  # _id, _creationTime, framing
    for name, fdef in table.fields.items():
        total += len(name) + _type_bytes(fdef.type, dims.get(name))
    return min(total, 1 << 20)


def suggest_batch_size(table_schema: Table, avg_doc_bytes: int | None = None) -> int:
    """Documents per page that keep one mutation well inside Convex's transaction limits:
    at most half of the 16 MiB read and write budgets, far below 16,000 writes and 32,000
    reads, and at most ``MAX_BATCH_SIZE`` so each page stays fast."""

    size = max(1, avg_doc_bytes if avg_doc_bytes else estimate_doc_bytes(table_schema))
    by_bytes = int(TX_MAX_BYTES * BYTES_MARGIN) // size
    by_rows = min(TX_MAX_WRITES, TX_MAX_READ_ROWS) // 4
    return max(MIN_BATCH_SIZE, min(by_bytes, by_rows, MAX_BATCH_SIZE))


# ---------------------------------------------------------------------------------------
# Reference semantics (Python): what the generated mutation does to one document
# ---------------------------------------------------------------------------------------

_DELETE = object()


def json_accepts(j: dict[str, Any], value: Any) -> bool:
    """Python twin of ``ts_check`` over the Python value conventions of
    ``engine.schema.validate_doc`` (a missing field is absent, not ``None``)."""

    t = j.get("type")
    if t in ("string", "id"):
        return isinstance(value, str)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, (bool, Int64))
    if t == "bigint":
        return isinstance(value, Int64)
    if t == "boolean":
        return isinstance(value, bool)
    if t == "null":
        return value is None
    if t == "bytes":
        return isinstance(value, bytes)
    if t == "literal":
        lit = j["value"]
        if isinstance(lit, dict):
            n = int.from_bytes(base64.b64decode(lit["$integer"]), "little", signed=True)
            return isinstance(value, Int64) and int(value) == n
        return type(value) is type(lit) and value == lit or (
            isinstance(lit, (int, float)) and not isinstance(lit, bool)
            and isinstance(value, (int, float)) and not isinstance(value, bool) and value == lit)
    if t == "array":
        return isinstance(value, list) and all(json_accepts(j["value"], v) for v in value)
    if t == "object":
        fields = j["value"]
        return isinstance(value, dict) and set(value) <= set(fields) and all(
            (f["optional"] if name not in value else json_accepts(f["fieldType"], value[name]))
            for name, f in fields.items())
    if t == "record":
        return isinstance(value, dict) and all(
            json_accepts(j["values"]["fieldType"], v) for v in value.values())
    if t == "union":
        return any(json_accepts(m, value) for m in j["value"])
    return True


def apply_step(doc: dict[str, Any], step: DataStep) -> dict[str, Any] | None:
    """The document after ``step`` (``None`` when deleted); mirrors the template, so
    property tests can run plans without a deployment. Code-based ops are not
    interpretable here and raise ``NotImplementedError``."""


    p = step.params
    out = dict(doc)
    if step.op == "backfill":
        out.setdefault(p["field"], p["value"])
    elif step.op == "rename":
        if p["from"] in out:
            value = out.pop(p["from"])
            out.setdefault(p["to"], value)
    elif step.op == "copy":
        if p["from"] in out and p["to"] not in out:
            out[p["to"]] = out[p["from"]]
    elif step.op in ("map_values", "convert"):
        if p.get("code"):
            raise NotImplementedError("code conversions run only in TypeScript")
        cur = out.get(p["field"], _DELETE)
        if cur is _DELETE or json_accepts(p["target"], cur):
            return out
        key = js_string(cur)
        if key in p["mapping"]:
            nxt = p["mapping"][key]
        elif "default" in p:
            nxt = p["default"]
        else:
            raise ValueError(f"value {cur!r} of {p['field']} has no mapping and no default")
        if not json_accepts(p["target"], nxt):
            raise ValueError(f"{p['field']}: {cur!r} became {nxt!r}, which the target rejects")
        out[p["field"]] = nxt
    elif step.op == "drop_field":
        out.pop(p["field"], None)
    elif step.op == "delete_rows":
        where = p.get("where") or {}
        if all(k in out and out[k] == v and isinstance(out[k], bool) == isinstance(v, bool)
               for k, v in where.items()):
            return None
    else:
        raise NotImplementedError("custom transforms run only in TypeScript")
    return out
