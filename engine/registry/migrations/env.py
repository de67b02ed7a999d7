"""Alembic's entry point for the registry: online only, on the connection the caller put in
``config.attributes["connection"]``, inside the transaction the caller already holds (so the
caller's lock — SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's advisory lock — covers the check
of the current revision, every revision run and the version table update)."""

from __future__ import annotations

from alembic import context

if context.is_offline_mode():
    raise RuntimeError("the registry's migrations run online only (no --sql)")

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the registry's migrations need a connection: "
                       "use engine.registry.schema_upgrade")
context.configure(connection=connection, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
