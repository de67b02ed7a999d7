"""Schema version → deployable Convex bundle (a set of text files and a fingerprint).

Pure: no writes, no subprocesses (``bundle_io`` writes bundles; ``deepcheck`` runs the real
toolchain over them). The only read is of the jinja2 templates in ``templates/bundle``.

A bundle deploys to a *user's* deployment, so it holds only the user-located tables of the
schema plus the engine's own tables (``deployed_schema``). Its ``fingerprint`` is a sha256
over everything that defines behaviour on the deployment (schema, functions, data steps,
auth config, pinned packages), and over nothing that merely names the bundle: the version
id, kind and fingerprint live in ``convex/byodVersion.ts``, which — like the manifest and
the README — is left out of the hash. Two versions with the same schema therefore share a
fingerprint, and editing a description never changes one.

A user bundle also carries the app's own functions (``engine.bundle.functions`` says which)
as modules beside the engine's, with a ``convex/_generated/`` of this version's data model
and typed builders, so the app's modules import ``./_generated/server`` as in any Convex
project and nothing runs ``convex codegen``. Their text is in the fingerprint: changing
them redeploys the version.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from typing import Any, Iterable, Literal, Sequence

import jinja2

from engine.bundle.functions import AppFunctions, functions_for, reserved_module_problem
from engine.bundle.templating import code_environment, templates_dir
from engine.bundle.tsrender import render_table, ts_key, ts_string
from engine.config import EngineConfig
from engine.errors import CompileError
from engine.ports.bundle import Bundle
from engine.schema.engine_tables import ENGINE_TABLES
from engine.schema.main_tables import MAIN_ENGINE_TABLES
from engine.schema.models import Location, Schema, SchemaVersion

__all__ = [
    "BUNDLE_FORMAT",
    "Bundle",
    "ENGINE_FUNCTIONS",
    "STEP_FUNCTIONS",
    "MAIN_FUNCTIONS",
    "REGISTRY_FUNCTIONS",
    "MANIFEST_FILE",
    "UNHASHED_FILES",
    "VERSION_FILE",
    "BundleTarget",
    "compile_bundle",
    "compile_main",
    "compile_version",
    "deployed_schema",
    "templates_dir",
]

BUNDLE_FORMAT = 1
BundleTarget = Literal["user", "main"]
"""Where a bundle deploys: a user's own deployment, or the app's main deployment."""
VERSION_FILE = "convex/byodVersion.ts"
MANIFEST_FILE = "byod-manifest.json"
README_FILE = "README.md"
MIGRATIONS_FILE = "convex/byodMigrations.ts"
UNHASHED_FILES = frozenset({VERSION_FILE, MANIFEST_FILE, README_FILE})
"""Files that name the bundle rather than define its behaviour (not in the fingerprint)."""

ENGINE_FUNCTIONS: dict[str, str] = {
    "byod:version": "query",
    "byod:ping": "query",
    "byod:recordVersion": "internalMutation",
    "byod:recordStep": "internalMutation",
    "byod:appliedSteps": "internalQuery",
    "byod:exportPage": "internalQuery",
    "byod:importPage": "internalMutation",
    "byod:deletePage": "internalMutation",
    "byod:countPage": "internalQuery",
    "byod:verify": "internalQuery",
}
"""The engine's functions in every bundle (path → kind); callers rely on these names."""

STEP_FUNCTIONS: dict[str, str] = {"byodMigrations:runSteps": "internalMutation"}
"""The engine's function in a bundle that carries data steps (besides one mutation per
step): a page of the first step named, the following ones while they fit, journaled."""

MAIN_FUNCTIONS: dict[str, str] = {
    "byodMain:importPageOnce": "internalMutation",
    "byodMain:patchPage": "internalMutation",
    "byodMain:getByIds": "internalQuery",
    "byodMain:exportOwnedPage": "internalQuery",
    "byodMain:clearReceipts": "internalMutation",
}
"""Extra engine functions of a ``target="main"`` bundle (migrate-back on disconnect, and
the per-user export of connect's copy from main)."""

