"""Registry schema 0004: alerts waiting for delivery, retried with a bounded backoff."""

from __future__ import annotations

from engine.registry.migrations import dialect, no_downgrade, run_sqlite

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if dialect() == "sqlite":
        run_sqlite(4)
    # PostgreSQL: nothing (its history starts at the schema 7 baseline, revision 0007)


def downgrade() -> None:
    no_downgrade(revision)
