"""``byod check --deep``: the real Convex toolchain as the oracle for everything that runs.

What is checked is every bundle a deployment can be given: each version's bundle, its main
bundle (the main deployment's: every table and the ``byodMain:*`` functions), and each
widened bundle a migration deploys (one per edge of the graph, and the fused one of every
path from a version to a head), with their generated data steps, the custom and convert
code of the version files' hints, and the app's own functions (``functions_dir``) typed
against that bundle's schema. All are written into one temporary directory that borrows
the toolchain's ``node_modules`` (a link), then, in parallel on two processes:

- one ``tsc --noEmit`` over all bundles (type errors in generated code);
- one Node process that bundles every ``convex/schema.ts`` with esbuild, imports it with
  the real ``convex`` library and returns ``defineSchema(...).export()``.

Each export must equal ``deployed_schema(schema).to_convex_json()``, the engine's own model
of what it deploys; any difference is a ``Problem`` naming the version, table and JSON path.
A type error is reported where it was written: in an app function, at that module's file
and line; in hint code, at the version file's hint (``migrations[i].code``) and the line in
it; only in code the engine generated, at the generated file.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from engine.bundle.compiler import (
    MIGRATIONS_FILE,
    Bundle,
    BundleTarget,
    compile_bundle,
    compile_main,
    deployed_schema,
)
from engine.bundle.functions import AppFunctions, functions_for
from engine.bundle.write import write_bundle
from engine.config import EngineConfig
from engine.convex.toolchain import Toolchain, node_executable
from engine.errors import ByodError, CompileError, Problem, ToolchainError
from engine.plan.datasteps import DataStep
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
class HintOrigin:
    """Where a data step's code was written: the version file, the hint's location in it
    (``migrations[2]``) and the file line of the code's first line (None: unknown)."""

    file: str
    location: str
    code_line: int | None
    code: str


@dataclass(frozen=True)
class CheckItem:
    """One bundle to check: ``label`` names it in problems, ``file`` is its source file;
    ``functions`` the app modules it carries and ``hints`` the origin of each data step's
    code (step id → origin), so a type error names the file it was written in."""

    label: str
    file: str
    schema: Schema
    bundle: Bundle
    functions: AppFunctions | None = None
    hints: dict[str, HintOrigin] = field(default_factory=dict)
    target: BundleTarget = "user"


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
    expected = deployed_schema(item.schema, item.target).to_convex_json()
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
        line, col = int(match["line"]), int(match["col"])
        error = f"{match['code']} {match['msg']}"
        if item is None:
            problems.append(Problem(file=rel, line=None, location=f"{inner}:{line}:{col}",
                                    code="deep-tsc", message=error[:_MAX_MESSAGE],
                                    hint="the generated TypeScript does not type-check"))
            continue
        problems.append(_placed(item, inner, line, col, error))
    return problems


def _placed(item: CheckItem, inner: str, line: int, col: int, error: str) -> Problem:
    """A tsc error at ``inner:line`` of ``item``'s bundle, reported where it was written."""

    where = f"{inner}:{line}:{col}"
    module = inner.removeprefix("convex/")
    if item.functions is not None and module in item.functions.paths:
        return Problem(
            file=item.functions.file_of(module), line=line, location=f"{module}:{line}:{col}",
            code="deep-tsc",
            message=f"{error} (in the bundle of {item.label})"[:_MAX_MESSAGE],
            hint=f"the app function does not type-check against the schema of {item.label}",
        )
    if inner == MIGRATIONS_FILE:
        found = _hint_at(item, line)
        if found is not None:
            origin, offset = found
            file_line = origin.code_line + offset if origin.code_line and offset >= 0 else None
            at = f"line {offset + 1} of its code" if offset >= 0 else "its code"
            return Problem(
                file=origin.file, line=file_line,
                location=f"{origin.location}.code",
                code="deep-tsc",
                message=(f"{error} (in the bundle of {item.label}, {at}; generated at "
                         f"{where})")[:_MAX_MESSAGE],
                hint="the hint's code does not type-check against the schema it runs on",
            )
    return Problem(file=item.file, line=None, location=where, code="deep-tsc",
                   message=f"version {item.label}: {error}"[:_MAX_MESSAGE],
                   hint="the generated TypeScript does not type-check")


_STEP_MARK = re.compile(r"^(?:function (?:transform|code|fits)_|export const )(?P<id>\w+)")


def _hint_at(item: CheckItem, line: int) -> tuple[HintOrigin, int] | None:
    """The hint whose generated code holds ``line`` of the data-step module, and the
    0-based line of that code (-1: the error is in the step but outside the hint's code)."""

    lines = item.bundle.files.get(MIGRATIONS_FILE, "").splitlines()
    steps = set(item.bundle.manifest.get("dataSteps", []))
    step_id, start = None, 0
    for number, text in enumerate(lines[:line], start=1):
        mark = _STEP_MARK.match(text)
        if mark and mark["id"] in steps:
            step_id, start = mark["id"], number
    if step_id is None or step_id not in item.hints:
        return None
    origin = item.hints[step_id]
    code = [c for c in origin.code.strip("\n").splitlines()]
    first = next((c.strip() for c in code if c.strip()), None)
    if first is None:
        return origin, -1
    for number in range(start, min(len(lines), line) + 1):
        if lines[number - 1].strip() == first:
            offset = line - number
            return origin, offset if offset < len(code) else -1
    return origin, -1


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


