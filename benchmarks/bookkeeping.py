"""Rollout bookkeeping benchmark: what saving one deployment's outcome costs the registry,
in a rollout of 1k, 10k and 100k deployments, now (one row) and before (the whole record).

    python benchmarks/bookkeeping.py                       # 1k, 10k, 100k
    python benchmarks/bookkeeping.py --sizes 1000,10000 --samples 200 --before-samples 3

For each size N (setup not timed): a registry file with one rollout of N deployments, saved
the way a new rollout is (``save_rollout``: the header and a row per deployment), every row
in a real ``RolloutState`` shape (wave, source version, action). Then, for ``samples``
deployments spread over the rollout, what the rollout does when an outcome comes in:

- **now**: the deployment's row takes the outcome (``DeploymentRow.record``) and is saved
  alone (``save_deployment_row``: the row and its status count, one transaction);
- **before**: the same outcome, then the whole record re-serialised and written over the
  rollout's document (what every save did before rows were kept apart; the old statement
  is reproduced here, on a document-layout record of the same rollout).

Reported per save: CPU milliseconds of this process (``time.process_time``: JSON and SQLite
both run here), wall milliseconds, bytes appended to the write-ahead log (automatic
checkpoints are off while measuring, so that is every byte the saves wrote), and the JSON
text the save serialised. The ratio of the largest to the smallest N is the flatness
(target: within 2x). Nothing here asserts on the numbers.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from engine.fleet.context import DeploymentOutcome  # noqa: E402
from engine.fleet.rollout_state import (  # noqa: E402
    DeploymentRow,
    RolloutOptions,
    RolloutState,
    Wave,
)
from engine.fleet.waves import parse_budget, plan_waves  # noqa: E402
from engine.registry.sqlite import SqliteStore  # noqa: E402

__all__ = ["bookkeeping_cost", "main", "whole_record_cost"]

SIZES = (1_000, 10_000, 100_000)


def _state(n: int, rollout_id: str) -> RolloutState:
    """A rollout of ``n`` deployments as ``engine.fleet.rollout`` builds one."""

    users = [f"user-{i:06d}" for i in range(n)]
    options = RolloutOptions()
    waves = plan_waves(users, canary=options.canary, waves=options.waves,
                       canary_first=users[:1])
    return RolloutState(
        rollout_id=rollout_id, target="0007_add_projects", options=options,
        max_failures=parse_budget(options.max_failures, n),
        waves=[Wave(name, members) for name, members in waves],
        deployments={u: DeploymentRow(u, name, "0003_add_tags") for name, members in waves
                     for u in members},
        created_at=time.time())


def _outcome(user_id: str) -> DeploymentOutcome:
    """A typical succeeded outcome: two deploys, a few data pages."""

    return DeploymentOutcome(
        user_id, "succeeded", "0007_add_projects", before="0003_add_tags",
        source="0003_add_tags", after="0007_add_projects",
        plan_id="plan-0003_add_tags-0007_add_projects-3f9a1c2e", duration_s=1.734,
        deploys=2, pages=7, processed=1830, changed=912)


def _wal(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def _measure(store: SqliteStore, path: Path, users: list[str],
             save: Callable[[str], int]) -> dict[str, float]:
    """Run ``save`` for each user with automatic checkpoints off; CPU, wall, WAL bytes
    and serialised JSON per save."""

    store._read("PRAGMA wal_checkpoint(TRUNCATE)")
    store._read("PRAGMA wal_autocheckpoint = 0")
    wal0 = _wal(path)
    text = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for uid in users:
        text += save(uid)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    wal = _wal(path) - wal0
    store._read("PRAGMA wal_autocheckpoint = 1000")
    store._read("PRAGMA wal_checkpoint(TRUNCATE)")
    k = max(1, len(users))
    return {"cpu_ms": round(cpu * 1000 / k, 3), "wall_ms": round(wall * 1000 / k, 3),
            "wal_bytes": round(wal / k), "json_bytes": round(text / k)}


def _sample(state: RolloutState, samples: int) -> list[str]:
    users = list(state.deployments)
    return random.Random(7).sample(users, min(samples, len(users)))


def bookkeeping_cost(n: int, samples: int) -> dict[str, Any]:
    """The registry's cost of saving one deployment's outcome in a rollout of ``n``
    deployments, the way the rollout saves it now (one row and its count): the mean over
    ``samples`` saves of ``cpu_ms``, ``wall_ms``, ``wal_bytes`` (bytes written) and
    ``json_bytes`` (text serialised), with ``n`` and ``samples``."""

    with tempfile.TemporaryDirectory(prefix="byod-bookkeeping-") as tmp:
        path = Path(tmp) / "registry.sqlite3"
        store = SqliteStore(path)
        try:
            state = _state(n, "r-bench")
            store.save_rollout(state.rollout_id, state.to_json())

            def save(uid: str) -> int:
                row = state.deployments[uid]
                row.record(_outcome(uid))
                data = row.to_json()
                store.save_deployment_row(state.rollout_id, uid, row.status, data)
                return len(json.dumps(data, default=str, sort_keys=True))

            result = _measure(store, path, _sample(state, samples), save)
            assert store.rollout_counts(state.rollout_id).get("succeeded") == min(samples, n)
        finally:
            store.close()
    return {"n": n, "samples": min(samples, n), **result}


def whole_record_cost(n: int, samples: int) -> dict[str, Any]:
    """The same save as the rollout made it before rows were kept apart: the outcome, then
    the whole record re-serialised and written over the rollout's one document."""

    with tempfile.TemporaryDirectory(prefix="byod-bookkeeping-") as tmp:
        path = Path(tmp) / "registry.sqlite3"
        store = SqliteStore(path)
        try:
            state = _state(n, "r-bench")

            def save(uid: str) -> int:
                if uid:
                    state.deployments[uid].record(_outcome(uid))
                state.updated_at = time.time()
                text = json.dumps(state.to_json(), default=str, sort_keys=True)
                with store._write() as conn:  # the statement every save ran before
                    now = time.time()
                    conn.execute(
                        "INSERT INTO rollouts (rollout_id, data, created_at, updated_at) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (rollout_id) DO UPDATE SET "
                        "data = excluded.data, updated_at = excluded.updated_at",
                        (state.rollout_id, text, now, now))
                return len(text)

            save("")  # the record as it stood before the first outcome
            result = _measure(store, path, _sample(state, samples), save)
        finally:
            store.close()
    return {"n": n, "samples": min(samples, n), **result}


