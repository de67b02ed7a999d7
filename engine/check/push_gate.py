"""The local deployments' push gate: ``python -m engine.check.push_gate`` is a long-lived
child of the harness (``engine/local/harness/schema_gate.mjs``) that answers, one JSON line
per request on stdin/stdout, what Convex would refuse of a pushed schema — with the same
rule set ``byod check`` runs (``convex_rules``), never a second copy of it.

Request: ``{"id": n, "schema": <defineSchema(...).export() JSON>, "existingTables": [...]}``.
Answer: ``{"id": n, "refusals": [{"code", "message", "rule"}, ...]}`` in Convex's order (the
harness reports the first, as Convex does), or ``{"id": n, "error": "..."}`` when the
request cannot be read. The process ends when stdin closes, i.e. with the harness.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from engine.check.convex_rules import refusals

__all__ = ["answer", "main"]


def answer(request: Any) -> dict[str, Any]:
    """The reply to one decoded request line."""

    if not isinstance(request, dict):
        return {"id": None, "error": "a request is a JSON object"}
    rid = request.get("id")
    schema = request.get("schema")
    existing = request.get("existingTables") or []
    if schema is None:
        return {"id": rid, "refusals": []}
    if not isinstance(schema, dict) or not isinstance(existing, list):
        return {"id": rid, "error": "`schema` must be an object and `existingTables` a list"}
    return {"id": rid, "refusals": refusals(schema, [str(t) for t in existing])}


def serve(stdin: IO[str], stdout: IO[str]) -> None:
    """Answer every line of ``stdin`` until it closes."""

    for line in stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except ValueError as exc:
            reply: dict[str, Any] = {"id": None, "error": f"invalid JSON request: {exc}"}
        else:
            try:
                reply = answer(request)
            except Exception as exc:  # noqa: BLE001 - one bad schema never ends the gate
                rid = request.get("id") if isinstance(request, dict) else None
                reply = {"id": rid, "error": f"{type(exc).__name__}: {exc}"}
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()


def main() -> int:
    serve(sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
