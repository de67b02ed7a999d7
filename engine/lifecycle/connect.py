"""Connecting a user's own Convex deployment: validate, test, save, deploy, record.

Each stage is written to the registry as the user's deployment progress (once a row exists)
and reported to an optional ``on_stage`` callback::

    validating → testing → saving → deploying → recording → (copying) → done

Why the order: input is checked before any I/O; the deployment is proven reachable and the
key accepted before anything is stored; credentials are stored (encrypted, updated in place
on a re-connect) before the deploy so a failed deploy can be retried from them
(``retry_connect``). A failure before saving leaves the row ``pending`` (if there is one); a
failure after saving leaves it ``error`` with a sanitized reason. A lease on the user id keeps
a rollout and a connect from working the same deployment at once.

A deployment that already runs a byod bundle of the *head* version is not redeployed; one that
runs another byod version is recorded as it is (not overwritten: its data may not fit the head
schema yet) and left for a rollout to migrate.

With ``copy_from_main`` the user's existing content is copied from the app's main deployment
(``engine.lifecycle.copy_from_main``) in a ``copying`` stage after the deploy: the user is blocked (status
``error``, "copying") so nothing is written to main mid-copy, and is marked connected only
once the copy verified. A failed copy keeps its progress; ``retry_connect`` resumes it.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Union

from engine.bundle.compiler import Bundle, compile_version
from engine.config import EngineConfig
from engine.convex.connector import HttpConnector
from engine.convex.targets import validate_deploy_key, validate_url
from engine.errors import (
    ByodError,
    CopyFromMainError,
    DeployFailed,
    DeploymentError,
    InvalidCredentials,
    RegistryError,
)
from engine.fleet.health_states import nothing_deployed as _nothing_deployed
from engine.lifecycle.copy_from_main import CopyPlan, plan_copy, run_copy_stage
from engine.lifecycle.crashpoints import crash_point
from engine.lifecycle.gate import Entitlement, check_entitled, grandfathered
from engine.lifecycle.health import check_one
from engine.lifecycle.progress import copy_in_progress
from engine.plan.graph import VersionGraph
from engine.plan.versions import Versions
from engine.ports.deployment import (
    Connector,
    DeployAdapter,
    DeploymentTarget,
    FunctionRunner,
    VersionInfo,
    close_quietly,
)
from engine.ports.registry import RegistryStore, UserConfig
from engine.redact import redact
from engine.registry.heartbeat import LeaseHeartbeat
from engine.schema.models import SchemaVersion
from engine.vault import Vault

__all__ = [
    "ConnectionTest",
    "STAGES",
    "connect",
    "head_version",
    "retry_connect",
    "test_connection",
]

log = logging.getLogger(__name__)

STAGES = ("validating", "testing", "saving", "deploying", "recording", "copying", "done")
StageCallback = Callable[[str, str], None]

VersionsToDeploy = Union[VersionGraph, SchemaVersion, Mapping[str, SchemaVersion],
                         Iterable[SchemaVersion]]
"""A version to deploy, or versions whose head is deployed."""


def head_version(versions: VersionsToDeploy | None, config: EngineConfig) -> SchemaVersion:
    """The version to deploy: the one given, or the head of a graph or of versions, or
    (None) the head of the config's ``versions_dir``."""

    if versions is None:
        from engine.schema.loader import load_versions

        versions = load_versions(config.versions_dir, config)
    if isinstance(versions, SchemaVersion):
        return versions
    if not isinstance(versions, VersionGraph):
        versions = VersionGraph(versions.values() if isinstance(versions, Mapping) else versions)
    return versions.resolve("head")


# -- the flow ----------------------------------------------------------------------------------


