"""``Service``: the one object the service's routes and pages call (``app.state.service``).

Every user-facing operation is here, over a ``Workspace`` and the engine's own verbs and
flows (``engine.commands``, the lifecycle's router and health classification): nothing of
connect, disconnect or health is reimplemented. Long operations (connect, retry, update,
disconnect, a health run, a rollout) are queued as background jobs (``engine.serve.jobs``)
and return a ``Job`` at once. Nothing returned ever holds a credential; errors are
``ApiError`` with sanitized messages.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from engine import commands
from engine.commands.workspace import Workspace
from engine.convex.targets import (
    main_target_from_env,
    validate_deploy_key,
    validate_url,
)
from engine.errors import ByodError, ConfigError, DeploymentBlocked, InvalidCredentials
from engine.fleet.health_states import classify_failure, nothing_deployed
from engine.lifecycle.gate import grandfathered, is_entitled
from engine.lifecycle.progress import copy_in_progress, disconnect_in_progress
from engine.lifecycle.routing import Router
from engine.ports.deployment import DeploymentTarget, FunctionRunner, close_quietly
from engine.ports.registry import UserConfig, check_user_id
from engine.ports.serve import FLEET_USER, Job, JobConflict
from engine.redact import redact
from engine.serve import dataplane, overview
from engine.serve.errors import ApiError, from_engine_error
from engine.serve.functions import FunctionCatalog
from engine.serve.jobs import Emit, JobWorker, new_job_id
from engine.serve.ratelimit import RateLimiter
from engine.serve.settings import ServeSettings

__all__ = ["DISCONNECT_MODES", "FAILED_RETRIES_HINT", "Service", "block_history"]

log = logging.getLogger(__name__)

DISCONNECT_MODES = ("keep", "migrate", "delete")
FAILED_RETRIES_HINT = 3  # after this many failed blocker retries, pages offer help


class _MainMissing:
    """Main's stand-in when ``BYOD_MAIN_URL`` / ``BYOD_MAIN_ADMIN_KEY`` are not set: every
    call is refused with a clear 503 (never a silent fallback)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise ApiError(503, "main_not_configured",
                       "the main deployment is not configured: set BYOD_MAIN_URL and "
                       "BYOD_MAIN_ADMIN_KEY for the service")

    run = query = mutation = read_version = _refuse


def block_history(store: Any, user_id: str) -> tuple[int, float | None]:
    """Failed blocker retries since the user was last blocked, and when that was, from the
    audit log (newest first: retries count until a successful one or the move into
    ``error``, which every block writes through ``set_connection_status``)."""

    failed, since = 0, None
    for entry in reversed(store.audit_log(user_id, limit=200)):  # the log is oldest first
        if entry.event == "blocker_retry":
            if entry.detail.get("ok"):
                break
            failed += 1
        elif entry.event == "connection_status" and entry.detail.get("to") == "error" \
                and entry.detail.get("from") != "error":
            since = entry.at
            break
    return failed, since


