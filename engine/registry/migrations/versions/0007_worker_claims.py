"""Registry schema 0007: rollout rows carry their wave and a worker's claim (claimed_by,
claim_expires). On PostgreSQL this is the baseline: the whole schema 7 is created here."""

from __future__ import annotations

from engine.registry.migrations import dialect, no_downgrade, run_script, run_sqlite

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if dialect() == "sqlite":
        run_sqlite(7)
        return
    from engine.registry.pg_ddl import PG_DDL

    run_script(PG_DDL)


def downgrade() -> None:
    no_downgrade(revision)