class _Flow:
    """The mutable bits of one connect attempt: the stage reached and the secrets in scope."""

    def __init__(self, user_id: str, store: RegistryStore, secrets: tuple[str, ...],
                 on_stage: StageCallback | None):
        self.user_id = user_id
        self.store = store
        self.secrets = secrets
        self.on_stage = on_stage
        self.stage = "validating"
        self.saved = False

    def enter(self, stage: str, progress: str | None = None) -> None:
        self.stage = stage
        log.info("connect %s: %s", self.user_id, stage)
        if self.on_stage is not None:
            self.on_stage(self.user_id, stage)
        # Validation is pure: it leaves an existing row exactly as it was.
        if stage != "validating" and self.store.find_user(self.user_id) is not None:
            self.store.set_deployment(self.user_id, progress=progress or stage)

    def clean(self, exc: BaseException) -> str:
        return redact(str(exc) or type(exc).__name__, self.secrets)

    def fail(self, exc: BaseException) -> None:
        """Record the failure on the user's row (if any), sanitized. A registry problem
        while recording is logged, never allowed to hide the original failure."""

        try:
            self._record_failure(exc)
        except ByodError as record_exc:
            log.warning("connect %s: could not record the failure: %s", self.user_id,
                        self.clean(record_exc))

    def _record_failure(self, exc: BaseException) -> None:
        if self.stage == "validating":  # bad input or a closed gate: nothing was attempted
            return
        reason = f"{self.stage}: {self.clean(exc)}"
        user = self.store.find_user(self.user_id)
        if user is None:
            return
        if self.saved:
            self.store.set_connection_status(self.user_id, "error", error=reason)
            self.store.set_deployment(
                self.user_id, progress=f"failed at {self.stage}",
                status="failed" if self.stage in ("deploying", "recording") else None)
        else:
            self.store.set_deployment(self.user_id, progress=f"failed at {self.stage}")
            if user.connection_status == "pending":
                self.store.set_connection_status(self.user_id, "pending", error=reason)

    def reraise(self, exc: BaseException) -> ByodError:
        """The error to hand the caller: the original when it is already clean."""

        if isinstance(exc, ByodError) and self.clean(exc) == str(exc):
            return exc
        return DeployFailed(f"{self.stage} failed: {self.clean(exc)}", deployment=self.user_id)


def _probe(adapter: DeployAdapter, label: str) -> VersionInfo | None:
    """Prove reachability and auth. None: reachable, but no byod bundle deployed yet."""

    try:
        return adapter.read_version()
    except DeploymentError as exc:
        if _nothing_deployed(exc):
            return None
        raise


def _copy_stage(flow: _Flow, adapter: DeployAdapter, plan: CopyPlan, *,
                store: RegistryStore, head: SchemaVersion, lease: LeaseHeartbeat) -> str:
    """Block the user, copy and verify (resuming an interrupted copy); the progress note."""

    flow.enter("copying")
    user_id = flow.user_id

    def still_ours(event: str, detail: dict[str, Any]) -> None:  # stop once the lease is lost
        lease.check()

    report = run_copy_stage(user_id, plan, store=store, version=head, dest=adapter,
                            hook=still_ours)
    return f"done: {report.copied} documents copied from main and verified"


