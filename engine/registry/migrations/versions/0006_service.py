"""Registry schema 0006: the service's API tokens and background jobs; alerts gain a
delivery channel."""

from __future__ import annotations

from engine.registry.migrations import dialect, no_downgrade, run_sqlite

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if dialect() == "sqlite":
        run_sqlite(6)
    # PostgreSQL: nothing (its history starts at the schema 7 baseline, revision 0007)


def downgrade() -> None:
    no_downgrade(revision)
