"""The harness's own document validator, for every Convex validator type (the test
runtime does not check `record`, and never re-checks stored documents), with the backend's
messages (crates/common/src/schemas/validator.rs)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import TOOLCHAIN, needs_toolchain

pytestmark = [pytest.mark.local, pytest.mark.toolchain, needs_toolchain, pytest.mark.timeout(60)]

HARNESS = Path(__file__).resolve().parents[2] / "engine" / "local" / "harness"

S = {"type": "string"}
N = {"type": "number"}


def obj(**fields: tuple[dict, bool]) -> dict:
    return {"type": "object", "value": {k: {"fieldType": v, "optional": o} for k, (v, o) in fields.items()}}


# (validator, value in Convex JSON, valid?)
CASES: list[tuple[dict, object, bool]] = [
    (S, "x", True), (S, 1, False),
    (N, 1.5, True), (N, "1", False), (N, {"$integer": "AQAAAAAAAAA="}, False),
    ({"type": "bigint"}, {"$integer": "AQAAAAAAAAA="}, True), ({"type": "bigint"}, 1, False),
    ({"type": "boolean"}, True, True), ({"type": "boolean"}, 0, False),
    ({"type": "null"}, None, True), ({"type": "null"}, False, False),
    ({"type": "bytes"}, {"$bytes": "AAE="}, True), ({"type": "bytes"}, "AAE=", False),
    ({"type": "any"}, {"anything": [1, "x"]}, True),
    ({"type": "literal", "value": "a"}, "a", True), ({"type": "literal", "value": "a"}, "b", False),
    ({"type": "literal", "value": 3}, 3, True),
    ({"type": "literal", "value": {"$integer": "AQAAAAAAAAA="}}, {"$integer": "AQAAAAAAAAA="}, True),
    ({"type": "literal", "value": {"$integer": "AQAAAAAAAAA="}}, 1, False),
    ({"type": "id", "tableName": "users"}, "000000000000000000010000users", True),
    ({"type": "id", "tableName": "users"}, "000000000000000000010000posts", False),
    ({"type": "array", "value": N}, [1, 2], True), ({"type": "array", "value": N}, [1, "2"], False),
    ({"type": "union", "value": [S, {"type": "null"}]}, None, True),
    ({"type": "union", "value": [S, {"type": "null"}]}, 1, False),
    (obj(a=(S, False), b=(N, True)), {"a": "x"}, True),
    (obj(a=(S, False), b=(N, True)), {"b": 1}, False),
    (obj(a=(S, False)), {"a": "x", "c": 1}, False),
    ({"type": "record", "keys": S, "values": {"fieldType": N, "optional": False}}, {"k": 1, "j": 2}, True),
    ({"type": "record", "keys": S, "values": {"fieldType": N, "optional": False}}, {"k": "1"}, False),
    ({"type": "record", "keys": {"type": "id", "tableName": "users"},
      "values": {"fieldType": N, "optional": False}}, {"000000000000000000010000users": 1}, True),
    ({"type": "record", "keys": {"type": "id", "tableName": "users"},
      "values": {"fieldType": N, "optional": False}}, {"plain": 1}, False),
    ({"type": "record", "keys": S, "values": {"fieldType": N, "optional": False}}, [1], False),
]

SCRIPT = """
import { pathToFileURL } from "node:url";
const [harness, toolchain, casesJson] = process.argv.slice(1);
const { checkValue, validateSchemaChange } = await import(pathToFileURL(harness + "/validator.mjs").href);
const { loadToolchain } = await import(pathToFileURL(harness + "/runtime.mjs").href);
const lib = await loadToolchain(toolchain);
const out = JSON.parse(casesJson).map(([validator, value]) =>
  checkValue(validator, lib.jsonToConvex(value), "", lib.jsonToConvex));
const docs = new Map([["t", [{ _id: "1t", _creationTime: 1, a: "x" }, { _id: "2t", _creationTime: 2, a: 3 }]]]);
const table = (type) => ({ tables: [{ tableName: "t", documentType: { type: "object",
  value: { a: { fieldType: { type }, optional: false } } } }], schemaValidation: true });
const change = validateSchemaChange(null, table("string"), docs, lib.jsonToConvex);
const off = validateSchemaChange(null, { ...table("string"), schemaValidation: false }, docs, lib.jsonToConvex);
const dropped = validateSchemaChange(null, { tables: [], schemaValidation: true }, docs, lib.jsonToConvex);
process.stdout.write(JSON.stringify({ out, change, off, dropped }));
"""


def test_every_validator_type() -> None:
    assert TOOLCHAIN is not None
    cases = [[v, value] for v, value, _ in CASES]
    result = subprocess.run(
        ["node", "--input-type=module", "-e", SCRIPT, str(HARNESS), str(TOOLCHAIN), json.dumps(cases)],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for (validator, value, valid), problem in zip(CASES, data["out"]):
        assert (problem is None) == valid, (validator, value, problem)
    assert data["change"]["tableName"] == "t" and data["change"]["documentId"] == "2t"
    assert "Schema validation failed" in data["change"]["error"] and '"2t"' in data["change"]["error"]
    assert data["off"] is None
    assert data["dropped"]["tableName"] == "t" and "not declared" in data["dropped"]["error"]
    assert data["change"]["error"].endswith(
        "Value does not match validator.\nPath: .a\nValue: 3.0\nValidator: v.string()")


# (validator, value in Convex JSON, the backend's message) — texts of `ValidationError` and
# `impl Display for Validator` in crates/common/src/schemas/validator.rs.
MESSAGES: list[tuple[dict, object, str]] = [
    (obj(a=(S, False)), {"a": 1}, "Value does not match validator.\nPath: .a\nValue: 1.0\nValidator: v.string()"),
    (obj(a=(S, False), b=(N, True)), {"b": 1},
     "Object is missing the required field `a`. Consider wrapping the field validator in `v.optional(...)` "
     "if this is expected.\n\nObject: {b: 1.0}\nValidator: v.object({a: v.string(), b: v.optional(v.float64())})"),
    (obj(a=(S, False)), {"a": "x", "c": True},
     "Object contains extra field `c` that is not in the validator.\n\nObject: {a: \"x\", c: true}\n"
     "Validator: v.object({a: v.string()})"),
    ({"type": "literal", "value": "a"}, "b", '`"b"` does not match literal validator `v.literal("a")`.'),
    ({"type": "array", "value": {"type": "bigint"}}, [{"$integer": "AQAAAAAAAAA="}, 2],
     "Value does not match validator.\nPath: [1]\nValue: 2.0\nValidator: v.int64()"),
    ({"type": "union", "value": [S, {"type": "null"}]}, 1,
     "Value does not match validator.\n\nValue: 1.0\nValidator: v.union(v.string(), v.null())"),
    ({"type": "record", "keys": S, "values": {"fieldType": N, "optional": False}}, {"k": "1"},
     'Value does not match validator.\nPath: .values()\nValue: "1"\nValidator: v.float64()'),
    ({"type": "id", "tableName": "users"}, "000000000000000000010000posts",
     'Found ID "000000000000000000010000posts" from table `posts`, which does not match the table '
     'name in validator `v.id("users")`.'),
]


def test_messages_are_the_backends() -> None:
    assert TOOLCHAIN is not None
    cases = [[v, value] for v, value, _ in MESSAGES]
    result = subprocess.run(
        ["node", "--input-type=module", "-e", SCRIPT, str(HARNESS), str(TOOLCHAIN), json.dumps(cases)],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for (_v, _value, expected), got in zip(MESSAGES, json.loads(result.stdout)["out"]):
        assert got == expected
