"""Persisted progress of a resumable data copy (disconnect's migrate/delete, connect's copy
from main): one registry document per user with per-table cursors and the old→new id map,
saved after every page so a crash resumes where it stopped."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

from engine.errors import DeploymentServerError
from engine.lifecycle.remap import IdMaps
from engine.ports.registry import RegistryStore

__all__ = ["ProgressRun", "copy_in_progress", "copy_progress_id", "disconnect_in_progress",
           "progress_id", "read_pages"]


def read_pages(fetch: Callable[[str | None], dict[str, Any]], *, what: str,
               deployment: str = "") -> Iterator[dict[str, Any]]:
    """Every page of a paginated read, from the start until ``isDone``. A deployment that
    answers a page without finishing and without moving its cursor would loop forever:
    that is reported as a server error naming ``what`` instead."""

    cursor: str | None = None
    while True:
        result = dict(fetch(cursor) or {})
        yield result
        if result.get("isDone"):
            return
        following = result.get("continueCursor")
        if not isinstance(following, str) or following == cursor:
            raise DeploymentServerError(
                f"{what}: the deployment answered a page that neither finished nor moved "
                "its cursor", deployment=deployment)
        cursor = following

Hook = Callable[[str, dict[str, Any]], None]


class ProgressRun:
    """Bookkeeping shared by the copy runs; subclasses set ``store``, ``pid``, ``doc``,
    ``ids`` and ``hook`` and name their per-table counters in ``TABLE_COUNTERS``."""

    TABLE_COUNTERS: tuple[str, ...] = ("copied",)
    store: RegistryStore
    pid: str
    doc: dict[str, Any]
    ids: IdMaps
    hook: Hook | None

    def save(self) -> None:
        self.doc["ids"] = self.ids.to_json()
        self.doc["updated_at"] = time.time()
        self.store.save_rollout(self.pid, self.doc)

    def fire(self, event: str, **detail: Any) -> None:
        if self.hook is not None:
            self.hook(event, detail)

    def tstate(self, table: str) -> dict[str, Any]:
        """The table's progress entry, created on first use."""

        fresh: dict[str, Any] = {"cursor": None, "done": False, "page": 0}
        fresh.update({name: 0 for name in self.TABLE_COUNTERS})
        state: dict[str, Any] = self.doc["tables"].setdefault(table, fresh)
        return state


def copy_progress_id(user_id: str) -> str:
    """The registry document that holds one user's copy-from-main progress."""

    return f"connect-copy:{user_id}"


def copy_in_progress(store: RegistryStore, user_id: str) -> bool:
    """True while an unfinished copy holds the user blocked."""

    doc = store.load_rollout(copy_progress_id(user_id))
    return doc is not None and doc.get("state") == "running"


def progress_id(user_id: str) -> str:
    """The registry document that holds one user's disconnect progress."""

    return f"disconnect:{user_id}"


def disconnect_in_progress(store: RegistryStore, user_id: str) -> bool:
    """True while a migrate/delete — or connect's copy from main — holds the user
    blocked: health checks and connection tests must not move such a user back to
    connected mid-copy."""

    doc = store.load_rollout(progress_id(user_id))
    return (doc is not None and doc.get("state") == "running") or \
        copy_in_progress(store, user_id)
