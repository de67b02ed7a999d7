"""The benchmark's harness (``benchmarks/workers.py``: a local fleet, a registry, worker
processes, the end-of-rollout checks), shared with the multi-process tests."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT / "benchmarks") not in sys.path:
    sys.path.insert(0, str(ROOT / "benchmarks"))

from workers import Bench  # noqa: E402

__all__ = ["Bench", "ROOT"]
