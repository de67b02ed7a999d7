"""The states of one deployment's health and how an answer (or a failure) maps to them.

Shared by ``engine.lifecycle.health`` (the fleet check) and ``engine.lifecycle.connect.test_connection`` (one
user), so both always agree on what blocks a user. This module imports neither of them.

States and what they do to the user's connection status:

* routable — the user's app works, ``error`` → ``connected``:
  ``healthy`` (runs what the registry recorded), ``migrating`` (on a widened bundle this
  engine built: it accepts documents of both ends, a rollout has to finish it), ``stale``
  (runs exactly what the registry recorded, but that version now compiles to another
  fingerprint: a config change such as ``auth`` or ``convex_version``);
* blocking — ``connected`` → ``error``: ``drifted``, ``slow``, ``unreachable``,
  ``server_error``, ``unauthorized``, ``broken``;
* ``vault_error`` — the stored credentials do not decrypt with the configured keys: an
  operator problem, never the user's; the status is left alone;
* ``not_checked`` / ``skipped`` — no answer was asked for or waited for; left alone.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

from engine.bundle.compiler import compile_version
from engine.config import EngineConfig
from engine.errors import (
    ByodError,
    DeploymentError,
    DeploymentServerError,
    DeploymentTimeout,
    DeploymentUnauthorized,
    DeploymentUnreachable,
    FunctionError,
    VaultError,
)
from engine.fleet.artifacts import PlanKit
from engine.plan.graph import VersionGraph
from engine.plan.versions import Versions, as_version_source
from engine.ports.deployment import VersionInfo
from engine.ports.registry import RegistryStore, UserConfig
from engine.schema.models import SchemaVersion

__all__ = [
    "BLOCKING",
    "ROUTABLE",
    "STATES",
    "UNHEALTHY",
    "Expectations",
    "Verdict",
    "WidenMatch",
    "classify_answer",
    "classify_failure",
    "nothing_deployed",
    "target_status",
]

log = logging.getLogger(__name__)

ROUTABLE = frozenset({"healthy", "migrating", "stale"})
BLOCKING = frozenset({"drifted", "slow", "unreachable", "server_error", "unauthorized",
                      "broken"})
UNHEALTHY = BLOCKING | {"vault_error"}  # what makes a check (and its CLI run) fail
STATES = ("healthy", "migrating", "stale", *sorted(BLOCKING), "vault_error", "not_checked",
          "skipped")

_NOT_DEPLOYED = re.compile(r"(?i)could not find|not found|no such function|FunctionNotFound")
_WIDEN_NAME = re.compile(r"(?P<start>.+?)__(?P<end>.+)__widen")
_DONE_ROWS = ("succeeded", "already")


def _short(fp: str | None) -> str:
    return (fp or "none")[:12]


def nothing_deployed(exc: BaseException) -> bool:
    """A fresh deployment answers 'function not found' for byod:version: reachable, key
    accepted, but no byod bundle there."""

    if not isinstance(exc, DeploymentError):
        return False
    code = getattr(exc, "code", "") or ""
    return (isinstance(exc, FunctionError) or getattr(exc, "kind", "") == "request") and bool(
        _NOT_DEPLOYED.search(f"{code} {exc}"))


@dataclass(frozen=True)
class Verdict:
    """One deployment's state; ``reason`` is not yet redacted (the caller holds the
    secrets). ``error_kind`` is the failure's kind (``auth``, ``network`` …) or the state."""

    state: str
    reason: str | None = None
    drift: tuple[str, ...] = ()
    error_kind: str | None = None


def classify_failure(exc: BaseException, *, timeout: float | None = None) -> Verdict:
    """The state of a deployment whose credentials or answer failed."""

    text = str(exc)
    if isinstance(exc, VaultError):
        return Verdict("vault_error", f"credentials do not decrypt: {text}", error_kind="vault")
    if isinstance(exc, (DeploymentTimeout, asyncio.TimeoutError, TimeoutError)):
        wait = f"{timeout:g} s" if timeout is not None else "the timeout"
        return Verdict("slow", text or f"no answer within {wait}", error_kind="timeout")
    kind = getattr(exc, "kind", None) or type(exc).__name__
    if isinstance(exc, DeploymentUnauthorized):
        return Verdict("unauthorized", text, error_kind=kind)
    if isinstance(exc, DeploymentServerError):
        return Verdict("server_error", text, error_kind=kind)
    if isinstance(exc, DeploymentUnreachable):
        return Verdict("unreachable", text, error_kind=kind)
    if nothing_deployed(exc):
        return Verdict("broken", f"reachable, but no byod bundle is deployed ({text})",
                       error_kind=kind)
    return Verdict("broken", text or type(exc).__name__, error_kind=kind)


