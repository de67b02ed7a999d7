"""Registry schema 0001: users, journal, leases, audit and rollouts."""

from __future__ import annotations

from engine.registry.migrations import dialect, no_downgrade, run_sqlite

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if dialect() == "sqlite":
        run_sqlite(1)
    # PostgreSQL: nothing (its history starts at the schema 7 baseline, revision 0007)


def downgrade() -> None:
    no_downgrade(revision)
