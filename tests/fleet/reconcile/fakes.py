"""Deployments that keep their own record (``byodVersions`` / ``byodSteps``) the way a
compiled bundle does, on top of the shared in-memory fleet (real registry and vault).
``engine.testing``'s deployment already keeps that record; here it is written on ``add``."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from ops_fakes import AsyncFake, FakeDeployment, Fleet

from engine.ports.registry import ConnectionStatus, JournalEntry


class RecordingDeployment(FakeDeployment):
    """``byod:version`` answers the latest ``byodVersions`` row as ``recorded``;
    ``byod:appliedSteps`` answers the ``byodSteps`` rows (``record_version`` /
    ``record_step`` write them)."""


AsyncRecording = AsyncFake


class RecordingFleet(Fleet):
    deployment_class = RecordingDeployment

    def add(  # type: ignore[override]
            self, user_id: str, *, status: ConnectionStatus = "connected", version: str = "v1",
            fingerprint: str = "fp1", tables: list[str] | None = None,
            record: bool = True) -> RecordingDeployment:
        dep = super().add(user_id, status=status, version=version, fingerprint=fingerprint,
                          tables=tables, record=record)
        assert isinstance(dep, RecordingDeployment)
        return dep

    def sql(self, statement: str, *params: Any) -> None:
        """Edit the registry file behind the store's back (a restore, a lost write)."""

        conn = sqlite3.connect(self.store.path)
        try:
            conn.execute(statement, params)
            conn.commit()
        finally:
            conn.close()


def journal_rows(user_id: str, plan_id: str, steps: list[tuple[str, str, str]], *,
                 target: str, created_at: float | None = None) -> list[JournalEntry]:
    """Journal rows like the runner writes: (step id, kind, status) in order."""

    at = created_at or time.time() - 60
    return [JournalEntry(user_id=user_id, plan_id=plan_id, step_id=sid, seq=i, kind=kind,
                         status=status, version=target, created_at=at)  # type: ignore[arg-type]
            for i, (sid, kind, status) in enumerate(steps)]
