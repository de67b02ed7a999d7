"""Persisted progress of a resumable data copy (disconnect's migrate/delete, connect's copy
from main): one ``ProgressStore`` document per kind and user with per-table cursors and the
old→new id map, saved after every page so a crash resumes where it stopped."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

from engine.errors import DeploymentServerError
from engine.lifecycle.remap import IdMaps
from engine.ports.registry import ProgressKind, ProgressStore

__all__ = ["COPY_FROM_MAIN", "DISCONNECT", "ProgressRun", "copy_in_progress",
           "disconnect_in_progress", "read_pages"]

DISCONNECT: ProgressKind = "disconnect"
COPY_FROM_MAIN: ProgressKind = "copy_from_main"


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
    """Bookkeeping shared by the copy runs; subclasses name their progress ``KIND`` and
    per-table counters (``TABLE_COUNTERS``) and set ``store``, ``user_id``, ``doc``, ``ids``
    and ``hook``."""

    KIND: ProgressKind
    TABLE_COUNTERS: tuple[str, ...] = ("copied",)
    store: ProgressStore
    user_id: str
    doc: dict[str, Any]
    ids: IdMaps
    hook: Hook | None

    def save(self) -> None:
        self.doc["ids"] = self.ids.to_json()
        self.doc["updated_at"] = time.time()
        self.store.save_progress(self.KIND, self.user_id, self.doc)

    def fire(self, event: str, **detail: Any) -> None:
        if self.hook is not None:
            self.hook(event, detail)

    def tstate(self, table: str) -> dict[str, Any]:
        """The table's progress entry, created on first use."""

        fresh: dict[str, Any] = {"cursor": None, "done": False, "page": 0}
        fresh.update({name: 0 for name in self.TABLE_COUNTERS})
        state: dict[str, Any] = self.doc["tables"].setdefault(table, fresh)
        return state


def copy_in_progress(store: ProgressStore, user_id: str) -> bool:
    """True while an unfinished copy from main holds the user blocked."""

    doc = store.load_progress(COPY_FROM_MAIN, user_id)
    return doc is not None and doc.get("state") == "running"


def disconnect_in_progress(store: ProgressStore, user_id: str) -> bool:
    """True while a migrate/delete — or connect's copy from main — holds the user
    blocked: health checks and connection tests must not move such a user back to
    connected mid-copy."""

    doc = store.load_progress(DISCONNECT, user_id)
    # "verified": the data step is finished but the user not marked disconnected yet
    return (doc is not None and doc.get("state") in ("running", "verified")) or \
        copy_in_progress(store, user_id)
