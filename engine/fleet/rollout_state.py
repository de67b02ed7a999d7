"""A rollout's options, saved state and report, typed.

``RolloutOptions`` is what the operator asked for (canary, waves, concurrency, failure
budget, page size, deployer, ...), validated when it is built. ``RolloutState`` is the
record the registry keeps per rollout: its header (target, waves, budget, options, status:
``header_json``, saved with ``RolloutStore.save_rollout_header`` when it changes) and one
``DeploymentRow`` per deployment (each saved alone with ``save_deployment_row`` when its
outcome changes, so saving progress does not grow with the fleet). ``to_json`` /
``from_json`` are the whole document in the shape the registry has always held, so
records written before these types existed still load, and ``--resume`` runs with exactly
the options the rollout was started with.
``RolloutReport`` is what one run did (or, dry, would do): the JSON and HTML reports.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence, cast, get_args

from engine.errors import RolloutError
from engine.fleet.context import DeploymentOutcome
from engine.fleet.waves import parse_budget, parse_waves
from engine.ports.registry import RolloutStore

__all__ = [
    "DEPLOYERS",
    "Deployer",
    "DeploymentRow",
    "RolloutOptions",
    "RolloutReport",
    "RolloutState",
    "WORKERS_MODE",
    "Wave",
    "load_state",
]

Deployer = Literal["push", "cli"]
DEPLOYERS: tuple[Deployer, ...] = get_args(Deployer)
DONE = ("succeeded", "already")
"""Row statuses a resumed rollout does not redo."""
WORKERS_MODE = "workers"
"""A rollout's ``mode`` when ``byod worker`` processes work it (its status ``open`` while
they may claim rows, then ``completed`` or ``halted``); a rollout one process runs has none."""


@dataclass(frozen=True)
class RolloutOptions:
    """How to roll out. ``waves`` are cumulative percentages or counts (a comma-separated
    string is accepted); ``max_failures`` a count or a percentage of the fleet;
    ``max_batch`` caps documents per data-step page (None: sized from the schema);
    ``deployer`` ``push`` captures each distinct bundle once and pushes it over HTTP,
    ``cli`` runs the Convex CLI per deploy; ``deploy_slots`` bounds concurrent CLI deploys
    (None: one per CPU); ``only`` limits the rollout to the named users, ``exclude``
    leaves the named users out (not both). Everything but ``dry_run`` is saved with the
    rollout."""

    canary: int = 1
    waves: Sequence[str] = ("10%", "50%", "100%")
    concurrency: int = 8
    max_failures: str | int = "10%"
    dry_run: bool = False
    max_batch: int | None = None
    deployer: Deployer = "push"
    allow_destructive: bool = False
    lease_ttl_s: float = 120.0
    deploy_slots: int | None = None
    only: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("only", "exclude"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = (value,)
            set_(self, name, tuple(dict.fromkeys(str(u).strip() for u in value
                                                 if str(u).strip())))
        if self.only and self.exclude:
            raise RolloutError("choose users with only or leave some out with exclude, "
                               "not both")
        set_(self, "waves", parse_waves(self.waves))
        parse_budget(self.max_failures, 100)
        set_(self, "max_failures", str(self.max_failures))
        if self.deployer not in DEPLOYERS:
            raise RolloutError(f"the deployer must be 'push' or 'cli', not {self.deployer!r}")
        for name, value, least in (("canary", self.canary, 0),
                                   ("concurrency", self.concurrency, 1),
                                   ("max_batch", self.max_batch, 1),
                                   ("deploy_slots", self.deploy_slots, 1)):
            if value is not None and (not isinstance(value, int) or value < least):
                raise RolloutError(f"{name} must be a whole number of at least {least}, "
                                   f"not {value!r}")
        if not self.lease_ttl_s > 0:
            raise RolloutError(f"lease_ttl_s must be positive, not {self.lease_ttl_s!r}")

    def replace(self, **changes: Any) -> "RolloutOptions":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {"canary": self.canary, "waves": list(self.waves),
                "concurrency": self.concurrency, "max_failures": str(self.max_failures),
                "max_batch": self.max_batch, "deployer": self.deployer,
                "allow_destructive": self.allow_destructive, "lease_ttl_s": self.lease_ttl_s,
                "deploy_slots": self.deploy_slots, "only": list(self.only),
                "exclude": list(self.exclude)}

    @classmethod
    def from_json(cls, data: dict[str, Any], *, dry_run: bool = False) -> "RolloutOptions":
        """The saved options; what a record written before an option existed lacks takes
        its default (a rollout once run with custom adapters resumes with ``cli``)."""

        default = cls()
        get = data.get
        deployer = get("deployer")
        return cls(
            canary=int(get("canary", default.canary)),
            waves=tuple(get("waves") or default.waves),
            concurrency=int(get("concurrency", default.concurrency)),
            max_failures=str(get("max_failures", default.max_failures)),
            dry_run=dry_run,
            max_batch=_int_or_none(get("max_batch")),
            deployer=cast(Deployer, deployer) if deployer in DEPLOYERS else "cli",
            allow_destructive=bool(get("allow_destructive", False)),
            lease_ttl_s=float(get("lease_ttl_s") or default.lease_ttl_s),
            deploy_slots=_int_or_none(get("deploy_slots")),
            only=tuple(get("only") or ()),
            exclude=tuple(get("exclude") or ()))


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass
class Wave:
    name: str  # "canary", a wave spec such as "10%", or "rest"
    deployments: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "deployments": list(self.deployments)}


_ROW_FIELDS = ("user_id", "status", "before", "wave", "action")


@dataclass
class DeploymentRow:
    """One deployment of a rollout: where it started, its wave, whether it migrates or
    only refreshes a stale bundle, and its latest outcome (``status`` plus the rest of the
    runner's ``DeploymentOutcome``: after, plan, deploys, pages, error, ...)."""

    user_id: str
    wave: str
    before: str | None = None
    status: str = "pending"
    action: str = "migrate"  # migrate | refresh
    outcome: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status in DONE

    def record(self, outcome: DeploymentOutcome) -> None:
        """Take a run's outcome (its fields win, as they always have in the record)."""

        data = outcome.to_dict()
        self.status = str(data.pop("status"))
        self.before = data.pop("before")
        data.pop("user_id", None)
        self.outcome.update(data)
        if outcome.refresh:
            self.action = "refresh"

    def to_json(self) -> dict[str, Any]:
        return {**self.outcome, "user_id": self.user_id, "status": self.status,
                "before": self.before, "wave": self.wave, "action": self.action}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DeploymentRow":
        return cls(user_id=str(data["user_id"]), wave=str(data.get("wave", "")),
                   before=data.get("before"), status=str(data.get("status", "pending")),
                   action=str(data.get("action") or "migrate"),
                   outcome={k: v for k, v in data.items() if k not in _ROW_FIELDS})


_HEADER_ONLY = ("counts",)  # what list_rollouts adds to a header; never saved back


@dataclass
class RolloutState:
    """What the registry keeps about one rollout: the header, saved when it changes, and a
    row per deployment, saved when that deployment's outcome changes."""

    rollout_id: str
    target: str
    options: RolloutOptions
    max_failures: int  # the budget as a count of the fleet it was started with
    waves: list[Wave]
    deployments: dict[str, DeploymentRow]
    created_at: float
    status: str = "running"  # running | completed | halted; for workers also open
    resumed: int = 0
    halted_reason: str | None = None
    updated_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know
    mode: str | None = None  # WORKERS_MODE: worked by `byod worker` processes

    def to_json(self) -> dict[str, Any]:
        """The whole record: the header with each wave's members, and every row."""

        return {**self.header_json(), "waves": [w.to_json() for w in self.waves],
                "deployments": {u: r.to_json() for u, r in self.deployments.items()}}

    def header_json(self) -> dict[str, Any]:
        """The header alone, each wave by its size (its members are the rows, in order):
        what is saved when the status, options or resume count change; its size does not
        grow with the fleet."""

        mode = {"mode": self.mode} if self.mode else {}
        return {**self.extra, **mode, "rollout_id": self.rollout_id, "target": self.target,
                "status": self.status, "created_at": self.created_at,
                "max_failures": self.max_failures, "options": self.options.to_json(),
                "waves": [{"name": w.name, "size": len(w.deployments)} for w in self.waves],
                "resumed": self.resumed, "halted_reason": self.halted_reason,
                "updated_at": self.updated_at}

    @classmethod
    def from_json(cls, data: dict[str, Any], *, rollout_id: str | None = None,
                  dry_run: bool = False) -> "RolloutState":
        known = ("rollout_id", "target", "status", "created_at", "max_failures", "options",
                 "waves", "deployments", "resumed", "halted_reason", "updated_at", "mode")
        rows = data.get("deployments") or {}
        return cls(
            rollout_id=str(data.get("rollout_id") or rollout_id),
            target=str(data["target"]),
            options=RolloutOptions.from_json(data.get("options") or {}, dry_run=dry_run),
            max_failures=int(data.get("max_failures") or 0),
            waves=[Wave(str(w["name"]), list(w["deployments"]))
                   for w in data.get("waves") or []],
            deployments={str(u): DeploymentRow.from_json({"user_id": u, **r})
                         for u, r in rows.items()},
            created_at=float(data.get("created_at") or 0.0),
            status=str(data.get("status") or "running"),
            resumed=int(data.get("resumed") or 0),
            halted_reason=data.get("halted_reason"),
            updated_at=data.get("updated_at"),
            extra={k: v for k, v in data.items() if k not in known and k not in _HEADER_ONLY},
            mode=str(data["mode"]) if data.get("mode") else None)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.deployments.values():
            out[row.status] = out.get(row.status, 0) + 1
        return dict(sorted(out.items()))


@dataclass
class RolloutReport:
    """Everything a rollout did (or, dry, would do): the source of the JSON and HTML."""

    rollout_id: str
    target: str
    status: str  # completed | halted | failed | dry_run
    options: dict[str, Any]
    waves: list[dict[str, Any]]
    rows: list[dict[str, Any]]  # one per deployment (outcome dict or the planned step)
    plans: dict[str, Any] = field(default_factory=dict)  # source → plan dict
    plan_errors: dict[str, Any] = field(default_factory=dict)
    refresh: dict[str, Any] = field(default_factory=dict)  # the refresh plan, if any
    graph: dict[str, Any] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0
    max_failures: int = 0
    halted_reason: str | None = None
    resumed: int = 0  # which run of the rollout this was: 0 the first, N its Nth resume

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.rows:
            out[row["status"]] = out.get(row["status"], 0) + 1
        return dict(sorted(out.items()))

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)

    @property
    def ok(self) -> bool:
        return self.status in ("completed", "dry_run") and self.failed == 0

    @property
    def duration_s(self) -> float:
        return max(0.0, self.finished_at - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rollout_id": self.rollout_id, "target": self.target, "status": self.status,
            "ok": self.ok, "halted_reason": self.halted_reason, "options": self.options,
            "started_at": self.started_at, "finished_at": self.finished_at,
            "duration_s": round(self.duration_s, 3), "counts": self.counts,
            "max_failures": self.max_failures, "waves": self.waves,
            "deployments": self.rows, "plans": self.plans, "plan_errors": self.plan_errors,
            "refresh": self.refresh, "graph": self.graph,
        }


def load_state(store: RolloutStore, rollout_id: str, *, dry_run: bool = False) -> RolloutState:
    """The saved rollout ``rollout_id``; ``RolloutError`` when the registry has none."""

    data = store.load_rollout(rollout_id)
    if data is None:
        raise RolloutError(f"no rollout {rollout_id!r} in the registry; "
                           "see `byod rollout --list`")
    return RolloutState.from_json(data, rollout_id=rollout_id, dry_run=dry_run)
