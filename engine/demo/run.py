"""``byod demo``: the whole product on the embedded default, on loopback only.

1. a fresh demo directory with a SQLite registry and an encryption key (a 0600 file there,
   never printed) — or, with ``registry="convex:main"`` (``byod demo --registry
   convex:main``), the registry kept on the demo's main deployment, whose main bundle is
   then deployed first;
2. local Convex-compatible deployments: one per user plus the app's main deployment;
3. main gets the head version's *main* bundle (every table + the migrate-back functions);
4. each user connects at version 1 and gets realistic content (``engine.demo.seed``);
5. a rollout brings every user to the head, with progress;
6. a health check of the fleet;
7. one user disconnects with ``migrate``: content copied to main, verified;
8. the rollout report (JSON + HTML) and a demo summary (JSON + HTML) are written;
9. the deployments are stopped — or, with ``serve`` (``byod demo --serve``), first kept
   running while the caller serves the settings pages and the dashboard over the demo's
   registry (the service lives a layer above: the CLI composes it and passes it in).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from engine import commands
from engine.assets import example_versions_dir
from engine.bundle.compiler import compile_bundle, templates_dir
from engine.commands.workspace import Workspace
from engine.config import EngineConfig
from engine.convex.connector import HttpConnector
from engine.errors import ByodError
from engine.ports.deployment import Connector, DeploymentTarget, close_quietly
from engine.render import RolloutProgress, render_table
from engine.schema.models import SchemaVersion

if TYPE_CHECKING:
    from engine.fleet.rollout import RolloutReport
    from engine.lifecycle.disconnect import DisconnectReport
    from engine.lifecycle.health import HealthReport
    from engine.local.launcher import LocalDeployment

__all__ = ["DemoResult", "DemoServe", "REGISTRIES", "deploy_main", "run_demo"]

Echo = Callable[[str], None]


@dataclass
class DemoResult:
    directory: Path
    users: list[str]
    rollout: dict[str, Any] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    disconnect: dict[str, Any] = field(default_factory=dict)
    seeded: dict[str, dict[str, int]] = field(default_factory=dict)
    fleet: list[dict[str, Any]] = field(default_factory=list)
    reports: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    ok: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "users": self.users, "ok": self.ok,
                "duration_s": round(self.duration_s, 1), "seeded": self.seeded,
                "fleet": self.fleet, "rollout": self.rollout, "health": self.health,
                "disconnect": self.disconnect, "reports": self.reports}


@dataclass(frozen=True)
class DemoServe:
    """What a ``serve`` callback of ``run_demo`` gets while the deployments still run: the
    demo's workspace (registry, vault, versions), the main deployment, the demo's result
    (its users) and where to print."""

    ws: Workspace
    main_target: DeploymentTarget
    result: DemoResult
    echo: Echo


def default_versions_dir(config: EngineConfig) -> Path:
    """``schema_versions`` from the config, else the engine's example versions."""

    if config.versions_dir.is_dir():
        return config.versions_dir
    return example_versions_dir()


def fresh_dir(base: Path | None) -> Path:
    """``base`` when given (must be empty or absent), else ``.byod/demo/<timestamp>``."""

    if base is None:
        base = Path(".byod") / "demo" / time.strftime("%Y%m%d-%H%M%S")
        n = 1
        while base.exists():
            base = base.with_name(f"{base.name.split('.')[0]}.{n}")
            n += 1
    if base.exists() and any(base.iterdir()):
        raise ByodError(f"demo directory {base} is not empty; pass a new --dir or remove it")
    base.mkdir(parents=True, exist_ok=True)
    return base.resolve()


def write_key(directory: Path) -> str:
    """A new encryption key in ``<dir>/encryption.key`` (0600); the hex is returned to
    the caller and never printed."""

    from engine.vault import generate_key

    key = generate_key()
    path = directory / "encryption.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key


