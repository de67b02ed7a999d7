"""The registry's tables on the app's main deployment (``BYOD_REGISTRY=convex:main``).

The same records ``SqliteStore`` keeps in its file (``engine.registry.ddl``), as engine
tables of the main bundle, so an app with no other database keeps its BYOD registry next to
its own data and its front end can read a user's status reactively. Names start with
``byodReg`` (the engine's own prefix, refused for app tables). Credentials are only ever
vault ciphertexts; JSON documents (audit details, rollout headers and rows, copy progress)
are stored as JSON text, so any key an engine document holds is a valid value here.

Each rollout's rows carry the generation (``gen``) of the record they belong to: a large
rollout is saved page by page under a new generation and becomes visible in one last
transaction that switches the header to it, so a crash mid-save never shows half a rollout.
"""

from __future__ import annotations

from engine.schema.models import (
    BooleanV,
    DbIndex,
    FieldDef,
    Float64V,
    Location,
    NullV,
    StringV,
    Table,
    UnionV,
)

__all__ = ["REGISTRY_TABLES", "REGISTRY_TABLE_NAMES"]

_STR = FieldDef(type=StringV())
_NUM = FieldDef(type=Float64V())
_OPT_STR = FieldDef(type=UnionV(members=(StringV(), NullV())))
_OPT_NUM = FieldDef(type=UnionV(members=(Float64V(), NullV())))
_ABSENT_STR = FieldDef(type=UnionV(members=(StringV(), NullV())), optional=True)
_ABSENT_NUM = FieldDef(type=UnionV(members=(Float64V(), NullV())), optional=True)


def _table(name: str, fields: dict[str, FieldDef], *indexes: tuple[str, ...]) -> Table:
    return Table(name=name, location=Location.MAIN, fields=fields,
                 indexes=tuple(DbIndex(name=ix[0], fields=ix[1:]) for ix in indexes))


REGISTRY_TABLES: dict[str, Table] = {
    t.name: t for t in (
        _table("byodRegUsers", {
            "userId": _STR, "urlCt": _STR, "keyCt": _STR,
            "connectionStatus": _STR, "deploymentStatus": _STR,
            "deploymentProgress": _OPT_STR, "schemaVersion": _OPT_STR,
            "schemaFingerprint": _OPT_STR, "lastSchemaDeploy": _OPT_NUM,
            "lastConnectionTest": _OPT_NUM, "connectionError": _OPT_STR,
            "entitled": FieldDef(type=BooleanV()), "createdAt": _NUM, "updatedAt": _NUM,
        }, ("by_user", "userId"), ("by_connection_status", "connectionStatus", "userId")),
        _table("byodRegJournal", {
            "userId": _STR, "planId": _STR, "stepId": _STR, "seq": _NUM, "kind": _STR,
            "status": _STR, "version": _OPT_STR, "cursor": _OPT_STR, "processed": _NUM,
            "attempts": _NUM, "error": _OPT_STR, "fingerprint": _OPT_STR,
            "startedAt": _OPT_NUM, "completedAt": _OPT_NUM, "createdAt": _NUM,
            "updatedAt": _NUM,
        }, ("by_step", "userId", "planId", "stepId"), ("by_plan", "userId", "planId", "seq"),
            ("by_user", "userId", "createdAt", "planId", "seq")),
        _table("byodRegLeases", {
            "deployment": _STR, "holder": _STR, "acquiredAt": _NUM, "expiresAt": _NUM,
            "renewedAt": _OPT_NUM, "host": _OPT_STR, "pid": _OPT_NUM, "pidStarted": _OPT_NUM,
            "pidNamespace": _OPT_STR,
        }, ("by_deployment", "deployment")),
        _table("byodRegAudit", {
            "seq": _NUM, "at": _NUM, "userId": _STR, "event": _STR, "detail": _STR,
        }, ("by_seq", "seq"), ("by_user", "userId", "seq")),
        _table("byodRegRollouts", {
            "rolloutId": _STR, "data": _STR, "layout": _STR, "gen": _STR,
            "createdAt": _NUM, "updatedAt": _NUM, "touched": _NUM,
        }, ("by_rollout", "rolloutId"), ("by_touched", "touched")),
        _table("byodRegRolloutRows", {
            "rolloutId": _STR, "gen": _STR, "userId": _STR, "position": _NUM, "status": _STR,
            "data": _STR, "wave": _NUM, "updatedAt": _NUM,
            "claimedBy": _ABSENT_STR, "claimExpires": _ABSENT_NUM,
        }, ("by_user", "rolloutId", "gen", "userId"),
            ("by_position", "rolloutId", "gen", "position"),
            ("by_status", "rolloutId", "gen", "status", "position"),
            ("by_gen", "rolloutId", "gen")),
        _table("byodRegRolloutCounts", {
            "rolloutId": _STR, "status": _STR, "n": _NUM, "updatedAt": _NUM,
        }, ("by_status", "rolloutId", "status")),
        _table("byodRegProgress", {
            "kind": _STR, "userId": _STR, "part": _NUM, "text": _STR, "updatedAt": _NUM,
        }, ("by_key", "kind", "userId", "part")),
        # alerts until their channel acknowledges them (``AlertStore``); the service's
        # tokens and jobs are kept so a registry copied onto main and back loses nothing
        # (``byod serve`` runs on SQL stores)
        _table("byodRegAlerts", {
            "id": _NUM, "event": _STR, "payload": _STR, "createdAt": _NUM,
            "attempts": _NUM, "nextAt": _NUM, "lastError": _OPT_STR,
            "deliveredAt": _OPT_NUM, "channel": _STR,
        }, ("by_key", "id"), ("by_pending", "deliveredAt", "id"),
            ("by_channel", "channel", "deliveredAt", "id")),
        _table("byodRegApiTokens", {
            "tokenId": _STR, "name": _STR, "tokenHash": _STR, "scopes": _STR,
            "createdAt": _NUM, "lastUsedAt": _OPT_NUM, "revokedAt": _OPT_NUM,
        }, ("by_key", "tokenId")),
        _table("byodRegJobs", {
            "jobId": _STR, "kind": _STR, "userId": _STR, "state": _STR, "params": _STR,
            "stage": _OPT_STR, "progress": _STR, "result": _OPT_STR, "error": _OPT_STR,
            "createdAt": _NUM, "updatedAt": _NUM, "claimedBy": _OPT_STR,
            "claimExpires": _OPT_NUM,
        }, ("by_key", "jobId")),
    )
}

REGISTRY_TABLE_NAMES = frozenset(REGISTRY_TABLES)
