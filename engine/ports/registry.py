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
from typing import Any, Iterable, Literal, Protocol, runtime_checkable

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
    "RolloutStore",
    "UserConfig",
    "UserStore",
    "CONNECTION_TRANSITIONS",
    "MAX_USER_ID_LENGTH",
    "JOURNAL_TRANSITIONS",
    "PROGRESS_KINDS",
    "check_user_id",
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


@runtime_checkable
class RolloutStore(Protocol):
    """The fleet runner's own state: one JSON document per rollout, so ``--resume ID``
    picks a halted rollout up and ``--list`` shows recent ones. Rollouts only: a user's
    copy progress lives in ``ProgressStore``."""

    def save_rollout(self, rollout_id: str, data: dict[str, Any]) -> None: ...

    def load_rollout(self, rollout_id: str) -> dict[str, Any] | None: ...

    def list_rollouts(self, limit: int = 20) -> list[dict[str, Any]]: ...  # newest first


@runtime_checkable
class ProgressStore(Protocol):
    """One user's resumable data-copy progress (per-table cursors, the old→new id map),
    one JSON document per (kind, user), saved after every page so a crash resumes where
    it stopped. Kept apart from rollouts: it is per user and never listed with them."""

    def save_progress(self, kind: ProgressKind, user_id: str, doc: dict[str, Any]) -> None: ...

    def load_progress(self, kind: ProgressKind, user_id: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class PendingAlert:
    """One webhook alert kept until the receiver acknowledges it (``payload`` is the JSON
    body, already redacted; ``next_at`` is when the next delivery attempt is due)."""

    id: int
    event: str
    payload: dict[str, Any]
    created_at: float
    attempts: int = 0
    next_at: float = 0.0
    last_error: str | None = None
    delivered_at: float | None = None


@runtime_checkable
class AlertStore(Protocol):
    """Webhook alerts that must not be lost: stored when detected, delivered (on this and
    later monitor runs, across restarts) until the webhook answers 2xx. A role of its own,
    outside ``RegistryStore``: a store without it gets one delivery attempt per alert."""

    def enqueue_alert(self, event: str, payload: dict[str, Any]) -> PendingAlert: ...

    def pending_alerts(self, limit: int = 100) -> list[PendingAlert]: ...  # oldest first

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
