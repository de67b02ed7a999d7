"""The service's records and the registry roles it needs (``byod serve``).

``Job`` is one background job of the service (connect, retry, update, disconnect, health,
rollout): claimed by one service process at a time with an expiring claim that a heartbeat
keeps alive, so a process killed mid-job leaves a job another (or the restarted) process
takes over — the flows behind every job are resumable, so taking over means running the
flow again. A job never holds a credential: connect jobs run from the credentials the
vault already saved.

``ApiToken`` is one API token of an app backend: only a hash of the token is kept, with
its scopes. ``JobStore`` and ``TokenStore`` stand outside ``RegistryStore`` (like
``AlertStore``): only the service uses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from engine.errors import RegistryError

__all__ = ["ApiToken", "FLEET_USER", "Job", "JobConflict", "JobState", "JobStore", "JOB_KINDS",
           "SCOPES", "Scope", "TokenStore"]

JobState = Literal["queued", "running", "succeeded", "failed"]
JOB_KINDS = ("connect", "retry", "update", "disconnect", "health", "rollout")
# the user id of a job about the whole fleet (a health run, a rollout)
FLEET_USER = "*"

Scope = Literal["settings", "data", "admin"]
SCOPES: tuple[str, ...] = ("settings", "data", "admin")


class JobConflict(RegistryError):
    """A user already has a queued or running job (one job per user at a time)."""

    def __init__(self, job: "Job"):
        self.job = job
        super().__init__(f"a {job.kind} job ({job.job_id}) is already {job.state} for user "
                         f"{job.user_id!r}")


@dataclass(frozen=True)
class Job:
    """One background job and what it has done so far. ``progress`` holds its events
    (``{"at", "stage", "message"}``), oldest first; ``result`` is the finished job's
    JSON-ready outcome; ``error`` a sanitized message. Never a credential."""

    job_id: str
    kind: str
    user_id: str
    state: JobState
    params: dict[str, Any] = field(default_factory=dict)
    stage: str | None = None
    progress: tuple[dict[str, Any], ...] = ()
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    claimed_by: str | None = None
    claim_expires: float | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed")

    def to_dict(self) -> dict[str, Any]:
        """The job as the API shows it (no claim internals)."""

        return {"job_id": self.job_id, "kind": self.kind, "user_id": self.user_id,
                "state": self.state, "stage": self.stage, "progress": list(self.progress),
                "result": self.result, "error": self.error, "created_at": self.created_at,
                "updated_at": self.updated_at}


@dataclass(frozen=True)
class ApiToken:
    """One API token as stored: its id, name, scopes and times (the token itself is shown
    once at creation and never kept; only its hash is)."""

    token_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {"token_id": self.token_id, "name": self.name, "scopes": list(self.scopes),
                "created_at": self.created_at, "last_used_at": self.last_used_at,
                "revoked_at": self.revoked_at}


@runtime_checkable
class JobStore(Protocol):
    """Background jobs with expiring claims (see the module docstring)."""

    # ``exclusive``: refuse (``JobConflict``) when the user has an open job, atomically
    def create_job(self, job_id: str, kind: str, user_id: str,
                   params: dict[str, Any] | None = None, *,
                   exclusive: bool = False) -> Job: ...

    def get_job(self, job_id: str) -> Job | None: ...

    def list_jobs(self, user_id: str | None = None, *, limit: int = 50) -> list[Job]: ...  # newest first

    def open_job(self, user_id: str) -> Job | None: ...  # a queued or running job of that user

    # Claim the oldest job that is queued, or running under an expired claim or a claim
    # whose process is provably dead; None when there is none.
    def claim_job(self, holder: str, ttl_s: float, *,
                  dead: Any = None) -> Job | None: ...

    def renew_job(self, job_id: str, holder: str, ttl_s: float) -> bool: ...  # False: lost

    def job_event(self, job_id: str, holder: str, stage: str,
                  message: str | None = None) -> None: ...

    def finish_job(self, job_id: str, holder: str, *, state: JobState,
                   result: dict[str, Any] | None = None, error: str | None = None) -> bool: ...


@runtime_checkable
class TokenStore(Protocol):
    """API tokens kept as hashes (see the module docstring)."""

    def add_token(self, token_id: str, name: str, token_hash: str,
                  scopes: tuple[str, ...]) -> ApiToken: ...

    def token_by_hash(self, token_hash: str) -> ApiToken | None: ...  # revoked ones too

    def get_token(self, token_id: str) -> ApiToken | None: ...

    def list_tokens(self) -> list[ApiToken]: ...

    def revoke_token(self, token_id: str) -> ApiToken | None: ...  # None: unknown id

    def touch_token(self, token_id: str) -> None: ...  # record a use (coarse)
