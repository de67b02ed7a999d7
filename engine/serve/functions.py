"""Where an app function runs, for the data plane (``POST /v1/users/{id}/run``).

The app's user-side functions are the modules of ``functions_dir`` that ship in every user
bundle (``engine.bundle.functions``: a version's pinned snapshot, else the directory as it
is). A function of those modules runs where that user's content lives — their own
deployment when connected, main otherwise — decided by the router from the tables the
function reads and writes (its table map, read from the module: ``ctx.db.query("t")``,
``ctx.db.insert("t", …)``, ``v.id("t")``). Functions named by ``serve.main_functions``
(``module:name`` globs) run on main. Anything else is unknown: never guessed, because a
guess would send a user's writes to the wrong database.
"""

from __future__ import annotations

import fnmatch
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from engine.bundle.functions import functions_for

__all__ = ["AppFunction", "FunctionCatalog"]

_EXPORT = re.compile(
    r"export\s+const\s+(?P<name>[A-Za-z_$][\w$]*)\s*=\s*"
    r"(?P<kind>query|mutation|action|internalQuery|internalMutation|internalAction)\s*\(")
_TABLE = re.compile(r"""(?:\.db\s*\.\s*(?:query|insert)|\bv\s*\.\s*id)\(\s*["'](\w+)["']""")
_KINDS = {"query": "query", "mutation": "mutation", "action": "action"}


@dataclass(frozen=True)
class AppFunction:
    """One public app function of a user bundle: its path (``notes:listForUser``), kind,
    and the tables its module touches."""

    path: str
    kind: str
    tables: tuple[str, ...]


class FunctionCatalog:
    """The app functions of each version's bundle (read once per version, cached)."""

    def __init__(self, functions_dir: Path | None, main_functions: tuple[str, ...] = ()):
        self.functions_dir = functions_dir
        self.main_functions = main_functions
        self._by_version: dict[str, dict[str, AppFunction]] = {}
        self._lock = threading.Lock()

    def functions(self, version: str) -> dict[str, AppFunction]:
        """Path -> function for the bundle of ``version`` (empty without ``functions_dir``)."""

        with self._lock:
            cached = self._by_version.get(version)
            if cached is not None:
                return cached
        found: dict[str, AppFunction] = {}
        app = functions_for(self.functions_dir, version)
        for module_path, text in (app.modules if app is not None else ()):
            module = re.sub(r"\.(tsx?|jsx?)$", "", module_path)
            tables = tuple(dict.fromkeys(_TABLE.findall(text)))
            for match in _EXPORT.finditer(text):
                kind = _KINDS.get(match["kind"])
                if kind is None:
                    continue  # internal functions are not callable from the app
                path = f"{module}:{match['name']}"
                found[path] = AppFunction(path, kind, tables)
        with self._lock:
            self._by_version[version] = found
        return found

    def lookup(self, version: str, path: str) -> AppFunction | None:
        return self.functions(version).get(path)

    def on_main(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, pattern) for pattern in self.main_functions)