def _compile_problem(file: str, label: str, exc: ByodError) -> Problem:
    return Problem(file=file, line=None, location="", code="compile",
                   message=f"{label}: {exc}")


def _version_items(
    versions: Iterable[SchemaVersion], config: EngineConfig
) -> tuple[list[CheckItem], list[Problem]]:
    items: list[CheckItem] = []
    problems: list[Problem] = []
    for version in versions:
        file = version.source.path if version.source else version.id
        try:
            functions = functions_for(config.functions_dir, version.id)
            bundle = compile_bundle(version.schema, version_id=version.id, config=config,
                                    functions=functions)
        except CompileError as exc:
            problems.append(_compile_problem(file, f"version {version.id}", exc))
            continue
        items.append(CheckItem(label=version.id, file=file, schema=version.schema,
                               bundle=bundle, functions=functions))
    return items, problems


def _main_items(
    versions: Iterable[SchemaVersion], config: EngineConfig
) -> tuple[list[CheckItem], list[Problem]]:
    """The main deployment's bundle of every version (``byod deploy VERSION --target
    main``): every table plus the ``byodMain:*`` functions, no app functions."""

    items: list[CheckItem] = []
    problems: list[Problem] = []
    for version in versions:
        file = version.source.path if version.source else version.id
        label = f"{version.id} (main)"
        try:
            bundle = compile_main(version, config)
        except CompileError as exc:
            problems.append(_compile_problem(file, f"the main bundle of {version.id}", exc))
            continue
        items.append(CheckItem(label=label, file=file, schema=version.schema, bundle=bundle,
                               target="main"))
    return items, problems


def _hint_origins(versions: dict[str, SchemaVersion], chain: Sequence[str],
                  steps: Sequence[DataStep]) -> dict[str, HintOrigin]:
    """For each step with code, the hint of a version along ``chain`` that wrote it."""

    out: dict[str, HintOrigin] = {}
    for step in steps:
        code = step.params.get("code")
        if not isinstance(code, str):
            continue
        for vid in chain[1:]:
            version = versions.get(vid)
            if version is None:
                continue
            for i, hint in enumerate(version.migrations):
                if hint.op == step.op and hint.table == step.table and hint.code == code:
                    source = version.source
                    key_line = source.lines.get(f"migrations.{i}.code") if source else None
                    out[step.id] = HintOrigin(
                        file=source.path if source else vid, location=f"migrations[{i}]",
                        code_line=key_line + 1 if key_line else None, code=code)
                    break
            if step.id in out:
                break
    return out


def _widened_items(
    versions: Sequence[SchemaVersion], config: EngineConfig
) -> tuple[list[CheckItem], list[Problem]]:
    """The widened bundle of every migration a rollout can run: each edge of the graph, and
    the fused path from each version to each head. A path the planner refuses (missing
    hints or consent) is left to the offline rules, which already report it."""

    from engine.plan.graph import VersionGraph
    from engine.plan.planner import plan

    try:
        graph = VersionGraph(versions)
    except ByodError:
        return [], []  # the offline rules report a broken graph
    by_id = {v.id: v for v in versions}
    pairs: list[tuple[str, str]] = []
    for version in versions:
        pairs += [(parent, version.id) for parent in version.parents if parent in by_id]
    for head in graph.heads():
        pairs += [(v.id, head) for v in versions if v.id != head]
    items: list[CheckItem] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for source, target in dict.fromkeys(pairs):
        try:
            steps = plan(graph, source, target).steps
        except ByodError:
            continue
        for step in steps:
            if step.kind != "deploy_widened" or step.schema is None or step.version in seen:
                continue
            name = str(step.version)
            seen.add(name)
            end = by_id[step.covers[-1]] if step.covers else by_id[target]
            file = end.source.path if end.source else end.id
            label = f"{step.covers[0]} -> {step.covers[-1]} (widened)" if step.covers else name
            try:
                functions = functions_for(config.functions_dir, name)
                bundle = compile_bundle(step.schema, version_id=name, kind="widen",
                                        data_steps=list(step.data_steps), config=config,
                                        functions=functions)
            except CompileError as exc:
                problems.append(_compile_problem(file, label, exc))
                continue
            items.append(CheckItem(
                label=label, file=file, schema=step.schema, bundle=bundle, functions=functions,
                hints=_hint_origins(by_id, step.covers, step.data_steps)))
    return items, problems


def deep_check(
    versions: Sequence[SchemaVersion], config: EngineConfig, toolchain: Toolchain | None = None
) -> list[Problem]:
    """Compile every version's bundle, its main bundle and every widened bundle of its
    migrations, and check them all with the real toolchain."""

    items, problems = _version_items(versions, config)
    mains, main_problems = _main_items(versions, config)
    widened, widen_problems = _widened_items(versions, config)
    return (problems + main_problems + widen_problems
            + check_bundles(items + mains + widened, toolchain))
