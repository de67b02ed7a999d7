"""Verbs about one user's deployment: connect, retry, test, status, entitle, disconnect,
and the encryption key. Each takes a ``Workspace`` and returns data; printing is the CLI's."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from engine.commands.workspace import Workspace
from engine.errors import UnknownUser

if TYPE_CHECKING:
    from engine.lifecycle.connect import ConnectionTest
    from engine.lifecycle.disconnect import DisconnectReport
    from engine.lifecycle.routing import Router
    from engine.ports.deployment import FunctionRunner
    from engine.ports.registry import UserConfig
    from engine.vault import RotationReport

__all__ = ["connect", "disconnect", "entitle", "fleet_status", "retry_connect",
           "rotate_keys", "router", "test_connection", "user_status"]

StageCallback = Callable[[str, str], None]
F = TypeVar("F", bound=Callable[..., Any])


def suggesting_users(verb: F) -> F:
    """An unknown user id is refused with the closest registered ids ("did you mean")."""

    @functools.wraps(verb)
    def run(ws: Workspace, user_id: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return verb(ws, user_id, *args, **kwargs)
        except UnknownUser as exc:
            if exc.suggestions or exc.user_id != user_id:
                raise
            known = [u.user_id for u in ws.store.list_users()]
            raise UnknownUser(user_id, known) from None

    return run  # type: ignore[return-value]


def connect(ws: Workspace, user_id: str, url: str, deploy_key: str, *,
            version: str = "head", allow_insecure_local: bool = False,
            copy_from_main: bool = False,
            on_stage: StageCallback | None = None) -> "UserConfig":
    """Validate, test, save (encrypted), deploy ``version`` and mark the user connected."""

    from engine.lifecycle import connect as flow

    return flow.connect(user_id, url, deploy_key, store=ws.store, vault=ws.vault,
                        config=ws.config, versions=ws.graph.resolve(version),
                        connector=ws.connector,
                        allow_insecure_local=allow_insecure_local, on_stage=on_stage,
                        copy_from_main=copy_from_main)


@suggesting_users
def retry_connect(ws: Workspace, user_id: str, *, copy_from_main: bool | None = None,
                  on_stage: StageCallback | None = None) -> "UserConfig":
    """Run connect again from the saved credentials (resumes an interrupted copy)."""

    from engine.lifecycle import connect as flow

    return flow.retry_connect(user_id, store=ws.store, vault=ws.vault, config=ws.config,
                              versions=ws.graph, connector=ws.connector, on_stage=on_stage,
                              copy_from_main=copy_from_main)


@suggesting_users
def test_connection(ws: Workspace, user_id: str) -> "ConnectionTest":
    """Ask the deployment for its version with the saved credentials; connected ↔ error."""

    from engine.lifecycle import connect as flow

    return flow.test_connection(user_id, store=ws.store, vault=ws.vault, config=ws.config,
                                versions=ws.graph, connector=ws.connector)


@suggesting_users
def user_status(ws: Workspace, user_id: str, *, history: int = 20) -> dict[str, Any]:
    """One user's row (never credentials), lease, recent audit history and the journal of
    their latest plan."""

    store = ws.store
    user = store.get_user(user_id)
    data = user.public_dict()
    lease = store.current_lease(user_id)
    data["lease"] = None if lease is None else {"holder": lease.holder,
                                                "expires_at": lease.expires_at,
                                                "host": lease.host, "pid": lease.pid}
    data["history"] = [{"at": e.at, "event": e.event, "detail": e.detail}
                       for e in store.audit_log(user_id, limit=history)]
    journal = store.journal(user_id)
    latest = journal[-1].plan_id if journal else None
    data["journal_plan"] = latest
    data["journal"] = [
        {"plan_id": e.plan_id, "step_id": e.step_id, "seq": e.seq, "kind": e.kind,
         "status": e.status, "processed": e.processed, "attempts": e.attempts,
         "cursor": e.cursor, "error": e.error}
        for e in journal if e.plan_id == latest]
    return data


def fleet_status(ws: Workspace) -> dict[str, Any]:
    """Every user's row and the counts per connection status; an absent registry is an
    empty fleet, not a new file."""

    users = ws.store.list_users() if ws.registry_exists() else []
    counts: dict[str, int] = {}
    for u in users:
        counts[u.connection_status] = counts.get(u.connection_status, 0) + 1
    return {"availability": ws.config.availability, "counts": counts,
            "users": [u.public_dict() for u in users]}


@suggesting_users
def entitle(ws: Workspace, user_id: str, *, entitled: bool = True) -> "UserConfig":
    """Grant (or revoke) a user's entitlement to connect when availability is premium."""

    return ws.store.set_entitled(user_id, entitled)


def rotate_keys(ws: Workspace) -> "RotationReport":
    """Re-encrypt every stored credential under the current key (resumable)."""

    return ws.vault.rotate(ws.store)


@suggesting_users
def disconnect(ws: Workspace, user_id: str, mode: str, *, confirm: bool = False,
               page_size: int = 200,
               hook: Callable[[str, dict[str, Any]], None] | None = None,
               main_client: "FunctionRunner | None" = None,
               router: "Router | None" = None,
               abandon_migrate: bool = False) -> "DisconnectReport":
    """Keep, migrate back to main, or delete a user's data; then mark them disconnected.
    ``main_client`` defaults to main from ``BYOD_MAIN_URL`` / ``BYOD_MAIN_ADMIN_KEY``; a
    ``router`` of this process forgets the user's client once they are disconnected;
    ``abandon_migrate`` lets keep/delete replace an interrupted migrate (audited)."""

    from engine.lifecycle.disconnect import disconnect as flow

    return flow(user_id, mode, confirm=confirm, store=ws.store, vault=ws.vault,
                config=ws.config, graph=ws.graph, connector=ws.connector,
                main_client=main_client, router=router, page_size=page_size, hook=hook,
                abandon_migrate=abandon_migrate)


def router(ws: Workspace, main_client: "FunctionRunner | None" = None) -> "Router":
    """The app's data-access layer: for a user and a table, main or the user's own
    deployment (blocked users refused). ``main_client`` defaults to a client for the main
    deployment of ``BYOD_MAIN_URL`` / ``BYOD_MAIN_ADMIN_KEY``."""

    from engine.convex.targets import main_target_from_env
    from engine.lifecycle.routing import Router

    main = main_client if main_client is not None else ws.connector.client(main_target_from_env())
    return Router(ws.store, ws.vault, ws.config, ws.graph, main, connector=ws.connector)
