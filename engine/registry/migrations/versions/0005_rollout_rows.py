"""Registry schema 0005: a rollout's per-deployment outcomes as rows, with counts per status."""

from __future__ import annotations

from engine.registry.migrations import dialect, no_downgrade, run_sqlite

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if dialect() == "sqlite":
        run_sqlite(5)
    # PostgreSQL: nothing (its history starts at the schema 7 baseline, revision 0007)


def downgrade() -> None:
    no_downgrade(revision)
