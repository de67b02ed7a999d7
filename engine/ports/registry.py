"""The registry's narrow persistence surface.

Everything the engine remembers about the fleet goes through ``RegistryStore``, which is
the sum of small role protocols: ``UserStore`` (per-user deployment configuration,
credentials only ever as ciphertext), ``JournalStore`` (the per-step migration journal),
``LeaseStore`` (one runner per deployment), ``AuditLog``, ``RolloutStore`` (the fleet
runner's rollout documents) and ``ProgressStore`` (a user's resumable copy progress).
Code that needs one role takes that role, so a fake or an alternative backend only has to
provide what is used. ``AlertStore`` (webhook alerts kept until acknowledged) stands outside
the union: health finds it with ``isinstance`` and without it sends each alert once.
``engine.registry.sqlite.SqliteStore`` is the embedded default; a server database can
stand behind the same protocols.

Status vocabularies follow the reference design (``userDatabaseConfig`` and
``byodMigrations``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Protocol, get_args, runtime_checkable

from engine.errors import RegistryError

__all__ = [
    "AlertStore",
    "AuditEntry",
    "AuditLog",
    "ConnectionStatus",
    "DeploymentStatus",
    "JournalEntry",
    "JournalStatus",
    "JournalStore",
    "Lease",
    "LeaseAdmin",
    "LeaseStore",
    "PendingAlert",
    "ProgressKind",
    "ProgressStore",
    "RegistryStore",
    "RolloutClaims",
    "RolloutRow",
    "RolloutStore",
    "UserConfig",
    "UserStore",
    "CONNECTION_TRANSITIONS",
    "MAX_USER_ID_LENGTH",
    "JOURNAL_TRANSITIONS",
    "PROGRESS_KINDS",
    "check_progress_kind",
    "check_user_id",
    "deployment_changes",
]

MAX_USER_ID_LENGTH = 256


def check_user_id(user_id: object) -> None:
    """Refuse a user id that cannot be a registry key: empty, longer than
    ``MAX_USER_ID_LENGTH``, or holding a newline, a control or another unprintable character.
    The message shows the id with ``repr`` (control characters escaped, never raw)."""

    if not isinstance(user_id, str) or not user_id:
        raise RegistryError("a user id is required")
    if len(user_id) > MAX_USER_ID_LENGTH:
        raise RegistryError(f"user id is {len(user_id)} characters long; at most "
                            f"{MAX_USER_ID_LENGTH} are allowed")
    if not user_id.isprintable():
        bad = next(c for c in user_id if not c.isprintable())
        raise RegistryError(f"user id {user_id!r} contains an unprintable character "
                            f"({bad!r}: newlines and control characters are not allowed)")


ConnectionStatus = Literal["pending", "connected", "error", "disconnected"]
DeploymentStatus = Literal["not_started", "deploying", "deployed", "failed"]
JournalStatus = Literal["pending", "running", "completed", "failed", "skipped"]
# Which resumable copy a progress document belongs to: a disconnect's migrate/delete, or
# connect's copy of the user's content from main.
ProgressKind = Literal["disconnect", "copy_from_main"]
PROGRESS_KINDS: tuple[ProgressKind, ...] = ("disconnect", "copy_from_main")

# Allowed connection-status moves; anything else is an InvalidTransition.
CONNECTION_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"pending", "connected", "error", "disconnected"}),
    "connected": frozenset({"connected", "error", "disconnected", "pending"}),
    "error": frozenset({"error", "connected", "disconnected", "pending"}),
    "disconnected": frozenset({"disconnected", "pending"}),
}
JOURNAL_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"running", "skipped"}),
    "running": frozenset({"running", "completed", "failed"}),
    "failed": frozenset({"running", "skipped"}),
    "completed": frozenset(),
    "skipped": frozenset(),
}


def check_progress_kind(kind: str) -> ProgressKind:
    """``kind`` when it names a progress document, else a ``RegistryError`` listing them."""

    if kind not in PROGRESS_KINDS:
        raise RegistryError(f"unknown progress kind {kind!r}; "
                            f"expected one of {', '.join(PROGRESS_KINDS)}")
    return kind


def deployment_changes(status: str | None, progress: str | None, version: str | None,
                       fingerprint: str | None) -> dict[str, str]:
    """The columns a ``set_deployment`` call changes (None leaves one as it is); a
    ``RegistryError`` for a status outside ``DeploymentStatus``. Every store checks the
    same way before it writes."""

    if status is not None and status not in get_args(DeploymentStatus):
        raise RegistryError(f"invalid deployment status {status!r}")
    return {k: v for k, v in (("deployment_status", status), ("deployment_progress", progress),
                              ("schema_version", version), ("schema_fingerprint", fingerprint))
            if v is not None}


@dataclass(frozen=True)
class UserConfig:
    """One user's BYOD row, as status reads return it: never any plaintext secret.

    ``url_ct`` / ``key_ct`` are vault ciphertext envelopes (opaque strings); only
    ``engine.vault`` turns them back into a ``DeploymentTarget`` for an adapter.
    """

    user_id: str
    connection_status: ConnectionStatus = "pending"
    deployment_status: DeploymentStatus = "not_started"
    deployment_progress: str | None = None
    schema_version: str | None = None
    schema_fingerprint: str | None = None
    last_connection_test: float | None = None
    connection_error: str | None = None  # sanitized
    entitled: bool = False
    url_ct: str = field(default="", repr=False)
    key_ct: str = field(default="", repr=False)
    created_at: float = 0.0
    updated_at: float = 0.0

    def public_dict(self) -> dict[str, Any]:
        """Everything but the credentials."""

        return {
            "user_id": self.user_id,
            "connection_status": self.connection_status,
            "deployment_status": self.deployment_status,
            "deployment_progress": self.deployment_progress,
            "schema_version": self.schema_version,
            "schema_fingerprint": self.schema_fingerprint,
            "last_connection_test": self.last_connection_test,
            "connection_error": self.connection_error,
            "entitled": self.entitled,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class JournalEntry:
    """One step of one user's migration plan (reference: ``byodMigrations``)."""

    user_id: str
    plan_id: str
    step_id: str
    seq: int
    kind: str
    status: JournalStatus = "pending"
    version: str | None = None
    cursor: str | None = None
    processed: int = 0
    attempts: int = 0
    error: str | None = None  # sanitized
    fingerprint: str | None = None
    started_at: float | None = None
    completed_at: float | None = None
    created_at: float = 0.0


