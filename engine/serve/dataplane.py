"""The data plane: an app function call routed to main or the user's own deployment.

The function's location comes from its table map (``engine.serve.functions``) and the
user's state, decided by the engine's ``Router`` (one registry read): a connected user's
user-located tables go to their deployment, pending/disconnected users and users without
BYOD use main, a user in error is blocked. Refusals are typed: ``blocked`` (423),
``migrating`` (503 + ``Retry-After`` while a disconnect or a copy from main moves the
user's data), ``unknown_function`` (404), ``wrong_kind`` (400). The premium gate never
refuses a data call: a user it keeps out has no BYOD setup, so their content is on main,
and existing connections keep working when the gate closes (a token without the ``data``
scope is refused with 403 before this module is reached).

A call that finds the user's deployment unreachable, timing out or refusing the key blocks
the user at once (status ``error`` with the sanitized reason, audited as
``routing_blocked``) and says so: the next call is refused without waiting for the next
health run, and nothing falls back to main.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from engine.commands.workspace import Workspace
from engine.errors import (
    ByodError,
    DeploymentBlocked,
    DeploymentServerError,
    DeploymentTimeout,
    DeploymentUnauthorized,
    DeploymentUnreachable,
    FunctionError,
    InvalidTransition,
    UnknownTable,
)
from engine.fleet.health_states import classify_failure
from engine.lifecycle.progress import disconnect_in_progress
from engine.lifecycle.routing import Router
from engine.ports.deployment import FunctionRunner
from engine.ports.registry import UserConfig
from engine.redact import redact
from engine.registry.open import Store
from engine.schema.models import Location
from engine.serve.errors import ApiError, from_engine_error
from engine.serve.functions import FunctionCatalog

__all__ = ["KINDS", "MIGRATING_RETRY_AFTER_S", "run"]

log = logging.getLogger(__name__)


class Service(Protocol):
    """What routing needs of ``engine.serve.service.Service``."""

    ws: Workspace
    store: Store
    catalog: FunctionCatalog

    @property
    def router(self) -> Router: ...

    @property
    def main_client(self) -> FunctionRunner: ...

    observe_call: Callable[[str], None]

    def head_version(self) -> str: ...

    def _user(self, user_id: str) -> UserConfig | None: ...

KINDS = ("query", "mutation", "action")
MIGRATING_RETRY_AFTER_S = 30
_BLOCKING_FAILURES = (DeploymentUnreachable, DeploymentTimeout, DeploymentUnauthorized)


def _version_of(service: Service, user: UserConfig | None) -> str:
    head = service.head_version()
    if user is None or user.connection_status in ("pending", "disconnected"):
        return head
    return user.schema_version or head


def _table_for(service: Service, user_id: str, tables: tuple[str, ...]) -> str | None:
    """The table the router decides by: the function's first user-located table; None
    when it touches only main-located ones."""

    mapping = service.router.location_map(user_id)
    user_tables = [t for t in tables if mapping.get(t) is Location.USER]
    if user_tables:
        return user_tables[0]
    if tables and all(t in mapping for t in tables):
        return None
    # no table map read from the module: it runs where the user's content lives
    return next((t for t, loc in sorted(mapping.items()) if loc is Location.USER
                 and not t.startswith("byod")), None)


def block_now(service: Service, user_id: str, exc: BaseException,
              secrets: tuple[str, ...] = ()) -> ApiError:
    """Mark the user ``error`` at once after a routed call failed this way; the refusal."""

    verdict = classify_failure(exc)
    reason = redact(f"{verdict.state}: {verdict.reason or type(exc).__name__}", list(secrets))
    try:
        user = service.store.find_user(user_id)
        if user is not None and user.connection_status == "connected":
            service.store.set_connection_status(user_id, "error", error=reason,
                                                tested_at=time.time())
            service.store.audit(user_id, "routing_blocked", {"state": verdict.state,
                                                             "reason": reason})
    except InvalidTransition:
        pass
    service.router.invalidate(user_id)
    log.warning("user %s blocked by a routed call: %s", user_id, verdict.state,
                extra={"user_id": user_id})
    return ApiError(423, "blocked", f"your deployment failed this call ({reason}); you are "
                    "blocked until a retry succeeds", extra={"blocked_now": True,
                                                             "state": verdict.state})


def run(service: Service, user_id: str, kind: str, path: str,
        args: dict[str, Any]) -> Any:
    """Route and run one app function call; its return value, or an ``ApiError``."""

    try:
        return _run(service, user_id, kind, path, args)
    except ApiError as exc:
        service.observe_call("blocked_now" if exc.extra.get("blocked_now") else
                             "blocked" if exc.code == "blocked" else "refused")
        raise


def _run(service: Service, user_id: str, kind: str, path: str, args: dict[str, Any]) -> Any:

    if kind not in KINDS:
        raise ApiError(422, "invalid_kind", f"kind must be one of {', '.join(KINDS)}",
                       field="kind")
    if not isinstance(args, dict):
        raise ApiError(422, "invalid_args", "args must be an object", field="args")
    user = service._user(user_id)
    version = _version_of(service, user)
    function = service.catalog.lookup(version, path)
    on_main = function is None and service.catalog.on_main(path)
    if function is None and not on_main:
        raise ApiError(404, "unknown_function",
                       f"{path!r} is not a function of the app's bundle for version "
                       f"{version} nor one of serve.main_functions", field="path")
    if function is not None and function.kind != kind:
        raise ApiError(400, "wrong_kind", f"{path!r} is a {function.kind}, not a {kind}",
                       field="kind")
    if user is not None and disconnect_in_progress(service.store, user_id):
        raise ApiError(503, "migrating", "this user's data is being moved; try again shortly",
                       retry_after=MIGRATING_RETRY_AFTER_S)
    if on_main:
        return _call(service, user_id, service.main_client, kind, path, args, routed=False)
    assert function is not None
    try:
        table = _table_for(service, user_id, function.tables)
        if table is None:
            return _call(service, user_id, service.main_client, kind, path, args,
                         routed=False)
        client = service.router.client_for(user_id, table)
    except DeploymentBlocked as exc:
        raise ApiError(423, "blocked", redact(exc.reason)) from None
    except UnknownTable as exc:
        raise ApiError(404, "unknown_function", str(exc), field="path") from None
    except ByodError as exc:
        raise from_engine_error(exc) from None
    routed = client is not service.main_client
    return _call(service, user_id, client, kind, path, args, routed=routed)


def _call(service: Service, user_id: str, client: Any, kind: str, path: str,
          args: dict[str, Any], *, routed: bool) -> Any:
    try:
        value = client.run(kind, path, args)
        service.observe_call("user" if routed else "main")
        return value
    except ApiError:
        raise
    except _BLOCKING_FAILURES as exc:
        if routed:
            raise block_now(service, user_id, exc) from None
        raise ApiError(502, "main_unavailable", f"the main deployment failed this call: "
                       f"{redact(str(exc))}") from None
    except FunctionError as exc:
        raise ApiError(400, "function_error", redact(str(exc))) from None
    except DeploymentServerError as exc:
        raise ApiError(502, "deployment_error", redact(str(exc)), retry_after=5) from None
    except ByodError as exc:
        raise from_engine_error(exc) from None
