"""The reconcile step of one deployment's run (step 2 in ``engine.fleet.runner``): where
the deployment really is, by its own record, whether it runs a stale bundle of that
version, and the registry brought in line with it. Drift raises ``DriftDetected`` and is
never guessed. Split from ``runner`` so the step logic there reads on its own."""

from __future__ import annotations

import dataclasses
from typing import Any

from engine.errors import DriftDetected
from engine.events import DeploymentReconciled
from engine.fleet.artifacts import PlanKit
from engine.fleet.context import DeployOps, KitExpectations, RunContext
from engine.fleet.health_states import classify_answer
from engine.ports.registry import UserConfig

__all__ = ["reconcile_deployment", "record_reconciled", "running_fingerprint"]


async def reconcile_deployment(ctx: RunContext, ops: DeployOps, user_id: str,
                               user: UserConfig) -> tuple[str, Any, bool]:
    """Where the deployment really is, by its own record, and whether it runs a stale
    bundle of that version (see ``engine.fleet.runner``); drift raises."""

    kit = ctx.kit
    registry_version = user.schema_version
    info = await ops.read_version()
    recorded = info.recorded if isinstance(info.recorded, dict) else None
    stale = False
    if info.kind == "version":
        if info.version not in kit.graph:
            raise DriftDetected(user_id, registry_version or "a known version",
                                f"unknown version {info.version!r}")
        if info.fingerprint != kit.compiled_fingerprint(info.version):
            stale = _stale_or_drift(ctx, user_id, user, info, recorded)
    elif info.kind == "widen":
        verdict = classify_answer(user, info, KitExpectations(kit, ctx.store))
        if verdict.state != "migrating":
            raise DriftDetected(user_id, "a widened bundle this engine built",
                                "; ".join(verdict.drift) or str(verdict.reason))
    else:
        raise DriftDetected(user_id, "a version or widened bundle",
                            f"bundle kind {info.kind!r}")
    actual = (recorded or {}).get("version") or (
        info.version if info.kind == "version" else registry_version)
    if not actual:
        raise DriftDetected(user_id, "a recorded version",
                            "a widened bundle and no record of the version under it")
    if actual not in kit.graph:
        raise DriftDetected(user_id, registry_version or "a known version",
                            f"recorded version {actual!r} unknown to this engine")
    return str(actual), info, stale


def _stale_or_drift(ctx: RunContext, user_id: str, user: UserConfig, info: Any,
                    recorded: dict[str, Any] | None) -> bool:
    """True when the deployment runs exactly what was recorded for it — by the
    registry or, when the registry fell behind, by the deployment itself — but that
    version compiles to another fingerprint now (``stale``); anything else raises."""

    expect = KitExpectations(ctx.kit, ctx.store)
    records = [(user.schema_version, user.schema_fingerprint)]
    if recorded is not None:
        records.append((recorded.get("version"), recorded.get("fingerprint")))
    for version, fingerprint in records:
        if not version or not fingerprint:
            continue
        as_recorded = dataclasses.replace(user, schema_version=str(version),
                                          schema_fingerprint=str(fingerprint))
        if classify_answer(as_recorded, info, expect).state == "stale":
            return True
    expected = ctx.kit.compiled_fingerprint(info.version)
    raise DriftDetected(
        user_id, f"{info.version} fingerprint {expected[:12]}",
        f"fingerprint {str(info.fingerprint)[:12]}, which neither the registry nor the "
        "deployment recorded")


def record_reconciled(ctx: RunContext, user_id: str, before: str | None, source: str,
                      info: Any) -> None:
    """The deployment's own record wins: when the registry says otherwise, audit the
    difference and rewrite the registry's version and fingerprint."""

    if source != before:
        ctx.event(DeploymentReconciled(user_id, before, source))
        ctx.store.audit(user_id, "reconciled", {"registry": before, "deployment": source})
        ctx.store.set_deployment(user_id, version=source,
                                 fingerprint=running_fingerprint(ctx.kit, source, info))


def running_fingerprint(kit: PlanKit, source: str, info: Any) -> str:
    """The fingerprint of ``source`` as it runs on the deployment: the bundle itself when
    it is that version (maybe stale), its own record when a widened bundle sits on top."""

    if info.kind == "version" and info.version == source:
        return str(info.fingerprint)
    recorded = info.recorded if isinstance(info.recorded, dict) else {}
    if recorded.get("version") == source and recorded.get("fingerprint"):
        return str(recorded["fingerprint"])
    return kit.compiled_fingerprint(source)
