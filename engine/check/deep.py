"""``byod check --deep``: the real Convex toolchain as the oracle for the compiler.

Every version is compiled and written into one temporary directory that borrows the
toolchain's ``node_modules`` (a link), then, in parallel on two processes:

- one ``tsc --noEmit`` over all bundles (type errors in generated code);
- one Node process that bundles every ``convex/schema.ts`` with esbuild, imports it with
  the real ``convex`` library and returns ``defineSchema(...).export()``.

Each export must equal ``deployed_schema(schema).to_convex_json()``, the engine's own model
of what it deploys; any difference is a ``Problem`` naming the version, table and JSON path.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from engine.bundle.compiler import Bundle, compile_version, deployed_schema
from engine.bundle.write import write_bundle
from engine.config import EngineConfig
from engine.convex.toolchain import Toolchain, node_executable
from engine.errors import CompileError, Problem, ToolchainError
from engine.schema.models import Schema, SchemaVersion

__all__ = ["CheckItem", "check_bundles", "deep_check", "diff_json"]

_JS_DIR = Path(__file__).resolve().parents[1] / "js"
_TSC_LINE = re.compile(
    r"^(?P<file>.+?)\((?P<line>\d+),(?P<col>\d+)\): error (?P<code>TS\d+): (?P<msg>.*)$"
)
_TIMEOUT_S = 900.0
_MAX_MESSAGE = 600

_TSCONFIG = {
    "compilerOptions": {
        "target": "ESNext",
        "lib": ["ES2021", "dom"],
        "module": "ESNext",
        "moduleResolution": "Bundler",
        "strict": True,
        "noEmit": True,
        "skipLibCheck": True,
        "isolatedModules": True,
        "allowSyntheticDefaultImports": True,
        "forceConsistentCasingInFileNames": True,
        "types": [],
    },
    "include": ["bundles/*/convex/**/*.ts"],
}


@dataclass(frozen=True)
class CheckItem:
    """One bundle to check: ``label`` names it in problems, ``file`` is its source file."""

    label: str
    file: str
    schema: Schema
    bundle: Bundle


def _fmt(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def diff_json(expected: Any, actual: Any, path: str = "") -> list[tuple[str, str]]:
    """Structural differences as ``(json path, description)``; object key order is
    ignored, list order is not, and ``true`` never equals ``1``."""

    here = path or "$"
    if isinstance(expected, dict) and isinstance(actual, dict):
        out: list[tuple[str, str]] = []
        for key in sorted(set(expected) | set(actual)):
            sub = f"{path}.{key}" if path else key
            if key not in actual:
                out.append((sub, f"missing from the real export (expected {_fmt(expected[key])})"))
            elif key not in expected:
                out.append(
                    (sub, f"not in the engine's model (real export has {_fmt(actual[key])})")
                )
            else:
                out.extend(diff_json(expected[key], actual[key], sub))
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [
                (
                    here,
                    f"expected {len(expected)} entries {_fmt(expected)}, "
                    f"real export has {len(actual)} {_fmt(actual)}",
                )
            ]
        out = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            out.extend(diff_json(e, a, f"{path}[{i}]"))
        return out
    if _is_number(expected) and _is_number(actual):
        # JSON numbers are float64 in JavaScript: 6.4e16 and 64465367516823470 are equal
        if float(expected) == float(actual):
            return []
        return [(here, f"expected {_fmt(expected)}, real export has {_fmt(actual)}")]
    same_kind = isinstance(expected, bool) == isinstance(actual, bool)
    if (
        type(expected) in (dict, list)
        or type(actual) in (dict, list)
        or not same_kind
        or expected != actual
    ):
        return [(here, f"expected {_fmt(expected)}, real export has {_fmt(actual)}")]
    return []


def _compare(item: CheckItem, actual: dict[str, Any]) -> list[Problem]:
    expected = deployed_schema(item.schema).to_convex_json()
    problems: list[Problem] = []

    def problem(location: str, message: str) -> None:
        problems.append(
            Problem(
                file=item.file,
                line=None,
                location=location,
                code="deep-export",
                message=f"version {item.label}: {message}",
                hint="the compiler renders this differently from the engine's model",
            )
        )

    for path, message in diff_json(
        expected.get("schemaValidation"), actual.get("schemaValidation"), "schemaValidation"
    ):
        problem("schemaValidation", f"{path}: {message}")
    extra_keys = sorted(set(actual) - {"tables", "schemaValidation"})
    for key in extra_keys:
        problem(key, f"real export has an unexpected top-level key {key!r}")
    want = {t["tableName"]: t for t in expected["tables"]}
    have = {t.get("tableName"): t for t in actual.get("tables", [])}
    for name in want:
        if name not in have:
            problem(f"tables.{name}", f"table {name} is missing from the real export")
    for name in have:
        if name not in want:
            problem(f"tables.{name}", f"table {name} is in the real export but not the model")
    for name in want:
        if name in have:
            for path, message in diff_json(want[name], have[name]):
                problem(f"tables.{name}", f"table {name} at {path}: {message}")
    if not problems and [t["tableName"] for t in expected["tables"]] != list(have):
        problem("tables", "tables appear in a different order in the real export")
    return problems


def _tsc_problems(output: str, dirs: dict[str, CheckItem]) -> list[Problem]:
    problems: list[Problem] = []
    for raw in output.splitlines():
        match = _TSC_LINE.match(raw.strip())
        if not match:
            if problems and raw.startswith(" "):
                last = problems[-1]
                if len(last.message) < _MAX_MESSAGE:
                    message = (last.message + " " + raw.strip())[:_MAX_MESSAGE]
                    problems[-1] = Problem(**{**last.__dict__, "message": message})
            continue
        rel = Path(match["file"]).as_posix()
        parts = rel.split("/")
        item = dirs.get(parts[1]) if len(parts) > 2 and parts[0] == "bundles" else None
        inner = "/".join(parts[2:]) if item else rel
        problems.append(
            Problem(
                file=item.file if item else rel,
                line=None,
                location=f"{inner}:{match['line']}:{match['col']}",
                code="deep-tsc",
                message=(
                    (f"version {item.label}: " if item else "") + f"{match['code']} {match['msg']}"
                )[:_MAX_MESSAGE],
                hint="the generated TypeScript does not type-check",
            )
        )
    return problems


def _write_work_dir(
    work: Path, items: Sequence[CheckItem], toolchain: Toolchain
) -> dict[str, CheckItem]:
    """Write every bundle under ``work/bundles`` with one shared tsconfig, so one tsc and
    one Node process check them all; returns directory name → item."""

    toolchain.link_node_modules(work)
    dirs: dict[str, CheckItem] = {}
    for i, item in enumerate(items):
        name = f"b{i:04d}"
        dirs[name] = item
        write_bundle(item.bundle, work / "bundles" / name)
    (work / "tsconfig.json").write_text(json.dumps(_TSCONFIG, indent=2))
    return dirs


def _run_tsc_and_export(
    work: Path, dirs: dict[str, CheckItem], toolchain: Toolchain, node: str, tsc: Path
) -> tuple[subprocess.CompletedProcess[str], str, int | None]:
    """Run tsc in the background while Node exports the schemas (the two are independent);
    returns the export run, tsc's output and tsc's exit code. tsc never outlives this."""

    proc = subprocess.Popen(
        [node, str(tsc), "-p", "tsconfig.json", "--pretty", "false"],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        job = {
            "toolchain": str(toolchain.root),
            "workDir": str(work),
            "bundles": [
                {"id": name, "schema": str(work / "bundles" / name / "convex" / "schema.ts")}
                for name in dirs
            ],
        }
        result = toolchain.run_node(
            _JS_DIR / "export_schemas.mjs", input=json.dumps(job), timeout=_TIMEOUT_S, cwd=work
        )
        tsc_out, _ = proc.communicate(timeout=_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise ToolchainError(f"tsc did not finish within {_TIMEOUT_S:.0f} s") from exc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return result, tsc_out, proc.returncode


def _export_problems(dirs: dict[str, CheckItem], exports: dict[str, Any]) -> list[Problem]:
    """Per bundle, in directory order: a schema the convex library could not load, or
    every difference between its real export and the engine's model."""

    problems: list[Problem] = []
    for name, item in dirs.items():
        outcome = exports.get(name, {"ok": False, "error": "no result"})
        if not outcome.get("ok"):
            problems.append(
                Problem(
                    file=item.file,
                    line=None,
                    location="convex/schema.ts",
                    code="deep-export",
                    message=f"version {item.label}: the convex library could not load the schema: "
                    f"{outcome.get('error')}",
                )
            )
            continue
        problems.extend(_compare(item, outcome["export"]))
    return problems