def _run(flow: _Flow, target: DeploymentTarget, *, store: RegistryStore, vault: Vault,
         config: EngineConfig, connector: Connector, head: SchemaVersion, bundle: Bundle,
         save: bool, copy: CopyPlan | None = None) -> UserConfig:
    """testing → (saving) → deploying → recording → (copying) → done, under the user's
    lease."""

    user_id = flow.user_id
    # A short TTL kept alive by a heartbeat while connect runs (a deploy can take minutes):
    # a killed connect's lease lapses quickly, at once when its process is provably gone.
    lease = LeaseHeartbeat(store, user_id, f"connect:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    lease.acquire()
    adapter: DeployAdapter | None = None
    try:
        flow.enter("testing")
        adapter = connector.deployer(target)
        info = _probe(adapter, user_id)
        tested_at = time.time()

        if save:
            flow.enter("saving")
            before = store.find_user(user_id)
            url_ct, key_ct = vault.encrypt_credentials(user_id, target.url, target.admin_key)
            store.upsert_credentials(user_id, url_ct=url_ct, key_ct=key_ct)
            # A user already set up keeps their status (never "pending": that would route
            # their content to main mid-reconnect); anyone else is pending until done.
            status = before.connection_status if grandfathered(before) else "pending"
            store.set_connection_status(user_id, status,
                                        tested_at=tested_at)
        flow.saved = True

        flow.enter("deploying")
        if info is not None and info.version != head.id:
            return _keep_other_version(flow, store, info, head, tested_at,
                                       copying=copy is not None)
        _deploy_record_verify(flow, adapter, info, head, bundle, store)
        note = None
        if copy is not None:
            note = _copy_stage(flow, adapter, copy, store=store, head=head, lease=lease)
        flow.enter("done", note)
        user = store.set_connection_status(user_id, "connected", tested_at=time.time())
        store.audit(user_id, "connected", {"version": head.id,
                                           "fingerprint": bundle.fingerprint})
        return user
    finally:
        if adapter is not None:
            close_quietly(adapter)
        lease.release()


def _keep_other_version(flow: _Flow, store: RegistryStore, info: VersionInfo,
                        head: SchemaVersion, tested_at: float, *, copying: bool) -> UserConfig:
    """Another byod version is live there: record it, never deploy over its data (a
    rollout brings it to the head)."""

    user_id = flow.user_id
    store.set_deployment(user_id, status="deployed", version=info.version,
                         fingerprint=info.fingerprint)
    store.audit(user_id, "connect_found_version", {"version": info.version, "head": head.id})
    if copying:
        flow.enter("copying")
        raise CopyFromMainError(
            f"the deployment already runs {info.version} (head is {head.id}); content "
            "is copied from main only onto a deployment on the head version: run a "
            "rollout, then retry the connect with the copy")
    flow.enter("done", f"done: found {info.version} deployed; head is {head.id}, "
                       "run a rollout")
    return store.set_connection_status(user_id, "connected", tested_at=tested_at)


def _deploy_record_verify(flow: _Flow, adapter: DeployAdapter, info: VersionInfo | None,
                          head: SchemaVersion, bundle: Bundle, store: RegistryStore) -> None:
    """Deploy the head bundle unless it is live already, record it on the deployment
    unless recorded already, and read it back: a deploy that did not take fails here."""

    user_id = flow.user_id
    if info is None or info.fingerprint != bundle.fingerprint:
        store.set_deployment(user_id, status="deploying")
        adapter.deploy(bundle)
        crash_point("connect.deployed")
    flow.enter("recording")
    recorded = info.recorded if info is not None else None
    if not (recorded and recorded.get("version") == head.id
            and recorded.get("fingerprint") == bundle.fingerprint
            and info is not None and info.fingerprint == bundle.fingerprint):
        adapter.mutation("byod:recordVersion", {
            "version": head.id, "fingerprint": bundle.fingerprint, "kind": "version"})
    check = _probe(adapter, user_id)
    if check is None:
        raise DeployFailed(f"after deploying {head.id} the deployment reports no byod "
                           "version (the deploy did not take)", deployment=user_id)
    if check.version != head.id or check.fingerprint != bundle.fingerprint:
        raise DeployFailed(
            f"after deploying {head.id} the deployment reports version {check.version} "
            f"with fingerprint {check.fingerprint[:12]}", deployment=user_id)
    store.set_deployment(user_id, status="deployed", version=head.id,
                         fingerprint=bundle.fingerprint)


def connect(user_id: str, url: str, deploy_key: str, *, store: RegistryStore, vault: Vault,
            config: EngineConfig, connector: Connector | None = None,
            versions: VersionsToDeploy | None = None, allow_insecure_local: bool = False,
            entitlement: Entitlement | None = None,
            on_stage: StageCallback | None = None, copy_from_main: bool = False,
            main_client: FunctionRunner | None = None,
            copy_page_size: int = 200) -> UserConfig:
    """Connect (or re-connect) ``user_id`` to their deployment and put it on the head
    version. Returns the user's row (never with plaintext secrets). Raises
    ``InvalidCredentials``, ``NotEntitled``, a classified ``DeploymentError``, or
    ``LeaseHeld`` when a rollout is working the deployment. ``copy_from_main`` copies the
    user's existing content from the main deployment (``main_client``, or
    ``BYOD_MAIN_URL`` + ``BYOD_MAIN_ADMIN_KEY``) before the user is marked connected;
    it raises ``CopyFromMainError`` when the copy stops or does not verify."""

    secrets = tuple(s for s in (url, deploy_key, url.strip() if isinstance(url, str) else None,
                                deploy_key.strip() if isinstance(deploy_key, str) else None) if s)
    flow = _Flow(user_id, store, secrets, on_stage)
    owned: list[Any] = []
    try:
        flow.enter("validating")
        if not isinstance(user_id, str) or not user_id.strip():
            raise InvalidCredentials("a user id is required")
        check_entitled(user_id, config=config, store=store, entitlement=entitlement)
        clean_url = validate_url(url, allow_insecure_local, label=user_id)
        validate_deploy_key(deploy_key, label=user_id)
        head = head_version(versions, config)
        bundle = compile_version(head, config)
        target = DeploymentTarget(label=user_id, url=clean_url, admin_key=deploy_key.strip(),
                                  allow_insecure_local=allow_insecure_local)
        connector = connector or HttpConnector(config)
        plan = _copy_plan(flow, copy_from_main, main_client, copy_page_size, connector, owned)
        return _run(flow, target, store=store, vault=vault, config=config,
                    connector=connector, head=head, bundle=bundle, save=True, copy=plan)
    except ByodError as exc:
        flow.fail(exc)
        raise flow.reraise(exc) from None
    except Exception as exc:  # an adapter bug must not leak secrets through a traceback
        flow.fail(exc)
        raise flow.reraise(exc) from None
    finally:
        for client in owned:
            close_quietly(client)


def _copy_plan(flow: _Flow, wanted: bool, main_client: FunctionRunner | None,
               page_size: int, connector: Connector, owned: list[Any]) -> CopyPlan | None:
    """Checked while validating: a missing main deployment fails before anything is
    stored or deployed. The main deployment's secrets join the ones redacted."""

    plan, secrets = plan_copy(wanted, main_client, page_size, connector, owned)
    flow.secrets = flow.secrets + secrets
    return plan


def retry_connect(user_id: str, *, store: RegistryStore, vault: Vault, config: EngineConfig,
                  connector: Connector | None = None,
                  versions: VersionsToDeploy | None = None,
                  entitlement: Entitlement | None = None,
                  on_stage: StageCallback | None = None, copy_from_main: bool | None = None,
                  main_client: FunctionRunner | None = None,
                  copy_page_size: int = 200) -> UserConfig:
    """Run the connect flow again from the credentials already saved for ``user_id``.
    ``copy_from_main=None`` resumes a copy from main that an earlier attempt started and
    did not finish (True starts or resumes one, False skips it)."""

    user = store.get_user(user_id)
    if not user.url_ct or not user.key_ct:
        raise RegistryError(
            f"user {user_id!r} has no saved credentials to retry with; connect with "
            "--url and --key-stdin")
    if user.connection_status == "disconnected":
        raise RegistryError(f"user {user_id!r} is disconnected; connect again with "
                            "--url and --key-stdin")
    target = vault.target_for(user)
    flow = _Flow(user_id, store, target.secrets, on_stage)
    flow.saved = True
    owned: list[Any] = []
    if copy_from_main is None:
        copy_from_main = copy_in_progress(store, user_id)
    try:
        flow.enter("validating")
        connector = connector or HttpConnector(config)
        plan = _copy_plan(flow, copy_from_main, main_client, copy_page_size, connector, owned)
        if not grandfathered(user):
            check_entitled(user_id, config=config, store=store, entitlement=entitlement)
        validate_url(target.url, target.allow_insecure_local, label=user_id)
        validate_deploy_key(target.admin_key, label=user_id)
        head = head_version(versions, config)
        bundle = compile_version(head, config)
        return _run(flow, target, store=store, vault=vault, config=config,
                    connector=connector, head=head, bundle=bundle, save=False, copy=plan)
    except ByodError as exc:
        flow.fail(exc)
        raise flow.reraise(exc) from None
    except Exception as exc:
        flow.fail(exc)
        raise flow.reraise(exc) from None
    finally:
        for client in owned:
            close_quietly(client)


@dataclass(frozen=True)
class ConnectionTest:
    """The outcome of ``test_connection`` (sanitized). ``state`` is the health state
    (``engine.fleet.health_states``); ``ok`` means the user's app works with this deployment
    (healthy, migrating or stale), and ``note`` explains a migrating or stale one."""

    user_id: str
    ok: bool
    connection_status: str
    latency_ms: float
    deployed_version: str | None = None
    error: str | None = None
    error_kind: str | None = None
    state: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def test_connection(user_id: str, *, store: RegistryStore, vault: Vault,
                    config: EngineConfig, connector: Connector | None = None,
                    versions: Versions | None = None) -> ConnectionTest:
    """Ask the deployment for its version with the saved credentials and classify the
    answer exactly as a health check does (``versions``: a ``VersionGraph`` or versions;
    None loads ``config.versions_dir``); record the time and move ``connected`` ↔
    ``error``. Pending and disconnected users keep their status (only the time and reason
    are recorded); credentials that do not decrypt change nothing. Never consults the
    premium gate."""

    if versions is None:
        from engine.schema.loader import load_versions

        versions = load_versions(config.versions_dir, config)
    connector = connector or HttpConnector(config)

    def read(target: DeploymentTarget) -> VersionInfo:
        client = connector.client(target)
        try:
            return client.read_version()
        finally:
            close_quietly(client)

    res = check_one(user_id, store=store, vault=vault, config=config, graph=versions,
                    read_version=read)
    ok = res.routable
    return ConnectionTest(user_id, ok, res.status_after, res.latency_ms or 0.0,
                          deployed_version=res.version,
                          error=None if ok else res.reason,
                          error_kind=None if ok else res.error_kind,
                          state=res.state, note=res.reason if ok else None)


test_connection.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
