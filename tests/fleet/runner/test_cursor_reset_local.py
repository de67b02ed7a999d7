"""The runner against a real local deployment's own errors (real push, real HTTP, real
data). The cursor reset: a rollout stops mid data step; the journaled cursor is then one
the deployment refuses (as after the deployment was reset or its data moved); the resumed
rollout restarts that step's table once — a ``CursorReset`` — and completes with
``processed`` equal to the table's document count, every document migrated exactly once.
Adaptive batching: a page over the deployment's write limit is refused with the
transaction-limit error and the runner halves the page until it fits."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from local_ops import needs_toolchain

from engine.config import EngineConfig
from engine.convex.errors import classify
from engine.convex.http import ConvexHttpClient
from engine.events import BatchResized, CursorReset, Event, PageDone
from engine.fleet.rollout import RolloutOptions, rollout
from engine.lifecycle.connect import connect
from engine.plan.graph import VersionGraph
from engine.registry.sqlite import SqliteStore
from engine.schema.loader import load_versions
from engine.vault import Vault, generate_key

pytestmark = [pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow, needs_toolchain,
              pytest.mark.timeout(600)]

DOCS, PAGE = 60, 10
VERSIONS = {
    "0001_base.yaml": """\
description: Notes, the first shape.
parents: []
tables:
  notes:
    location: user
    fields: {userId: string, title: string, 'body?': string}
    indexes: {by_user: [userId]}
""",
    "0002_body.yaml": """\
description: Every note has a body.
parents: [0001_base]
tables:
  notes:
    location: user
    fields: {userId: string, title: string, body: string}
    indexes: {by_user: [userId]}
migrations:
  - {op: backfill, table: notes, field: body, value: ""}
""",
}
TARGET = "0002_body"


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[dict[str, Any]]:
    yield from _env(tmp_path)


def _env(tmp_path: Path, max_writes: int | None = None) -> Iterator[dict[str, Any]]:
    from engine.local import LocalFleet

    versions_dir = tmp_path / "versions"
    versions_dir.mkdir()
    for name, text in VERSIONS.items():
        (versions_dir / name).write_text(text)
    config = EngineConfig(registry_path=tmp_path / "registry.sqlite3",
                          versions_dir=versions_dir, deploy_timeout_s=180, http_timeout_s=5)
    versions = load_versions(versions_dir, config)
    store = SqliteStore(config.registry_path)
    vault = Vault.from_hex(generate_key())
    fleet = LocalFleet.start(1, tmp_path / "fleet", timeout=90, max_writes=max_writes)
    try:
        dep = fleet.deployments[0]
        connect("u1", dep.url, dep.admin_key, store=store, vault=vault, config=config,
                versions=[VersionGraph(versions).resolve(1)], allow_insecure_local=True)
        docs = [{"userId": "u1", "title": f"note {k}", **({"body": f"b{k}"} if k % 2 else {})}
                for k in range(DOCS)]
        with ConvexHttpClient(vault.target_for(store.get_user("u1"))) as client:
            for start in range(0, DOCS, 10):  # within any write limit used here
                client.mutation("byod:importPage", {"table": "notes",
                                                    "documents": docs[start:start + 10]})
        yield {"fleet": fleet, "dep": dep, "store": store, "vault": vault, "config": config,
               "versions": versions}
    finally:
        fleet.stop()
        store.close()


def test_a_refused_journaled_cursor_restarts_the_step_once_and_completes(env):
    fleet, dep, store = env["fleet"], env["dep"], env["store"]
    kw = {"store": store, "vault": env["vault"], "config": env["config"],
          "versions": env["versions"]}
    pages: list[PageDone] = []

    def stop_after_two_pages(event: Event) -> None:
        if isinstance(event, PageDone):
            pages.append(event)
            if len(pages) == 2:  # the next page meets a failing deployment
                fleet.set_fault(dep.name, "error500")

    first = rollout(TARGET, emit=stop_after_two_pages,
                    options=RolloutOptions(canary=0, waves=("100%",), max_batch=PAGE,
                                           max_failures="1", lease_ttl_s=30.0), **kw)
    (row,) = first.rows
    assert row["status"] == "failed", row
    (step,) = [e for e in store.journal("u1") if e.kind == "run_data_step"]
    assert (step.status, step.processed) == ("failed", 2 * PAGE) and step.cursor

    # The deployment can no longer resume from the journaled cursor.
    store.journal_update("u1", step.plan_id, step.step_id, cursor="stale-cursor")
    fleet.set_fault(dep.name, "none")
    events: list[Event] = []
    again = rollout(None, resume=first.rollout_id, emit=events.append, **kw)
    (row,) = again.rows
    assert row["status"] == "succeeded", (row.get("error"), row.get("error_type"), row.get("step_id"))
    resets = [e for e in events if isinstance(e, CursorReset)]
    assert len(resets) == 1, resets
    assert classify(resets[0].reason) is not None  # the deployment's own refusal
    done = [e for e in events if isinstance(e, PageDone)]
    assert done[0].total_processed == done[0].processed  # from the start of the table
    assert sum(e.processed for e in done) == DOCS and done[-1].done
    assert done[-1].total_processed == DOCS
    assert row["processed"] == DOCS
    (step,) = [e for e in store.journal("u1")
               if e.kind == "run_data_step" and e.plan_id == step.plan_id]
    assert (step.status, step.processed) == ("completed", DOCS)
    notes = fleet.documents(dep.name, "notes")["notes"]
    assert len(notes) == len({d["_id"] for d in notes}) == DOCS  # each exactly once
    assert all(isinstance(d.get("body"), str) for d in notes)
    assert sorted(d["body"] for d in notes if d["body"]) == sorted(
        f"b{k}" for k in range(DOCS) if k % 2)
    user = store.get_user("u1")
    assert (user.schema_version, user.deployment_status) == (TARGET, "deployed")


def test_a_page_over_the_write_limit_is_halved_until_it_fits(tmp_path: Path):
    gen = _env(tmp_path, max_writes=12)
    env = next(gen)
    try:
        events: list[Event] = []
        report = rollout(TARGET, emit=events.append, store=env["store"], vault=env["vault"],
                         config=env["config"], versions=env["versions"],
                         options=RolloutOptions(canary=0, waves=("100%",), max_batch=40,
                                                lease_ttl_s=30.0))
        (row,) = report.rows
        assert row["status"] == "succeeded", (row.get("error"), row.get("error_type"), row.get("step_id"))
        shrinks = [e for e in events if isinstance(e, BatchResized)
                   and e.reason.startswith("transaction limit")]
        assert shrinks and shrinks[0].old == 40 and shrinks[0].new == 20, shrinks
        assert row["processed"] == DOCS
        notes = env["fleet"].documents(env["dep"].name, "notes")["notes"]
        assert len(notes) == DOCS and all(isinstance(d.get("body"), str) for d in notes)
    finally:
        gen.close()