def deploy_main(target: DeploymentTarget, version: SchemaVersion, config: EngineConfig, *,
                connector: Connector | None = None) -> str:
    """Deploy ``version``'s main bundle to the main deployment and record it there."""

    bundle = compile_bundle(version.schema, version_id=version.id, config=config,
                            target="main")
    adapter = (connector or HttpConnector(config)).deployer(target)
    try:
        adapter.deploy(bundle)
        adapter.mutation("byod:recordVersion", {"version": version.id,
                                                "fingerprint": bundle.fingerprint,
                                                "kind": "version"})
    finally:
        close_quietly(adapter)
    return bundle.fingerprint


def _color() -> bool:
    return not os.environ.get("NO_COLOR")


def _progress(echo: Echo) -> RolloutProgress:
    """The rollout's events as short lines (no secrets: events carry none); the canary's
    steps are shown, the rest summed up."""

    return RolloutProgress(echo, steps=True, indent="  ", color=_color())


def _table(rows: list[list[str]], echo: Echo) -> None:
    """``rows[0]`` is the header row."""

    render_table(rows[0], rows[1:], echo=echo, color=_color(), indent=2)


REGISTRIES = ("sqlite", "convex:main")
"""Where the demo keeps its registry: a SQLite file in the demo directory (the default), or
the demo's main deployment (``BYOD_REGISTRY=convex:main``)."""


def run_demo(directory: Path | None = None, users: int = 4, *, echo: Echo = print,
             config: EngineConfig | None = None,
             serve: Callable[[DemoServe], None] | None = None,
             registry: str = "sqlite") -> DemoResult:
    """Run the demo (see the module docstring); the deployments are always stopped. With
    ``serve``, it is called once the demo is done and its reports are written, while the
    deployments still run; they stop when it returns (or raises). ``registry``: one of
    ``REGISTRIES``."""

    from engine.local.launcher import LocalFleet
    from engine.plan.graph import VersionGraph
    from engine.schema.loader import load_versions
    from engine.vault import Vault

    if not 1 <= users <= 50:
        raise ByodError("--users must be between 1 and 50")
    if registry not in REGISTRIES:
        raise ByodError(f"--registry must be one of {', '.join(REGISTRIES)}, not {registry!r}")
    on_main = registry == "convex:main"
    if on_main and serve is not None:
        raise ByodError("--serve needs the service's tables (tokens, jobs), which the registry "
                        "on main does not keep: run the demo with the SQLite registry")
    started = time.monotonic()
    base = config or EngineConfig()
    versions_dir = default_versions_dir(base)
    work = fresh_dir(directory)
    config = base.model_copy(update={
        "registry_path": "convex:main" if on_main else work / "registry.sqlite3",
        "versions_dir": versions_dir})
    result = DemoResult(directory=work, users=[f"user_{i + 1}" for i in range(users)])
    echo(f"byod demo in {work}")

    graph = VersionGraph(load_versions(versions_dir, config))
    v1, head = graph.resolve(1), graph.resolve("head")
    echo(f"  {len(graph.versions)} schema versions in {versions_dir.name}/: "
         f"{v1.id} … {head.id} (head)")
    vault = Vault.from_hex(write_key(work))

    echo(f"\n1. starting {users + 1} local deployments (main + {users} users)")
    fleet = LocalFleet.start(users + 1, work / "fleet", timeout=120)
    connector = HttpConnector(config)
    ws: Workspace | None = None
    try:
        ws = _workspace(config, vault, graph, connector, fleet.deployments[0], head,
                        on_main, echo)
        main_target = _run(result, ws, fleet.deployments, v1, head, echo,
                           main_deployed=on_main)
        if serve is not None:
            _finish(result, work, config, started, echo, serving=True)
            serve(DemoServe(ws=ws, main_target=main_target, result=result, echo=echo))
    finally:
        fleet.stop()
        if ws is not None:
            ws.close()
        close_quietly(connector)
        echo("\ndeployments stopped.")
    if serve is None:
        _finish(result, work, config, started, echo, serving=False)
    return result


