"""``init``: start a byod project from an existing Convex app.

The app's ``convex/schema.ts`` is evaluated with the real ``convex`` library (the pinned
toolchain), its export becomes version 1 in the engine's format, and ``byod.toml`` points
``functions_dir`` at the app's own modules, so every user bundle carries them. The app's
``schema.ts``, ``auth.config.ts`` and ``convex.config.ts`` are left out of the bundles
through a ``.byodignore`` beside them: a bundle renders its schema from the version file
and its auth from ``byod.toml``. The only verb without a ``Workspace``: there is no
project yet.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import VersionError

if TYPE_CHECKING:
    from engine.convex.toolchain import Toolchain

__all__ = ["init"]

VERSION_FILE = "0001_initial.yaml"
IGNORED = ("schema.ts", "auth.config.ts", "convex.config.ts")


def _functions_dir(app: Path) -> Path:
    """The app's Convex functions directory: ``convex.json``'s ``functions``, else
    ``convex/``; an ``app`` that is itself that directory is taken as is."""

    if (app / "schema.ts").is_file() and not (app / "convex").is_dir():
        return app
    config = app / "convex.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise VersionError(f"{config}: not valid JSON: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("functions"), str):
            return app / data["functions"]
    return app / "convex"


def _toml_path(path: Path, base: Path) -> str:
    return json.dumps(Path(os.path.relpath(path.resolve(), base.resolve())).as_posix())


def init(app_dir: Path, *, into: Path = Path("."), location: str = "user",
         description: str = "", toolchain: "Toolchain | None" = None) -> dict[str, Any]:
    """Write ``<into>/schema_versions/0001_initial.yaml`` (every table of the app's
    schema, at ``location``), ``<into>/byod.toml`` and the functions directory's
    ``.byodignore``; refuse to overwrite an existing project. Returns what was written."""

    from engine.bundle.functions import IGNORE_FILE, read_functions
    from engine.commands.version_files import write_faithful_version
    from engine.convex.schema_eval import export_schema_file
    from engine.schema.convex_export import render_version_file, schema_from_export
    from engine.schema.models import Location

    app, into = Path(app_dir), Path(into)
    functions = _functions_dir(app)
    schema_ts = functions / "schema.ts"
    if not schema_ts.is_file():
        raise VersionError(f"{schema_ts}: no Convex schema here; give the directory of a "
                           "Convex app (with convex/schema.ts)")
    config = into / "byod.toml"
    versions = into / "schema_versions"
    if config.exists():
        raise VersionError(f"{config} already exists: this is a byod project already")
    if versions.is_dir() and any(versions.glob("*.yaml")):
        raise VersionError(f"{versions} already holds version files")
    try:
        where = Location(location)
    except ValueError:
        raise VersionError(f"location {location!r} is not `user` or `main`") from None

    schema = schema_from_export(export_schema_file(schema_ts, toolchain), where)
    text = render_version_file(schema, description=description or
                               f"Initial schema, from {schema_ts.name} of the existing app.")
    versions.mkdir(parents=True, exist_ok=True)
    path = versions / VERSION_FILE
    written = write_faithful_version(path, text, schema,
                                     f"could not write {schema_ts} faithfully as {path}")

    ignore = functions / IGNORE_FILE
    wrote_ignore = not ignore.exists()
    if wrote_ignore:
        ignore.write_text("# Left out of every byod bundle: the bundle renders its own schema "
                          "(from the version\n# file) and auth config (from byod.toml).\n"
                          + "".join(f"{name}\n" for name in IGNORED), encoding="utf-8")
    config.write_text(
        "# Written by `byod init`; see docs/operator-guide.md for every setting.\n"
        "[byod]\n"
        f"versions_dir = {_toml_path(versions, into)}\n"
        f"functions_dir = {_toml_path(functions, into)}\n", encoding="utf-8")
    modules = read_functions(functions).paths
    return {"version": written.id, "file": path.as_posix(), "config": config.as_posix(),
            "functions_dir": functions.as_posix(), "ignore_file": ignore.as_posix(),
            "ignore_written": wrote_ignore, "modules": modules,
            "tables": {name: t.location.value for name, t in schema.tables.items()}}
