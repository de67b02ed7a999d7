"""Verbs over the whole fleet: roll out, check health, monitor, reconcile.
Each takes a ``Workspace`` and returns the flow's report; printing is the CLI's."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.commands.workspace import Workspace

if TYPE_CHECKING:
    from engine.events import Sink
    from engine.fleet.reconcile import ReconcileReport
    from engine.fleet.rollout import RolloutOptions, RolloutReport
    from engine.lifecycle.health import HealthReport

__all__ = ["health", "list_rollouts", "monitor", "reconcile", "rollout", "write_reports"]

Users = Iterable[str] | str


def health(ws: Workspace, users: Users = "all", *, concurrency: int = 16,
           timeout: float = 10.0) -> "HealthReport":
    """Check deployments concurrently; move them connected ↔ error; alert on transitions."""

    from engine.lifecycle.health import check

    return check(users, store=ws.store, vault=ws.vault, config=ws.config, graph=ws.graph,
                 concurrency=concurrency, timeout=timeout, connector=ws.connector)


def monitor(ws: Workspace, interval: float, *, max_runs: int | None = None,
            concurrency: int = 16, timeout: float = 10.0,
            on_report: Callable[["HealthReport"], None] | None = None,
            on_standby: Callable[[str | None], None] | None = None) -> list["HealthReport"]:
    """``health`` every ``interval`` seconds, each run bounded by the interval, in one
    process per registry (another stands by: ``on_standby(holder)``)."""

    from engine.lifecycle.health import monitor as loop

    return loop(interval, max_runs=max_runs, store=ws.store, vault=ws.vault, config=ws.config,
                graph=ws.graph, concurrency=concurrency, timeout=timeout, on_report=on_report,
                on_standby=on_standby, connector=ws.connector)


def reconcile(ws: Workspace, users: Users = "all", *, apply: bool = False,
              concurrency: int = 16, timeout: float = 10.0) -> "ReconcileReport":
    """Compare the registry with each deployment's own record; ``apply`` rebuilds what
    can be trusted (drift is never fixed)."""

    from engine.fleet.reconcile import reconcile as flow

    return flow(users, store=ws.store, vault=ws.vault, config=ws.config, graph=ws.graph,
                apply=apply, concurrency=concurrency, timeout=timeout, connector=ws.connector)


def rollout(ws: Workspace, target: str | None, options: "RolloutOptions | None" = None, *,
            resume: str | None = None, emit: "Sink | None" = None,
            for_workers: bool = False, **option_kwargs: Any) -> "RolloutReport":
    """Roll every connected deployment out to ``target`` (or resume one with
    ``resume=ID``): canary, waves, failure budget; see ``engine.fleet.rollout``.

    ``options`` is a ``RolloutOptions``, or keyword options build one (``canary=``,
    ``waves=``, ``only=``/``exclude=`` user ids, ...; the deployer defaults to the
    workspace's). A resumed rollout runs with
    the options it was saved with (only ``dry_run`` is taken from these), and its deploys go
    through a connector for the deployer it was started with. ``for_workers`` saves the
    rollout open for ``worker`` processes (or, with ``resume``, opens a halted one again)
    and returns without working it."""

    from engine.fleet.rollout import RolloutOptions, load_state
    from engine.fleet.rollout import rollout as flow

    if options is None:
        if ws.deployer in ("push", "cli"):
            option_kwargs.setdefault("deployer", ws.deployer)
        options = RolloutOptions(**option_kwargs)
    elif option_kwargs:
        options = options.replace(**option_kwargs)
    deployer = load_state(ws.store, resume).options.deployer if resume else options.deployer
    ws = ws.with_deployer(deployer)
    return flow(target, store=ws.store, vault=None if options.dry_run else ws.vault,
                config=ws.config, versions=list(ws.graph.versions.values()), options=options,
                resume=resume, connector=ws.connector, emit=emit or (lambda _e: None),
                for_workers=for_workers)


def list_rollouts(ws: Workspace, *, limit: int = 50) -> list[dict[str, Any]]:
    """Recent rollouts, newest first (id, target, state, counts, last update), among the
    ``limit`` newest records; an absent registry has none (and none is created)."""

    if not ws.registry_exists():
        return []
    from engine.fleet.rollout import summarize_rollouts

    return summarize_rollouts(ws.store, limit=limit)


def write_reports(ws: Workspace, report: "RolloutReport",
                  directory: Path | None = None) -> tuple[Path, Path]:
    """The JSON and HTML reports of a rollout (default: ``reports/`` beside the registry).

    The first run of a rollout writes ``<rollout id>.json`` / ``.html``; its Nth resume
    (``report.resumed``) ``<rollout id>.r<N>.json`` / ``.html``, linked to the report of the
    run before it, so a resume never replaces an earlier report."""

    from engine.config import state_dir
    from engine.fleet.report import write_reports as write

    return write(report, directory or state_dir(ws.config) / "reports")
