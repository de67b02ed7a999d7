"""The pure core of ``engine.fleet.reconcile``: where a deployment is by its own record, and
how the registry's row and journal differ from it. No I/O (``Expectations`` compiles and
caches fingerprints and reads the journal for widened bundles; nothing here writes).

Trust follows ``engine.fleet.health_states`` so reconcile, health checks and the runner agree:
a plain bundle is trusted when its version is in the graph and its fingerprint is what the
version compiles to, or exactly what the registry or the deployment recorded (stale); a
widened bundle when this engine builds it. Anything else is drift.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.fleet.health_states import Expectations, classify_answer
from engine.ports.deployment import VersionInfo
from engine.ports.registry import JournalEntry, UserConfig

__all__ = ["CLOCK_SKEW_S", "Comparison", "Finding", "compare"]

# How much older than a journal row a deployment's step record may look (clocks differ)
# and still be the same run of that step.
CLOCK_SKEW_S = 300.0
_OPEN = ("pending", "running", "failed")


def _short(fp: Any) -> str:
    return str(fp)[:12] if fp else "none"


@dataclass(frozen=True)
class Finding:
    """One difference between the registry and a deployment's own record.

    ``field``: ``schema_version``, ``schema_fingerprint``, ``deployment_status``,
    ``journal`` (with ``plan_id``/``step_id``) or ``bundle`` (drift with nothing else to
    name). ``registry`` / ``deployment``: the two values."""

    field: str
    registry: Any
    deployment: Any
    reason: str
    fixable: bool
    fixed: bool = False
    plan_id: str | None = None
    step_id: str | None = None

    def describe(self) -> str:
        name = f"journal {self.plan_id}/{self.step_id}" if self.field == "journal" else self.field
        shown = [_short(v) if "fingerprint" in self.field else v
                 for v in (self.registry, self.deployment)]
        state = "fixed" if self.fixed else ("fixable with --apply" if self.fixable else
                                            "not fixed")
        return f"{name}: registry {shown[0]}, deployment {shown[1]} ({state}; {self.reason})"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Claim:
    """Where the deployment is by its own record, and which registry statuses fit it."""

    version: str | None = None
    fingerprint: str | None = None
    statuses: frozenset[str] = frozenset()
    settle: str = "deployed"  # the status to write when the registry's does not fit
    drift: str | None = None
    note: str | None = None
    plan_ids: tuple[str, ...] = ()


@dataclass
class Comparison:
    """Findings plus what ``apply`` would write for the fixable ones."""

    findings: list[Finding] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)  # set_deployment keyword → value
    progress: str | None = None
    notes: list[str] = field(default_factory=list)
    drifted: bool = False


def _bundle_trusted(user: UserConfig, info: VersionInfo, recorded: dict[str, Any],
                    expect: Expectations) -> bool:
    """A plain bundle is trusted when it is what its version compiles to, or exactly what
    the registry or the deployment recorded (stale): healthstate's rules, per candidate."""

    candidates: list[tuple[str | None, str | None]] = []
    if expect.compiled(info.version) is not None:
        candidates.append((None, None))
    if user.schema_version and user.schema_fingerprint:
        candidates.append((user.schema_version, user.schema_fingerprint))
    if recorded.get("version") and recorded.get("fingerprint"):
        candidates.append((str(recorded["version"]), str(recorded["fingerprint"])))
    for version, fingerprint in candidates:
        as_recorded = dataclasses.replace(user, schema_version=version,
                                          schema_fingerprint=fingerprint)
        if classify_answer(as_recorded, info, expect).state in ("healthy", "stale"):
            return True
    return False


def _claim(user: UserConfig, info: VersionInfo, expect: Expectations) -> _Claim:
    recorded = info.recorded if isinstance(info.recorded, dict) else {}
    rec_v = str(recorded["version"]) if recorded.get("version") else None
    rec_fp = str(recorded["fingerprint"]) if recorded.get("fingerprint") else None
    plans = (str(recorded["planId"]),) if recorded.get("planId") else ()
    if info.kind == "version":
        if not expect.known(info.version):
            return _Claim(drift=f"version {info.version} is not in the version graph")
        if not _bundle_trusted(user, info, recorded, expect):
            return _Claim(drift=(
                f"fingerprint {_short(info.fingerprint)} of {info.version} is neither what "
                f"{info.version} compiles to ({_short(expect.compiled(info.version))}) nor "
                "what the registry or the deployment recorded"))
        if rec_v and rec_v != info.version:
            if not expect.known(rec_v) or not rec_fp:
                return _Claim(drift=f"its record names {rec_v}, a version not in the graph "
                                    "or without a fingerprint")
            return _Claim(rec_v, rec_fp, frozenset({"deploying", "failed"}), "deploying",
                          note=(f"runs the bundle of {info.version} but its record says "
                                f"{rec_v}: a rollout stopped between deploying and recording;"
                                " resume it (`byod rollout --resume ID`) or run a new one"),
                          plan_ids=plans)
        ok = {"deployed"} | ({"failed"} if user.schema_version == info.version else set())
        compiled = expect.compiled(info.version)
        note = None if info.fingerprint == compiled else (
            f"stale: {info.version} now compiles to {_short(compiled)}; a rollout refreshes it")
        return _Claim(info.version, info.fingerprint, frozenset(ok), "deployed", note=note,
                      plan_ids=plans)
    if info.kind == "widen":
        match = expect.widened(user.user_id, info.version, info.fingerprint)
        if match is None:
            return _Claim(drift=(f"widened bundle {info.version} with fingerprint "
                                 f"{_short(info.fingerprint)} is not one this engine builds"))
        if rec_v and rec_v != match.start:
            return _Claim(drift=(f"the deployment's record says {rec_v}, but its widened "
                                 f"bundle bridges {match.start} -> {match.end}"))
        fp = rec_fp if rec_v == match.start and rec_fp else expect.compiled(match.start)
        if not fp:
            return _Claim(drift=f"no fingerprint for {match.start}, the version under the "
                                "widened bundle")
        plan_ids = plans + ((match.plan_id,) if match.plan_id else ())
        return _Claim(match.start, fp, frozenset({"deploying", "failed"}), "deploying",
                      note=match.describe(), plan_ids=plan_ids)
    return _Claim(drift=f"bundle kind {info.kind!r} is neither a version nor a widened bundle")