REGISTRY_FUNCTIONS: dict[str, str] = {
    "byodRegistry:getUser": "internalQuery",
    "byodRegistry:listUsers": "internalQuery",
    "byodRegistry:upsertCredentials": "internalMutation",
    "byodRegistry:setConnectionStatus": "internalMutation",
    "byodRegistry:setDeployment": "internalMutation",
    "byodRegistry:setEntitled": "internalMutation",
    "byodRegistry:replaceCiphertexts": "internalMutation",
    "byodRegistry:getConfig": "query",
    "byodRegistry:journalPlan": "internalMutation",
    "byodRegistry:journal": "internalQuery",
    "byodRegistry:journalUpdate": "internalMutation",
    "byodRegistry:acquireLease": "internalMutation",
    "byodRegistry:renewLease": "internalMutation",
    "byodRegistry:releaseLease": "internalMutation",
    "byodRegistry:getLease": "internalQuery",
    "byodRegistry:listLeases": "internalQuery",
    "byodRegistry:breakLease": "internalMutation",
    "byodRegistry:audit": "internalMutation",
    "byodRegistry:auditLog": "internalQuery",
    "byodRegistry:saveProgress": "internalMutation",
    "byodRegistry:loadProgress": "internalQuery",
    "byodRegistry:enqueueAlert": "internalMutation",
    "byodRegistry:pendingAlerts": "internalQuery",
    "byodRegistry:claimAlert": "internalMutation",
    "byodRegistry:alertAttempted": "internalMutation",
    "byodRegistryRollouts:rolloutHeader": "internalQuery",
    "byodRegistryRollouts:putRolloutRows": "internalMutation",
    "byodRegistryRollouts:switchRollout": "internalMutation",
    "byodRegistryRollouts:dropRolloutRows": "internalMutation",
    "byodRegistryRollouts:dropStaleRolloutRows": "internalMutation",
    "byodRegistryRollouts:saveRolloutHeader": "internalMutation",
    "byodRegistryRollouts:saveDeploymentRow": "internalMutation",
    "byodRegistryRollouts:rolloutRows": "internalQuery",
    "byodRegistryRollouts:rolloutRow": "internalQuery",
    "byodRegistryRollouts:rolloutCounts": "internalQuery",
    "byodRegistryRollouts:listRollouts": "internalQuery",
    "byodRegistryTables:dumpPage": "internalQuery",
    "byodRegistryTables:loadRows": "internalMutation",
    "byodRegistryTables:countRows": "internalQuery",
    "byodRegistryTables:clearRows": "internalMutation",
}
"""The registry's functions on main (``BYOD_REGISTRY=convex:main``): one per store
operation, each one transaction; ``getConfig`` is the app's public status read. Every
main bundle carries them (and their tables): the registry may move to main at any time."""

MAIN_TEMPLATES: dict[str, str] = {
    "byodMain.ts.j2": "convex/byodMain.ts",
    "byodRegistry.ts.j2": "convex/byodRegistry.ts",
    "byodRegistryRollouts.ts.j2": "convex/byodRegistryRollouts.ts",
    "byodRegistryTables.ts.j2": "convex/byodRegistryTables.ts",
}

# what a bundle with app functions adds: the types `convex codegen` would write
GENERATED_TEMPLATES: dict[str, str] = {
    "_generated/dataModel.d.ts.j2": "convex/_generated/dataModel.d.ts",
    "_generated/server.d.ts.j2": "convex/_generated/server.d.ts",
    "_generated/server.js.j2": "convex/_generated/server.js",
    "_generated/api.d.ts.j2": "convex/_generated/api.d.ts",
    "_generated/api.js.j2": "convex/_generated/api.js",
}
_AUTO: Any = object()

_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")

# template name (under templates/bundle) → bundle path
_TEMPLATES: dict[str, str] = {
    "schema.ts.j2": "convex/schema.ts",
    "byod.ts.j2": "convex/byod.ts",
    "auth.config.ts.j2": "convex/auth.config.ts",
    "convex.tsconfig.json.j2": "convex/tsconfig.json",
    "package.json.j2": "package.json",
    "tsconfig.json.j2": "tsconfig.json",
}


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = code_environment(templates_dir() / "bundle")
    env.filters["ts"] = ts_string
    env.filters["key"] = ts_key
    env.filters["json"] = lambda value: json.dumps(value, ensure_ascii=True)
    return env


