"""The pure core (models, loader-free rules, graph, diff, widen, planner, compiler) never
pulls in an adapter: no HTTP client, no database, no deployment code."""

from __future__ import annotations

import subprocess
import sys

CORE = ["engine.schema.models", "engine.check.rules", "engine.schema.types", "engine.plan.graph",
        "engine.plan.diff", "engine.plan.widen", "engine.plan.planner", "engine.plan.datasteps", "engine.bundle.compiler"]
ADAPTERS = ["httpx", "sqlite3", "engine.convex", "engine.registry", "engine.vault",
            "engine.fleet.runner", "engine.fleet.rollout", "engine.local"]


def test_core_imports_no_adapter() -> None:
    code = (
        "import sys\n"
        f"for m in {CORE!r}: __import__(m)\n"
        f"print(sorted(m for m in sys.modules if any(m == a or m.startswith(a + '.') "
        f"for a in {ADAPTERS!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.strip() == "[]", out