@dataclass(frozen=True)
class Lease:
    """One lease: what it covers (a user's deployment, or ``rollout:<id>``), who holds it
    and until when; the holder's process (host, pid, start time) when the store records
    it, so a provably dead holder's lease can be taken over at once."""

    deployment: str
    holder: str
    expires_at: float
    acquired_at: float | None = None
    renewed_at: float | None = None
    host: str | None = None
    pid: int | None = None
    pid_started: float | None = None
    pid_namespace: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    at: float
    user_id: str
    event: str
    detail: dict[str, Any]


@runtime_checkable
class UserStore(Protocol):
    """Per-user BYOD rows: credentials (ciphertext only) and the two statuses. Everything
    that routes, connects or checks one user needs only this."""

    def get_user(self, user_id: str) -> UserConfig: ...  # UnknownUser if absent

    def find_user(self, user_id: str) -> UserConfig | None: ...

    def list_users(self, *, connection_status: Iterable[str] | None = None) -> list[UserConfig]: ...

    def upsert_credentials(self, user_id: str, *, url_ct: str, key_ct: str) -> UserConfig: ...

    def set_connection_status(
        self, user_id: str, status: ConnectionStatus, *, error: str | None = None,
        tested_at: float | None = None,
    ) -> UserConfig: ...  # InvalidTransition on a disallowed move

    def set_deployment(
        self, user_id: str, *, status: DeploymentStatus | None = None,
        progress: str | None = None, version: str | None = None,
        fingerprint: str | None = None,
    ) -> UserConfig: ...

    def set_entitled(self, user_id: str, entitled: bool) -> UserConfig: ...

    def replace_ciphertexts(self, user_id: str, *, url_ct: str, key_ct: str,
                            expect_url_ct: str, expect_key_ct: str) -> bool: ...
    # compare-and-swap for key rotation: False when the row changed meanwhile