def _render(template: str, context: dict[str, Any]) -> str:
    try:
        text = _environment().get_template(template).render(**context)
    except jinja2.TemplateNotFound as exc:
        raise CompileError(
            f"bundle template {template!r} is missing from {templates_dir() / 'bundle'}"
        ) from exc
    return _normalize(text)


def _normalize(text: str) -> str:
    """LF line ends, no trailing spaces, exactly one final newline."""

    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).rstrip("\n") + "\n"


def _refuse_reserved(tables: Iterable[str], reserved: Iterable[str]) -> None:
    clash = sorted(set(tables) & set(reserved))
    if clash:
        raise CompileError(
            f"table name(s) {', '.join(clash)} are reserved for the engine's own tables; "
            "rename them in the version file"
        )


def deployed_schema(schema: Schema, target: Literal["user", "main"] = "user") -> Schema:
    """What a bundle deploys to a user's deployment: its user-located tables (in the
    version's order) followed by the engine's own tables.

    ``target="main"``: the app's main deployment holds every table (main-located ones,
    and the user-located ones for users without BYOD or after a migrate-back), plus the
    engine's tables and the main-only ``byodImports``."""

    if target == "main":
        reserved = {**ENGINE_TABLES, **MAIN_ENGINE_TABLES}
        _refuse_reserved(schema.tables, reserved)
        return Schema(
            tables={**schema.tables, **reserved}, schema_validation=schema.schema_validation
        )
    if target != "user":
        raise CompileError(f"bundle target must be 'user' or 'main', not {target!r}")
    user = schema.located(Location.USER)
    _refuse_reserved(user.tables, ENGINE_TABLES)
    return Schema(
        tables={**user.tables, **ENGINE_TABLES},
        schema_validation=schema.schema_validation,
    )


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _fingerprint(files: dict[str, str], step_ids: Sequence[str]) -> str:
    digest = hashlib.sha256(f"byod-bundle/{BUNDLE_FORMAT}\n".encode())
    for path in sorted(files):
        if path in UNHASHED_FILES:
            continue
        digest.update(f"file {path} {_sha256(files[path])}\n".encode())
    for step_id in step_ids:
        digest.update(f"step {step_id}\n".encode())
    return digest.hexdigest()


def _data_steps_module(data_steps: Sequence[Any]) -> tuple[str, list[str]]:
    from engine.bundle.migrations import render_data_steps_module
    ids = list(dict.fromkeys(str(step.id) for step in data_steps))
    return _normalize(render_data_steps_module(tuple(data_steps))), ids


def _app_modules(functions: AppFunctions) -> dict[str, str]:
    """The app's modules as bundle files; a name the engine's own files use is refused,
    naming the app's file."""

    problem = reserved_module_problem(functions)
    if problem is not None:
        raise CompileError(problem)
    # LF line ends only: the app's code is otherwise carried byte for byte
    return {
        f"convex/{path}": text.replace("\r\n", "\n").rstrip("\n") + "\n"
        for path, text in functions.modules
    }


def _api_modules(functions: AppFunctions) -> list[tuple[str, str, str]]:
    """(import alias, API key, import path) of each TypeScript app module, for
    ``_generated/api`` (a JavaScript module has no types to import)."""

    out = []
    for path in functions.paths:
        if not path.endswith((".ts", ".tsx")):
            continue
        stem = path.rsplit(".", 1)[0]
        alias = "module_" + re.sub(r"[^A-Za-z0-9_$]", "_", stem)
        out.append((alias, stem, f"../{stem}.js"))
    return out


def _check_arguments(kind: str, version_id: str, config: EngineConfig) -> None:
    """Refuse a bad kind, version id or Convex version before rendering anything: the id
    becomes a directory name and the version a pinned package."""

    if kind not in ("version", "widen"):
        raise CompileError(f"bundle kind must be 'version' or 'widen', not {kind!r}")
    if not version_id or any(c in version_id for c in "/\\\0\n") or version_id in (".", ".."):
        raise CompileError(f"invalid version id {version_id!r} for a bundle")
    if not _SEMVER.match(config.convex_version):
        raise CompileError(
            f"convex_version {config.convex_version!r} must be an exact version like 1.48.0"
        )


