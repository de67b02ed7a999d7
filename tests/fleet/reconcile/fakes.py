"""Fake deployments that keep their own record (``byodVersions`` / ``byodSteps``) the way
a compiled bundle does, on top of the shared in-memory fleet (real registry and vault)."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from ops_fakes import AsyncFake, FakeDeployment, Fleet

from engine.ports.deployment import DeploymentTarget, VersionInfo
from engine.ports.registry import JournalEntry


class RecordingDeployment(FakeDeployment):
    """``byod:version`` answers the latest ``byodVersions`` row as ``recorded``;
    ``byod:appliedSteps`` answers the ``byodSteps`` rows."""

    def __init__(self, name: str, **kw: Any):
        super().__init__(name, **kw)
        self.versions: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []

    def record_version(self, version: str, fingerprint: str, kind: str = "version",
                       plan_id: str | None = None) -> None:
        row: dict[str, Any] = {"version": version, "fingerprint": fingerprint, "kind": kind,
                               "appliedAt": time.time() * 1000}
        if plan_id is not None:
            row["planId"] = plan_id
        self.versions.append(row)

    def record_step(self, step_id: str, version: str, status: str = "completed",
                    processed: int = 0, at: float | None = None) -> None:
        self.steps = [s for s in self.steps if s["stepId"] != step_id]
        self.steps.append({"stepId": step_id, "version": version, "status": status,
                           "processed": processed, "cursor": None,
                           "updatedAt": (at if at is not None else time.time()) * 1000})

    def _fn_byod_version(self) -> dict[str, Any]:
        return {**super()._fn_byod_version(), "convexVersion": "1.48.0",
                "recorded": self.versions[-1] if self.versions else None}

    def _fn_byod_appliedSteps(self) -> list[dict[str, Any]]:
        return self.steps

    def read_version(self) -> VersionInfo:
        value = self.query("byod:version")
        return VersionInfo(value["version"], value["fingerprint"], value["kind"],
                           value["recorded"])


class AsyncRecording(AsyncFake):
    async def query(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.dep.query(path, args)


class RecordingFleet(Fleet):
    def add(  # type: ignore[override]
            self, user_id: str, *, status: str = "connected", version: str = "v1",
            fingerprint: str = "fp1", tables: list[str] | None = None,
            record: bool = True) -> RecordingDeployment:
        super().add(user_id, status=status, version=version, fingerprint=fingerprint,
                    tables=tables)
        dep = RecordingDeployment(f"dep-{user_id}", version=version, fingerprint=fingerprint,
                                  tables=tables)
        self.deployments[dep.url] = dep
        if record:
            dep.record_version(version, fingerprint)
        return dep

    def async_client(self, target: DeploymentTarget, timeout: float) -> AsyncRecording:
        return AsyncRecording(self.deployments[target.url], timeout)

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
