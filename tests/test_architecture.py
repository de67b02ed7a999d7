"""The layer table, checked statically: every import in every module of ``engine/`` —
at load time, inside functions, under ``TYPE_CHECKING`` — points to its own package or
to a lower layer, the import graph has no cycle, and the pure core imports no I/O.

Static on purpose: an import hidden inside a function is still a dependency, and a test
that only watches ``sys.modules`` after importing the core cannot see it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pytest

ENGINE = Path(__file__).resolve().parent.parent / "engine"

# Each layer may import only itself (within one package) and the layers before it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("engine.errors", "engine.events", "engine.redact", "engine.lazy"),
    ("engine.ports", "engine.config", "engine.assets", "engine.render"),
    ("engine.schema",),
    ("engine.plan",),
    ("engine.bundle",),
    ("engine.convex", "engine.registry", "engine.vault"),
    ("engine.check", "engine.fleet", "engine.local"),
    ("engine.lifecycle",),
    ("engine.commands",),
    ("engine.demo", "engine.testing"),
    ("engine.serve",),
    ("engine.cli",),
)
# The pure core: no network, database, subprocess or crypto, whatever the layer table says.
PURE = ("engine.schema", "engine.plan", "engine.bundle")
IO_MODULES = ("httpx", "httpcore", "sqlite3", "subprocess", "socket", "asyncio",
              "cryptography", "urllib.request", "http.client", "shutil")


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(root: Path, path: Path) -> list[Import]:
    """Every import statement of one file, wherever it stands, made absolute."""

    source = module_name(root, path)
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(source, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from engine.plan import planner`` imports the submodule; a name that is
            # no submodule comes from the package itself
            for alias in node.names:
                candidate = root.parent / Path(*f"{target}.{alias.name}".split("."))
                if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
                    found.append(Import(source, f"{target}.{alias.name}", node.lineno))
                else:
                    found.append(Import(source, target, node.lineno))
    return found


def all_imports(root: Path) -> list[Import]:
    return [imp for path in sorted(root.rglob("*.py")) for imp in imports_of(root, path)]


def layer_of(module: str) -> tuple[int, str] | None:
    """(layer index, package) of an engine module; None for the top package itself."""

    for index, packages in enumerate(LAYERS):
        for package in packages:
            if module == package or module.startswith(package + "."):
                return index, package
    return None


def violations(root: Path) -> list[str]:
    """Every import that breaks the table, every cycle, every I/O import of the pure core."""

    found: list[str] = []
    graph: nx.DiGraph = nx.DiGraph()
    internal = root.name
    for imp in all_imports(root):
        where = f"{imp.source}:{imp.line}"
        if imp.source.startswith(PURE) and imp.target.startswith(IO_MODULES):
            found.append(f"{where}: the pure core imports {imp.target}")
        if not (imp.target == internal or imp.target.startswith(internal + ".")):
            continue
        graph.add_edge(imp.source, imp.target)
        src, dst = layer_of(imp.source), layer_of(imp.target)
        if src is None:
            continue  # the package face resolves names lazily, by string
        if dst is None:
            found.append(f"{where}: imports the package face {imp.target}; import the module")
            continue
        if dst[1] == src[1]:
            continue
        if dst[0] >= src[0]:
            found.append(f"{where}: {src[1]} (layer {src[0]}) imports {imp.target} "
                         f"(layer {dst[0]})")
    for cycle in nx.simple_cycles(graph):
        if len(cycle) > 1:
            found.append("cycle: " + " -> ".join(cycle + cycle[:1]))
    return found


def unknown_packages(root: Path) -> list[str]:
    """Modules the table does not place: a new package must be given a layer."""

    names = {module_name(root, p) for p in root.rglob("*.py")}
    return sorted(n for n in names if n != root.name and layer_of(n) is None)


def test_every_module_has_a_layer() -> None:
    assert unknown_packages(ENGINE) == []


def test_engine_imports_follow_the_layer_table() -> None:
    assert violations(ENGINE) == []


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    imports = imports_of(ENGINE, ENGINE / "commands" / "workspace.py")
    assert any(i.target == "engine.registry.open" for i in imports)  # inside a property


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"plan/graph.py": "def f():\n    from engine.fleet import runner\n"},
         "engine.plan (layer 3) imports engine.fleet.runner (layer 6)"),
        ({"schema/models.py": "import httpx\n"}, "the pure core imports httpx"),
        ({"lifecycle/a.py": "from engine.lifecycle import b\n",
          "lifecycle/b.py": "def g():\n    from engine.lifecycle.a import x\n"},
         "cycle: engine.lifecycle."),
        ({"convex/http.py": "from engine.registry.sqlite import open_store\n"},
         "engine.convex (layer 5) imports engine.registry.sqlite (layer 5)"),
        ({"check/rules.py": "from engine import Workspace\n"}, "imports the package face engine"),
    ],
)
def test_a_planted_violation_fails(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    root = tmp_path / "engine"
    for package in ("plan", "schema", "lifecycle", "convex", "registry", "check", "fleet"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "fleet" / "runner.py").write_text("")
    (root / "registry" / "sqlite.py").write_text("")
    for name, text in files.items():
        (root / name).write_text(text)
    found = violations(root)
    assert any(expected in v for v in found), found
