"""Every command the documentation shows must exist and work.

The `byod …` lines of the shell code blocks in README.md and docs/*.md are resolved through
the real click group: each must name a real command (and subcommand) and use only options
that command has, with valid choices and numbers, the right number of arguments and its
required options. The side-effect-free ones (check, diff, plan, graph, build, keys
generate, status on an empty registry, rollout --dry-run, every --help) are then run for
real with click's CliRunner in a temporary directory. Python blocks must compile and import
only names the engine has.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import shlex
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from engine.bundle.compiler import compile_version
from engine.cli.main import cli
from engine.config import EngineConfig
from engine.plan.graph import VersionGraph
from engine.plan.planner import plan
from engine.registry.open import open_store
from engine.schema.loader import load_versions
from engine.vault import Vault

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"", "sh", "bash", "shell", "console"}
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$|[<>$]")
# Commands whose documented lines run for real (read-only, or writing only into the
# temporary directory); --help runs for every command.
RUNNABLE = {("check",), ("diff",), ("plan",), ("graph",), ("build",), ("keys", "generate"),
            ("status",), ("rollout",)}  # rollout: --dry-run only
NEVER_RUN_OPTIONS = {"--deep"}  # needs the npm toolchain and minutes; covered by its own tests


# -- extracting commands from the docs ---------------------------------------------------------

@dataclass(frozen=True)
class DocCommand:
    file: str
    line: int
    args: tuple[str, ...]  # after `byod`

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: byod {' '.join(self.args)}"


def code_blocks(text: str) -> Iterator[tuple[str, int, list[str]]]:
    """(language, line number of the first content line, lines) of each fenced block."""

    lang: str | None = None
    start = 0
    body: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if lang is None:
            if stripped.startswith("```"):
                lang, start, body = stripped[3:].strip().lower(), number + 1, []
        elif stripped.startswith("```"):
            yield lang, start, body
            lang = None
        else:
            body.append(line)


def _segments(line: str) -> list[list[str]]:
    """Shell words of each simple command of a line (pipes, `;`, `&&`, `$(...)` split)."""

    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    segments: list[list[str]] = [[]]
    for token in lexer:
        if token and set(token) <= set("();<>|&"):
            segments.append([])
        else:
            segments[-1].append(token)
    return [s for s in segments if s]


_MENTIONS_BYOD = re.compile(r"(^|[\s|;&(/])byod(\s|$|\))")


def byod_invocations(line: str) -> list[tuple[str, ...]]:
    """The argument lists of every `byod` run by one shell line (an unbalanced quote on a
    line that runs byod is a documentation bug and raises)."""

    if not _MENTIONS_BYOD.search(line):
        return []  # prose in an unlabeled block (layout trees, apostrophes) is not shell
    out = []
    for words in _segments(line):
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words = words[1:]  # VAR=value prefixes
        if words and words[0].rsplit("/", 1)[-1] == "byod":
            out.append(tuple(words[1:]))
    return out


def documented_commands(paths: list[Path] = DOC_FILES, root: Path = ROOT) -> list[DocCommand]:
    found: list[DocCommand] = []
    for path in paths:
        rel = path.relative_to(root).as_posix()
        for lang, start, lines in code_blocks(path.read_text(encoding="utf-8")):
            if lang not in SHELL_LANGS:
                continue
            pending, first = "", start
            for offset, raw in enumerate(lines):
                text = raw.strip()
                if not pending:
                    first = start + offset
                if text.endswith("\\"):
                    pending += text[:-1] + " "
                    continue
                text, pending = pending + text, ""
                text = text.removeprefix("$ ")
                for args in byod_invocations(text):
                    found.append(DocCommand(rel, first, args))
    return found


# -- resolving a command line through the click group ------------------------------------------

def resolve(args: tuple[str, ...]) -> tuple[tuple[str, ...], click.Command, list[str]]:
    """(command path, command, remaining args); raises LookupError for an unknown command."""

    command: click.Command = cli
    path: list[str] = []
    rest = list(args)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        sub = command.commands.get(name)
        if sub is None:
            raise LookupError(f"no command {' '.join([*path, name])!r}")
        command, path = sub, [*path, name]
    return tuple(path), command, rest


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def problems_of(args: tuple[str, ...]) -> list[str]:
    """Everything wrong with `byod <args>` as the click group sees it (empty: fine)."""

    try:
        path, command, rest = resolve(args)
    except LookupError as exc:
        return [str(exc)]
    options: dict[str, click.Option] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                options[name] = param
    wants_help = any(t in ("--help", "-h") for t in rest) or (
        not path and "--version" in rest)
    problems: list[str] = []
    positional: list[str] = []
    seen: set[str] = set()
    ctx = click.Context(command, info_name=" ".join(["byod", *path]), resilient_parsing=True)
    i = 0
    while i < len(rest):
        token = rest[i]
        i += 1
        if token in ("--help", "-h") or (not path and token == "--version"):
            continue
        if token.startswith("-") and len(token) > 1 and not _is_number(token):
            name, eq, value = token.partition("=")
            option = options.get(name)
            if option is None:
                problems.append(f"byod {' '.join(path)} has no option {name}")
                continue
            seen.add(option.name or name)
            if option.is_flag or option.count:
                if eq:
                    problems.append(f"{name} is a flag and takes no value")
                continue
            if not eq:
                if i >= len(rest):
                    problems.append(f"{name} needs a value")
                    continue
                value = rest[i]
                i += 1
            if PLACEHOLDER.search(value) or isinstance(option.type, click.Path):
                continue
            try:
                option.type.convert(value, option, ctx)
            except click.BadParameter as exc:
                problems.append(f"{name} {value!r}: {exc.message}")
            continue
        positional.append(token)
    if isinstance(command, click.Group):
        if not wants_help and not command.invoke_without_command:
            problems.append(f"byod {' '.join(path)} needs a subcommand: "
                            f"{', '.join(sorted(command.commands))}")
        return problems
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    most = float("inf") if any(a.nargs == -1 for a in arguments) else sum(
        a.nargs for a in arguments)
    if len(positional) > most:
        problems.append(f"byod {' '.join(path)} takes at most {most} argument(s), "
                        f"got {positional}")
    if not wants_help:
        least = sum(a.nargs for a in arguments if a.required and a.nargs > 0)
        if len(positional) < least:
            problems.append(f"byod {' '.join(path)} needs {least} argument(s), "
                            f"got {positional}")
        for param in command.params:
            if isinstance(param, click.Option) and param.required and param.name not in seen:
                problems.append(f"byod {' '.join(path)} requires {param.opts[-1]}")
    return problems


def leaf_commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            out += leaf_commands(command, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


def all_command_paths(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            out += all_command_paths(command, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


DOCUMENTED = documented_commands()


# -- the checks ----------------------------------------------------------------------------

def test_docs_show_commands() -> None:
    files = {c.file for c in DOCUMENTED}
    assert {"README.md", "docs/maintainer-guide.md", "docs/operator-guide.md"} <= files
    assert len(DOCUMENTED) >= 40


@pytest.mark.parametrize("command", DOCUMENTED, ids=str)
def test_documented_command_is_real(command: DocCommand) -> None:
    assert problems_of(command.args) == [], str(command)


def test_every_command_is_documented() -> None:
    documented = set()
    for c in DOCUMENTED:
        try:
            documented.add(resolve(c.args)[0])
        except LookupError:
            pass
    missing = [" ".join(p) for p in leaf_commands() if p not in documented]
    assert missing == [], f"commands no doc shows in a code block: {missing}"


@pytest.mark.parametrize("line,expected", [
    ("byod nosuch", "no command 'nosuch'"),
    ("byod keys nosuch", "no command 'keys nosuch'"),
    ("byod check --nosuch", "has no option --nosuch"),
    ("byod diff 1 2 3", "at most 2 argument(s)"),
    ("byod diff 1", "needs 2 argument(s)"),
    ("byod disconnect --user alice", "requires --data"),
    ("byod disconnect --user alice --data wipe", "--data 'wipe'"),
    ("byod graph --format png", "--format 'png'"),
    ("byod health --concurrency 0", "--concurrency '0'"),
    ("byod check --json=yes", "is a flag"),
    ("byod keys", "needs a subcommand"),
    ("byod rollout --to", "needs a value"),
])
def test_the_checker_catches_wrong_lines(line: str, expected: str) -> None:
    (args,) = byod_invocations(line)
    problems = problems_of(args)
    assert any(expected in p for p in problems), problems


def test_extraction_handles_shell_syntax(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "text `byod inline` is not in a block\n"
        "```sh\n"
        "export BYOD_ENCRYPTION_KEY=$(byod keys generate)   # a comment\n"
        "printf '%s' \"$KEY\" | byod connect --user a \\\n"
        "    --url https://x.convex.cloud --key-stdin\n"
        "$ X=1 .venv/bin/byod status --json && echo done\n"
        "```\n"
        "```yaml\n"
        "byod: not a command\n"
        "```\n"
        "```text\n"
        "byod check   # output blocks are not commands\n"
        "```\n")
    found = documented_commands([doc], root=tmp_path)
    assert [(c.line, c.args) for c in found] == [
        (3, ("keys", "generate")),
        (4, ("connect", "--user", "a", "--url", "https://x.convex.cloud", "--key-stdin")),
        (6, ("status", "--json")),
    ]
    assert str(found[0]) == "x.md:3: byod keys generate"


# -- running the side-effect-free ones -----------------------------------------------------------

@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch project: the shipped versions, no config, an example fleet file."""

    root = tmp_path_factory.mktemp("docs-run")
    shutil.copytree(ROOT / "schema_versions", root / "schema_versions")
    (root / "fleet.json").write_text(json.dumps([
        {"deployment": "u1", "version": "1"}, {"deployment": "u2", "version": "5"}]))
    open_store(root / ".byod" / "registry.sqlite3").close()  # empty, for graph --registry
    return root


