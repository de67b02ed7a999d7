"""``convex/byodMigrations.ts``: the plan's data steps rendered as Convex mutations.

The steps themselves (``engine.plan.datasteps``) are pure data; this is where they
become TypeScript, through the same Jinja set-up as the rest of the bundle."""

from __future__ import annotations

import base64
import json
from functools import lru_cache
from typing import Any

import jinja2

from engine.bundle.templating import code_environment, templates_dir
from engine.plan.datasteps import DataStep

__all__ = ["render_data_steps_module", "ts_check"]

def _ts(value: Any) -> str:
    """A JSON value as a TypeScript expression. Hint values are JSON, so they never
    produce a ``bigint``: a value meant for an int64 field is rejected by the step's type
    check (map/convert) or by Convex (backfill)."""

    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _indent(code: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join((pad + line) if line.strip() else "" for line in code.strip("\n").splitlines())


def ts_check(j: dict[str, Any], expr: str, depth: int = 0) -> str:
    """A TypeScript boolean expression: does ``expr`` satisfy the validator whose Convex
    JSON is ``j``? Used so conversions only touch values the target type rejects (which
    makes every conversion idempotent)."""

    t = j.get("type")
    x = f"v{depth}"
    if t in ("string", "id"):
        return f'typeof {expr} === "string"'
    if t == "number":
        return f'typeof {expr} === "number"'
    if t == "bigint":
        return f'typeof {expr} === "bigint"'
    if t == "boolean":
        return f'typeof {expr} === "boolean"'
    if t == "null":
        return f"{expr} === null"
    if t == "bytes":
        return f"{expr} instanceof ArrayBuffer"
    if t == "literal":
        value = j["value"]
        if isinstance(value, dict) and "$integer" in value:
            n = int.from_bytes(base64.b64decode(value["$integer"]), "little", signed=True)
            return f"{expr} === {n}n"
        return f"{expr} === {_ts(value)}"
    if t == "array":
        return (f"(Array.isArray({expr}) && {expr}.every(({x}: unknown) => "
                f"{ts_check(j['value'], x, depth + 1)}))")
    if t == "object":
        fields = j["value"]
        parts = [f"isObject({expr})"]
        for name, f in fields.items():
            inner = ts_check(f["fieldType"], f"{expr}[{_ts(name)}]", depth)
            parts.append(f"({expr}[{_ts(name)}] === undefined ? {str(f['optional']).lower()} : {inner})")
        parts.append(f"Object.keys({expr}).every((k) => {_ts(sorted(fields))}.includes(k))")
        return "(" + " && ".join(parts) + ")"
    if t == "record":
        return (f"(isObject({expr}) && Object.values({expr}).every(({x}: unknown) => "
                f"{ts_check(j['values']['fieldType'], x, depth + 1)}))")
    if t == "union":
        return "(" + " || ".join(ts_check(m, expr, depth) for m in j["value"]) + ")"
    return "true"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    """Built once: Jinja caches the parsed template on its environment."""

    env = code_environment(templates_dir())
    env.filters["ts"] = _ts
    env.filters["indent_code"] = _indent
    env.globals["ts_check"] = ts_check
    return env


def render_data_steps_module(steps: "list[DataStep] | tuple[DataStep, ...]") -> str:
    """``convex/byodMigrations.ts``: one internal mutation per step, deterministic text.

    Custom code is placed inside typed functions (``Doc<table>`` in, a partial patch or
    ``null`` out), so ``tsc`` over the bundle type-checks it against the deployed schema.
    """

    seen: set[str] = set()
    unique = []
    for step in steps:
        if step.id not in seen:
            seen.add(step.id)
            unique.append(step)
    template = _environment().get_template("byodMigrations.ts.j2")
    return template.render(steps=unique)
