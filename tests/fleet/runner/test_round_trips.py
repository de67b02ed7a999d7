"""Round trips per deployment: one v1 -> head rollout of a deployment holding data, through
the engine's real push adapter and HTTP client against an in-memory deployment, counted
request by request. The shipped versions make it the full case: two pushes, seven data
steps over six tables, a verify of every table and the record.

The budget (at most 12) is a count, not a timing: 1 reconcile read, 3 calls per push, one
call for the data steps (they fit one page budget; each step journaled on the deployment
inside that call), one verify, one record, and the completion reports of both pushes off
the critical path."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

from engine.config import EngineConfig
from engine.convex.http import AsyncConvexHttpClient
from engine.convex.push import AsyncPushDeployAdapter
from engine.demo.seed import seed_user
from engine.fleet.artifacts import PlanKit
from engine.fleet.context import RunContext
from engine.fleet.runner import run_plan_async
from engine.testing.fleet import InMemoryFleet
from engine.testing.mock_transport import (
    FUNCTION_ENDPOINTS,
    ConvexMockTransport,
    InstantPayloads,
)

VERSIONS = Path(__file__).resolve().parents[3] / "schema_versions"
BUDGET = 12
CODE_STEP_TABLES = ("usageRecords", "attachments")


def _rollout(tmp_path: Path) -> tuple[Counter[str], dict[str, int], object]:
    config = EngineConfig()
    fleet = InMemoryFleet(tmp_path, versions=VERSIONS, config=config)
    user = fleet.connect_user("u1", 1)
    dep = user.deployment
    seeded = seed_user(dep, "u1")
    for table in CODE_STEP_TABLES:  # their steps run custom TypeScript, which only Convex runs
        seeded.pop(table, None)
        dep.tables.get(table, {}).clear()
    kit = PlanKit(fleet.graph, config)
    head = fleet.graph.resolve("head").id
    plan = kit.plan(user.version.id, head)
    payloads = InstantPayloads()
    transport = ConvexMockTransport({dep.url: dep}, bundles=payloads.bundle)

    async def main() -> object:
        target = fleet.target("u1")
        http = AsyncConvexHttpClient(target, transport=transport)
        adapter = AsyncPushDeployAdapter(target, payloads=payloads, http_client=http)
        ctx = RunContext(store=fleet.store, kit=kit, holder=f"t-{uuid.uuid4().hex[:6]}",
                         deploy_slots=asyncio.Semaphore(1))
        try:
            return await run_plan_async(plan, user_id="u1", target=head, adapter=adapter,
                                        ctx=ctx)
        finally:
            await adapter.aclose()
            await http.aclose()

    outcome = asyncio.run(main())
    fleet.close()
    # function calls by function, push calls by endpoint
    counts = Counter(transport.by_function)
    counts.update({endpoint: n for endpoint, n in transport.by_endpoint.items()
                   if endpoint not in FUNCTION_ENDPOINTS})
    return counts, seeded, outcome


def test_a_v1_to_head_rollout_with_data_takes_at_most_12_round_trips(tmp_path, capsys):
    counts, seeded, outcome = _rollout(tmp_path)
    assert getattr(outcome, "status") == "succeeded", getattr(outcome, "error")
    assert getattr(outcome, "processed") > 0 and sum(seeded.values()) > 0
    total = sum(counts.values())
    reports = counts["/api/deploy2/report_push_completed"]
    with capsys.disabled():
        print(f"\nround trips for one v1 -> head deployment with data: {total}, "
              f"{total - reports} on the critical path "
              f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")
    assert total <= BUDGET, counts
    assert reports == 2 and total - reports <= BUDGET - 2
    # what the budget is made of: exactly one reconcile read, one verify, one record
    assert counts["byod:version"] == 1
    assert counts["byod:verify"] == 1 and counts["byod:recordVersion"] == 1
    assert counts["/api/deploy2/start_push"] == counts["/api/deploy2/finish_push"] == 2
    assert counts["byodMigrations:runSteps"] == 1
    assert not {"byod:countPage", "byod:recordStep"} & set(counts)