@pytest.fixture
def run(workdir: Path, monkeypatch: pytest.MonkeyPatch):
    import os

    for name in list(os.environ):
        if name.startswith("BYOD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(workdir)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, list(args), prog_name="byod", catch_exceptions=False)

    return invoke


@pytest.fixture(scope="module")
def shipped() -> VersionGraph:
    return VersionGraph(load_versions(ROOT / "schema_versions"))


def _runnable(command: DocCommand) -> bool:
    try:
        path, _, rest = resolve(command.args)
    except LookupError:
        return False
    if "--help" in rest or "-h" in rest:
        return True
    if path not in RUNNABLE or NEVER_RUN_OPTIONS & set(rest):
        return False
    if path == ("rollout",) and "--dry-run" not in rest:
        return False
    if path == ("status",) and "--user" in rest:
        return False  # the registry here is empty
    return not any(PLACEHOLDER.search(t) for t in rest)


RUNNABLE_DOCUMENTED = [c for c in DOCUMENTED if _runnable(c)]


def test_there_are_runnable_documented_commands() -> None:
    verbs = {c.args[0] for c in RUNNABLE_DOCUMENTED}
    assert {"check", "diff", "plan", "graph", "build", "keys", "status"} <= verbs


@pytest.mark.parametrize("command", RUNNABLE_DOCUMENTED, ids=str)
def test_documented_command_runs(run, command: DocCommand) -> None:
    result = run(*command.args)
    assert result.exit_code == 0, f"{command}\n{result.output[-3000:]}"
    assert result.output.strip(), str(command)
    assert "Traceback" not in result.output


@pytest.mark.parametrize("path", all_command_paths(), ids=lambda p: " ".join(p) or "byod")
def test_help_of_every_command(run, path: tuple[str, ...]) -> None:
    result = run(*path, "--help")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: {' '.join(['byod', *path])} ")


def test_check(run) -> None:
    files = sorted(p.stem for p in (ROOT / "schema_versions").glob("*.yaml"))
    result = run("check")
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(f"check ok: {len(files)} version(s), 0 error(s), "), last

    data = json.loads(run("check", "--json").stdout)
    assert data["ok"] is True and data["errors"] == 0
    assert sorted(data["versions"]) == files
    assert data["warnings"] == len(data["problems"])
    lint_codes = (ROOT / "docs" / "lint-codes.md").read_text()
    for problem in data["problems"]:
        assert problem["code"] in lint_codes  # every code printed is documented


def test_diff(run, shipped: VersionGraph) -> None:
    a, b = shipped.resolve(3).id, shipped.resolve(5).id
    result = run("diff", "3", "5")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"diff {a} -> {b} ")
    codes = re.findall(r"^(BYOD-D\d{3})\s", result.stdout, flags=re.MULTILINE)
    assert codes, result.stdout
    lint_codes = (ROOT / "docs" / "lint-codes.md").read_text()
    assert all(code in lint_codes for code in codes)
    assert re.search(r"^\d+ change\(s\): \d+ safe, ", result.stdout, flags=re.MULTILINE)


