"""The registry's SQLite DDL of schema versions 1 to 7, as shipped before the registry was
migrated with Alembic. Each entry of ``MIGRATIONS`` moves a file from schema version i to
i+1; the Alembic revisions ``0001``..``0007`` of ``engine.registry.migrations`` run exactly
these statements on SQLite, so a file built either way has the same schema. The tuple is
frozen: a later change of the schema is a new Alembic revision (for SQLite and PostgreSQL),
never a new entry here, and ``SCHEMA_VERSION`` is the number of the head revision
(``tests/registry/test_schema_upgrade.py`` checks it against the script directory).

Tables: ``users`` (the reference design's userDatabaseConfig: ciphertexts only),
``journal`` (byodMigrations: one row per user, plan and step), ``leases`` (one runner per
deployment or rollout, expiring; version 3 adds the holder process), ``audit`` (every state
change), ``rollouts`` (the fleet runner's JSON documents), ``progress`` (version 2: one JSON
document per resumable data copy, keyed by kind and user), ``alerts`` (webhook alerts
until the receiver acknowledges them), ``rollout_deployments`` and ``rollout_counts`` (version 5: one
row per deployment of a rollout, counts per status), ``api_tokens`` and ``jobs`` (version 6: the service's tokens and
background jobs); version 7 adds row claims to ``rollout_deployments`` for worker processes.

Version 1 kept a user's copy progress in ``rollouts`` under prefixed ids
(``disconnect:USER``, ``connect-copy:USER``); version 2 moves those rows into ``progress``
so rollout listings hold rollouts only. Statements are split on ``;``, so none may contain
one inside a string.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

_CONN = "('pending','connected','error','disconnected')"
_DEPLOY = "('not_started','deploying','deployed','failed')"
_JOURNAL = "('pending','running','completed','failed','skipped')"

MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE users (
        user_id              TEXT PRIMARY KEY,
        url_ct               TEXT NOT NULL DEFAULT '',
        key_ct               TEXT NOT NULL DEFAULT '',
        connection_status    TEXT NOT NULL DEFAULT 'pending' CHECK (connection_status IN {_CONN}),
        deployment_status    TEXT NOT NULL DEFAULT 'not_started'
                                  CHECK (deployment_status IN {_DEPLOY}),
        deployment_progress  TEXT,
        schema_version       TEXT,
        schema_fingerprint   TEXT,
        last_schema_deploy   REAL,
        last_connection_test REAL,
        connection_error     TEXT,
        entitled             INTEGER NOT NULL DEFAULT 0,
        created_at           REAL NOT NULL,
        updated_at           REAL NOT NULL
    );
    CREATE INDEX users_by_connection_status ON users (connection_status);

    CREATE TABLE journal (
        user_id      TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
        plan_id      TEXT NOT NULL,
        step_id      TEXT NOT NULL,
        seq          INTEGER NOT NULL,
        kind         TEXT NOT NULL,
        status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN {_JOURNAL}),
        version      TEXT,
        cursor       TEXT,
        processed    INTEGER NOT NULL DEFAULT 0,
        attempts     INTEGER NOT NULL DEFAULT 0,
        error        TEXT,
        fingerprint  TEXT,
        started_at   REAL,
        completed_at REAL,
        created_at   REAL NOT NULL,
        updated_at   REAL NOT NULL,
        PRIMARY KEY (user_id, plan_id, step_id)
    );
    CREATE INDEX journal_by_plan ON journal (plan_id);
    CREATE INDEX journal_by_status ON journal (status);

    CREATE TABLE leases (
        deployment  TEXT PRIMARY KEY,
        holder      TEXT NOT NULL,
        acquired_at REAL NOT NULL,
        expires_at  REAL NOT NULL
    );

    CREATE TABLE audit (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      REAL NOT NULL,
        user_id TEXT NOT NULL,
        event   TEXT NOT NULL,
        detail  TEXT NOT NULL DEFAULT '{{}}'
    );
    CREATE INDEX audit_by_user ON audit (user_id, id);

    CREATE TABLE rollouts (
        rollout_id TEXT PRIMARY KEY,
        data       TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    # 2: per-user copy progress gets its own table; the version-1 rows move over.
    # (substr, not LIKE: LIKE treats "_" in a user id as a wildcard.)
    """
    CREATE TABLE progress (
        kind       TEXT NOT NULL,
        user_id    TEXT NOT NULL,
        doc        TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (kind, user_id)
    );
    INSERT INTO progress (kind, user_id, doc, updated_at)
        SELECT 'disconnect', substr(rollout_id, 12), data, updated_at FROM rollouts
        WHERE substr(rollout_id, 1, 11) = 'disconnect:' AND length(rollout_id) > 11;
    INSERT INTO progress (kind, user_id, doc, updated_at)
        SELECT 'copy_from_main', substr(rollout_id, 14), data, updated_at FROM rollouts
        WHERE substr(rollout_id, 1, 13) = 'connect-copy:' AND length(rollout_id) > 13;
    DELETE FROM rollouts
        WHERE (substr(rollout_id, 1, 11) = 'disconnect:' AND length(rollout_id) > 11)
           OR (substr(rollout_id, 1, 13) = 'connect-copy:' AND length(rollout_id) > 13);
    """,
    # leases record their holder process (host, pid namespace, pid, start time) so a lease
    # whose holder is provably dead on this host is taken over at once; renewed_at shows
    # the last heartbeat in `byod leases`.
    """
    ALTER TABLE leases ADD COLUMN host TEXT;
    ALTER TABLE leases ADD COLUMN pid INTEGER;
    ALTER TABLE leases ADD COLUMN pid_started REAL;
    ALTER TABLE leases ADD COLUMN pid_namespace TEXT;
    ALTER TABLE leases ADD COLUMN renewed_at REAL
    """,
    # alerts waiting for the webhook: one row per alert, kept until a 2xx acknowledges it
    # (delivered_at), retried with a bounded backoff (next_at) on every monitor run.
    """
    CREATE TABLE alerts (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        event        TEXT NOT NULL,
        payload      TEXT NOT NULL,
        created_at   REAL NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_at      REAL NOT NULL,
        last_error   TEXT,
        delivered_at REAL
    );
    CREATE INDEX alerts_pending ON alerts (delivered_at, next_at)
    """,
    # a rollout's per-deployment outcomes as their own rows (one row written per
    # deployment, not the whole document), so saving progress costs the same at 100
    # deployments and at 100k. ``position`` keeps the rollout's order (its waves are
    # consecutive runs of it); ``rollout_counts`` holds the summary per status, kept in the
    # same transaction as each row; ``rollouts.layout`` says where a record's deployments
    # live: 'document' (inside ``data``, as every earlier version wrote them) or 'rows'.
    """
    CREATE TABLE rollout_deployments (
        rollout_id  TEXT NOT NULL,
        user_id     TEXT NOT NULL,
        position    INTEGER NOT NULL,
        status      TEXT NOT NULL,
        data        TEXT NOT NULL,
        updated_at  REAL NOT NULL,
        PRIMARY KEY (rollout_id, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX rollout_deployments_order ON rollout_deployments (rollout_id, position);
    CREATE INDEX rollout_deployments_status
        ON rollout_deployments (rollout_id, status, position);
    CREATE TABLE rollout_counts (
        rollout_id  TEXT NOT NULL,
        status      TEXT NOT NULL,
        n           INTEGER NOT NULL,
        updated_at  REAL NOT NULL,
        PRIMARY KEY (rollout_id, status)
    ) WITHOUT ROWID;
    ALTER TABLE rollouts ADD COLUMN layout TEXT NOT NULL DEFAULT 'document'
    """,
    # the service (`byod serve`): API tokens for app backends (only a hash of the token
    # is kept, with its scopes) and background jobs (connect, retry, update, disconnect)
    # claimed by one service process at a time and resumed after a crash; alerts gain a
    # delivery channel (webhook or email: one row per channel, each kept until acknowledged).
    """
    CREATE TABLE api_tokens (
        token_id     TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        token_hash   TEXT NOT NULL UNIQUE,
        scopes       TEXT NOT NULL,
        created_at   REAL NOT NULL,
        last_used_at REAL,
        revoked_at   REAL
    );
    CREATE TABLE jobs (
        job_id        TEXT PRIMARY KEY,
        kind          TEXT NOT NULL,
        user_id       TEXT NOT NULL,
        state         TEXT NOT NULL CHECK (state IN ('queued','running','succeeded','failed')),
        params        TEXT NOT NULL DEFAULT '{}',
        stage         TEXT,
        progress      TEXT NOT NULL DEFAULT '[]',
        result        TEXT,
        error         TEXT,
        created_at    REAL NOT NULL,
        updated_at    REAL NOT NULL,
        claimed_by    TEXT,
        claim_expires REAL
    );
    CREATE INDEX jobs_user ON jobs (user_id, created_at);
    CREATE INDEX jobs_open ON jobs (state, claim_expires);
    ALTER TABLE alerts ADD COLUMN channel TEXT NOT NULL DEFAULT 'webhook'
    """,
    # many worker processes share one rollout (`byod worker`): a deployment's row is
    # claimed by one worker at a time (claimed_by, claim_expires: renewed by heartbeat,
    # taken over once it lapses), and its wave index is a column so a claim can honour the
    # waves in the database (no row of wave k is claimed while an earlier wave is open).
    """
    ALTER TABLE rollout_deployments ADD COLUMN wave INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE rollout_deployments ADD COLUMN claimed_by TEXT;
    ALTER TABLE rollout_deployments ADD COLUMN claim_expires REAL;
    CREATE INDEX rollout_deployments_claimable
        ON rollout_deployments (rollout_id, wave, status, position)
    """,
)
# The head Alembic revision's number (revision ids are "0001", "0002", ...): the schema this
# engine reads and writes. Raise it with every new revision.
SCHEMA_VERSION = 7
