"""CLI start-up: what importing the CLI costs (``python -X importtime``), and ``byod --help``.

    python benchmarks/import_time.py [--runs N]

Each run is a new interpreter. The import time is the cumulative time ``-X importtime``
reports for ``engine.cli.main`` (every module the CLI loads before it can answer
``--help``, the interpreter's own start-up excluded); the wall time is that of
``byod --help`` as a process. The best of ``--runs`` is kept: on a shared machine the
other runs measure the neighbours.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import _record  # noqa: E402


def imports_s() -> float:
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import engine.cli.main"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    for line in out.stderr.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == "engine.cli.main":
            return int(parts[1]) / 1e6
    raise RuntimeError("-X importtime did not report engine.cli.main")


def help_s() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from engine.cli.main import main; main()", "--help"],
                   cwd=ROOT, capture_output=True, timeout=120, check=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    _record.add_json_out(ap)
    args = ap.parse_args(argv)
    start = _record.started()
    imports = min(imports_s() for _ in range(max(1, args.runs)))
    wall = min(help_s() for _ in range(max(1, args.runs)))
    print(f"import engine.cli.main: {imports:.3f} s of imports (best of {args.runs})")
    print(f"byod --help as a process: {wall:.3f} s wall (best of {args.runs})")
    _record.write("import_time", args.json_out, start,
                  {"runs": args.runs, "imports_s": round(imports, 4),
                   "help_wall_s": round(wall, 4)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
