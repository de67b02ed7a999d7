"""Typed events the runner and the rollout emit instead of printing.

Every transition of a rollout is one frozen event. The CLI renders them as a progress bar or
plain lines, the report is built from the outcomes they describe, and tests assert on them.
A sink is any callable taking an ``Event``; sinks must not raise (a failing renderer must
never fail a migration), so ``emit_safely`` swallows and counts sink errors.

Events carry only safe values: user ids, version ids, step ids, counts and already-redacted
error text — never a URL or a key.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar, Iterable

__all__ = [
    "BatchResized",
    "BudgetExhausted",
    "CursorReset",
    "DeploymentDone",
    "DeploymentFailed",
    "DeploymentReconciled",
    "DeploymentSkipped",
    "DeploymentStarted",
    "Event",
    "EventLog",
    "PageDone",
    "RolloutFinished",
    "RolloutStarted",
    "Sink",
    "StepCompleted",
    "StepFailed",
    "StepSkipped",
    "StepStarted",
    "WaveFinished",
    "WaveStarted",
    "emit_safely",
    "fan_out",
    "null_sink",
]


def _now() -> float:
    return time.time()


@dataclass(frozen=True)
class Event:
    """Base of every event: ``name`` is a stable snake_case tag for JSON and filters."""

    name: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["event"] = self.name
        return data


# -- rollout level ---------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutStarted(Event):
    name: ClassVar[str] = "rollout_started"
    rollout_id: str
    target: str
    total: int
    waves: tuple[int, ...]  # sizes, canary first
    concurrency: int
    max_failures: int
    dry_run: bool = False
    resumed: bool = False
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class WaveStarted(Event):
    name: ClassVar[str] = "wave_started"
    rollout_id: str
    wave: str  # "canary", "10%", ...
    index: int
    deployments: tuple[str, ...]
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class WaveFinished(Event):
    name: ClassVar[str] = "wave_finished"
    rollout_id: str
    wave: str
    index: int
    succeeded: int
    failed: int
    skipped: int
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class BudgetExhausted(Event):
    name: ClassVar[str] = "budget_exhausted"
    rollout_id: str
    failures: int
    max_failures: int
    untouched: int
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class RolloutFinished(Event):
    name: ClassVar[str] = "rollout_finished"
    rollout_id: str
    status: str  # completed | halted | failed | dry_run
    counts: tuple[tuple[str, int], ...]
    duration_s: float
    at: float = field(default_factory=_now)


# -- deployment level ------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentStarted(Event):
    name: ClassVar[str] = "deployment_started"
    user_id: str
    plan_id: str
    source: str
    target: str
    steps: int
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class DeploymentReconciled(Event):
    """The registry disagreed with the deployment's own record; the record won."""

    name: ClassVar[str] = "deployment_reconciled"
    user_id: str
    registry_version: str | None
    actual_version: str
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class DeploymentDone(Event):
    name: ClassVar[str] = "deployment_done"
    user_id: str
    source: str
    target: str
    deploys: int
    duration_s: float
    already: bool = False
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class DeploymentFailed(Event):
    name: ClassVar[str] = "deployment_failed"
    user_id: str
    error_type: str
    error_kind: str
    error: str  # redacted
    duration_s: float
    step_id: str | None = None
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class DeploymentSkipped(Event):
    name: ClassVar[str] = "deployment_skipped"
    user_id: str
    reason: str
    at: float = field(default_factory=_now)


# -- step level ------------------------------------------------------------------------


@dataclass(frozen=True)
class StepStarted(Event):
    name: ClassVar[str] = "step_started"
    user_id: str
    plan_id: str
    step_id: str
    kind: str
    attempt: int = 1
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class StepSkipped(Event):
    """Already completed according to the journal (a resumed plan)."""

    name: ClassVar[str] = "step_skipped"
    user_id: str
    plan_id: str
    step_id: str
    kind: str
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class PageDone(Event):
    name: ClassVar[str] = "page_done"
    user_id: str
    step_id: str
    page: int
    processed: int
    changed: int
    batch_size: int
    total_processed: int
    done: bool
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class BatchResized(Event):
    name: ClassVar[str] = "batch_resized"
    user_id: str
    step_id: str
    old: int
    new: int
    reason: str
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class CursorReset(Event):
    """A journaled cursor was refused as invalid; the (idempotent) step restarts."""

    name: ClassVar[str] = "cursor_reset"
    user_id: str
    step_id: str
    reason: str
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class StepCompleted(Event):
    name: ClassVar[str] = "step_completed"
    user_id: str
    plan_id: str
    step_id: str
    kind: str
    duration_s: float
    at: float = field(default_factory=_now)


@dataclass(frozen=True)
class StepFailed(Event):
    name: ClassVar[str] = "step_failed"
    user_id: str
    plan_id: str
    step_id: str
    kind: str
    error_type: str
    error: str  # redacted
    at: float = field(default_factory=_now)


# -- sinks -----------------------------------------------------------------------------

Sink = Callable[[Event], None]


def null_sink(event: Event) -> None:
    """Discard events."""


def fan_out(*sinks: Sink | None) -> Sink:
    """One sink that forwards to several (``None`` entries ignored)."""

    live = [s for s in sinks if s is not None]

    def _sink(event: Event) -> None:
        for sink in live:
            emit_safely(sink, event)

    return _sink


def emit_safely(sink: Sink, event: Event) -> None:
    """Call ``sink``; a broken renderer must never break a migration."""

    try:
        sink(event)
    except Exception:  # noqa: BLE001 - deliberately isolating sinks
        EventLog.sink_errors += 1


class EventLog:
    """A list sink that keeps every event (tests, reports)."""

    sink_errors: ClassVar[int] = 0

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, *types: type[Event]) -> list[Event]:
        return [e for e in self.events if isinstance(e, types)]

    def names(self) -> list[str]:
        return [e.name for e in self.events]

    def for_user(self, user_id: str) -> list[Event]:
        return [e for e in self.events if getattr(e, "user_id", None) == user_id]

    def extend(self, events: Iterable[Event]) -> None:
        self.events.extend(events)
