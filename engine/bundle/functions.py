"""The app's own Convex functions: which ones a bundle carries, read from the configured
directory (``functions_dir`` in ``byod.toml``).

The rule, in full (docs/maintainer-guide.md, "The app's functions"):

- a version's bundle carries the modules of ``<functions_dir>.pinned/<version id>/`` when
  that snapshot directory exists (the version is *pinned*), else the modules of
  ``functions_dir`` as they are now; a snapshot without modules ships none;
- a widened bundle (the bridge of a migration from S to T) carries S's functions: the app
  keeps running the code written for the documents it knows, and ``check --deep`` proves
  that code type-checks against the widened schema;
- the main deployment's bundle carries none (the app deploys its own main project).

So a change of the unpinned functions changes the head's fingerprint, and a rollout to the
head redeploys it with no data steps; a version whose functions must stay as released gets a
snapshot. Reading the directory is this module's only I/O: the compiler stays pure over
what it is given.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from engine.errors import CompileError, Problem

__all__ = ["AppFunctions", "IGNORE_FILE", "MODULE_SUFFIXES", "PINNED_SUFFIX", "check_functions",
           "functions_for", "pinned_dir", "read_functions", "reserved_module_problem",
           "source_version", "widen_name"]

PINNED_SUFFIX = ".pinned"
MODULE_SUFFIXES = (".ts", ".tsx", ".js", ".jsx")
_SKIPPED_DIRS = frozenset({"_generated", "node_modules"})
_WIDEN = re.compile(r"^(?P<source>.+?)__(?P<target>.+)__widen$")
# module paths the engine's own bundle files use (Convex itself skips `_generated/` and
# treats `schema`, `auth.config` and `convex.config` specially)
_RESERVED_MODULE = re.compile(
    r"^(?:byod[^/]*|schema\.[^/]+|auth\.config\.[^/]+|convex\.config\.[^/]+|_generated/.*"
    r"|_deps/.*)$",
    re.I,
)


@dataclass(frozen=True)
class AppFunctions:
    """The app modules one bundle carries: ``root`` names their directory in messages
    (as configured, e.g. ``functions``), ``modules`` maps a path under ``convex/`` to its
    text, sorted."""

    root: str
    modules: tuple[tuple[str, str], ...] = ()

    def file_of(self, module: str) -> str:
        """The source file of ``module`` (a path under ``convex/``), for messages."""

        return f"{self.root.rstrip('/')}/{module}"

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.modules]


def widen_name(source: str, target: str) -> str:
    """The name of the widened bundle bridging ``source`` to ``target`` (the planner's)."""

    return f"{source}__{target}__widen"


def source_version(bundle_name: str) -> str:
    """The version whose functions a bundle carries: a widened bundle's source version,
    else the version itself."""

    match = _WIDEN.match(bundle_name)
    return match["source"] if match else bundle_name


def pinned_dir(functions_dir: Path, version_id: str) -> Path:
    """Where ``version_id``'s snapshot of the functions lives, if it has one."""

    return functions_dir.with_name(functions_dir.name + PINNED_SUFFIX) / version_id


def _is_module(rel: PurePosixPath) -> bool:
    if any(part in _SKIPPED_DIRS or part.startswith(".") for part in rel.parts):
        return False
    name = rel.name
    if name.endswith(".d.ts") or re.search(r"\.(test|spec)\.[jt]sx?$", name):
        return False
    return name.endswith(MODULE_SUFFIXES)


IGNORE_FILE = ".byodignore"


def _ignored(directory: Path) -> list[str]:
    """The patterns of ``directory/.byodignore`` (one glob per line over module paths,
    ``#`` comments): modules of an app's own ``convex/`` that a bundle must not carry,
    such as its ``schema.ts`` and ``auth.config.ts`` (the bundle renders its own)."""

    path = directory / IGNORE_FILE
    if not path.is_file():
        return []
    lines = (line.split("#", 1)[0].strip() for line in path.read_text("utf-8").splitlines())
    return [line for line in lines if line]


def read_functions(directory: Path, root: str | None = None) -> AppFunctions:
    """The modules under ``directory`` (TypeScript/JavaScript, recursively; ``_generated``,
    ``node_modules``, dotfiles, ``.d.ts`` and ``*.test.*`` files left out, and those
    ``.byodignore`` names)."""

    directory = Path(directory)
    label = root or directory.as_posix()
    if not directory.is_dir():
        raise CompileError(
            f"{label}: the app's functions directory does not exist (functions_dir in "
            "byod.toml); create it or remove the setting"
        )
    modules: list[tuple[str, str]] = []
    ignored = _ignored(directory)
    for path in sorted(directory.rglob("*")):
        rel = PurePosixPath(path.relative_to(directory).as_posix())
        if not path.is_file() or not _is_module(rel):
            continue
        if any(fnmatch.fnmatchcase(str(rel), pattern) for pattern in ignored):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CompileError(f"{label}/{rel}: cannot read the module: {exc}") from None
        modules.append((str(rel), text))
    return AppFunctions(root=label, modules=tuple(sorted(modules)))


def functions_for(functions_dir: Path | None, bundle_name: str) -> AppFunctions | None:
    """The app functions the bundle ``bundle_name`` (a version id or a widened bundle's
    name) carries under the rule above; None when no functions directory is configured."""

    if functions_dir is None:
        return None
    functions_dir = Path(functions_dir)
    version = source_version(bundle_name)
    pinned = pinned_dir(functions_dir, version)
    if pinned.is_dir():
        return read_functions(pinned)
    return read_functions(functions_dir)


def reserved_module_problem(functions: AppFunctions) -> str | None:
    """A message naming the first app module whose name the engine's files use, if any."""

    for path in functions.paths:
        if _RESERVED_MODULE.match(path):
            return (f"{functions.file_of(path)}: the module name {path!r} is reserved for the "
                    "engine's own files (byod*, schema, auth.config, convex.config, "
                    "_generated); rename the module")
    return None


def check_functions(functions_dir: Path | None, version_ids: list[str]) -> list[Problem]:
    """Offline problems of the functions directory and its snapshots (for ``byod check``):
    a missing directory, an unreadable module, a reserved module name, and a snapshot that
    pins no known version (a warning: nothing ships it)."""

    if functions_dir is None:
        return []
    functions_dir = Path(functions_dir)
    problems: list[Problem] = []
    sources = {functions_dir} | {pinned_dir(functions_dir, v) for v in version_ids}
    for directory in sorted(d for d in sources if d == functions_dir or d.is_dir()):
        try:
            functions = read_functions(directory)
        except CompileError as exc:
            file, _, text = str(exc).partition(": ")
            problems.append(Problem(file=file, line=None, location="", code="functions",
                                    message=text))
            continue
        message = reserved_module_problem(functions)
        if message is not None:
            file, _, text = message.partition(": ")
            problems.append(Problem(file=file, line=None, location="", code="functions",
                                    message=text))
    pinned_root = functions_dir.with_name(functions_dir.name + PINNED_SUFFIX)
    if pinned_root.is_dir():
        known = set(version_ids)
        for snapshot in sorted(pinned_root.iterdir()):
            if snapshot.is_dir() and snapshot.name not in known:
                problems.append(Problem(
                    file=snapshot.as_posix(), line=None, location="", code="functions",
                    severity="warning",
                    message=f"pins functions for {snapshot.name!r}, which is not a version",
                    hint="rename the snapshot after the version it pins, or remove it"))
    return problems