def _workspace(config: EngineConfig, vault: Any, graph: Any, connector: Connector,
               main_dep: "LocalDeployment", head: SchemaVersion, on_main: bool,
               echo: Echo) -> Workspace:
    """The demo's workspace over its registry: the SQLite file in the demo directory, or
    the registry's tables on main (the main bundle, which declares them, deployed first)."""

    if not on_main:
        from engine.registry.sqlite import SqliteStore

        store: Any = SqliteStore(config.registry_path)
        echo("  registry: registry.sqlite3, encryption key: encryption.key (0600, not shown)")
    else:
        from engine.registry.convex_main import ConvexMainStore

        target = DeploymentTarget(label="main", url=main_dep.url, admin_key=main_dep.admin_key,
                                  allow_insecure_local=True)
        echo(f"  deploying {head.id} to main first: the registry lives there (convex:main)")
        deploy_main(target, head, config, connector=connector)
        store = ConvexMainStore(connector.client(target))
        store.ping()
        echo("  registry: the byodReg* tables of the main deployment; encryption key: "
             "encryption.key (0600, not shown; main only ever holds ciphertexts)")
    return Workspace.open(config, store=store, vault=vault, graph=graph)


def _finish(result: DemoResult, work: Path, config: EngineConfig, started: float,
            echo: Echo, *, serving: bool) -> None:
    """The summary and its closing lines; without ``serving``, where the settings page and
    the dashboard can be served from."""

    result.duration_s = time.monotonic() - started
    _write_summary(result, work)
    echo(f"reports: {result.reports.get('demo_html')}")
    echo(f"         {result.reports.get('rollout_html')}")
    echo(f"done in {result.duration_s:.0f} s: "
         + ("everything verified." if result.ok else "SOMETHING FAILED, see above."))
    if str(config.registry_path) == "convex:main":
        echo("the registry was kept on the demo's main deployment (convex:main), stopped "
             "with it; the reports above hold what it recorded")
    else:
        echo(f"look around with: export BYOD_REGISTRY={config.registry_path} "
             f"BYOD_ENCRYPTION_KEY=$(cat {work / 'encryption.key'}); byod status")
    if not serving and str(config.registry_path) != "convex:main":
        base = f"http://{config.serve.host}:{config.serve.port}"
        echo(f"settings page and dashboard: `byod demo --serve` runs the demo and keeps "
             f"serving it at {base}/ui/settings (users) and {base}/admin (operators) "
             "until Ctrl-C")


def _run(result: DemoResult, ws: Workspace, deployments: list[LocalDeployment],
         v1: SchemaVersion, head: SchemaVersion, echo: Echo, *,
         main_deployed: bool = False) -> DeploymentTarget:
    """Steps 2-7 through the commands door, as an app or an operator would run them;
    returns the main deployment."""

    main_dep, *user_deps = deployments
    main_target = DeploymentTarget(label="main", url=main_dep.url,
                                   admin_key=main_dep.admin_key, allow_insecure_local=True)
    if main_deployed:
        echo(f"\n2. {head.id} is on main already (all tables + migrate-back functions)")
    else:
        echo(f"\n2. deploying {head.id} to main (all tables + migrate-back functions)")
        deploy_main(main_target, head, ws.config, connector=ws.connector)
    _connect_and_seed(result, ws, user_deps, v1, echo)
    report = _roll_out(result, ws, head, len(user_deps), echo)
    health = _check_health(result, ws, echo)
    on_head = [u for u in result.users if ws.store.get_user(u).schema_version == head.id]
    if not on_head:
        echo(f"\n6. skipped: no user reached {head.id}, so none can migrate back to main")
        result.fleet = [ws.store.get_user(uid).public_dict() for uid in result.users]
        return main_target
    outcome, after = _disconnect_one(result, ws, on_head[0], main_target, echo)
    result.fleet = [ws.store.get_user(uid).public_dict() for uid in result.users]
    result.ok = (report.ok and health.ok and outcome.verified
                 and outcome.status == "disconnected" and after == "main")
    return main_target


