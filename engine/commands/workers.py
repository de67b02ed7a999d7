"""The ``worker`` verb: one worker process on the rollouts open for workers
(``engine.fleet.workers``), stopped cleanly by SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.commands.workspace import Workspace
from engine.ports.deployment import close_quietly

if TYPE_CHECKING:
    from engine.events import Sink
    from engine.fleet.workers import WorkerOptions, WorkerReport

__all__ = ["worker"]


def worker(ws: Workspace, options: "WorkerOptions | None" = None, *,
           emit: "Sink | None" = None, log: Callable[[str], None] | None = None,
           stop_on_signals: bool = True, **option_kwargs: Any) -> "WorkerReport":
    """Claim and work deployments of the rollouts open for workers (``rollout_id=``: that
    one only) until they end (``exit_when_idle``) or the process is told to stop:
    SIGTERM/SIGINT stop claiming, let in-flight deployments finish for ``grace_s`` and give
    the rest back. Each deployer kind the rollouts ask for gets its own connector."""

    from engine.fleet.workers import Worker, WorkerOptions

    if options is None:
        options = WorkerOptions(**option_kwargs)
    elif option_kwargs:
        raise TypeError("give WorkerOptions or keyword options, not both")
    opened: dict[str, Workspace] = {}

    def connector_for(kind: str) -> Any:
        if kind not in opened:
            opened[kind] = ws.with_deployer(kind)  # type: ignore[arg-type]
        return opened[kind].connector

    runner = Worker(store=ws.store, vault=ws.vault, config=ws.config,
                    versions=list(ws.graph.versions.values()), connector_for=connector_for,
                    options=options, emit=emit or (lambda _e: None),
                    log=log or (lambda _m: None))

    async def main() -> "WorkerReport":
        loop = asyncio.get_running_loop()
        handled = []
        if stop_on_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, runner.stop)
                    handled.append(sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass  # not the main thread, or no signals here
        try:
            return await runner.run()
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(main())
    finally:
        for other in opened.values():
            if other is not ws:  # its connector only: the store is the workspace's
                close_quietly(other.connector)
