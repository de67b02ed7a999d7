"""Convex's value limits on every write, argument and result of a local deployment, with
the backend's messages: crates/value/src/{size,object,array}.rs,
crates/convex/sync_types/src/identifier.rs, crates/common/src/document.rs,
crates/common/src/knobs.rs (FUNCTION_MAX_ARGS_SIZE / FUNCTION_MAX_RESULT_SIZE),
crates/udf/src/helpers.rs, crates/isolate/src/helpers.rs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import needs_toolchain
from .fidelity_app import App, app, run

__all__ = ["app"]

pytestmark = [pytest.mark.local, pytest.mark.toolchain, needs_toolchain, pytest.mark.timeout(240)]

HARNESS = Path(__file__).resolve().parents[2] / "engine" / "local" / "harness"
MIB = 1 << 20


def nested(levels: int) -> Any:
    """An object `levels` deep counting itself (`{"a": 1}` is 1)."""
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def insert(app: App, doc: Any) -> dict[str, Any]:
    body: dict[str, Any] = run(app.dep, "mutation", "app:insertFree", {"doc": doc}).json()
    return body


@pytest.mark.parametrize(("doc", "message"), [
    ({"v": "x" * MIB}, "Value is too large ("),
    ({"v": nested(16)}, "Document is too nested (nested 17 levels deep > maximum nesting 16)"),
    ({"v": {f"f{i}": i for i in range(1025)}}, "Object has too many fields (1025 > maximum number 1024)"),
    ({"v": list(range(8193))}, "Array length is too long (8193 > maximum length 8192)"),
    ({"v": 1, "_secret": 1}, "Field '_secret' starts with an underscore, which is only allowed for system fields"),
])
def test_writes_over_a_limit_are_refused(app: App, doc: Any, message: str) -> None:
    body = insert(app, doc)
    assert body["status"] == "error", body
    assert message in body["errorMessage"]


def test_writes_at_the_limits_are_kept(app: App) -> None:
    at_limits = {"v": {"deep": nested(14), "wide": {f"f{i}": i for i in range(1024)},
                       "long": list(range(8192)), "text": "x" * (MIB - 100_000)}}
    assert insert(app, at_limits)["status"] == "success"
    assert insert(app, {"v": {"": 1, "a b": 2, "ü": 3}})["status"] == "error"  # non-ASCII name
    ok = insert(app, {"v": {"": 1, "a b": 2}})
    assert ok["status"] == "success", ok
    patched = run(app.dep, "mutation", "app:patchFree", {"id": ok["value"], "doc": {"_x": 1}}).json()
    assert patched["status"] == "error" and "Field '_x' starts with an underscore" in patched["errorMessage"]


def test_strings_must_be_valid_unicode(app: App) -> None:
    import httpx

    # A lone surrogate, written as the JSON escape a JS client sends.
    raw = json.dumps({"path": "app:insertFree", "args": {"doc": {"v": "\ud800"}}})
    body = httpx.post(f"{app.dep.url}/api/mutation", content=raw, timeout=30,
                      headers={"Authorization": f"Convex {app.dep.admin_key}",
                               "Content-Type": "application/json"}).json()
    assert body["status"] == "error" and "not valid Unicode" in body["errorMessage"]


def test_arguments_and_results_are_limited(app: App) -> None:
    big = run(app.dep, "action", "app:echo", {"v": ["x" * MIB] * 17}).json()
    assert big["status"] == "error"
    assert big["errorMessage"].startswith("Arguments for app.js:echo are too large (actual: 17")
    assert big["errorMessage"].endswith("limit: 16 MiB)")
    deep = run(app.dep, "action", "app:echo", {"v": nested(70)}).json()
    assert deep["status"] == "error" and "Value is too nested" in deep["errorMessage"]
    result = run(app.dep, "query", "app:bigResult").json()
    assert result["status"] == "error"
    assert "return value is too large" in result["errorMessage"] and "limit: 16 MiB" in result["errorMessage"]


def test_argument_validation_uses_convex_wording(app: App) -> None:
    missing = run(app.dep, "mutation", "app:addUser", {"name": "x"}).json()
    assert missing["errorMessage"] == (
        "ArgumentValidationError: Object is missing the required field `score`. Consider wrapping "
        "the field validator in `v.optional(...)` if this is expected.\n\nObject: {name: \"x\"}\n"
        "Validator: v.object({big: v.optional(v.int64()), blob: v.optional(v.bytes()), "
        "name: v.string(), score: v.float64()})")
    extra = run(app.dep, "mutation", "app:addUser", {"name": "x", "score": 1, "age": 3}).json()
    assert extra["errorMessage"].startswith(
        "ArgumentValidationError: Object contains extra field `age` that is not in the validator.\n")
    assert "Object: {age: 3.0, name: \"x\", score: 1.0}" in extra["errorMessage"]
    wrong = run(app.dep, "mutation", "app:addUser", {"name": 5, "score": 1}).json()
    assert wrong["errorMessage"] == (
        "ArgumentValidationError: Value does not match validator.\nPath: .name\nValue: 5.0\n"
        "Validator: v.string()")


SCRIPT = """
import { pathToFileURL } from "node:url";
const h = process.argv[1];
const { formatFloat, debugFloat, floatJson } = await import(pathToFileURL(h + "/wire.mjs").href);
const { humanSize, fieldNameProblem } = await import(pathToFileURL(h + "/limits.mjs").href);
const floats = [1, -2, 0.1, 1.5, 1e15, 1e16, 1.5e-7, 0.00001, 123456789.125, 1e300, -0];
process.stdout.write(JSON.stringify({
  json: floats.map(formatFloat), debug: floats.map(debugFloat),
  doc: floatJson({a: 1, b: [2, "3"], c: {d: 4.5}, e: null}),
  sizes: [512, 1024, 1 << 20, (1 << 20) * 1.5, 17 * (1 << 20)].map(humanSize),
  names: ["ok", "$x", "a\\u0001", "é", "x".repeat(1025), ""].map(fieldNameProblem),
}));
"""


def test_floats_are_written_as_convex_writes_them() -> None:
    result = subprocess.run(["node", "--input-type=module", "-e", SCRIPT, str(HARNESS)],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    # serde_json (ryu) for JSON, Rust `{:?}` for messages.
    assert data["json"] == ["1.0", "-2.0", "0.1", "1.5", "1000000000000000.0", "1e16", "1.5e-7",
                            "0.00001", "123456789.125", "1e300", "-0.0"]
    assert data["debug"][:8] == ["1.0", "-2.0", "0.1", "1.5", "1000000000000000.0", "1e16", "1.5e-7", "1e-5"]
    assert data["doc"] == '{"a":1.0,"b":[2.0,"3"],"c":{"d":4.5},"e":null}'
    assert data["sizes"] == ["512 B", "1 KiB", "1 MiB", "1.5 MiB", "17 MiB"]
    ok, dollar, control, accent, long, empty = data["names"]
    assert ok is None and empty is None
    assert dollar == "Field name $x starts with '$', which is reserved."
    assert "invalid character" in control and "invalid character" in accent
    assert long == "Field name is too long (1025 > maximum 1024)"
