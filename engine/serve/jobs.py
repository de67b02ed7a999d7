"""Background jobs: the service runs connect, retry, update and disconnect (and health runs
and rollouts) as jobs in the registry's ``jobs`` table, so a request returns at once with a
job id the app polls (``GET /v1/jobs/{id}``) or streams (Server-Sent Events).

Crash safety: a worker claims a job with an expiring claim it renews while the job runs
(a heartbeat). A service process killed mid-job stops renewing; once the claim expires —
at once when the claim's process is provably dead on this host — another worker (or the
restarted service) claims the job and runs its flow again. Every flow behind a job is
resumable (connect re-tests and redeploys only what is missing, a disconnect resumes its
copy), so running it again finishes the job. A job never holds a credential: connect and
update jobs run from the credentials the vault saved before the job was queued.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from engine.ports.serve import FLEET_USER, JOB_KINDS, Job, JobStore
from engine.redact import redact
from engine.registry.process import ProcessId, current_process, provably_dead

__all__ = ["FLEET_USER", "JOB_KINDS", "Job", "JobRunner", "JobWorker", "holder_id",
           "holder_dead", "new_job_id"]

log = logging.getLogger(__name__)

Emit = Callable[[str, "str | None"], None]
JobRunner = Callable[[Job, Emit], "dict[str, Any] | None"]
"""Runs one job's flow, reporting progress through ``emit(stage, message)``; returns the
JSON-ready result, or raises (the job fails with the sanitized message)."""


def new_job_id() -> str:
    return "job_" + uuid.uuid4().hex[:16]


def holder_id() -> str:
    """This worker's claim name: host, pid namespace, pid and start time (so another
    process on this host can prove it dead), plus a random part."""

    me = current_process()
    return (f"{me.host}|{me.pid_namespace or ''}|{me.pid}|"
            f"{'' if me.started is None else repr(me.started)}|{uuid.uuid4().hex[:8]}")


def holder_dead(claimed_by: str) -> bool:
    """Whether the process behind a claim is provably gone (``provably_dead``)."""

    parts = claimed_by.split("|")
    if len(parts) != 5:
        return False
    host, namespace, pid, started, _ = parts
    try:
        holder = ProcessId(host=host, pid=int(pid),
                           started=float(started) if started else None,
                           pid_namespace=namespace or None)
    except ValueError:
        return False
    return provably_dead(holder)


class JobWorker:
    """Worker threads claiming and running jobs until ``stop``. ``wake`` starts a job just
    queued without waiting for the next poll."""

    def __init__(self, store: JobStore, runner: JobRunner, *, threads: int = 2,
                 ttl_s: float = 30.0, poll_s: float = 1.0,
                 on_finish: Callable[[Job], None] | None = None):
        self.store = store
        self.runner = runner
        self.ttl_s = ttl_s
        self.poll_s = poll_s
        self.on_finish = on_finish
        self.holder = holder_id()
        self._threads_wanted = threads
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._wake = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        for n in range(self._threads_wanted):
            thread = threading.Thread(target=self._loop, name=f"byod-job-worker-{n}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; wait up to ``timeout`` for running jobs (an unfinished one is
        taken over by the next process once its claim expires)."""

        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def wake(self) -> None:
        self._wake.set()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    # -- the loop -------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_one()
            except Exception:  # noqa: BLE001 - a registry hiccup must not kill the worker
                log.exception("job worker: claiming a job failed")
                ran = False
            if not ran:
                self._wake.wait(self.poll_s)
                self._wake.clear()

    def run_one(self) -> bool:
        """Claim one job and run it to its end here; False when there was none."""

        job = self.store.claim_job(self.holder, self.ttl_s, dead=holder_dead)
        if job is None:
            return False
        self._run(job)
        return True

    def _run(self, job: Job) -> None:
        beat_stop = threading.Event()
        lost = threading.Event()

        def heartbeat() -> None:
            while not beat_stop.wait(self.ttl_s / 3):
                try:
                    if not self.store.renew_job(job.job_id, self.holder, self.ttl_s):
                        lost.set()
                        return
                except Exception:  # noqa: BLE001 - retried on the next beat
                    log.warning("job %s: renewing the claim failed", job.job_id)

        beat = threading.Thread(target=heartbeat, name=f"byod-job-beat-{job.job_id}",
                                daemon=True)
        beat.start()

        def emit(stage: str, message: str | None = None) -> None:
            self.store.job_event(job.job_id, self.holder, stage, message)

        log.info("job %s (%s, user %s): running", job.job_id, job.kind, job.user_id,
                 extra={"job_id": job.job_id, "user_id": job.user_id})
        try:
            result = self.runner(job, emit)
        except Exception as exc:  # noqa: BLE001 - every failure is the job's outcome
            message = redact(str(exc) or type(exc).__name__)
            log.info("job %s: failed: %s", job.job_id, message,
                     extra={"job_id": job.job_id, "user_id": job.user_id})
            finished = self.store.finish_job(job.job_id, self.holder, state="failed",
                                             error=message)
        else:
            log.info("job %s: succeeded", job.job_id,
                     extra={"job_id": job.job_id, "user_id": job.user_id})
            finished = self.store.finish_job(job.job_id, self.holder, state="succeeded",
                                             result=result or {})
        finally:
            beat_stop.set()
            beat.join(5)
        if not finished or lost.is_set():
            log.warning("job %s: the claim was lost while running; another worker owns it",
                        job.job_id)
        if self.on_finish is not None:
            done = self.store.get_job(job.job_id)
            if done is not None:
                self.on_finish(done)
