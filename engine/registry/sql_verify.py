"""``SqlVerify``: the part of ``verify`` (``byod registry check``) both SQL stores share:
every stored JSON document the engine parses when it reads one, checked up front, so a
damaged row is found before the command that needs it (a mixin over ``SqlCore``)."""

from __future__ import annotations

import json

from engine.registry.sql_core import SqlCore

__all__ = ["SqlVerify"]

# (table, key expression, JSON column): the documents the engine parses when it reads them
JSON_COLUMNS = (("rollouts", "rollout_id", "data"), ("progress", "kind || ':' || user_id",
                "doc"), ("audit", "id", "detail"), ("alerts", "id", "payload"),
                ("rollout_deployments", "rollout_id || ' ' || user_id", "data"))


class SqlVerify(SqlCore):
    """Checks written in SQL both dialects read alike."""

    def document_problems(self) -> list[str]:
        """One sentence per stored document that is not a JSON object."""

        problems = []
        for table, key, column in JSON_COLUMNS:
            for row in self._read(f"SELECT {key} AS k, {column} AS v FROM {table}"):
                try:
                    doc = json.loads(row["v"])
                except (TypeError, ValueError) as exc:
                    problems.append(f"{table} {row['k']}: {column} is not JSON ({exc})")
                    continue
                if not isinstance(doc, dict):
                    problems.append(f"{table} {row['k']}: {column} is not a JSON object")
        return problems

    def dangling_problems(self) -> list[str]:
        """Journal rows of a user the registry does not have (the one foreign key), found
        by a query: a database whose constraint checks were off may hold some."""

        return [f"table journal row {r['user_id']} {r['plan_id']} {r['step_id']} refers to "
                "a missing row of users" for r in self._read(
                    "SELECT j.user_id, j.plan_id, j.step_id FROM journal j LEFT JOIN users u "
                    "ON u.user_id = j.user_id WHERE u.user_id IS NULL "
                    "ORDER BY j.user_id, j.plan_id, j.step_id")]
