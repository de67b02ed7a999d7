"""Evaluate an app's ``convex/schema.ts`` with the real ``convex`` library of the pinned
toolchain and return ``defineSchema(...).export()`` as JSON.

The same Node script ``check --deep`` uses for bundles (``engine/js/export_schemas.mjs``:
esbuild bundles the schema and the local modules it imports; packages stay imports and
resolve to the toolchain's ``convex`` through a ``node_modules`` link in a temporary work
directory). What the library itself would refuse (a bad index, a reserved name) fails
here the same way.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from engine.convex.toolchain import Toolchain
from engine.errors import ToolchainError, VersionError

__all__ = ["export_schema_file"]

_SCRIPT = Path(__file__).resolve().parents[1] / "js" / "export_schemas.mjs"
_TIMEOUT_S = 120.0


def export_schema_file(schema_ts: Path, toolchain: Toolchain | None = None) -> dict[str, Any]:
    """The export of the schema ``schema_ts`` declares; ``VersionError`` (naming the file)
    when esbuild or the ``convex`` library rejects it."""

    schema_ts = Path(schema_ts).resolve()
    if not schema_ts.is_file():
        raise VersionError(f"{schema_ts}: no such schema file")
    toolchain = toolchain or Toolchain.find().ensure_installed()
    with tempfile.TemporaryDirectory(prefix="byod-init-") as tmp:
        work = Path(tmp)
        toolchain.link_node_modules(work)
        job = {"toolchain": str(toolchain.root), "workDir": str(work),
               "bundles": [{"id": "app", "schema": str(schema_ts)}]}
        result = toolchain.run_node(_SCRIPT, input=json.dumps(job), timeout=_TIMEOUT_S,
                                    cwd=work)
    if result.returncode != 0:
        raise ToolchainError(f"node could not evaluate {schema_ts.name}: "
                             f"{result.stderr.strip()[-800:]}")
    try:
        answer = json.loads(result.stdout)["app"]
    except (ValueError, KeyError, TypeError):
        raise ToolchainError(f"unexpected output evaluating {schema_ts.name}: "
                             f"{result.stdout[-300:]!r}") from None
    if not answer.get("ok"):
        raise VersionError(f"{schema_ts}: the convex library could not load it: "
                           f"{answer.get('error')}")
    export = answer["export"]
    if not isinstance(export, dict):
        raise VersionError(f"{schema_ts}: its export is not a schema object")
    return export
