"""Registry schema 0003: leases record their holder process (host, pid namespace, pid,
start time) and last renewal."""

from __future__ import annotations

from engine.registry.migrations import dialect, no_downgrade, run_sqlite

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if dialect() == "sqlite":
        run_sqlite(3)
    # PostgreSQL: nothing (its history starts at the schema 7 baseline, revision 0007)


def downgrade() -> None:
    no_downgrade(revision)