def check_bundles(items: Sequence[CheckItem], toolchain: Toolchain | None = None) -> list[Problem]:
    """Type-check and export-compare already compiled bundles (one tsc, one Node)."""

    if not items:
        return []
    toolchain = toolchain or Toolchain.find().ensure_installed()
    node = node_executable()
    tsc = toolchain.node_modules / "typescript" / "bin" / "tsc"
    if not tsc.exists():
        raise ToolchainError(f"typescript is missing from {toolchain.node_modules}")
    with tempfile.TemporaryDirectory(prefix="byod-deep-") as tmp:
        work = Path(tmp)
        dirs = _write_work_dir(work, items, toolchain)
        result, tsc_out, tsc_code = _run_tsc_and_export(work, dirs, toolchain, node, tsc)
    if result.returncode != 0:
        raise ToolchainError(
            "loading the schemas with the convex library failed:\n"
            + "\n".join((result.stderr or result.stdout).splitlines()[-15:])
        )
    exports = json.loads(result.stdout)
    problems = _tsc_problems(tsc_out, dirs)
    if tsc_code not in (0, None) and not problems:
        problems.append(
            Problem(
                file="(toolchain)",
                line=None,
                location="tsc",
                code="deep-tsc",
                message="tsc failed: " + " ".join(tsc_out.split())[-400:],
            )
        )
    problems.extend(_export_problems(dirs, exports))
    return problems


def _items(
    versions: Iterable[SchemaVersion], config: EngineConfig
) -> tuple[list[CheckItem], list[Problem]]:
    items: list[CheckItem] = []
    problems: list[Problem] = []
    for version in versions:
        file = version.source.path if version.source else version.id
        try:
            bundle = compile_version(version, config)
        except CompileError as exc:
            problems.append(
                Problem(
                    file=file,
                    line=None,
                    location="",
                    code="compile",
                    message=f"version {version.id}: {exc}",
                )
            )
            continue
        items.append(CheckItem(label=version.id, file=file, schema=version.schema, bundle=bundle))
    return items, problems


def deep_check(
    versions: Sequence[SchemaVersion], config: EngineConfig, toolchain: Toolchain | None = None
) -> list[Problem]:
    """Compile every version and check each bundle with the real toolchain."""

    items, problems = _items(versions, config)
    return problems + check_bundles(items, toolchain)
