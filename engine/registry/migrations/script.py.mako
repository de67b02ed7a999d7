"""Registry schema ${up_revision}: ${message}

SQLite and PostgreSQL both: branch on ``dialect()`` where their DDL differs; on SQLite end
with ``mark_sqlite(<this schema version>)``. Raise ``engine.registry.ddl.SCHEMA_VERSION``.
"""

from __future__ import annotations

from engine.registry.migrations import dialect, mark_sqlite, no_downgrade, run_script

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade() -> None:
    ...


def downgrade() -> None:
    no_downgrade(revision)