def _manifest(
    files: dict[str, str],
    *,
    version_id: str,
    kind: str,
    fingerprint: str,
    convex_version: str,
    tables: list[str],
    step_ids: list[str],
    functions: dict[str, str],
) -> dict[str, Any]:
    """The manifest of a bundle whose other files are all rendered: it lists their hashes,
    so it is built last."""

    return {
        "format": BUNDLE_FORMAT,
        "version": version_id,
        "kind": kind,
        "fingerprint": fingerprint,
        "convexVersion": convex_version,
        "tables": tables,
        "dataSteps": step_ids,
        "functions": dict(sorted(functions.items())),
        "files": {path: _sha256(files[path]) for path in sorted(files)},
    }


def compile_bundle(
    schema: Schema,
    *,
    version_id: str,
    kind: Literal["version", "widen"] = "version",
    data_steps: Sequence[Any] = (),
    config: EngineConfig,
    target: Literal["user", "main"] = "user",
    functions: AppFunctions | None = _AUTO,
) -> Bundle:
    """Render the bundle that puts ``schema`` (its user-located part) on a deployment;
    ``target="main"`` renders the app's main deployment bundle (see ``deployed_schema``).

    ``functions``: the app modules to carry; by default those ``config.functions_dir``
    gives this bundle (``functions_for``), none on the main deployment."""

    _check_arguments(kind, version_id, config)
    if functions is _AUTO:
        functions = functions_for(config.functions_dir, version_id) if target == "user" else None
    deployed = deployed_schema(schema, target)
    tables = list(deployed.tables)
    context: dict[str, Any] = {
        "tables": [(name, render_table(t, "    ")) for name, t in deployed.tables.items()],
        "table_names": tables,
        "schema_validation": deployed.schema_validation,
        "convex_version": config.convex_version,
        "auth": config.auth,
    }
    templates = {**_TEMPLATES, **MAIN_TEMPLATES} if target == "main" else _TEMPLATES
    engine_functions = (
        {**ENGINE_FUNCTIONS, **MAIN_FUNCTIONS, **REGISTRY_FUNCTIONS} if target == "main"
        else ENGINE_FUNCTIONS
    )
    files = {path: _render(tpl, context) for tpl, path in templates.items()}
    app_paths: list[str] = []
    if functions is not None and functions.modules:
        files.update(_app_modules(functions))
        app_paths = functions.paths
        context["app_modules"] = _api_modules(functions)
        files.update({path: _render(tpl, context) for tpl, path in GENERATED_TEMPLATES.items()})
    step_ids: list[str] = []
    if data_steps:
        files[MIGRATIONS_FILE], step_ids = _data_steps_module(data_steps)
        engine_functions = {**engine_functions, **STEP_FUNCTIONS}
    fingerprint = _fingerprint(files, step_ids)

    identity = {
        "version_id": version_id,
        "kind": kind,
        "fingerprint": fingerprint,
        "convex_version": config.convex_version,
        "table_names": tables,
        "data_step_ids": step_ids,
        "functions": engine_functions,
        "app_modules": app_paths,
    }
    files[VERSION_FILE] = _render("byodVersion.ts.j2", identity)
    files[README_FILE] = _render("README.md.j2", identity)
    manifest = _manifest(
        files, version_id=version_id, kind=kind, fingerprint=fingerprint,
        convex_version=config.convex_version, tables=tables, step_ids=step_ids,
        functions=engine_functions,
    )
    if app_paths:
        manifest["appModules"] = app_paths
    files[MANIFEST_FILE] = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    return Bundle(
        version_id=version_id,
        kind=kind,
        files=dict(sorted(files.items())),
        fingerprint=fingerprint,
        manifest=manifest,
    )


def compile_version(version: SchemaVersion, config: EngineConfig) -> Bundle:
    """The bundle of one schema version (kind ``version``, no data steps)."""

    return compile_bundle(version.schema, version_id=version.id, config=config)


def compile_main(version: SchemaVersion, config: EngineConfig) -> Bundle:
    """The main deployment's bundle of one schema version: every table (main- and
    user-located) plus the ``byodMain:*`` functions a migrate-disconnect and a copy from
    main call (``byod deploy VERSION --target main`` puts it there)."""

    return compile_bundle(version.schema, version_id=version.id, config=config, target="main")