def target_status(state: str, *, block_on_drift: bool = True
                  ) -> Literal["connected", "error"] | None:
    """The connection status a ``connected``/``error`` user moves to for ``state``;
    None: leave the status alone."""

    if state in BLOCKING:
        return "error" if (block_on_drift or state != "drifted") else "connected"
    if state in ROUTABLE:
        return "connected"
    return None


@dataclass(frozen=True)
class WidenMatch:
    """What a widened bundle on a deployment is: the versions it bridges and, when the
    registry knows, the plan and the rollout that deployed it."""

    name: str
    start: str
    end: str
    target: str | None = None
    plan_id: str | None = None
    rollout_id: str | None = None
    rollout_running: bool = False

    def describe(self) -> str:
        bridge = f"{self.start} -> {self.end}"
        plan = f" (plan {self.plan_id} to {self.target or self.end})" if self.plan_id else ""
        if self.rollout_id and self.rollout_running:
            finish = (f"rollout {self.rollout_id} is working on it (if it crashed: "
                      f"`byod rollout --resume {self.rollout_id}`)")
        elif self.rollout_id:
            finish = (f"finish it with `byod rollout --resume {self.rollout_id}` "
                      "or a new rollout")
        else:
            finish = "finish it with `byod rollout --resume ID` (the rollout that left it) " \
                     "or a new rollout"
        return (f"migrating: on the widened bundle {self.name} bridging {bridge}{plan}; "
                f"it accepts documents of both versions, so the app keeps working; {finish}")


class Expectations:
    """What this engine would have put on a deployment: compiled fingerprints per version
    and the widened bundles of its plans, computed once per check and cached. With a
    ``store`` it also trusts widened bundles its journal says a rollout deployed (a
    config change since then alters what they compile to, not what they are)."""

    def __init__(self, graph: Versions, config: EngineConfig, store: RegistryStore | None = None):
        self.config = config
        self.store = store
        self.versions = as_version_source(graph)
        self._graph_arg = graph
        self._kit: Any = None
        self._compiled: dict[str, str | None] = {}
        self._widened: dict[tuple[str, str], tuple[str, str, str | None] | None] = {}
        self._rollouts: list[dict[str, Any]] | None = None

    # -- versions ----------------------------------------------------------------------
    def known(self, vid: str) -> bool:
        return self.versions.version(vid) is not None

    def compiled(self, vid: str) -> str | None:
        """The fingerprint ``vid`` compiles to now (None: unknown or not compilable)."""

        if vid not in self._compiled:
            version = self.versions.version(vid)
            fp: str | None = None
            if version is not None:
                try:
                    fp = compile_version(version, self.config).fingerprint
                except ByodError as exc:
                    log.warning("cannot compile version %s for a fingerprint check: %s",
                                vid, exc)
            self._compiled[vid] = fp
        return self._compiled[vid]

    # -- widened bundles ---------------------------------------------------------------
    def widened(self, user_id: str, name: str, fingerprint: str) -> WidenMatch | None:
        """The widened bundle ``name``/``fingerprint`` if this engine built it; None when
        it is unknown (then the deployment has drifted)."""

        parsed = _WIDEN_NAME.fullmatch(name or "")
        if parsed is None:
            return None
        start, end = parsed["start"], parsed["end"]
        plan_id = target = None
        for entry in self._journal(user_id):
            if entry.kind == "deploy_widened" and entry.fingerprint == fingerprint \
                    and entry.step_id.endswith(f":{start}..{end}"):
                plan_id, target = entry.plan_id, entry.version
        if plan_id is None:
            found = self._compiled_widen(name, fingerprint, start, end)
            if found is None:
                return None
            _start, _end, target = found
        rollout_id, running = self._rollout_for(user_id, plan_id)
        return WidenMatch(name, start, end, target=target, plan_id=plan_id,
                          rollout_id=rollout_id, rollout_running=running)

    def _journal(self, user_id: str) -> list[Any]:
        if self.store is None:
            return []
        try:
            return list(self.store.journal(user_id))
        except ByodError as exc:
            log.warning("cannot read the journal of %s: %s", user_id, exc)
            return []

    def _plan_kit(self) -> Any:
        if self._kit is None:
            graph = self._graph_arg
            try:
                if not isinstance(graph, VersionGraph):
                    if isinstance(graph, SchemaVersion):
                        graph = [graph]
                    elif isinstance(graph, dict):
                        graph = list(graph.values())
                    elif isinstance(graph, (list, tuple)):
                        graph = list(graph)
                    else:  # a Schema or VersionSource: no graph to plan with
                        self._kit = False
                        return self._kit
                    graph = VersionGraph(graph)
                self._kit = PlanKit(graph, self.config)
            except ByodError as exc:
                log.warning("cannot build the version graph to check widened bundles: %s", exc)
                self._kit = False
        return self._kit

    def _compiled_widen(self, name: str, fingerprint: str, start: str,
                        end: str) -> tuple[str, str, str | None] | None:
        key = (name, fingerprint)
        if key in self._widened:
            return self._widened[key]
        found: tuple[str, str, str | None] | None = None
        kit = self._plan_kit()
        if kit and start in kit.graph and end in kit.graph:
            # The group start..end is planned alone first; a fused plan to a later target
            # may group it the same way, so those are tried too.
            later = sorted(kit.graph.descendants(end), key=lambda v: (kit.graph.get(v).number, v))
            for target in [end, *later]:
                try:
                    plan = kit.plan(start, target)
                    steps = [s for s in plan.steps
                             if s.kind == "deploy_widened" and s.version == name]
                    if any(kit.step_bundle(plan, s).fingerprint == fingerprint for s in steps):
                        found = (start, end, target)
                        break
                except ByodError as exc:
                    log.debug("no plan %s -> %s to check %s: %s", start, target, name, exc)
        self._widened[key] = found
        return found

    def _rollout_for(self, user_id: str, plan_id: str | None) -> tuple[str | None, bool]:
        if self.store is None:
            return None, False
        if self._rollouts is None:
            try:
                self._rollouts = list(self.store.list_rollouts(limit=50))
            except ByodError as exc:
                log.warning("cannot list rollouts: %s", exc)
                self._rollouts = []
        candidates = []
        for doc in self._rollouts:
            # listed rollouts carry counts, not rows: read this user's row alone
            found = self.store.rollout_row(str(doc.get("rollout_id")), user_id)
            row = found.to_dict() if found is not None else None
            if not isinstance(row, dict) or row.get("status") in _DONE_ROWS:
                continue
            exact = plan_id is not None and row.get("plan_id") == plan_id
            candidates.append((not exact, doc))
        if not candidates:
            return None, False
        candidates.sort(key=lambda c: c[0])  # stable: newest first within each group
        doc = candidates[0][1]
        return str(doc.get("rollout_id")), doc.get("status") == "running"


