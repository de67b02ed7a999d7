"""``SqlServe``: the service's ``JobStore`` and ``TokenStore`` roles of both SQL stores
(a mixin, like those of ``engine.registry.sql_roles``).

Jobs are claimed inside one write transaction (read the oldest claimable row,
then take it), so two service processes never run the same job at once; a claim expires
unless renewed, and a claim whose process is provably dead (same host, the pid gone) is
taken over at once. Tokens are stored as SHA-256 hashes only.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from engine.ports.serve import ApiToken, Job, JobConflict, JobState
from engine.redact import redact
from engine.registry.sql_core import SqlCore

__all__ = ["MAX_JOB_EVENTS", "SqlServe"]

MAX_JOB_EVENTS = 500  # a job keeps its newest events; older ones are dropped
_JOB_COLS = ("job_id, kind, user_id, state, params, stage, progress, result, error, "
             "created_at, updated_at, claimed_by, claim_expires")
_TOKEN_COLS = "token_id, name, scopes, created_at, last_used_at, revoked_at"
_TOUCH_EVERY_S = 60.0


def _job(row: Any) -> Job:
    return Job(job_id=row["job_id"], kind=row["kind"], user_id=row["user_id"],
               state=row["state"], params=json.loads(row["params"] or "{}"),
               stage=row["stage"], progress=tuple(json.loads(row["progress"] or "[]")),
               result=None if row["result"] is None else json.loads(row["result"]),
               error=row["error"], created_at=row["created_at"],
               updated_at=row["updated_at"], claimed_by=row["claimed_by"],
               claim_expires=row["claim_expires"])


def _token(row: Any) -> ApiToken:
    return ApiToken(token_id=row["token_id"], name=row["name"],
                    scopes=tuple(s for s in row["scopes"].split(",") if s),
                    created_at=row["created_at"], last_used_at=row["last_used_at"],
                    revoked_at=row["revoked_at"])


class SqlServe(SqlCore):
    """``JobStore`` + ``TokenStore`` over the ``jobs`` and ``api_tokens`` tables."""

    # -- jobs -------------------------------------------------------------------------------
    def create_job(self, job_id: str, kind: str, user_id: str,
                   params: dict[str, Any] | None = None, *, exclusive: bool = False) -> Job:
        """Queue a job. ``exclusive``: in the same transaction, refuse with
        ``JobConflict`` when the user has a queued or running job."""

        now = self._clock()
        with self._write() as conn:
            if exclusive:
                self._serialize(conn, f"jobs:{user_id}")  # no row to lock: none is open
                row = conn.execute(f"SELECT {_JOB_COLS} FROM jobs WHERE user_id = ? AND state "
                                   "IN ('queued', 'running') ORDER BY created_at LIMIT 1",
                                   (user_id,)).fetchone()
                if row is not None:
                    raise JobConflict(_job(row))
            conn.execute(
                "INSERT INTO jobs (job_id, kind, user_id, state, params, progress, created_at, "
                "updated_at) VALUES (?, ?, ?, 'queued', ?, '[]', ?, ?)",
                (job_id, kind, user_id, json.dumps(params or {}, sort_keys=True), now, now))
            return _job(conn.execute(f"SELECT {_JOB_COLS} FROM jobs WHERE job_id = ?",
                                     (job_id,)).fetchone())

    def get_job(self, job_id: str) -> Job | None:
        rows = self._read(f"SELECT {_JOB_COLS} FROM jobs WHERE job_id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def list_jobs(self, user_id: str | None = None, *, limit: int = 50) -> list[Job]:
        if user_id is None:
            rows = self._read(f"SELECT {_JOB_COLS} FROM jobs ORDER BY created_at DESC, "
                              "job_id LIMIT ?", (limit,))
        else:
            rows = self._read(f"SELECT {_JOB_COLS} FROM jobs WHERE user_id = ? "
                              "ORDER BY created_at DESC, job_id LIMIT ?", (user_id, limit))
        return [_job(r) for r in rows]

    def open_job(self, user_id: str) -> Job | None:
        rows = self._read(f"SELECT {_JOB_COLS} FROM jobs WHERE user_id = ? AND state IN "
                          "('queued', 'running') ORDER BY created_at LIMIT 1", (user_id,))
        return _job(rows[0]) if rows else None

    def claim_job(self, holder: str, ttl_s: float, *,
                  dead: Callable[[str], bool] | None = None) -> Job | None:
        """The oldest queued job, or a running one whose claim expired (or whose holder
        ``dead(claimed_by)`` says is provably gone), now claimed by ``holder``."""

        # an idle service polls often: look without the write lock first
        if not self._read("SELECT 1 FROM jobs WHERE state IN ('queued', 'running') LIMIT 1"):
            return None
        now = self._clock()
        with self._write() as conn:
            rows = conn.execute(
                f"SELECT {_JOB_COLS} FROM jobs WHERE state IN ('queued', 'running') "
                f"ORDER BY created_at, job_id {self._for_update}").fetchall()
            for row in rows:
                job = _job(row)
                takeable = job.state == "queued" or job.claim_expires is None \
                    or job.claim_expires <= now \
                    or (dead is not None and job.claimed_by is not None
                        and job.claimed_by != holder and dead(job.claimed_by))
                if not takeable:
                    continue
                resumed = job.state == "running"
                events = list(job.progress)
                if resumed:
                    events.append({"at": now, "stage": "resumed",
                                   "message": "the service process running this job stopped; "
                                              "another took it over and runs it again"})
                conn.execute(
                    "UPDATE jobs SET state = 'running', claimed_by = ?, claim_expires = ?, "
                    "updated_at = ?, progress = ? WHERE job_id = ?",
                    (holder, now + ttl_s, now, json.dumps(events[-MAX_JOB_EVENTS:]),
                     job.job_id))
                return _job(conn.execute(f"SELECT {_JOB_COLS} FROM jobs WHERE job_id = ?",
                                         (job.job_id,)).fetchone())
        return None

    def renew_job(self, job_id: str, holder: str, ttl_s: float) -> bool:
        now = self._clock()
        with self._write() as conn:
            cur = conn.execute("UPDATE jobs SET claim_expires = ? WHERE job_id = ? AND "
                               "claimed_by = ? AND state = 'running'",
                               (now + ttl_s, job_id, holder))
            return cur.rowcount == 1

    def job_event(self, job_id: str, holder: str, stage: str,
                  message: str | None = None) -> None:
        """Append one progress event (redacted) and set the job's stage."""

        now = self._clock()
        with self._write() as conn:
            row = conn.execute("SELECT progress FROM jobs WHERE job_id = ? AND claimed_by = ? "
                               f"{self._for_update}", (job_id, holder)).fetchone()
            if row is None:
                return
            events = json.loads(row["progress"] or "[]")
            events.append({"at": now, "stage": stage,
                           "message": None if message is None else redact(message)[:1000]})
            conn.execute("UPDATE jobs SET stage = ?, progress = ?, updated_at = ? "
                         "WHERE job_id = ?",
                         (stage, json.dumps(events[-MAX_JOB_EVENTS:]), now, job_id))

    def finish_job(self, job_id: str, holder: str, *, state: JobState,
                   result: dict[str, Any] | None = None, error: str | None = None) -> bool:
        now = self._clock()
        text = None if result is None else redact(json.dumps(result, default=str,
                                                             sort_keys=True))
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = ?, result = ?, error = ?, updated_at = ?, "
                "claim_expires = NULL WHERE job_id = ? AND claimed_by = ? AND state = 'running'",
                (state, text, None if error is None else redact(error)[:2000], now, job_id,
                 holder))
            return cur.rowcount == 1

    # -- tokens -----------------------------------------------------------------------------
    def add_token(self, token_id: str, name: str, token_hash: str,
                  scopes: tuple[str, ...]) -> ApiToken:
        now = self._clock()
        with self._write() as conn:
            conn.execute("INSERT INTO api_tokens (token_id, name, token_hash, scopes, "
                         "created_at) VALUES (?, ?, ?, ?, ?)",
                         (token_id, name, token_hash, ",".join(scopes), now))
            return _token(conn.execute(f"SELECT {_TOKEN_COLS} FROM api_tokens WHERE "
                                       "token_id = ?", (token_id,)).fetchone())

    def token_by_hash(self, token_hash: str) -> ApiToken | None:
        rows = self._read(f"SELECT {_TOKEN_COLS} FROM api_tokens WHERE token_hash = ?",
                          (token_hash,))
        return _token(rows[0]) if rows else None

    def get_token(self, token_id: str) -> ApiToken | None:
        rows = self._read(f"SELECT {_TOKEN_COLS} FROM api_tokens WHERE token_id = ?",
                          (token_id,))
        return _token(rows[0]) if rows else None

    def list_tokens(self) -> list[ApiToken]:
        return [_token(r) for r in self._read(f"SELECT {_TOKEN_COLS} FROM api_tokens "
                                               "ORDER BY created_at, token_id")]

    def revoke_token(self, token_id: str) -> ApiToken | None:
        now = self._clock()
        with self._write() as conn:
            conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE token_id = ? AND "
                         "revoked_at IS NULL", (now, token_id))
            row = conn.execute(f"SELECT {_TOKEN_COLS} FROM api_tokens WHERE token_id = ?",
                               (token_id,)).fetchone()
            return None if row is None else _token(row)

    def touch_token(self, token_id: str) -> None:
        """Record a use, at most once a minute per token (a write per request would make
        every API call a registry write)."""

        now = self._clock()
        with self._write() as conn:
            conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE token_id = ? AND "
                         "(last_used_at IS NULL OR last_used_at < ?)",
                         (now, token_id, now - _TOUCH_EVERY_S))