class Service:
    """All user-facing operations of ``byod serve`` (see the module docstring)."""

    def __init__(self, ws: Workspace, settings: ServeSettings, *,
                 main_client: FunctionRunner | None = None, worker_threads: int = 2):
        self.ws = ws
        self.settings = settings
        self.enabled = settings.enabled  # the kill switch (an operator may flip it live)
        self.store = ws.store
        self._main_client = main_client
        self._main_lock = threading.Lock()
        self._router: Router | None = None
        self.catalog = FunctionCatalog(ws.config.functions_dir, settings.main_functions)
        self.limiter = RateLimiter(settings.credential_tests_per_minute, 60.0)
        self.worker = JobWorker(self.store, self._execute, threads=worker_threads,
                                ttl_s=settings.job_claim_ttl_s)
        self.started_at = time.time()
        # the health monitor's notices (since when, last and next check) for blocked users;
        # set by ``create_app``
        self.blocked_notice: Callable[[str], dict[str, Any] | None] | None = None
        # called with each data-plane outcome (user, main, blocked_now, refused); the app
        # points it at its metrics
        self.observe_call: Callable[[str], None] = lambda outcome: None

    # -- collaborators ----------------------------------------------------------------------
    @property
    def main_client(self) -> FunctionRunner:
        """Main's client (``BYOD_MAIN_URL`` / ``BYOD_MAIN_ADMIN_KEY``), built once."""

        with self._main_lock:
            if self._main_client is None:
                try:
                    self._main_client = self.ws.connector.client(main_target_from_env())
                except ConfigError:
                    return _MainMissing()
            return self._main_client

    def main_configured(self) -> bool:
        return not isinstance(self.main_client, _MainMissing)

    @property
    def router(self) -> Router:
        if self._router is None:
            self._router = Router(self.store, self.ws.vault, self.ws.config, self.ws.graph,
                                  self.main_client, connector=self.ws.connector)
        return self._router

    def close(self) -> None:
        self.worker.stop()
        if self._router is not None:
            self._router.close()
        if self._main_client is not None:
            close_quietly(self._main_client)

    def head_version(self) -> str:
        return self.ws.graph.resolve("head").id

    # -- reads ------------------------------------------------------------------------------
    def _user(self, user_id: str) -> UserConfig | None:
        try:
            check_user_id(user_id)
        except ByodError as exc:
            raise ApiError(422, "invalid_user_id", str(exc), field="user_id") from None
        if user_id == FLEET_USER:  # names the fleet's own jobs (health runs, rollouts)
            raise ApiError(422, "invalid_user_id", f"the user id {FLEET_USER!r} is reserved",
                           field="user_id")
        return self.store.find_user(user_id)

    def _known(self, user_id: str) -> UserConfig:
        user = self._user(user_id)
        if user is None:
            raise ApiError(404, "unknown_user", f"no BYOD configuration for user {user_id!r}")
        return user

    def status(self, user_id: str) -> dict[str, Any]:
        """Connection and deployment status and progress, last test, sanitized error,
        version, fingerprint, when a schema was last deployed, journal, lease, the open
        job; never credentials. A user who
        never connected has ``connection_status`` ``none``."""

        user = self._user(user_id)
        head = self.head_version()
        if user is None:
            return {"user_id": user_id, "connection_status": "none", "head_version": head,
                    "journal": [], "history": [], "job": None, "lease": None}
        data = commands.user_status(self.ws, user_id, history=20)
        job = self.store.open_job(user_id)
        data["job"] = None if job is None else job.to_dict()
        data["head_version"] = head
        data["last_schema_deploy"] = next(
            (e.at for e in reversed(self.store.audit_log(user_id, limit=200))
             if e.event == "deployment" and "schema_version" in e.detail), None)
        data["pending_migration"] = bool(user.connection_status == "connected"
                                         and user.schema_version not in (None, head))
        return data

    def access(self, user_id: str) -> dict[str, Any]:
        """Whether this user may connect: the gate (availability, entitlement), the kill
        switch, and where to upgrade."""

        user = self._user(user_id)
        entitled = is_entitled(user_id, config=self.ws.config, store=self.store)
        connected = grandfathered(user)
        return {"user_id": user_id, "entitled": entitled,
                "availability": self.ws.config.availability,
                "upgrade_url": self.settings.upgrade_url, "enabled": self.enabled,
                "can_connect": bool(entitled and (self.enabled or connected)),
                "connected": connected}

    def blocker(self, user_id: str) -> dict[str, Any]:
        """``{blocked, reason, since, retry_allowed}``: one registry read when the user is
        not blocked (the common case on every page load)."""

        user = self._user(user_id)
        if user is None or user.connection_status != "error":
            return {"user_id": user_id, "blocked": False, "reason": None, "since": None,
                    "retry_allowed": False, "failed_retries": 0}
        failed, since = block_history(self.store, user_id)
        since = since or user.updated_at
        busy = self.store.open_job(user_id) is not None or \
            disconnect_in_progress(self.store, user_id)
        return {"user_id": user_id, "blocked": True, "reason": user.connection_error,
                "since": since, "retry_allowed": not busy, "failed_retries": failed,
                "needs_help": failed >= FAILED_RETRIES_HINT}

    def notice(self, user_id: str) -> dict[str, Any] | None:
        """A short message the app can show this user, or None."""

        user = self._user(user_id)
        if user is None:
            return None
        job = self.store.open_job(user_id)
        if user.connection_status == "error":
            detailed = self.blocked_notice(user_id) if self.blocked_notice else None
            if detailed is not None:
                return detailed
            return {"level": "error", "code": "blocked",
                    "message": "Your database cannot be reached, so your content is "
                               "unavailable until the connection works again.",
                    "reason": user.connection_error}
        if job is not None:
            return {"level": "info", "code": f"job_{job.kind}",
                    "message": f"Your database is being updated ({job.kind}: "
                               f"{job.stage or job.state}).", "job_id": job.job_id}
        head = self.head_version()
        if user.connection_status == "connected" and user.schema_version not in (None, head):
            return {"level": "info", "code": "update_pending",
                    "message": "An update of your database is scheduled.",
                    "version": user.schema_version, "head_version": head}
        return None

    def fleet_overview(self) -> dict[str, Any]:
        """The dashboard's data (``engine.serve.overview``)."""

        return overview.fleet_overview(self)

    def job(self, job_id: str) -> Job:
        job = self.store.get_job(job_id) if isinstance(job_id, str) and job_id else None
        if job is None:
            raise ApiError(404, "unknown_job", f"no job {job_id!r}")
        return job

    async def job_events(self, job_id: str, *, poll_s: float = 0.25,
                         timeout_s: float = 3600.0) -> AsyncIterator[dict[str, Any]]:
        """Progress events of a job as they are recorded (``{"event": "progress", ...}``),
        then one ``{"event": "done", "job": ...}``; for Server-Sent Events."""

        seen = 0
        deadline = time.monotonic() + timeout_s
        while True:
            job = await asyncio.to_thread(self.job, job_id)
            events = list(job.progress)
            for event in events[seen:]:
                yield {"event": "progress", **event}
            seen = len(events)
            if job.finished:
                yield {"event": "done", "job": job.to_dict()}
                return
            if time.monotonic() > deadline:
                yield {"event": "timeout", "job": job.to_dict()}
                return
            await asyncio.sleep(poll_s)

    # -- credential checks ------------------------------------------------------------------
    def _validated(self, url: str, deploy_key: str, user_id: str = "") -> DeploymentTarget:
        try:
            clean = validate_url(url, self.settings.allow_insecure_local, label=user_id)
        except InvalidCredentials as exc:
            message = str(exc).replace("--allow-insecure-local",
                                       "serve.allow_insecure_local = true in byod.toml")
            raise ApiError(422, "invalid_url", redact(message, [url, deploy_key]),
                           field="url") from None
        try:
            validate_deploy_key(deploy_key, label=user_id)
        except InvalidCredentials as exc:
            raise ApiError(422, "invalid_deploy_key", redact(str(exc), [url, deploy_key]),
                           field="deploy_key") from None
        return DeploymentTarget(label=user_id or "credential test", url=clean,
                                admin_key=deploy_key.strip(),
                                allow_insecure_local=self.settings.allow_insecure_local)

    def test_credentials(self, url: str, deploy_key: str) -> dict[str, Any]:
        """Test credentials that are not saved: validate, then ask the deployment for its
        byod version. Nothing is written anywhere."""

        target = self._validated(url, deploy_key)
        started = time.monotonic()
        client = None
        try:
            client = self.ws.connector.client(target)
            info = client.read_version()
        except Exception as exc:  # noqa: BLE001 - classified; nothing may leak a secret
            latency = (time.monotonic() - started) * 1000
            if nothing_deployed(exc):
                return {"ok": True, "latency_ms": round(latency, 1), "deployed_version": None,
                        "state": "empty", "error": None, "error_kind": None,
                        "note": "reachable and the key is accepted; nothing of byod is "
                                "deployed yet (Save & Deploy installs it)"}
            verdict = classify_failure(exc)
            return {"ok": False, "latency_ms": round(latency, 1), "deployed_version": None,
                    "state": verdict.state, "error_kind": verdict.error_kind, "note": None,
                    "error": redact(verdict.reason or verdict.state, list(target.secrets))}
        finally:
            if client is not None:
                close_quietly(client)
        latency = (time.monotonic() - started) * 1000
        return {"ok": True, "latency_ms": round(latency, 1), "deployed_version": info.version,
                "state": "reachable", "error": None, "error_kind": None,
                "note": f"reachable; byod version {info.version} is deployed"}

    # -- jobs -------------------------------------------------------------------------------
    def _enqueue(self, kind: str, user_id: str, params: dict[str, Any] | None = None) -> Job:
        try:
            job = self.store.create_job(new_job_id(), kind, user_id, params or {},
                                        exclusive=user_id != FLEET_USER)
        except JobConflict as exc:
            raise ApiError(409, "job_running",
                           f"a {exc.job.kind} job is already {exc.job.state} for this user",
                           extra={"job_id": exc.job.job_id}) from None
        log.info("job %s (%s) queued", job.job_id, kind,
                 extra={"job_id": job.job_id, "user_id": user_id})
        self.worker.wake()
        return job

    def _refuse_if_busy(self, user_id: str) -> None:
        """Refuse before saving anything when the user has an open job (``_enqueue``
        checks again, atomically, when the job is created)."""

        running = self.store.open_job(user_id)
        if running is not None:
            raise ApiError(409, "job_running",
                           f"a {running.kind} job is already {running.state} for this user",
                           extra={"job_id": running.job_id})

    def _gate(self, user_id: str, user: UserConfig | None) -> None:
        if grandfathered(user):
            return
        if not self.enabled:
            raise ApiError(503, "connections_disabled",
                           "new connections are switched off for now; existing ones keep "
                           "working", retry_after=300)
        if not is_entitled(user_id, config=self.ws.config, store=self.store):
            raise ApiError(403, "not_entitled", "connecting your own database is not "
                           "available on your plan", extra={
                               "upgrade_url": self.settings.upgrade_url})

    def _save(self, user_id: str, target: DeploymentTarget) -> None:
        """Encrypt and save the credentials before the job is queued (the job never holds
        them); a new or disconnected user becomes ``pending`` until the job finishes."""

        url_ct, key_ct = self.ws.vault.encrypt_credentials(user_id, target.url,
                                                           target.admin_key)
        user = self.store.upsert_credentials(user_id, url_ct=url_ct, key_ct=key_ct)
        if user.connection_status == "disconnected":
            self.store.set_connection_status(user_id, "pending")
        self.router.invalidate(user_id)

    def start_connect(self, user_id: str, url: str, deploy_key: str, *,
                      copy_from_main: bool = False) -> Job:
        """Save & Deploy: validate, save encrypted, queue the connect (test, deploy head,
        record). A connected user's new credentials go through ``start_update``."""

        user = self._user(user_id)
        if grandfathered(user) and user.connection_status == "connected":
            return self.start_update(user_id, url, deploy_key)
        self._gate(user_id, user)
        target = self._validated(url, deploy_key, user_id)
        self._refuse_if_busy(user_id)
        self._save(user_id, target)
        return self._enqueue("connect", user_id, {"copy_from_main": bool(copy_from_main)})

    def start_retry(self, user_id: str) -> Job:
        """Run connect again from the saved credentials."""

        user = self._known(user_id)
        if user.connection_status == "disconnected":
            raise ApiError(409, "disconnected", "this user is disconnected: connect again "
                                                "with a URL and deploy key")
        self._gate(user_id, user)
        return self._enqueue("retry", user_id)

    def start_update(self, user_id: str, url: str, deploy_key: str) -> Job:
        """Update credentials: test the new ones first (nothing saved if they fail), then
        save them and redeploy/record as a connect would."""

        user = self._known(user_id)
        if user.connection_status == "disconnected":
            raise ApiError(409, "disconnected", "this user is disconnected: use connect")
        self._gate(user_id, user)
        target = self._validated(url, deploy_key, user_id)
        self._refuse_if_busy(user_id)
        test = self.test_credentials(url, deploy_key)
        if not test["ok"]:
            raise ApiError(422, "credentials_failed",
                           f"the new credentials do not work: {test['error']}",
                           extra={"state": test["state"]})
        self._save(user_id, target)
        return self._enqueue("update", user_id)

    def start_disconnect(self, user_id: str, mode: str, confirm: bool = False) -> Job:
        """Keep, migrate back to main, or delete (``confirm`` required), as a job."""

        if mode not in DISCONNECT_MODES:
            raise ApiError(422, "invalid_mode", f"mode must be one of "
                           f"{', '.join(DISCONNECT_MODES)}, not {mode!r}", field="mode")
        if mode == "delete" and not confirm:
            raise ApiError(422, "confirmation_required", "deleting the data on your "
                           "deployment needs confirm: true", field="confirm")
        user = self._known(user_id)
        if user.connection_status == "disconnected" and not disconnect_in_progress(
                self.store, user_id):
            raise ApiError(409, "disconnected", "this user is already disconnected")
        if mode == "migrate" and not self.main_configured():
            self.main_client.query("")  # raises main_not_configured
        return self._enqueue("disconnect", user_id, {"mode": mode, "confirm": bool(confirm)})

    def start_health(self) -> Job:
        return self._enqueue("health", FLEET_USER)

    def start_rollout(self, to: str, confirm: bool, *, canary: int = 1) -> Job:
        if not confirm:
            raise ApiError(422, "confirmation_required", "a rollout needs confirm: true",
                           field="confirm")
        try:
            version = self.ws.graph.resolve(to).id
        except ByodError as exc:
            raise ApiError(422, "unknown_version", str(exc), field="to") from None
        return self._enqueue("rollout", FLEET_USER, {"to": version, "canary": canary})

    def retry_blocked(self, user_id: str) -> dict[str, Any]:
        """The blocker's retry: test the saved credentials now; unblocks on success."""

        user = self._known(user_id)
        if user.connection_status != "error":
            return self.blocker(user_id)
        if disconnect_in_progress(self.store, user_id) or self.store.open_job(user_id):
            raise ApiError(409, "busy", "a job is working on this deployment; wait for it",
                           retry_after=10)
        try:
            test = commands.test_connection(self.ws, user_id)
        except ByodError as exc:
            raise from_engine_error(exc) from None
        self.store.audit(user_id, "blocker_retry", {"ok": test.ok, "state": test.state})
        if test.ok:
            self.router.invalidate(user_id)
        return {**self.blocker(user_id), "test": test.to_dict()}

    def run(self, user_id: str, kind: str, path: str, args: dict[str, Any] | None) -> Any:
        """Route an app function call to main or the user's deployment
        (``engine.serve.dataplane``)."""

        return dataplane.run(self, user_id, kind, path, args or {})

    # -- running jobs (worker threads) ------------------------------------------------------
    def _connect_job(self, job: Job, on_stage: Callable[[str, str], None]) -> dict[str, Any]:
        """Connect from the saved credentials. A user with no working setup before (new,
        pending, disconnected) whose attempt fails stays ``pending`` — their content is
        still on main, so they must not be blocked — unless a copy from main holds them."""

        before = self.store.find_user(job.user_id)
        first = not grandfathered(before) or job.params.get("first", False)
        copy = job.params.get("copy_from_main") or None
        try:
            user = commands.retry_connect(self.ws, job.user_id, copy_from_main=copy,
                                          on_stage=on_stage)
        except ByodError:
            now = self.store.find_user(job.user_id)
            if first and now is not None and now.connection_status == "error" \
                    and not copy_in_progress(self.store, job.user_id):
                self.store.set_connection_status(job.user_id, "pending",
                                                 error=now.connection_error)
            raise
        finally:
            if self._router is not None:
                self._router.invalidate(job.user_id)
        return {"user": user.public_dict()}

    def _execute(self, job: Job, emit: Emit) -> dict[str, Any] | None:
        def on_stage(_user: str, stage: str) -> None:
            emit(stage, None)

        try:
            if job.kind in ("connect", "retry", "update"):
                return self._connect_job(job, on_stage)
            if job.kind == "disconnect":
                def hook(event: str, detail: dict[str, Any]) -> None:
                    table = detail.get("table")
                    emit(event, f"{table}: {detail.get('copied', detail.get('deleted', ''))}"
                         if table else None)

                main = self.main_client if job.params["mode"] == "migrate" else None
                report = commands.disconnect(self.ws, job.user_id, job.params["mode"],
                                             confirm=bool(job.params.get("confirm")),
                                             hook=hook, main_client=main,
                                             router=self._router)
                return report.to_dict()
            if job.kind == "health":
                health = commands.health(self.ws)
                return {"checked": health.checked, "counts": health.counts,
                        "unhealthy": [r.user_id for r in health.unhealthy]}
            if job.kind == "rollout":
                emit("rolling out", f"to {job.params['to']}")
                rollout = commands.rollout(self.ws, job.params["to"],
                                           canary=int(job.params.get("canary", 1)))
                return {"rollout_id": rollout.rollout_id, "status": rollout.status,
                        "target": rollout.target, "counts": rollout.counts,
                        "halted_reason": rollout.halted_reason}
        except DeploymentBlocked as exc:
            raise ApiError(423, "blocked", exc.reason) from None
        raise ApiError(500, "unknown_job_kind", f"unknown job kind {job.kind!r}")