def _connect_and_seed(result: DemoResult, ws: Workspace, user_deps: list[LocalDeployment],
                      v1: SchemaVersion, echo: Echo) -> None:
    from engine.demo.seed import seed_user

    echo(f"\n3. connecting {len(user_deps)} users at {v1.id} and seeding their content")
    for uid, dep in zip(result.users, user_deps):
        commands.connect(ws, uid, dep.url, dep.admin_key, version=v1.id,
                         allow_insecure_local=True)
        client = ws.connector.client(ws.vault.target_for(ws.store.get_user(uid)))
        try:
            result.seeded[uid] = seed_user(client, uid)
        finally:
            close_quietly(client)
        echo(f"  {uid}: connected at {v1.id}, {sum(result.seeded[uid].values())} documents "
             f"in {len(result.seeded[uid])} tables")


def _roll_out(result: DemoResult, ws: Workspace, head: SchemaVersion, users: int,
              echo: Echo) -> "RolloutReport":
    from engine.fleet.rollout import RolloutOptions

    echo(f"\n4. rolling every user out to {head.id}")
    options = RolloutOptions(concurrency=min(4, users), canary=1, waves=("100%",))
    with _progress(echo) as progress:
        report = commands.rollout(ws, head.id, options, emit=progress)
    json_path, html_path = commands.write_reports(ws, report, result.directory / "reports")
    result.rollout = {"id": report.rollout_id, "status": report.status,
                      "counts": report.counts, "duration_s": round(report.duration_s, 1)}
    result.reports.update(rollout_json=str(json_path), rollout_html=str(html_path))
    echo(f"  rollout {report.status}: {report.counts}")
    return report


def _check_health(result: DemoResult, ws: Workspace, echo: Echo) -> "HealthReport":
    echo("\n5. health check")
    health = commands.health(ws, concurrency=8, timeout=5.0)
    result.health = health.to_dict()
    rows = [["user", "state", "version", "latency"]]
    rows += [[r.user_id, r.state, r.version or "-",
              f"{r.latency_ms:.0f} ms" if r.latency_ms is not None else "-"]
             for r in health.results]
    _table(rows, echo)
    return health


def _disconnect_one(result: DemoResult, ws: Workspace, leaving: str,
                    main_target: DeploymentTarget, echo: Echo
                    ) -> tuple["DisconnectReport", str]:
    echo(f"\n6. {leaving} disconnects and takes their data back to main (migrate)")
    main_client = ws.connector.client(main_target)
    router = commands.router(ws, main_client)
    try:
        before = router.route(leaving, "messages").destination
        outcome = commands.disconnect(ws, leaving, "migrate", main_client=main_client,
                                      router=router)
        after = router.route(leaving, "messages").destination
    finally:
        router.close()
        close_quietly(main_client)
    result.disconnect = {**outcome.to_dict(), "routing_before": before, "routing_after": after}
    rows = [["table", "source", "on main", "checksum", "verified"]]
    rows += [[name, str(t["source_count"]), str(t["main_count"]), t["checksum"],
              "yes" if t["verified"] else "NO"]
             for name, t in outcome.tables.items() if t["source_count"]]
    _table(rows, echo)
    empty = sum(1 for t in outcome.tables.values() if not t["source_count"])
    echo(f"  ({empty} empty tables verified too; {outcome.patched} references patched in a "
         f"second pass; routing for {leaving}: {before} → {after})")
    return outcome, after


def _write_summary(result: DemoResult, directory: Path) -> None:
    reports = directory / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    json_path, html_path = reports / "demo.json", reports / "demo.html"
    result.reports.update(demo_json=str(json_path), demo_html=str(html_path))
    data = result.to_dict()
    json_path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    rollout_name = Path(result.reports.get("rollout_html", "")).name
    html = env.get_template("demo.html.j2").render(
        demo=data, rollout_href=rollout_name,
        generated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    html_path.write_text(html)