@runtime_checkable
class JournalStore(Protocol):
    """The per-step migration journal, so an interrupted plan resumes at the step (and
    cursor) where it stopped instead of starting over."""

    def journal_plan(self, entries: list[JournalEntry]) -> None: ...  # idempotent per (user, plan, step)

    def journal(self, user_id: str, plan_id: str | None = None) -> list[JournalEntry]: ...

    def journal_update(
        self, user_id: str, plan_id: str, step_id: str, *, status: JournalStatus | None = None,
        cursor: str | None = None, processed: int | None = None, error: str | None = None,
        bump_attempts: bool = False,
    ) -> JournalEntry: ...


@runtime_checkable
class LeaseStore(Protocol):
    """Expiring leases, so at most one runner works a deployment at a time and a crashed
    runner's claim lapses on its own."""

    def acquire_lease(self, deployment: str, holder: str, ttl_s: float) -> Lease: ...  # LeaseHeld

    def renew_lease(self, deployment: str, holder: str, ttl_s: float) -> Lease: ...  # LeaseHeld if lost

    def release_lease(self, deployment: str, holder: str) -> None: ...


@runtime_checkable
class LeaseAdmin(Protocol):
    """What an operator needs to see and end leases (``byod leases``): every lease with
    its holder process, and breaking one (audited). Apart from ``LeaseStore`` so runners
    and fakes only provide what they use."""

    def list_leases(self) -> list[Lease]: ...  # expired ones too, ordered by key

    def break_lease(self, deployment: str, *, reason: str = "") -> Lease | None: ...


@runtime_checkable
class AuditLog(Protocol):
    """An append-only record of state changes, so an operator can tell what happened to a
    user after the fact (details are redacted before they are stored)."""

    def audit(self, user_id: str, event: str, detail: dict[str, Any] | None = None) -> None: ...

    def audit_log(self, user_id: str | None = None, limit: int = 100) -> list[AuditEntry]: ...