def classify_answer(user: UserConfig, info: VersionInfo, expect: Expectations) -> Verdict:
    """The state of a deployment that answered ``byod:version`` with ``info``."""

    if info.kind == "widen":
        match = expect.widened(user.user_id, info.version, info.fingerprint)
        if match is not None:
            return Verdict("migrating", match.describe(), error_kind="migrating")
        return _drifted([(f"widened bundle {info.version} with fingerprint "
                          f"{_short(info.fingerprint)} is not one this engine's plans build "
                          "or its journal recorded")])
    if info.kind != "version":
        return _drifted([(f"bundle kind {info.kind!r} is neither a version nor a widened "
                          "bundle")])
    drift: list[str] = []
    if user.schema_version and info.version != user.schema_version:
        drift.append(f"version: registry says {user.schema_version}, "
                     f"deployment has {info.version}")
    known = expect.known(info.version)
    if not known:
        drift.append(f"version {info.version} is not in the version graph")
    if user.schema_fingerprint and info.fingerprint != user.schema_fingerprint:
        drift.append(f"fingerprint: registry says {_short(user.schema_fingerprint)}, "
                     f"deployment has {_short(info.fingerprint)}")
    expected = expect.compiled(info.version) if known else None
    if expected and info.fingerprint != expected:
        if not drift and (user.schema_version, user.schema_fingerprint) == (
                info.version, info.fingerprint):
            # Exactly what the registry recorded, but the version compiles differently now.
            return Verdict("stale", (
                f"stale: runs {info.version} as the registry recorded it (fingerprint "
                f"{_short(info.fingerprint)}), but {info.version} now compiles to "
                f"{_short(expected)} (a byod.toml change such as auth or convex_version); "
                "redeploy with a rollout to pick up the new bundle"), error_kind="stale")
        drift.append(f"fingerprint: version {info.version} compiles to {_short(expected)}, "
                     f"deployment has {_short(info.fingerprint)}")
    if drift:
        return _drifted(drift)
    return Verdict("healthy")


def _drifted(drift: list[str]) -> Verdict:
    return Verdict("drifted", "drift: " + "; ".join(drift), tuple(drift), error_kind="drifted")
