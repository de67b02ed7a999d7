"""``ConvexMainStore``: the registry kept on the app's main Convex deployment
(``BYOD_REGISTRY=convex:main``).

Why: an app whose only database is Convex keeps its BYOD registry next to its own data,
where its front end reads a user's status reactively (``byodRegistry:getConfig``), as the
reference design keeps ``userDatabaseConfig`` on main. The tables are engine tables of the
main bundle (``engine.schema.main_registry_tables``, ``byod deploy VERSION --target main``)
and every store operation is one function of ``convex/byodRegistry.ts``, so each runs as
one Convex transaction: a lease is taken, a status moves or a rollout row and its count
change atomically, and racing engine processes are serialized by Convex's own concurrency
control. What cannot be decided on main is decided here and re-checked there: whether a
lease's holder process is provably dead is known only on the engine's host, so the engine
asks for the takeover of *that* lease and the function takes it only if it is still the
same lease.

Secrets: main never sees the encryption key (credentials arrive as vault ciphertexts), and
errors and audit details are redacted here before they are sent. Every call runs through
the caller's ``FunctionRunner`` with main's admin key; a failure becomes a ``RegistryError``
whose text is redacted, and a main deployment without the registry's functions names the
command that deploys them. The engine's clock (``clock``) is passed in each write, so
lease expiry is decided on one clock, as in ``SqliteStore``.

The rollout role is in ``engine.registry.convex_main_rollouts``; the table-level copy
(``RegistryTables``) in ``engine.registry.convex_main_tables``.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any, Callable, Iterable, Iterator, Mapping

from engine.errors import (
    ByodError,
    DeploymentError,
    InvalidTransition,
    LeaseHeld,
    RegistryError,
    UnknownUser,
)
from engine.ports.deployment import Connector, DeploymentTarget, FunctionRunner
from engine.ports.registry import (
    CONNECTION_TRANSITIONS,
    JOURNAL_TRANSITIONS,
    AuditEntry,
    ConnectionStatus,
    DeploymentStatus,
    JournalEntry,
    JournalStatus,
    Lease,
    ProgressKind,
    UserConfig,
    check_progress_kind,
    check_user_id,
    deployment_changes,
)
from engine.redact import redact
from engine.registry.convex_main_alerts import ConvexAlerts
from engine.registry.convex_main_rollouts import ConvexRollouts
from engine.registry.convex_main_tables import ConvexTables
from engine.registry.process import ProcessId, current_process, provably_dead

__all__ = ["LOCATION", "ConvexMainStore", "DEPLOY_HINT", "NotOnMain", "allowed_from",
           "main_target", "open_convex_main"]

LOCATION = "convex:main"
DEPLOY_HINT = ("deploy the main bundle: `byod deploy head --target main` (main is addressed "
               "by BYOD_MAIN_URL and BYOD_MAIN_ADMIN_KEY)")
PAGE = 500  # documents per list call: far inside Convex's per-transaction read limits
_PROGRESS_PART = 512 * 1024  # characters of JSON per progress document (ASCII: < 1 MiB)
_MISSING = re.compile(r"(?i)could not find|no such function|FunctionNotFound")
# the functions not in convex/byodRegistry.ts, by the module that holds them
_MODULE_OF: dict[str, str] = {
    **dict.fromkeys(("rolloutHeader", "putRolloutRows", "switchRollout", "dropRolloutRows",
                     "dropStaleRolloutRows", "saveRolloutHeader", "saveDeploymentRow",
                     "rolloutRows", "rolloutRow", "rolloutCounts", "listRollouts"),
                    "byodRegistryRollouts"),
    **dict.fromkeys(("dumpPage", "loadRows", "countRows", "clearRows"), "byodRegistryTables"),
}


# what SQL stores keep and main does not: the service's jobs and tokens, workers' row claims
_SQL_ONLY: dict[str, str] = {
    **dict.fromkeys(("create_job", "get_job", "list_jobs", "open_job", "claim_job", "renew_job",
                     "job_event", "finish_job", "add_token", "token_by_hash", "get_token",
                     "list_tokens", "revoke_token", "touch_token"),
                    "the service's API tokens and jobs (`byod serve`, `byod tokens`)"),
    **dict.fromkeys(("claim_rows", "renew_claims", "finish_claim", "release_claims",
                     "rollout_status", "open_worker_rollouts", "reopen_for_workers"),
                    "the rollout row claims of worker processes (`byod worker`)"),
}


class NotOnMain(RegistryError, AttributeError):
    """A role the registry on main does not keep. An ``AttributeError`` too, so a role
    check (``isinstance`` with a protocol, ``hasattr``) answers no instead of failing."""


def allowed_from(transitions: dict[str, frozenset[str]], status: str) -> list[str]:
    """The statuses a move to ``status`` may start from (the function checks the stored
    status against them, in its transaction)."""

    return sorted(s for s, targets in transitions.items() if status in targets)


def _clean(text: str | None) -> str | None:
    """Defence in depth: whatever the caller passed, nothing key-shaped is stored."""

    return None if text is None else redact(str(text))[:2000]


def _detail(detail: dict[str, Any] | None) -> str:
    return redact(json.dumps(detail or {}, default=str, sort_keys=True))


def _user(doc: dict[str, Any]) -> UserConfig:
    return UserConfig(
        user_id=doc["userId"], url_ct=doc["urlCt"], key_ct=doc["keyCt"],
        connection_status=doc["connectionStatus"], deployment_status=doc["deploymentStatus"],
        deployment_progress=doc.get("deploymentProgress"),
        schema_version=doc.get("schemaVersion"),
        schema_fingerprint=doc.get("schemaFingerprint"),
        last_connection_test=doc.get("lastConnectionTest"),
        connection_error=doc.get("connectionError"), entitled=bool(doc["entitled"]),
        created_at=float(doc["createdAt"]), updated_at=float(doc["updatedAt"]))


def _entry(doc: dict[str, Any]) -> JournalEntry:
    return JournalEntry(
        user_id=doc["userId"], plan_id=doc["planId"], step_id=doc["stepId"],
        seq=int(doc["seq"]), kind=doc["kind"], status=doc["status"],
        version=doc.get("version"), cursor=doc.get("cursor"),
        processed=int(doc["processed"]), attempts=int(doc["attempts"]),
        error=doc.get("error"), fingerprint=doc.get("fingerprint"),
        started_at=doc.get("startedAt"), completed_at=doc.get("completedAt"),
        created_at=float(doc["createdAt"]))


def _lease(doc: dict[str, Any]) -> Lease:
    pid = doc.get("pid")
    return Lease(deployment=doc["deployment"], holder=doc["holder"],
                 expires_at=float(doc["expiresAt"]), acquired_at=doc.get("acquiredAt"),
                 renewed_at=doc.get("renewedAt"), host=doc.get("host"),
                 pid=None if pid is None else int(pid), pid_started=doc.get("pidStarted"),
                 pid_namespace=doc.get("pidNamespace"))


def _holder_process(lease: Lease) -> ProcessId | None:
    if lease.host is None or lease.pid is None:
        return None
    return ProcessId(host=lease.host, pid=int(lease.pid), started=lease.pid_started,
                     pid_namespace=lease.pid_namespace)


class ConvexMainStore(ConvexRollouts, ConvexAlerts, ConvexTables):
    """Every registry role over main's ``byodRegistry:*`` functions (module docstring).

    ``runner``: main's function client (admin key); closed with the store when
    ``owns_runner``. ``clock``: the engine's time, passed to every write."""

    location = LOCATION

    def __init__(self, runner: FunctionRunner, *, clock: Callable[[], float] = time.time,
                 owns_runner: bool = True, page: int = PAGE) -> None:
        self._runner = runner
        self._clock = clock
        self._owns_runner = owns_runner
        self._page = page

    def __repr__(self) -> str:
        return "ConvexMainStore('convex:main')"

    def __getattr__(self, name: str) -> Any:
        """A clear error (exit 1) for what a SQL store keeps and main does not."""

        what = _SQL_ONLY.get(name)
        if what is None:
            raise AttributeError(name)
        raise NotOnMain(f"the registry on the main deployment ({LOCATION}) does not keep "
                        f"{what}: use a SQLite or PostgreSQL registry (BYOD_REGISTRY) for it")

    def __enter__(self) -> "ConvexMainStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        close = getattr(self._runner, "close", None)
        if self._owns_runner and callable(close):
            close()

    # -- calls ------------------------------------------------------------------------------
    def _call(self, kind: str, name: str, args: dict[str, Any]) -> Any:
        """One function of main's registry modules, by its name (``_MODULE_OF`` says
        which module holds it) or as ``module:function``."""

        path = name if ":" in name else f"{_MODULE_OF.get(name, 'byodRegistry')}:{name}"
        try:
            if kind == "query":
                return self._runner.query(path, args)
            return self._runner.mutation(path, args)
        except DeploymentError as exc:
            raise self._error(exc, path) from None

    @staticmethod
    def _error(exc: DeploymentError, path: str) -> RegistryError:
        text = redact(str(exc))
        if getattr(exc, "kind", "") in ("function", "request") and _MISSING.search(
                f"{getattr(exc, 'code', '') or ''} {text}"):
            return RegistryError(
                f"the registry on the main deployment is not set up: {path} is missing "
                f"(main runs no main bundle, or one older than this engine); {DEPLOY_HINT}")
        return RegistryError(f"the registry on the main deployment failed ({path}): {text}")

    def _query(self, name: str, **args: Any) -> Any:
        return self._call("query", name, args)

    def _mutation(self, name: str, **args: Any) -> Any:
        return self._call("mutation", name, args)

    def _paged(self, name: str, **args: Any) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            answer = self._query(name, **args, cursor=cursor, numItems=self._page)
            yield from answer["page"]
            if answer["isDone"]:
                return
            cursor = answer["cursor"]

    def ping(self) -> None:
        """Raise a ``RegistryError`` (naming the fix) unless main answers the registry's
        functions: called when the store is opened, so a missing bundle shows at once."""

        self._query("getLease", deployment="")

    def schema_version(self) -> int:
        """The registry schema the main bundle's tables follow: this engine's."""

        from engine.registry.ddl import SCHEMA_VERSION

        return SCHEMA_VERSION

    # -- UserStore --------------------------------------------------------------------------
    def find_user(self, user_id: str) -> UserConfig | None:
        doc = self._query("getUser", userId=user_id)
        return None if doc is None else _user(doc)

    def get_user(self, user_id: str) -> UserConfig:
        user = self.find_user(user_id)
        if user is None:
            raise UnknownUser(user_id)
        return user

    def list_users(self, *, connection_status: Iterable[str] | None = None) -> list[UserConfig]:
        if connection_status is None:
            return [_user(d) for d in self._paged("listUsers", status=None)]
        wanted = dict.fromkeys(str(s) for s in connection_status)
        users = [_user(d) for s in wanted for d in self._paged("listUsers", status=s)]
        return sorted(users, key=lambda u: u.user_id)

    def upsert_credentials(self, user_id: str, *, url_ct: str, key_ct: str) -> UserConfig:
        check_user_id(user_id)
        return _user(self._mutation("upsertCredentials", userId=user_id, urlCt=url_ct,
                                    keyCt=key_ct, now=self._clock()))

    def set_connection_status(
        self, user_id: str, status: ConnectionStatus, *, error: str | None = None,
        tested_at: float | None = None,
    ) -> UserConfig:
        if status not in CONNECTION_TRANSITIONS:
            raise RegistryError(f"unknown connection status {status!r}")
        answer = self._mutation(
            "setConnectionStatus", userId=user_id, status=status,
            allowedFrom=allowed_from(CONNECTION_TRANSITIONS, status), error=_clean(error),
            clearError=status in ("connected", "disconnected"),
            testedAt=None if tested_at is None else float(tested_at), now=self._clock())
        if answer.get("missing"):
            raise UnknownUser(user_id)
        if "invalid" in answer:
            raise InvalidTransition("connection status", answer["invalid"], status)
        return _user(answer["user"])

    def set_deployment(
        self, user_id: str, *, status: DeploymentStatus | None = None,
        progress: str | None = None, version: str | None = None,
        fingerprint: str | None = None,
    ) -> UserConfig:
        changes = deployment_changes(status, progress, version, fingerprint)
        answer = self._mutation(
            "setDeployment", userId=user_id, deploymentStatus=status,
            deploymentProgress=progress, schemaVersion=version, schemaFingerprint=fingerprint,
            detail=_detail(changes), now=self._clock())
        if answer.get("missing"):
            raise UnknownUser(user_id)
        return _user(answer["user"])

    def set_entitled(self, user_id: str, entitled: bool) -> UserConfig:
        check_user_id(user_id)
        return _user(self._mutation("setEntitled", userId=user_id, entitled=bool(entitled),
                                    now=self._clock()))

    def replace_ciphertexts(self, user_id: str, *, url_ct: str, key_ct: str,
                            expect_url_ct: str, expect_key_ct: str) -> bool:
        return bool(self._mutation("replaceCiphertexts", userId=user_id, urlCt=url_ct,
                                   keyCt=key_ct, expectUrlCt=expect_url_ct,
                                   expectKeyCt=expect_key_ct, now=self._clock()))

    # -- JournalStore -----------------------------------------------------------------------
    def journal_plan(self, entries: list[JournalEntry]) -> None:
        now = self._clock()
        docs = [{
            "userId": e.user_id, "planId": e.plan_id, "stepId": e.step_id,
            "seq": float(e.seq), "kind": e.kind, "status": e.status, "version": e.version,
            "cursor": e.cursor, "processed": float(e.processed),
            "attempts": float(e.attempts), "error": _clean(e.error),
            "fingerprint": e.fingerprint, "startedAt": e.started_at,
            "completedAt": e.completed_at, "createdAt": e.created_at or now,
        } for e in entries]
        for start in range(0, len(docs), self._page):
            answer = self._mutation("journalPlan", entries=docs[start:start + self._page],
                                    now=now)
            if answer.get("missing") is not None:
                raise UnknownUser(answer["missing"])

    def journal(self, user_id: str, plan_id: str | None = None) -> list[JournalEntry]:
        return [_entry(d) for d in self._paged("journal", userId=user_id, planId=plan_id)]

    def journal_update(
        self, user_id: str, plan_id: str, step_id: str, *, status: JournalStatus | None = None,
        cursor: str | None = None, processed: int | None = None, error: str | None = None,
        bump_attempts: bool = False,
    ) -> JournalEntry:
        answer = self._mutation(
            "journalUpdate", userId=user_id, planId=plan_id, stepId=step_id, status=status,
            allowedFrom=[] if status is None else allowed_from(JOURNAL_TRANSITIONS, status),
            cursor=cursor, processed=None if processed is None else float(processed),
            error=_clean(error), bumpAttempts=bool(bump_attempts), now=self._clock())
        if answer.get("missing"):
            raise RegistryError(
                f"no journal step {step_id!r} in plan {plan_id!r} for user {user_id!r}")
        if "invalid" in answer:
            raise InvalidTransition(f"journal step {step_id!r}", answer["invalid"],
                                    str(status))
        return _entry(answer["entry"])

    # -- LeaseStore, LeaseAdmin -------------------------------------------------------------
    def acquire_lease(self, deployment: str, holder: str, ttl_s: float) -> Lease:
        """Take the lease unless someone else holds an unexpired one (LeaseHeld). One
        transaction on main decides; a holder process provably dead on this host is taken
        over by a second call that names that very lease (audited there)."""

        if ttl_s <= 0:
            raise RegistryError("a lease needs a positive ttl")
        me = current_process()
        args = {"deployment": deployment, "holder": holder, "ttl": float(ttl_s),
                "me": {"host": me.host, "pid": float(me.pid), "pidStarted": me.started,
                       "pidNamespace": me.pid_namespace}}
        takeover: dict[str, Any] | None = None
        for _ in range(3):
            answer = self._mutation("acquireLease", **args, now=self._clock(),
                                    takeover=takeover)
            if "lease" in answer:
                return _lease(answer["lease"])
            held = _lease(answer["held"])
            proc = _holder_process(held)
            if proc is None or not provably_dead(proc):
                raise LeaseHeld(deployment, held.holder, held.expires_at)
            takeover = {"holder": held.holder, "acquiredAt": held.acquired_at}
        raise LeaseHeld(deployment, held.holder, held.expires_at)

    def renew_lease(self, deployment: str, holder: str, ttl_s: float) -> Lease:
        answer = self._mutation("renewLease", deployment=deployment, holder=holder,
                                ttl=float(ttl_s), now=self._clock())
        if "lease" not in answer:
            held = answer.get("held")
            raise LeaseHeld(deployment, held["holder"] if held else "nobody",
                            float(held["expiresAt"]) if held else 0.0)
        return _lease(answer["lease"])

    def release_lease(self, deployment: str, holder: str) -> None:
        self._mutation("releaseLease", deployment=deployment, holder=holder)

    def current_lease(self, deployment: str) -> Lease | None:
        doc = self._query("getLease", deployment=deployment)
        if doc is None or float(doc["expiresAt"]) <= self._clock():
            return None
        return _lease(doc)

    def list_leases(self) -> list[Lease]:
        return [_lease(d) for d in self._paged("listLeases")]

    def break_lease(self, deployment: str, *, reason: str = "") -> Lease | None:
        doc = self._mutation("breakLease", deployment=deployment,
                             reason=_clean(reason) or None, now=self._clock())
        return None if doc is None else _lease(doc)

    # -- AuditLog ---------------------------------------------------------------------------
    def audit(self, user_id: str, event: str, detail: dict[str, Any] | None = None) -> None:
        self._mutation("audit", userId=user_id, event=event, detail=_detail(detail),
                       now=self._clock())

    def audit_log(self, user_id: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest ``limit`` entries, oldest first, read in pages."""

        out: list[dict[str, Any]] = []
        before: float | None = None
        while len(out) < limit:
            want = min(self._page, limit - len(out))
            page = self._query("auditLog", userId=user_id, before=before, limit=want)
            out += page
            if len(page) < want:
                break
            before = float(page[-1]["seq"])
        return [AuditEntry(at=float(d["at"]), user_id=d["userId"], event=d["event"],
                           detail=json.loads(d["detail"])) for d in reversed(out)]

    # -- ProgressStore ----------------------------------------------------------------------
    def save_progress(self, kind: ProgressKind, user_id: str, doc: dict[str, Any]) -> None:
        text = json.dumps(doc, default=str, sort_keys=True)  # ASCII: a character is a byte
        parts = [text[i:i + _PROGRESS_PART] for i in range(0, len(text), _PROGRESS_PART)]
        self._mutation("saveProgress", kind=check_progress_kind(kind), userId=user_id,
                       parts=parts or ["{}"], now=self._clock())

    def load_progress(self, kind: ProgressKind, user_id: str) -> dict[str, Any] | None:
        parts = self._query("loadProgress", kind=check_progress_kind(kind), userId=user_id)
        return json.loads("".join(parts)) if parts else None


ENV_MAIN_URL, ENV_MAIN_KEY = "BYOD_MAIN_URL", "BYOD_MAIN_ADMIN_KEY"


def main_target(env: Mapping[str, str] | None = None) -> DeploymentTarget:
    """Main, as ``BYOD_MAIN_URL`` / ``BYOD_MAIN_ADMIN_KEY`` name it (the settings every
    command that reaches main reads)."""

    env = os.environ if env is None else env
    url, key = env.get(ENV_MAIN_URL, "").strip(), env.get(ENV_MAIN_KEY, "").strip()
    if not url or not key:
        raise RegistryError(f"BYOD_REGISTRY={LOCATION} keeps the registry on the main "
                            f"deployment, which is not configured: set {ENV_MAIN_URL} and "
                            f"{ENV_MAIN_KEY}")
    return DeploymentTarget(label="main", url=url, admin_key=key,
                            allow_insecure_local=url.lower().startswith("http://"))


def open_convex_main(location: str, connector: Connector | None, *,
                     clock: Callable[[], float] = time.time,
                     env: Mapping[str, str] | None = None) -> ConvexMainStore:
    """The registry on main, through ``connector``'s client for main; checked at once, so
    a main without the registry's functions is an error naming the command that deploys
    them, before any command starts its work."""

    if location.strip().lower() != LOCATION:
        raise RegistryError(f"registry location {location!r} is not supported: the registry "
                            f"on a Convex deployment is {LOCATION!r}")
    if connector is None:
        raise RegistryError(f"the registry at {LOCATION} is reached through main's client; "
                            "open it with a connector (the workspace's)")
    try:
        runner = connector.client(main_target(env))
    except ByodError as exc:
        if isinstance(exc, RegistryError):
            raise
        raise RegistryError(f"the main deployment ({ENV_MAIN_URL}, {ENV_MAIN_KEY}) cannot "
                            f"hold the registry: {redact(str(exc))}") from None
    store = ConvexMainStore(runner, clock=clock)
    try:
        store.ping()
    except BaseException:
        store.close()
        raise
    return store