@dataclass(frozen=True)
class RolloutRow:
    """One deployment of a rollout as stored: its place in the rollout's order
    (``position``), its status and the rest of its row (``data``: wave, before, action and
    the latest outcome)."""

    rollout_id: str
    user_id: str
    position: int
    status: str
    data: dict[str, Any]
    updated_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The row as the rollout document holds it under ``deployments``."""

        return {**self.data, "user_id": self.user_id, "status": self.status}


@runtime_checkable
class RolloutStore(Protocol):
    """The fleet runner's own state, so ``--resume ID`` picks a halted rollout up and
    ``--list`` shows recent ones. Rollouts only: a user's copy progress lives in
    ``ProgressStore``.

    A rollout is a header (target, waves, budget, options, status) plus one row per
    deployment, kept apart so that saving one deployment's outcome writes that row and the
    summary counts only (``save_deployment_row``): the cost is the same at 100 deployments
    and at 100k. ``load_rollout`` assembles the whole document (``deployments``: user id →
    row; each wave's ``deployments`` in order) for the readers that need every row;
    ``save_rollout`` takes such a document and stores its rows apart (a document without
    ``deployments`` is kept as it is). ``list_rollouts`` returns headers with ``counts``
    per status, never the rows. Records written before rows were kept apart still load,
    list and resume; the first header or row saved for one moves its rows out."""

    def save_rollout(self, rollout_id: str, data: dict[str, Any]) -> None: ...
    # the whole record: header and every row (rows absent from it are dropped)

    def save_rollout_header(self, rollout_id: str, header: dict[str, Any]) -> None: ...
    # the header only (a ``deployments`` key is refused); rows and counts are kept

    def save_deployment_row(self, rollout_id: str, user_id: str, status: str,
                            data: dict[str, Any]) -> None: ...
    # one row and its summary count, in one transaction; RegistryError for no such rollout

    def load_rollout(self, rollout_id: str) -> dict[str, Any] | None: ...

    def rollout_rows(self, rollout_id: str, *, statuses: Iterable[str] | None = None,
                     after: int = -1, limit: int | None = None) -> list[RolloutRow]: ...
    # in rollout order, from the row after position ``after``; pass the last row's
    # position to read the next page

    def rollout_row(self, rollout_id: str, user_id: str) -> RolloutRow | None: ...

    def rollout_counts(self, rollout_id: str) -> dict[str, int]: ...  # status → rows

    def list_rollouts(self, limit: int = 20) -> list[dict[str, Any]]: ...  # newest first


@runtime_checkable
class RolloutClaims(Protocol):
    """Rows of a rollout claimed by worker processes (``byod worker``), each held by one
    worker at a time under a deadline its heartbeat renews. The rollout's rules are decided
    by the store, in one transaction, for every worker at once: claims honour the waves
    (only the lowest wave with unfinished rows) and the global concurrency (rows with a live
    claim), and finishing a row decides the failure budget, the canary rule and completion.
    An expired claim is taken over by the next claimer; a holder that lost a row can neither
    renew nor finish it. A role of its own, outside ``RegistryStore``: a store without it
    cannot host workers (rollouts then run in one process)."""

    def claim_rows(self, rollout_id: str, holder: str, *, limit: int,
                   ttl_s: float) -> list[Any]: ...
    # ``Claim`` records (user_id, wave, position, data, taken_from); [] when none

    def renew_claims(self, rollout_id: str, holder: str, user_ids: Iterable[str], *,
                     ttl_s: float) -> set[str]: ...  # the rows still held

    def finish_claim(self, rollout_id: str, holder: str, user_id: str, status: str,
                     data: dict[str, Any]) -> Any: ...
    # a ``FinishResult``: written (False: the row was no longer held), the rollout's status

    def release_claims(self, rollout_id: str, holder: str,
                       user_ids: Iterable[str] | None = None) -> int: ...

    def rollout_status(self, rollout_id: str) -> str | None: ...

    def open_worker_rollouts(self, limit: int = 50) -> list[str]: ...

    def reopen_for_workers(self, rollout_id: str) -> int: ...


@runtime_checkable
class ProgressStore(Protocol):
    """One user's resumable data-copy progress (per-table cursors, the old→new id map),
    one JSON document per (kind, user), saved after every page so a crash resumes where
    it stopped. Kept apart from rollouts: it is per user and never listed with them."""

    def save_progress(self, kind: ProgressKind, user_id: str, doc: dict[str, Any]) -> None: ...

    def load_progress(self, kind: ProgressKind, user_id: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class PendingAlert:
    """One alert on one delivery channel (``webhook`` or ``email``) kept until the receiver
    acknowledges it (``payload`` is the JSON body, already redacted; ``next_at`` is when the
    next delivery attempt is due)."""

    id: int
    event: str
    payload: dict[str, Any]
    created_at: float
    attempts: int = 0
    next_at: float = 0.0
    last_error: str | None = None
    delivered_at: float | None = None
    channel: str = "webhook"


@runtime_checkable
class AlertStore(Protocol):
    """Alerts that must not be lost: stored when detected (one row per delivery channel),
    delivered (on this and later monitor runs, across restarts) until the channel
    acknowledges them — the webhook answers 2xx, the SMTP server accepts the message. Each
    channel is its own queue, in order. A role of its own, outside ``RegistryStore``: a
    store without it gets one delivery attempt per alert."""

    def enqueue_alert(self, event: str, payload: dict[str, Any],
                      channel: str = "webhook") -> PendingAlert: ...

    def pending_alerts(self, limit: int = 100,
                       channel: str | None = None) -> list[PendingAlert]: ...
    # oldest first; every channel when ``channel`` is None

    def claim_alert(self, alert_id: int, *, attempts: int, until: float) -> bool: ...
    # one delivery round: False when another process took it since it was read

    def alert_attempted(self, alert_id: int, *, delivered: bool, error: str | None = None,
                        next_at: float | None = None) -> None: ...


@runtime_checkable
class RegistryStore(UserStore, JournalStore, LeaseStore, AuditLog, RolloutStore, ProgressStore,
                    Protocol):
    """Every role at once: what the flows that touch several roles (connect, rollout,
    disconnect, health) take, and what ``SqliteStore`` implements. A function that needs
    one role should ask for that role only."""

    def close(self) -> None: ...
