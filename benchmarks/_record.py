"""Where the benchmark scripts keep what they measured, so every number in the README can be
traced to one run: a JSON record with the date, the exact command line, the machine's load
and CPU count, and the numbers. By default a script writes
``benchmarks/results/<script>-<UTC time>.json``; ``--json-out PATH`` writes there instead
(``--json-out none`` writes nothing). ``benchmarks/readme_table.py`` builds the README's
table from the newest record of each script.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
FORMAT = 1


def add_json_out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json-out", "--json", dest="json_out", type=str, default=None, metavar="PATH",
        help="write the run's record here (default: benchmarks/results/<script>-<time>.json;"
             " 'none': do not write one)")


def machine() -> dict[str, Any]:
    """What the numbers depend on besides the code: load and CPUs, now."""

    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"loadavg": load, "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(terse=True)}


def started() -> dict[str, Any]:
    """Call when the measuring starts: the date and the machine as it was then."""

    return {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine_at_start": machine()}


def write(script: str, json_out: str | None, start: dict[str, Any],
          results: Any) -> Path | None:
    """Write the record (see the module docstring); returns where, or None."""

    if json_out is not None and json_out.lower() == "none":
        return None
    record = {
        "format": FORMAT, "benchmark": script, "date": start["date"],
        "command": "python " + shlex.join([f"benchmarks/{script}.py", *sys.argv[1:]]),
        "machine_at_start": start["machine_at_start"], "machine_at_end": machine(),
        "results": results,
    }
    if json_out is None:
        stamp = start["date"].replace("-", "").replace(":", "")
        path = RESULTS / f"{script}-{stamp}.json"
    else:
        path = Path(json_out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"record: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}",
          file=sys.stderr)
    return path