def test_plan(run, shipped: VersionGraph) -> None:
    expected = plan(shipped, 1, "head")
    result = run("plan", "--from", "1", "--to", "head")
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"plan: {expected.source} -> {expected.target} (up, ")
    assert f"{expected.deploys} deploy(s)" in first and expected.deploys <= 2
    numbered = re.findall(r"^\s*\d+\. ", result.stdout, flags=re.MULTILINE)
    assert len(numbered) == len(expected.steps)

    refused = run("plan", "--from", "head", "--to", "1")
    assert refused.exit_code == 1
    assert "no down path" in refused.output


def test_graph(run, shipped: VersionGraph) -> None:
    result = run("graph")
    assert result.exit_code == 0
    assert result.stdout.startswith("graph LR")
    for vid in shipped.topological_order():
        assert vid in result.stdout
    for head in shipped.heads():
        assert f"{head} (head)" in result.stdout
    dot = run("graph", "--format", "dot").stdout
    assert dot.startswith("digraph versions {")


def test_build(run, workdir: Path, shipped: VersionGraph) -> None:
    head = shipped.resolve("head")
    out = workdir / "built-head"
    result = run("build", "head", "--out", str(out.name), "--archive", "zip")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "byod-manifest.json").read_text())
    bundle = compile_version(head, EngineConfig())
    assert manifest["fingerprint"] == bundle.fingerprint
    assert bundle.fingerprint[:16] in result.stdout
    for name in ("convex/schema.ts", "convex/byod.ts", "convex/auth.config.ts",
                 "package.json", "README.md"):
        assert (out / name).is_file(), name
    assert (workdir / "built-head.zip").is_file()


