"""``byod worker``: work the rollouts saved open for workers (``byod rollout --for-workers``)
beside any number of other workers, on this machine or others sharing the registry.

A thin click wrapper over ``engine.commands.worker``: one plain line per thing the worker
does (which deployments it took, took over, finished, stopped), a summary at the end.
SIGTERM or Ctrl-C stop it cleanly (exit 0).
"""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["commands"]


@click.command("worker")
@click.option("--rollout", "rollout_id", default=None, metavar="ID",
              help="Work this rollout only, and exit when it ends (default: every rollout "
              "open for workers).")
@click.option("--slots", type=click.IntRange(min=1), default=4, show_default=True,
              help="Deployments this worker runs at once (the rollout's --concurrency "
              "bounds all workers together).")
@click.option("--exit-when-idle", is_flag=True,
              help="Exit once no rollout is open for workers (default: wait for the next).")
@click.option("--grace", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds in-flight deployments may finish after SIGTERM/Ctrl-C; the "
              "rest are given back to the other workers.")
@click.option("--versions", "versions_dir", type=click.Path(path_type=Path), default=None,
              help="Schema versions directory (default from the config).")
def worker_cmd(rollout_id: str | None, slots: int, exit_when_idle: bool, grace: float,
               versions_dir: Path | None) -> None:
    """Claim and work deployments of rollouts open for workers, beside other workers."""

    from engine.cli import output
    from engine.commands.workers import worker
    from engine.commands.workspace import Workspace
    from engine.fleet.workers import WorkerOptions

    options = WorkerOptions(rollout_id=rollout_id, slots=slots, exit_when_idle=exit_when_idle,
                            grace_s=grace)
    with Workspace.open().with_versions_dir(versions_dir) as ws:
        _ = ws.graph  # the versions load (and fail) before anything is claimed
        _ = ws.vault  # no key: fail before anything is claimed
        report = worker(ws, options, log=output.info)
    counts: dict[str, int] = {}
    for status in report.finished.values():
        counts[status] = counts.get(status, 0) + 1
    done = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing finished"
    click.echo(f"worker {report.worker}: {len(report.took)} taken "
               f"({len(report.took_over)} taken over), {done}, {len(report.lost)} lost, "
               f"{report.released} released; {report.stopped}")


commands: list[click.Command] = [worker_cmd]
