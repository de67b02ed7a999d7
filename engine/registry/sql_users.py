"""``SqlUsers``: the ``UserStore`` role, written once for SQLite and PostgreSQL (a mixin over
``engine.registry.sql_core.SqlCore``, like those of ``engine.registry.sql_roles``).

A user's row is read inside a write with ``self._for_update`` (``_get``), so a status
transition is decided on the row as it is, not on a read another writer has since made
stale.
"""

from __future__ import annotations

from typing import Any, Iterable

from engine.errors import InvalidTransition, RegistryError, UnknownUser
from engine.ports.registry import (
    CONNECTION_TRANSITIONS,
    ConnectionStatus,
    DeploymentStatus,
    UserConfig,
    check_user_id,
    deployment_changes,
)
from engine.registry.sql_core import SqlCore
from engine.registry.sql_roles import _clean

__all__ = ["SqlUsers", "USER_COLS"]

USER_COLS = (
    "user_id, url_ct, key_ct, connection_status, deployment_status, deployment_progress, "
    "schema_version, schema_fingerprint, last_connection_test, connection_error, entitled, "
    "created_at, updated_at"
)


def _user(row: Any) -> UserConfig:
    return UserConfig(
        user_id=row["user_id"], url_ct=row["url_ct"], key_ct=row["key_ct"],
        connection_status=row["connection_status"],
        deployment_status=row["deployment_status"],
        deployment_progress=row["deployment_progress"], schema_version=row["schema_version"],
        schema_fingerprint=row["schema_fingerprint"],
        last_connection_test=row["last_connection_test"],
        connection_error=row["connection_error"], entitled=bool(row["entitled"]),
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


class SqlUsers(SqlCore):
    """``UserStore``: a user's encrypted credentials and connection / deployment state."""

    # -- inside write transactions --------------------------------------------------------
    def _get(self, conn: Any, user_id: str) -> UserConfig:
        """The user's row, locked until the write ends (``UnknownUser`` when absent)."""

        row = conn.execute(f"SELECT {USER_COLS} FROM users WHERE user_id = ? "
                           f"{self._for_update}", (user_id,)).fetchone()
        if row is None:
            raise UnknownUser(user_id)
        return _user(row)

    # -- reads ------------------------------------------------------------------------------
    def get_user(self, user_id: str) -> UserConfig:
        user = self.find_user(user_id)
        if user is None:
            raise UnknownUser(user_id)
        return user

    def find_user(self, user_id: str) -> UserConfig | None:
        rows = self._read(f"SELECT {USER_COLS} FROM users WHERE user_id = ?", (user_id,))
        return _user(rows[0]) if rows else None

    def list_users(self, *, connection_status: Iterable[str] | None = None) -> list[UserConfig]:
        if connection_status is None:
            rows = self._read(f"SELECT {USER_COLS} FROM users ORDER BY user_id")
        else:
            wanted = list(connection_status)
            if not wanted:
                return []
            marks = ",".join("?" * len(wanted))
            rows = self._read(f"SELECT {USER_COLS} FROM users WHERE connection_status IN "
                              f"({marks}) ORDER BY user_id", wanted)
        return [_user(r) for r in rows]

    # -- writes -----------------------------------------------------------------------------
    def upsert_credentials(self, user_id: str, *, url_ct: str, key_ct: str) -> UserConfig:
        """Save a user's encrypted credentials: a new row (pending), or the same row updated
        in place — a re-connect never makes a second row."""

        check_user_id(user_id)
        now = self._clock()
        with self._write() as conn:
            # the insert either makes the row or, when it exists, leaves it to the update:
            # whether it existed is the database's answer, not an earlier read's
            created = conn.execute(
                "INSERT INTO users (user_id, url_ct, key_ct, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO NOTHING RETURNING user_id",
                (user_id, url_ct, key_ct, now, now)).fetchone() is not None
            if not created:
                conn.execute("UPDATE users SET url_ct = ?, key_ct = ?, updated_at = ? "
                             "WHERE user_id = ?", (url_ct, key_ct, now, user_id))
            self._audit(conn, user_id, "credentials_saved", {"replaced": not created})
            return self._get(conn, user_id)

    def set_connection_status(
        self, user_id: str, status: ConnectionStatus, *, error: str | None = None,
        tested_at: float | None = None,
    ) -> UserConfig:
        if status not in CONNECTION_TRANSITIONS:
            raise RegistryError(f"unknown connection status {status!r}")
        with self._write() as conn:
            user = self._get(conn, user_id)
            if status not in CONNECTION_TRANSITIONS[user.connection_status]:
                raise InvalidTransition("connection status", user.connection_status, status)
            # "connected" and "disconnected" clear the last error (the audit log keeps it);
            # other states keep it unless given a new one.
            new_error = None if status in ("connected", "disconnected") else (
                _clean(error) if error is not None else user.connection_error)
            conn.execute(
                "UPDATE users SET connection_status = ?, connection_error = ?, "
                "last_connection_test = COALESCE(?, last_connection_test), updated_at = ? "
                "WHERE user_id = ?",
                (status, new_error, tested_at, self._clock(), user_id))
            if status != user.connection_status or new_error != user.connection_error:
                self._audit(conn, user_id, "connection_status",
                            {"from": user.connection_status, "to": status, "error": new_error})
            return self._get(conn, user_id)

    def set_deployment(
        self, user_id: str, *, status: DeploymentStatus | None = None,
        progress: str | None = None, version: str | None = None,
        fingerprint: str | None = None,
    ) -> UserConfig:
        changes = deployment_changes(status, progress, version, fingerprint)
        with self._write() as conn:
            self._get(conn, user_id)
            if not changes:
                return self._get(conn, user_id)
            now = self._clock()
            sets = ", ".join(f"{k} = ?" for k in changes)
            extra = ", last_schema_deploy = ?" if version is not None else ""
            params: list[Any] = list(changes.values())
            if version is not None:
                params.append(now)
            conn.execute(f"UPDATE users SET {sets}{extra}, updated_at = ? WHERE user_id = ?",
                         (*params, now, user_id))
            self._audit(conn, user_id, "deployment", changes)
            return self._get(conn, user_id)

    def set_entitled(self, user_id: str, entitled: bool) -> UserConfig:
        """Grant or revoke the premium entitlement; creates a credential-less pending row so
        a user can be entitled before they connect."""

        check_user_id(user_id)
        now = self._clock()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO users (user_id, entitled, created_at, updated_at) VALUES (?,?,?,?) "
                "ON CONFLICT (user_id) DO UPDATE SET entitled = excluded.entitled, "
                "updated_at = excluded.updated_at", (user_id, int(entitled), now, now))
            self._audit(conn, user_id, "entitlement", {"entitled": bool(entitled)})
            return self._get(conn, user_id)

    def replace_ciphertexts(self, user_id: str, *, url_ct: str, key_ct: str,
                            expect_url_ct: str, expect_key_ct: str) -> bool:
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE users SET url_ct = ?, key_ct = ?, updated_at = ? "
                "WHERE user_id = ? AND url_ct = ? AND key_ct = ?",
                (url_ct, key_ct, self._clock(), user_id, expect_url_ct, expect_key_ct))
            if cur.rowcount == 1:
                self._audit(conn, user_id, "credentials_reencrypted", {})
                return True
            return False
