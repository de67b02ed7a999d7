"""The operator guide's routing example, for real: the reference app's functions shipped in
the user's bundle and called through the router on local deployments, before and after a
rollout with data steps, for a user-located table (notes, tasks) and a main-located one
(users); then a functions-only release, which is one deploy and no data step."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from engine import assets
from engine.bundle.compiler import compile_bundle
from engine.bundle.functions import AppFunctions, read_functions
from engine.config import EngineConfig
from engine.convex.connector import HttpConnector
from engine.convex.http import ConvexHttpClient
from engine.fleet.rollout import RolloutOptions, rollout
from engine.lifecycle.connect import connect
from engine.lifecycle.routing import Router
from engine.local import LocalFleet
from engine.plan.graph import VersionGraph
from engine.ports.deployment import DeploymentTarget
from engine.registry.sqlite import SqliteStore
from engine.schema.loader import load_versions
from engine.vault import Vault, generate_key

pytestmark = [pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow,
              pytest.mark.timeout(900)]

START = "0005_notes_usage"  # notes already have `body`; 0006 backfills task priorities

# The app's own main-side module: the users table lives on main only.
USERS = """\
import { v } from "convex/values";
import { query } from "./_generated/server";

export const getByClerkId = query({
  args: { clerkId: v.string() },
  handler: async (ctx, { clerkId }) =>
    ctx.db.query("users").withIndex("by_clerk_id", (q) => q.eq("clerkId", clerkId)).unique(),
});
"""

COUNT = """
export const countForUser = query({
  args: { userId: v.string() },
  handler: async (ctx, { userId }) =>
    (await ctx.db.query("notes").withIndex("by_user", (q) => q.eq("userId", userId)).collect())
      .length,
});
"""


class World:
    def __init__(self, root: Path, fleet: LocalFleet) -> None:
        # the app's project: the example versions, and a copy of the example functions it
        # may edit (with their pinned snapshots beside them)
        self.functions = root / "functions"
        shutil.copytree(assets.example_functions_dir(), self.functions)
        shutil.copytree(assets.example_functions_dir().with_name("functions.pinned"),
                        root / "functions.pinned")
        self.config = EngineConfig(registry_path=root / "registry.sqlite3",
                                   versions_dir=assets.example_versions_dir(),
                                   functions_dir=self.functions, deploy_timeout_s=240,
                                   http_timeout_s=10)
        self.versions = load_versions(self.config.versions_dir, self.config)
        self.graph = VersionGraph(self.versions)
        self.store = SqliteStore(self.config.registry_path)
        self.vault = Vault.from_hex(generate_key())
        self.fleet = fleet
        alice, main = fleet.add(2)
        self.alice, self.main = alice.name, main.name
        connector = HttpConnector(self.config)
        target = DeploymentTarget("main", main.url, main.admin_key, allow_insecure_local=True)
        # main holds every table: the content tables for users without BYOD (so it runs the
        # same content functions) and the main-located ones with the app's main modules
        head = self.graph.get(self.graph.heads()[0])
        modules = read_functions(self.functions).modules + (("users.ts", USERS),)
        connector.deployer(target).deploy(compile_bundle(
            head.schema, version_id=head.id, config=self.config, target="main",
            functions=AppFunctions(root="main", modules=tuple(sorted(modules)))))
        self.main_client = ConvexHttpClient(target)
        self.main_client.mutation("byod:importPage", {"table": "users", "documents": [
            {"clerkId": "alice", "email": "alice@example.com", "tier": "pro",
             "createdAt": 1, "updatedAt": 1}]})
        connect("alice", alice.url, alice.admin_key, store=self.store, vault=self.vault,
                config=self.config, versions=[self.graph.get(START)],
                allow_insecure_local=True)
        self.router = Router(self.store, self.vault, self.config, self.graph, self.main_client,
                             connector=connector)

    def docs(self, deployment: str, table: str) -> list[dict[str, Any]]:
        return self.fleet.documents(deployment, table).get(table, [])

    def rollout(self) -> Any:
        return rollout("head", store=self.store, vault=self.vault, config=self.config,
                       versions=self.versions,
                       options=RolloutOptions(canary=0, waves=("100%",), concurrency=1))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("routing-local")
    fleet = LocalFleet.start(0, root / "fleet", timeout=120)
    try:
        w = World(root, fleet)
        yield w
        w.router.close()
        w.main_client.close()
        w.store.close()
    finally:
        fleet.stop()


def test_the_routing_example_before_and_after_a_rollout(world: World) -> None:
    router = world.router
    assert world.store.get_user("alice").schema_version == START

    # before: the user-located notes go to alice's own deployment, users to main
    note_id = router.mutation("alice", "notes", "notes:create",
                              {"userId": "alice", "title": "Groceries", "body": "milk"})
    task_id = router.mutation("alice", "tasks", "tasks:create",
                              {"userId": "alice", "title": "Call Bob"})
    listed = router.query("alice", "notes", "notes:listForUser", {"userId": "alice"})
    assert [(n["_id"], n["title"], n["body"]) for n in listed] == [(note_id, "Groceries", "milk")]
    assert [n["_id"] for n in world.docs(world.alice, "notes")] == [note_id]
    assert world.docs(world.main, "notes") == []  # nothing leaked to main
    user = router.query("alice", "users", "users:getByClerkId", {"clerkId": "alice"})
    assert user["email"] == "alice@example.com"
    assert router.route("alice", "users").destination == "main"
    # a task written by 0005's app code without a priority: the 0006 migration backfills it
    alice_tasks = world.docs(world.alice, "tasks")
    assert [t["_id"] for t in alice_tasks] == [task_id]

    report = world.rollout()
    assert report.status == "completed", report.rows
    assert world.store.get_user("alice").schema_version == world.graph.heads()[0]

    # after: the same calls, against the head's bundle and the migrated documents
    listed = router.query("alice", "notes", "notes:listForUser", {"userId": "alice"})
    assert [(n["_id"], n["body"]) for n in listed] == [(note_id, "milk")]
    page = router.query("alice", "notes", "notes:listPage",
                        {"userId": "alice", "paginationOpts": {"numItems": 10, "cursor": None}})
    assert [n["_id"] for n in page["page"]] == [note_id] and page["isDone"] is True
    router.mutation("alice", "notes", "notes:update",
                    {"userId": "alice", "noteId": note_id, "isPinned": True})
    [task] = router.query("alice", "tasks", "tasks:listForUser", {"userId": "alice"})
    assert task["priority"] == "medium"
    router.mutation("alice", "tasks", "tasks:remove", {"userId": "alice", "taskId": task_id})
    assert router.query("alice", "tasks", "tasks:listForUser", {"userId": "alice"}) == []
    assert router.query("alice", "users", "users:getByClerkId",
                        {"clerkId": "alice"})["tier"] == "pro"
    # a user without BYOD: the same function, on main
    bob_note = router.mutation("bob", "notes", "notes:create",
                               {"userId": "bob", "title": "Bob's", "body": "on main"})
    assert [n["_id"] for n in world.docs(world.main, "notes")] == [bob_note]
    with pytest.raises(Exception, match="not found"):  # another user's note stays theirs
        router.mutation("alice", "notes", "notes:remove", {"userId": "alice", "noteId": bob_note})


def test_a_functions_only_release_is_one_deploy_without_data_steps(world: World) -> None:
    notes = world.functions / "notes.ts"
    notes.write_text(notes.read_text() + COUNT, encoding="utf-8")
    report = world.rollout()
    assert report.status == "completed", report.rows
    [row] = report.rows
    assert row["user_id"] == "alice"
    assert report.refresh["deployments"] == ["alice"], report.refresh
    steps = report.refresh["plan"]["steps"]
    assert [s["kind"] for s in steps] == ["deploy_target", "verify", "record"], steps
    assert world.router.query("alice", "notes", "notes:countForUser", {"userId": "alice"}) == 1
