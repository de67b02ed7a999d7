"""Verbs for maintainers and CI: check, build, diff, plan, graph, deploy one version.
Each takes a ``Workspace`` and returns data; printing is the CLI's."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from engine.commands.workspace import Workspace
from engine.errors import DeployFailed, PlanError, Problem, VersionFileError

if TYPE_CHECKING:
    from engine.bundle.compiler import Bundle, BundleTarget
    from engine.bundle.write import ArchiveFormat
    from engine.plan.diff import Diff
    from engine.plan.planner import FleetPlan, Plan
    from engine.ports.deployment import DeploymentTarget
    from engine.schema.models import SchemaVersion

__all__ = ["CheckResult", "build", "check", "deploy", "diff", "graph", "plan", "plan_fleet",
           "version_counts"]


@dataclass(frozen=True)
class CheckResult:
    """The versions that loaded (none when loading failed) and every problem found.

    ``problems`` are the ones to report; ``acknowledged`` are the warnings a version file
    acknowledged in its ``lint`` key (kept, counted, never printed as warnings and never
    failing ``--strict``), each with the reason the file gives."""

    versions: tuple["SchemaVersion", ...]
    problems: tuple[Problem, ...]
    acknowledged: tuple[tuple[Problem, str], ...] = ()

    @property
    def errors(self) -> int:
        return sum(p.severity == "error" for p in self.problems)

    @property
    def warnings(self) -> int:
        return len(self.problems) - self.errors

    def failed(self, strict: bool = False) -> bool:
        return self.errors > 0 or (strict and self.warnings > 0)


def _acknowledge(versions: Iterable["SchemaVersion"], problems: Iterable[Problem],
                 ) -> tuple[list[Problem], list[tuple[Problem, str]]]:
    """Split ``problems`` into those to report and the warnings their version file
    acknowledges (``lint: {acknowledge: {code: reason}}``), with the reason."""

    reasons = {v.source.path: v.lint.acknowledge for v in versions
               if v.source is not None and v.lint.acknowledge}
    shown: list[Problem] = []
    acknowledged: list[tuple[Problem, str]] = []
    for p in problems:
        reason = reasons.get(p.file, {}).get(p.code) if p.severity == "warning" else None
        if reason is None:
            shown.append(p)
        else:
            acknowledged.append((p, reason))
    return shown, acknowledged


def check(ws: Workspace, *, deep: bool = False) -> CheckResult:
    """Load and validate every version file; with ``deep``, also type-check every bundle
    and compare it with the real convex export (needs the npm toolchain). Loading problems
    stop the rules, which need whole versions; offline errors skip the deep check. Warnings
    a version file acknowledges are moved to ``CheckResult.acknowledged``."""

    from engine.check.rules import check_versions
    from engine.schema.loader import load_versions

    try:
        versions = load_versions(ws.config.versions_dir, ws.config)
    except VersionFileError as exc:
        return CheckResult((), tuple(exc.problems))
    from engine.bundle.functions import check_functions

    problems = list(check_versions(versions, ws.config))
    problems += check_functions(ws.config.functions_dir, [v.id for v in versions])
    if not any(p.severity == "error" for p in problems):
        problems += _main_bundle_problems(versions, ws)
    from engine.commands.released import released_problems

    problems += released_problems(ws.config.versions_dir, versions)
    if deep and versions and not any(p.severity == "error" for p in problems):
        from engine.check.deep import deep_check

        problems += list(deep_check(versions, ws.config) or [])
    shown, acknowledged = _acknowledge(versions, problems)
    return CheckResult(tuple(versions), tuple(shown), tuple(acknowledged))


def _main_bundle_problems(versions: Iterable["SchemaVersion"], ws: Workspace) -> list[Problem]:
    """What would stop a version's main bundle (``byod deploy VERSION --target main``)
    from compiling where its user bundle compiles: a table named like one the engine keeps
    on main only (``byodImports``). Pure, without rendering (``check`` stays light);
    ``check --deep`` compiles and type-checks every main bundle."""

    from engine.schema.main_tables import MAIN_ENGINE_TABLE_NAMES

    problems = []
    for version in versions:
        for name in sorted(set(version.schema.tables) & MAIN_ENGINE_TABLE_NAMES):
            problems.append(Problem(
                file=version.source.path if version.source else version.id, line=None,
                location=f"tables.{name}", code="compile-main",
                message=f"table name {name!r} is used by the engine on the main deployment, "
                        f"so the main bundle of version {version.id} cannot hold it",
                hint="rename the table (`byod deploy VERSION --target main` deploys every "
                     "table to main)"))
    return problems


def _compile(schema_version: "SchemaVersion", ws: Workspace,
             bundle_target: "BundleTarget") -> "Bundle":
    from engine.bundle.compiler import compile_main, compile_version

    if bundle_target == "main":
        return compile_main(schema_version, ws.config)
    if bundle_target != "user":
        raise PlanError(f"bundle target must be 'user' or 'main', not {bundle_target!r}")
    return compile_version(schema_version, ws.config)


def build(ws: Workspace, version: str | None, out: Path, *,
          archive: "ArchiveFormat | None" = None,
          bundle_target: "BundleTarget" = "user") -> list[dict[str, Any]]:
    """Compile ``version`` (None: every version, each into ``out/<id>``) and write the
    bundle directory (and an archive beside it); one summary per bundle.
    ``bundle_target="main"`` builds the main deployment's bundle instead of a user's."""

    from engine.bundle.write import write_archive, write_bundle

    graph = ws.graph
    chosen = list(graph.versions.values()) if version is None else [graph.resolve(version)]
    results = []
    for schema_version in sorted(chosen, key=lambda v: (v.number, v.id)):
        bundle = _compile(schema_version, ws, bundle_target)
        target = out / schema_version.id if version is None else out
        write_bundle(bundle, target)
        entry: dict[str, Any] = {"version": bundle.version_id, "kind": bundle.kind,
                                 "target": bundle_target,
                                 "fingerprint": bundle.fingerprint, "out": str(target),
                                 "files": len(bundle.files)}
        if archive:
            suffix = ".tar.gz" if archive == "tar.gz" else ".zip"
            entry["archive"] = str(write_archive(bundle, target.with_name(target.name + suffix),
                                                 archive))
        results.append(entry)
    return results


def diff(ws: Workspace, a: str, b: str) -> tuple[str, str, "Diff", str]:
    """(source id, target id, diff, how hints were chosen). Going up, ``b``'s hints (minus
    those ``a`` already ran) and consent apply; otherwise the raw schema diff is shown."""

    from engine.plan.diff import diff as compare
    from engine.plan.planner import edge_hints
    from engine.schema.models import Location

    graph = ws.graph
    va, vb = graph.resolve(a), graph.resolve(b)
    if va.id == vb.id or graph.is_ancestor(va.id, vb.id):
        d = compare(va.schema, vb.schema, edge_hints(graph, va.id, vb.id), vb.consent,
                    location=Location.USER)
        how = f"hints and consent from {vb.id}"
    else:
        d = compare(va.schema, vb.schema, location=Location.USER)
        how = (f"{vb.id} does not descend from {va.id}: no hints apply; "
               f"`byod plan --from {va.id} --to {vb.id}` says whether a path exists")
    return va.id, vb.id, d, how


def plan(ws: Workspace, source: str, target: str = "head", *,
         allow_destructive: bool = False) -> "Plan":
    """The steps that bring one deployment from ``source`` to ``target``."""

    from engine.plan.planner import plan as make_plan

    return make_plan(ws.graph, source, target, allow_destructive=allow_destructive)


def plan_fleet(ws: Workspace, fleet: Iterable[tuple[Any, ...]], target: str = "head", *,
               allow_destructive: bool = False) -> "FleetPlan":
    """Plans for many deployments ((deployment, version[, fingerprint]) rows), each
    distinct source planned once."""

    from engine.plan.planner import plan_fleet as make_fleet_plan

    return make_fleet_plan(ws.graph, list(fleet), target, allow_destructive=allow_destructive)


def version_counts(ws: Workspace, registry: Path | str | None = None) -> dict[str, int] | None:
    """Deployments per schema version, from ``registry`` (a SQLite path, an error when
    missing, or a server location such as a ``postgresql://`` URL) or the configured
    registry when that file exists (None when it does not)."""

    from engine.config import is_registry_url
    from engine.registry.open import open_store

    if registry is None and is_registry_url(ws.config.registry_path):
        return _counts(ws.store.list_users())  # a server registry: the server answers
    if registry is not None and (is_registry_url(str(registry)) or "://" in str(registry)):
        # a URL is no path (and may carry a password): ``open_store`` opens it or says,
        # without the URL, which locations it supports
        with open_store(str(registry)) as server:
            return _counts(server.list_users())
    path = Path(registry) if registry is not None else Path(ws.config.registry_path)
    if not path.is_file():
        if registry is not None:
            raise PlanError(f"registry {path} does not exist")
        return None
    with open_store(path) as store:
        return _counts(store.list_users())


def _counts(users: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for user in users:
        if user.schema_version:
            counts[user.schema_version] = counts.get(user.schema_version, 0) + 1
    return counts


def graph(ws: Workspace, fmt: str = "mermaid", counts: dict[str, int] | None = None) -> str:
    """The version graph as Mermaid or DOT, heads marked, deployment counts when given."""

    from engine.plan.render import render_graph

    return render_graph(ws.graph, fmt, counts)


def deploy(ws: Workspace, version: str, target: "DeploymentTarget", *,
           record: bool = True, bundle_target: "BundleTarget" = "user") -> dict[str, Any]:
    """Compile ``version``, deploy it with the workspace's deployer, verify the deployment
    answers it, and record it in the deployment's own ``byodVersions``; a summary.
    ``bundle_target="main"`` deploys the main bundle (every table and the ``byodMain:*``
    functions a migrate-disconnect and a copy from main need) to the main deployment."""

    from engine.ports.deployment import close_quietly

    bundle: Bundle = _compile(ws.graph.resolve(version), ws, bundle_target)
    started = time.monotonic()
    adapter = ws.connector.deployer(target)
    try:
        result = adapter.deploy(bundle)
        info = adapter.read_version()
        if info.version != bundle.version_id or info.fingerprint != bundle.fingerprint:
            error = DeployFailed(
                f"the deploy finished but the deployment answers {info.version} "
                f"(fingerprint {info.fingerprint[:12]}) instead of {bundle.version_id}",
                deployment=target.label)
            error.kind = "verify"
            raise error
        if record:
            adapter.mutation("byod:recordVersion", {
                "version": bundle.version_id, "fingerprint": bundle.fingerprint,
                "kind": "version"})
    finally:
        close_quietly(adapter)
    return {
        "deployment": target.label, "version": bundle.version_id, "kind": bundle.kind,
        "target": bundle_target, "fingerprint": bundle.fingerprint, "deploy_s": round(result.duration_s, 3),
        "duration_s": round(time.monotonic() - started, 3), "verified": True,
        "recorded": record,
    }