def test_keys_generate(run) -> None:
    first = run("keys", "generate")
    second = run("keys", "generate")
    assert first.exit_code == second.exit_code == 0
    key = first.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert key != second.stdout.strip()
    vault = Vault.from_hex(key)
    assert vault.key_id in first.output  # the note on stderr names the key id
    data = json.loads(run("keys", "generate", "--json").stdout)
    assert data["env"] == "BYOD_ENCRYPTION_KEY" and len(data["key"]) == 64


def test_status_on_an_empty_registry(run, workdir: Path) -> None:
    result = run("status")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("0 user(s): no users (availability: everyone)")
    data = json.loads(run("status", "--json").stdout)
    assert data == {"availability": "everyone", "counts": {}, "users": []}
    registry = workdir / ".byod" / "registry.sqlite3"
    assert registry.is_file() and registry.stat().st_mode & 0o077 == 0
    unknown = run("status", "--user", "nobody")
    assert unknown.exit_code == 1 and "nobody" in unknown.output


def test_rollout_dry_run_needs_no_key(run) -> None:
    result = run("rollout", "--to", "head", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "dry_run" and data["deployments"] == []


def test_missing_key_is_a_clear_error(run) -> None:
    result = run("keys", "rotate")
    assert result.exit_code == 1
    assert "BYOD_ENCRYPTION_KEY is not set" in result.output
    assert "Traceback" not in result.output


# -- Python examples -------------------------------------------------------------------------

def python_blocks() -> list[tuple[str, int, str]]:
    out = []
    for path in DOC_FILES:
        rel = path.relative_to(ROOT).as_posix()
        for lang, start, lines in code_blocks(path.read_text(encoding="utf-8")):
            if lang == "python":
                out.append((rel, start, "\n".join(lines)))
    return out


@pytest.mark.parametrize("where,line,source", [
    pytest.param(w, n, s, id=f"{w}:{n}") for w, n, s in python_blocks()])
def test_python_examples_compile_and_import_real_names(where: str, line: int,
                                                      source: str) -> None:
    tree = ast.parse(source, filename=f"{where}:{line}")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "engine":
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                assert hasattr(module, alias.name), f"{where}:{line}: {node.module}.{alias.name}"
