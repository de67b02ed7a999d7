"""Time limits and Convex's error texts in local deployments: a runaway function is stopped
at Convex's limit (crates/common/src/knobs.rs) with Convex's message
(crates/isolate/src/termination.rs) while other deployments keep answering; its writes are
not kept; SIGTERM stops a fleet with a runaway in flight; transaction limits and bad cursors
fail with the backend's texts (crates/database/src/reads.rs, writes.rs, query/mod.rs,
crates/keybroker/src/broker.rs)."""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.local import LocalDeployment, LocalFleet

from .conftest import Project, call, needs_toolchain, ok

pytestmark = [pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow, needs_toolchain,
              pytest.mark.timeout(300)]

LIMITS_TS = """
import { query, mutation, action } from "./_generated/server";
import { api } from "./_generated/api";
import { v } from "convex/values";

export const spin = mutation({ args: {}, handler: async () => { while (true) {} } });
export const spinQuery = query({ args: {}, handler: async () => { while (true) {} } });
export const writeThenSpin = mutation({
  args: {},
  handler: async (ctx) => {
    await ctx.db.insert("messages", { body: "never kept" });
    while (true) {}
  },
});
export const sleep = action({
  args: { ms: v.number() },
  handler: async (_ctx, { ms }) => {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return ms;
  },
});
export const sendThenSleep = action({
  args: { ms: v.number() },
  handler: async (ctx, { ms }) => {
    await ctx.runMutation(api.messages.send, { body: "sent by an action" });
    await new Promise((resolve) => setTimeout(resolve, ms));
    return ms;
  },
});
export const count = query({
  args: {}, handler: async (ctx) => (await ctx.db.query("messages").collect()).length,
});
export const insertMany = mutation({
  args: { n: v.number(), size: v.number() },
  handler: async (ctx, { n, size }) => {
    for (let i = 0; i < n; i++) await ctx.db.insert("messages", { body: "x".repeat(size), author: "s" });
    return n;
  },
});
export const countSmall = query({
  args: {},
  handler: async (ctx) =>
    (await ctx.db.query("messages").withIndex("by_author", (q) => q.eq("author", "s")).collect()).length,
});
export const getOne = query({
  args: { id: v.id("messages") }, handler: async (ctx, { id }) => (await ctx.db.get(id))?._id ?? null,
});
export const firsts = query({
  args: { n: v.number() },
  handler: async (ctx, { n }) => {
    for (let i = 0; i < n; i++) {
      await ctx.db.query("messages").withIndex("by_author", (q) => q.eq("author", "s")).first();
    }
    return n;
  },
});
export const page = query({
  args: { cursor: v.union(v.string(), v.null()), n: v.number() },
  handler: async (ctx, { cursor, n }) => ctx.db.query("messages").paginate({ cursor, numItems: n }),
});
export const pageByAuthor = query({
  args: { cursor: v.union(v.string(), v.null()), n: v.number() },
  handler: async (ctx, { cursor, n }) =>
    ctx.db.query("messages").withIndex("by_author").paginate({ cursor, numItems: n }),
});
"""

TIMEOUT_1S = "Function execution timed out (maximum duration: 1s)"
OVER_LIMIT_HELP = ("Consider using smaller limits in your queries, paginating your queries, or "
                   "using indexed queries with a selective index range expressions.")