def _matches(entry: JournalEntry, row: dict[str, Any]) -> bool:
    """The journal names a data step by its plan step id (``id`` or ``id@version``); the
    deployment by the data step id and the version it leads to."""

    sid = str(row.get("stepId") or "")
    return entry.kind == "run_data_step" and bool(sid) and entry.step_id in (
        sid, f"{sid}@{row.get('version')}")


def _same_run(entry: JournalEntry, row: dict[str, Any]) -> bool:
    updated = row.get("updatedAt")
    if not isinstance(updated, (int, float)) or not entry.created_at:
        return True
    return updated / 1000.0 + CLOCK_SKEW_S >= entry.created_at


def _journal_findings(claim: _Claim, info: VersionInfo, steps: Sequence[dict[str, Any]],
                      journal: Sequence[JournalEntry]) -> list[Finding]:
    found: dict[tuple[str, str], Finding] = {}
    # The deployment completed a data step the registry still has open.
    for row in steps:
        if row.get("status") != "completed":
            continue
        entries = [e for e in journal if _matches(e, row)]
        if any(e.status == "completed" for e in entries):
            continue
        open_ = [e for e in entries if e.status in _OPEN and _same_run(e, row)]
        if open_:
            e = open_[-1]  # the newest plan's row (the journal reads oldest first)
            found[(e.plan_id, e.step_id)] = Finding(
                "journal", e.status, "completed", f"the deployment recorded data step "
                f"{row.get('stepId')} completed ({row.get('processed', 0)} documents)",
                True, plan_id=e.plan_id, step_id=e.step_id)
    # The deployment recorded version R for plan P: every step of P up to record:R ran.
    recorded = info.recorded if isinstance(info.recorded, dict) else {}
    plan, reached = recorded.get("planId"), recorded.get("version")
    if plan and reached and recorded.get("kind", "version") == "version":
        ran = [e for e in journal if e.plan_id == plan]
        mark = next((e for e in ran if e.step_id == f"record:{reached}"), None)
        last = mark.seq if mark is not None else -1
        for e in ran:
            if e.seq <= last and e.status in _OPEN and (e.plan_id, e.step_id) not in found:
                found[(e.plan_id, e.step_id)] = Finding(
                    "journal", e.status, "completed", f"the deployment recorded {reached} "
                    f"for plan {plan}, so every step up to record:{reached} ran", True,
                    plan_id=e.plan_id, step_id=e.step_id)
    # The reverse: in the plans the deployment names, data steps the registry completed
    # that the deployment never recorded completing.
    for e in journal:
        if e.plan_id not in claim.plan_ids or e.kind != "run_data_step" \
                or e.status != "completed":
            continue
        mine = [r for r in steps if _matches(e, r)]
        if not any(r.get("status") == "completed" for r in mine):
            have = mine[-1].get("status") if mine else None
            found[(e.plan_id, e.step_id)] = Finding(
                "journal", "completed", have, "the registry says this data step completed, "
                "the deployment never recorded completing it: check its data before the "
                "next rollout", False, plan_id=e.plan_id, step_id=e.step_id)
    return list(found.values())


def compare(user: UserConfig, info: VersionInfo, steps: Sequence[dict[str, Any]],
            journal: Sequence[JournalEntry], expect: Expectations) -> Comparison:
    """How the registry's row and journal differ from the deployment's own record (no I/O
    but ``expect``'s cached compiles)."""

    claim = _claim(user, info, expect)
    out = Comparison()
    if claim.note:
        out.notes.append(claim.note)
    if claim.drift:
        out.drifted = True
        reason = f"drift: {claim.drift}; left untouched"
        if user.schema_version != info.version:
            out.findings.append(Finding("schema_version", user.schema_version, info.version,
                                        reason, False))
        if user.schema_fingerprint != info.fingerprint:
            out.findings.append(Finding("schema_fingerprint", user.schema_fingerprint,
                                        info.fingerprint, reason, False))
        if not out.findings:
            out.findings.append(Finding("bundle", f"{user.schema_version}",
                                        f"{info.kind} {info.version}", reason, False))
        return out
    assert claim.version is not None and claim.fingerprint is not None
    why = "the deployment's own record"
    if user.schema_version != claim.version:
        out.findings.append(Finding("schema_version", user.schema_version, claim.version,
                                    why, True))
        out.fields["version"] = claim.version
    if user.schema_fingerprint != claim.fingerprint:
        out.findings.append(Finding("schema_fingerprint", user.schema_fingerprint,
                                    claim.fingerprint, why, True))
        out.fields["fingerprint"] = claim.fingerprint
    if user.deployment_status not in claim.statuses:
        out.findings.append(Finding(
            "deployment_status", user.deployment_status, claim.settle,
            f"the deployment runs {info.kind} {info.version}", True))
        out.fields["status"] = claim.settle
    if out.fields:
        out.progress = (f"on {claim.version} (reconciled from the deployment)"
                        if claim.settle == "deployed" else
                        f"on {info.kind} {info.version} over {claim.version} (reconciled "
                        "from the deployment); a rollout finishes it")
    out.findings.extend(_journal_findings(claim, info, steps, journal))
    return out