def _print(rows: list[dict[str, Any]]) -> None:
    line = "-" * 106
    print("\nrollout bookkeeping: one deployment's outcome saved, per save (means)")
    print(line)
    print(f"{'deployments':>12} | {'now: one row':^42} | {'before: whole record':^44}")
    print(f"{'':>12} | {'CPU ms':>8}{'wall ms':>9}{'WAL bytes':>13}{'JSON B':>12} | "
          f"{'CPU ms':>8}{'wall ms':>9}{'WAL bytes':>14}{'JSON B':>13}")
    print(line)
    for r in rows:
        now, old = r["now"], r.get("before")
        left = (f"{now['cpu_ms']:>8.3f}{now['wall_ms']:>9.3f}{now['wal_bytes']:>13,}"
                f"{now['json_bytes']:>12,}")
        right = (f"{old['cpu_ms']:>8.1f}{old['wall_ms']:>9.1f}{old['wal_bytes']:>14,}"
                 f"{old['json_bytes']:>13,}") if old else f"{'(skipped)':>44}"
        print(f"{r['n']:>12,} | {left} | {right}")
    print(line)
    first, last = rows[0], rows[-1]
    if len(rows) > 1:
        for label, key in (("now", "now"), ("before", "before")):
            a, b = first.get(key), last.get(key)
            if a and b:
                print(f"{label}: {last['n']:,} / {first['n']:,} deployments: CPU "
                      f"{b['cpu_ms'] / max(a['cpu_ms'], 1e-9):.2f}x, WAL bytes "
                      f"{b['wal_bytes'] / max(a['wal_bytes'], 1):.2f}x"
                      + ("  (target: within 2x)" if key == "now" else ""))
    for r in rows:
        if r.get("before"):
            print(f"at {r['n']:,}: before / now CPU per save "
                  f"{r['before']['cpu_ms'] / max(r['now']['cpu_ms'], 1e-9):,.0f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="comma-separated rollout sizes (default: 1000,10000,100000)")
    parser.add_argument("--samples", type=int, default=500,
                        help="outcome saves measured per size, now (default 500)")
    parser.add_argument("--before-samples", type=int, default=5,
                        help="whole-record saves measured per size (default 5; 0: skip)")
    try:
        import _record
    except ImportError:  # the results recorder is optional
        _record = None  # type: ignore[assignment]
    if _record is not None:
        _record.add_json_out(parser)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    start = _record.started() if _record is not None else None
    rows = []
    for n in sizes:
        print(f"measuring {n:,} deployments ...", file=sys.stderr, flush=True)
        row: dict[str, Any] = {"n": n, "now": bookkeeping_cost(n, args.samples)}
        if args.before_samples > 0:
            row["before"] = whole_record_cost(n, args.before_samples)
        rows.append(row)
    _print(rows)
    results: dict[str, Any] = {"sizes": rows}
    if len(rows) > 1:
        results["flatness_cpu"] = round(
            rows[-1]["now"]["cpu_ms"] / max(rows[0]["now"]["cpu_ms"], 1e-9), 2)
    if _record is not None and start is not None:
        _record.write("bookkeeping", getattr(args, "json_out", None), start, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