def _error(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "error", body
    return str(body["errorMessage"])


def _by_worker(fleet: LocalFleet) -> dict[int, list[LocalDeployment]]:
    out: dict[int, list[LocalDeployment]] = {}
    for row in fleet.status():
        out.setdefault(int(row["worker"]), []).append(fleet.deployment(row["name"]))
    return out


def test_runaway_mutation_stops_in_a_second_and_other_deployments_keep_answering(
        project: Project, tmp_path: Path) -> None:
    project.write({"limits.ts": LIMITS_TS})
    with LocalFleet.start(6, tmp_path / "fleet", workers=2) as fleet:
        shards = _by_worker(fleet)
        assert len(shards) == 2, shards
        runaway, neighbour = shards[0][0], shards[0][1]
        other = shards[1][0]
        for dep in (runaway, neighbour, other):
            assert project.deploy(dep).returncode == 0
        ok(call(runaway, "mutation", "messages:send", {"body": "committed"}))
        ok(call(other, "mutation", "messages:send", {"body": "elsewhere"}))
        restarts = fleet.health()["workerRestarts"]

        # An action in flight on the runaway's worker, and a measured stream of calls to a
        # deployment on the other worker, while the runaway runs.
        results: dict[str, Any] = {}

        def neighbour_call() -> None:
            results["neighbour"] = call(neighbour, "action", "limits:sleep", {"ms": 8000})

        def neighbour_writer() -> None:
            results["writer"] = call(neighbour, "action", "limits:sendThenSleep", {"ms": 8000})

        calls: list[tuple[float, float]] = []  # (start, end) of each call to `other`
        stop = threading.Event()

        def probe() -> None:
            while not stop.is_set():
                started = time.monotonic()
                assert ok(call(other, "query", "limits:count")) == 1
                calls.append((started, time.monotonic()))
                time.sleep(0.02)

        threads = [threading.Thread(target=f) for f in (neighbour_call, neighbour_writer, probe)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        started = time.monotonic()
        message = _error(call(runaway, "mutation", "limits:spin"))
        ended = time.monotonic()
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(30)

        elapsed = ended - started
        assert message == TIMEOUT_1S
        assert 0.9 <= elapsed < 3.0, elapsed
        before = [b - a for a, b in calls if b < started]
        during = [b - a for a, b in calls if a >= started and b <= ended]
        # A frozen process would answer nothing until the runaway stops.
        assert len(during) >= 2 and max(during) < 0.8 * elapsed, (during, elapsed)
        baseline = f"{statistics.median(before) * 1000:.1f} ms" if before else "n/a"
        print(f"runaway answered in {elapsed:.2f} s; calls to a deployment on the other worker: "
              f"median {baseline} before, during the runaway "
              f"{len(during)} calls, median {statistics.median(during) * 1000:.1f} ms, "
              f"max {max(during) * 1000:.1f} ms")
        # The call in flight on the same worker got a clear, retryable refusal.
        interrupted = results["neighbour"]
        assert interrupted.status_code == 503, interrupted.text
        assert interrupted.json()["code"] == "CallInterrupted"
        assert "send it again" in interrupted.json()["message"]
        # One that had committed says so, and must not be sent again.
        committed = results["writer"]
        assert committed.status_code == 500, committed.text
        assert committed.json()["code"] == "CallInterruptedAfterCommit"
        assert [d["body"] for d in fleet.documents(neighbour.name)["messages"]] == [
            "sent by an action"]
        assert fleet.health()["workerRestarts"] == restarts + 1

        # The same deployment answers afterwards, with its committed data.
        assert ok(call(runaway, "query", "limits:count")) == 1
        assert [d["body"] for d in fleet.documents(runaway.name)["messages"]] == ["committed"]
        assert ok(call(neighbour, "action", "limits:sleep", {"ms": 10})) == 10

        # A mutation that writes and then loops keeps none of its writes; a runaway query too.
        assert _error(call(runaway, "mutation", "limits:writeThenSpin")) == TIMEOUT_1S
        assert _error(call(runaway, "query", "limits:spinQuery")) == TIMEOUT_1S
        assert [d["body"] for d in fleet.documents(runaway.name)["messages"]] == ["committed"]
        assert ok(call(runaway, "mutation", "messages:send", {"body": "after"}))
        assert ok(call(runaway, "query", "limits:count")) == 2


def test_sigterm_stops_a_fleet_with_a_runaway_in_flight(project: Project, tmp_path: Path) -> None:
    project.write({"limits.ts": LIMITS_TS})
    data = tmp_path / "fleet"
    fleet = LocalFleet.start(1, data, query_timeout=120)
    try:
        dep = fleet.deployments[0]
        assert project.deploy(dep).returncode == 0
        ok(call(dep, "mutation", "messages:send", {"body": "kept"}))
        outcome: list[str] = []

        def spin() -> None:
            try:
                outcome.append(call(dep, "mutation", "limits:spin").text)
            except httpx.HTTPError as exc:
                outcome.append(type(exc).__name__)

        spinning = threading.Thread(target=spin)
        spinning.start()
        time.sleep(1.0)
        started = time.monotonic()
        os.kill(fleet.pid, signal.SIGTERM)
        assert fleet._wait_exit(15), "the fleet ignored SIGTERM"
        stopped = time.monotonic() - started
        print(f"stopped {stopped:.2f} s after SIGTERM")
        assert stopped < 10
        spinning.join(30)
        assert outcome and "success" not in outcome[0], outcome
    finally:
        fleet.stop()
    with LocalFleet.start(1, data) as again:
        assert [d["body"] for d in again.documents(dep.name)["messages"]] == ["kept"]


def test_action_limit_is_configurable(project: Project, tmp_path: Path) -> None:
    project.write({"limits.ts": LIMITS_TS})
    with LocalFleet.start(1, tmp_path / "fleet", action_timeout=1.5, query_timeout=0.5) as fleet:
        dep = fleet.deployments[0]
        assert project.deploy(dep).returncode == 0
        assert ok(call(dep, "action", "limits:sleep", {"ms": 100})) == 100
        started = time.monotonic()
        message = _error(call(dep, "action", "limits:sleep", {"ms": 5000}))
        assert message == "Function execution timed out (maximum duration: 1.5s)"
        assert time.monotonic() - started < 4
        assert _error(call(dep, "query", "limits:spinQuery")) == (
            "Function execution timed out (maximum duration: 500ms)")
        assert fleet.health()["limitsMs"]["action"] == 1500


def test_transaction_limits_fail_with_convex_messages(project: Project, tmp_path: Path) -> None:
    project.write({"limits.ts": LIMITS_TS})
    with LocalFleet.start(1, tmp_path / "fleet", max_writes=5, max_reads=5,
                          max_bytes_written=10_000, max_bytes_read=2_000,
                          max_index_ranges=3) as fleet:
        dep = fleet.deployments[0]
        assert project.deploy(dep).returncode == 0
        assert _error(call(dep, "mutation", "limits:insertMany", {"n": 6, "size": 1})) == (
            "Uncaught Error: Too many writes in a single function execution (limit: 5)")
        assert _error(call(dep, "mutation", "limits:insertMany", {"n": 1, "size": 12_000})) == (
            "Uncaught Error: Too many bytes written in a single function execution (limit: 10 KB)")
        ok(call(dep, "mutation", "messages:send", {"body": "x" * 3_000}))
        big = fleet.documents(dep.name)["messages"][0]["_id"]
        assert _error(call(dep, "query", "limits:getOne", {"id": big})) == (
            "Uncaught Error: Too many bytes read in a single function execution "
            f"(limit: 2000 bytes). {OVER_LIMIT_HELP}")
        assert ok(call(dep, "mutation", "limits:insertMany", {"n": 5, "size": 1})) == 5
        assert ok(call(dep, "mutation", "limits:insertMany", {"n": 1, "size": 1})) == 1
        assert _error(call(dep, "query", "limits:countSmall")) == (
            "Uncaught Error: Too many documents read in a single function execution "
            f"(limit: 5). {OVER_LIMIT_HELP}")
        assert ok(call(dep, "query", "limits:firsts", {"n": 3})) == 3
        assert _error(call(dep, "query", "limits:firsts", {"n": 4})) == (
            f"Uncaught Error: Too many reads in a single function execution (limit: 3). {OVER_LIMIT_HELP}")
        assert sorted(len(d["body"]) for d in fleet.documents(dep.name)["messages"]) == [1] * 6 + [3000]


def test_bad_and_foreign_cursors_fail_like_convex(project: Project, fleet: LocalFleet) -> None:
    project.write({"limits.ts": LIMITS_TS})
    dep = fleet.deployments[0]
    assert project.deploy(dep).returncode == 0
    for i in range(5):
        ok(call(dep, "mutation", "messages:send", {"body": f"m{i}", "author": f"a{i}"}))
    first = ok(call(dep, "query", "limits:page", {"cursor": None, "n": 2}))
    second = ok(call(dep, "query", "limits:page", {"cursor": first["continueCursor"], "n": 10}))
    assert len(first["page"]) == 2 and len(second["page"]) == 3 and second["isDone"]
    for bad in ("not a cursor", "", first["continueCursor"][:-4]):
        assert _error(call(dep, "query", "limits:page", {"cursor": bad, "n": 2})) == (
            "Uncaught Error: Failed to parse cursor"), bad
    foreign = call(dep, "query", "limits:pageByAuthor", {"cursor": first["continueCursor"], "n": 2})
    body = foreign.json()
    assert body["status"] == "error"
    assert body["errorMessage"] == (
        "Uncaught ConvexError: InvalidCursor: Tried to run a query starting from a cursor, "
        "but it looks like this cursor is from a different query.")
    assert body["errorData"] == {"isConvexSystemError": True, "paginationError": "InvalidCursor"}
