"""``engine.testing``'s in-memory deployment and fleet on their own: faults and hooks, the
bundle's paginated functions, the version marker and the deployment's own journal, deploys
that refuse documents the schema rejects, data steps, the async view, and the Connector
protocol over a real registry and vault."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from engine.bundle.compiler import compile_bundle, deployed_schema
from engine.config import EngineConfig
from engine.errors import (
    DeploymentServerError,
    DeploymentTimeout,
    DeploymentUnauthorized,
    DeploymentUnreachable,
    FunctionError,
    SchemaValidationFailed,
)
from engine.events import EventLog
from engine.fleet.artifacts import PlanKit
from engine.fleet.health_states import nothing_deployed
from engine.fleet.runner import run_plan
from engine.ports.deployment import (
    AsyncDeployAdapter,
    AsyncFunctionRunner,
    Connector,
    DeployAdapter,
    DeploymentTarget,
    FunctionRunner,
)
from engine.schema.models import (
    BooleanV,
    FieldDef,
    MigrationOp,
    Schema,
    SchemaVersion,
    StringV,
    Table,
)
from engine.testing import (
    AsyncInMemoryDeployment,
    BundleCatalog,
    Crash,
    InMemoryDeployment,
    InMemoryFleet,
    RefusedClient,
    crash_at,
)

S = FieldDef(type=StringV())
OPT_S = FieldDef(type=StringV(), optional=True)
OPT_B = FieldDef(type=BooleanV(), optional=True)


def _version(vid: str, number: int, parents: tuple[str, ...], fields: dict[str, FieldDef],
             *migrations: MigrationOp) -> SchemaVersion:
    return SchemaVersion(id=vid, number=number, parents=parents, migrations=migrations,
                         schema=Schema(tables={"notes": Table(name="notes", fields=fields)}))


V1 = _version("v1", 1, (), {"userId": S, "title": S, "body": OPT_S})
V2 = _version("v2", 2, ("v1",), {"userId": S, "title": S, "body": S, "pinned": OPT_B},
              MigrationOp(op="backfill", table="notes", field="body", value=""))
V3 = _version("v3", 3, ("v2",), {"userId": S, "headline": S, "body": S, "pinned": OPT_B},
              MigrationOp(op="rename", table="notes", from_field="title", field="headline"))
CONFIG = EngineConfig()


@pytest.fixture
def dep() -> InMemoryDeployment:
    return InMemoryDeployment("alice", version="v1", fingerprint="fp1", tables=["notes"])


@pytest.fixture
def fleet(tmp_path: Path) -> Any:
    with InMemoryFleet(tmp_path, versions=[V1, V2, V3], config=CONFIG) as f:
        yield f


def page(dep: InMemoryDeployment, cursor: str | None, n: int) -> dict[str, Any]:
    return dep.query("byod:exportPage", {"table": "notes", "cursor": cursor, "numItems": n})


# -- documents and ids ---------------------------------------------------------------------------

def test_ids_are_convex_like_unique_and_in_creation_order(dep: InMemoryDeployment) -> None:
    ids = [dep.insert("notes", {"userId": "a", "title": str(i)}) for i in range(50)]
    assert len(set(ids)) == 50 and all(len(i) == 32 and i.isalnum() and i.islower()
                                       for i in ids)
    assert ids == sorted(ids)
    docs = dep.docs("notes")
    assert [d["_id"] for d in docs] == ids
    assert all(a["_creationTime"] < b["_creationTime"] for a, b in itertools.pairwise(docs))
    docs[0]["title"] = "changed"  # docs() hands out copies
    assert dep.docs("notes")[0]["title"] == "0"


# -- the bundle's paginated functions --------------------------------------------------------

def test_export_count_delete_and_import_pages(dep: InMemoryDeployment) -> None:
    for i in range(5):
        dep.insert("notes", {"userId": "a", "title": f"n{i}"})
    first = page(dep, None, 2)
    assert [d["title"] for d in first["page"]] == ["n0", "n1"] and not first["isDone"]
    rest = page(dep, first["continueCursor"], 10)
    assert [d["title"] for d in rest["page"]] == ["n2", "n3", "n4"] and rest["isDone"]
    count = dep.query("byod:countPage", {"table": "notes", "cursor": None, "numItems": 3})
    assert (count["count"], count["isDone"]) == (3, False)

    other = InMemoryDeployment("bob", version="v1", fingerprint="fp1", tables=["notes"])
    ids = other.mutation("byod:importPage", {"table": "notes", "documents": first["page"]})
    assert len(ids) == 2 and not set(ids) & {d["_id"] for d in first["page"]}
    assert [d["title"] for d in other.docs("notes")] == ["n0", "n1"]

    assert dep.mutation("byod:deletePage", {"table": "notes", "numItems": 3}) == {
        "deleted": 3, "isDone": False}
    assert dep.mutation("byod:deletePage", {"table": "notes", "numItems": 3}) == {
        "deleted": 2, "isDone": True}
    assert dep.docs("notes") == []


def test_bad_page_arguments_and_unknown_tables_are_function_errors(
        dep: InMemoryDeployment) -> None:
    with pytest.raises(FunctionError, match="numItems must be an integer from 1 to 8192"):
        page(dep, None, 0)
    with pytest.raises(FunctionError, match="unknown table 'nope'"):
        dep.query("byod:exportPage", {"table": "nope", "cursor": None, "numItems": 1})
    with pytest.raises(FunctionError, match="ArgumentValidationError"):
        dep.query("byod:exportPage", {"table": "notes"})
    with pytest.raises(FunctionError, match="Could not find public function for 'app:list'"):
        dep.query("app:list")


def test_main_functions_import_once_per_receipt(dep: InMemoryDeployment) -> None:
    args = {"table": "notes", "documents": [{"userId": "a", "title": "x"}],
            "receipt": "r1", "run": "run-1"}
    first = dep.mutation("byodMain:importPageOnce", args)
    assert dep.mutation("byodMain:importPageOnce", args) == first  # a retry: same ids
    assert len(dep.docs("notes")) == 1
    dep.mutation("byodMain:patchPage", {"table": "notes",
                                        "patches": [{"id": first[0], "fields": {"title": "y"}}]})
    assert dep.query("byodMain:getByIds", {"table": "notes", "ids": first + ["gone"]})[1] is None
    assert dep.docs("notes")[0]["title"] == "y"
    assert dep.mutation("byodMain:clearReceipts", {"run": "run-1", "numItems": 10}) == {
        "deleted": 1, "isDone": True}
    assert dep.receipts == {}


# -- the version marker and the deployment's own journal ----------------------------------------

def test_nothing_deployed_answers_like_a_fresh_deployment() -> None:
    fresh = InMemoryDeployment("fresh")
    with pytest.raises(FunctionError) as err:
        fresh.read_version()
    assert nothing_deployed(err.value)  # what connect and health look for
    with pytest.raises(FunctionError, match="Could not find"):
        fresh.query("byod:exportPage", {"table": "byodVersions", "cursor": None, "numItems": 1})


def test_recorded_versions_and_steps(dep: InMemoryDeployment) -> None:
    assert dep.read_version().recorded is None
    dep.mutation("byod:recordVersion", {"version": "v1", "fingerprint": "fp1",
                                        "kind": "version", "planId": "p1"})
    info = dep.read_version()
    assert (info.version, info.fingerprint, info.kind) == ("v1", "fp1", "version")
    assert info.recorded is not None
    assert {k: info.recorded[k] for k in ("version", "fingerprint", "kind", "planId")} == {
        "version": "v1", "fingerprint": "fp1", "kind": "version", "planId": "p1"}
    assert dep.query("byod:version")["convexVersion"] == "1.48.0"
    for status, processed in (("running", 3), ("completed", 7)):
        dep.mutation("byod:recordStep", {"stepId": "s1", "version": "v2", "status": status,
                                         "cursor": None, "processed": processed})
    [step] = dep.query("byod:appliedSteps")
    assert (step["stepId"], step["status"], step["processed"]) == ("s1", "completed", 7)
    dep.record_step("s2", "v2", status="running", processed=1, at=time.time() - 60)
    assert [s["stepId"] for s in dep.recorded_steps] == ["s1", "s2"]


# -- faults, hooks, recording ---------------------------------------------------------------------

@pytest.mark.parametrize("fault, error", [
    ("down", DeploymentUnreachable), ("unreachable", DeploymentUnreachable),
    ("slow", DeploymentTimeout), ("timeout", DeploymentTimeout),
    ("revoked", DeploymentUnauthorized), ("5xx", DeploymentServerError)])
def test_faults_fail_every_call_until_cleared(dep: InMemoryDeployment, fault: str,
                                              error: type[Exception]) -> None:
    dep.fault = fault
    for call in (dep.read_version, lambda: page(dep, None, 1),
                 lambda: dep.deploy(compile_bundle(V1.schema, version_id="v1", config=CONFIG))):
        with pytest.raises(error) as info:
            call()
        assert dep.key not in str(info.value) and dep.url not in str(info.value)
    assert dep.deploys == 0 and dep.version == "v1"
    dep.fault = None
    assert dep.read_version().version == "v1"


def test_an_unknown_fault_is_a_test_bug(dep: InMemoryDeployment) -> None:
    dep.fault = "flaky"
    with pytest.raises(ValueError, match="unknown fault 'flaky'"):
        dep.read_version()


def test_before_call_sees_every_call_and_can_stop_it(dep: InMemoryDeployment) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    dep.before_call = lambda path, args: seen.append((path, args))
    dep.insert("notes", {"userId": "a", "title": "x"})
    page(dep, None, 1)
    assert seen == [("byod:exportPage", {"table": "notes", "cursor": None, "numItems": 1})]
    dep.before_call = crash_at(1, "byod:deletePage")
    with pytest.raises(Crash):
        dep.mutation("byod:deletePage", {"table": "notes", "numItems": 1})
    assert len(dep.docs("notes")) == 1  # crashed before the call took effect
    assert dep.calls == ["byod:exportPage", "byod:deletePage"]
    assert [c.kind for c in dep.history] == ["query", "mutation"]


def test_after_mutation_crashes_once_the_write_committed(dep: InMemoryDeployment) -> None:
    dep.after_mutation = crash_at(2)
    dep.mutation("byod:importPage", {"table": "notes", "documents": [{"title": "a"}]})
    with pytest.raises(Crash):
        dep.mutation("byod:importPage", {"table": "notes", "documents": [{"title": "b"}]})
    assert [d["title"] for d in dep.docs("notes")] == ["a", "b"]
    assert dep.mutations == 2 and issubclass(Crash, BaseException)
    assert not issubclass(Crash, Exception)


# -- deploys ----------------------------------------------------------------------------------

def _deployable(version: SchemaVersion) -> tuple[InMemoryDeployment, Any]:
    catalog = BundleCatalog()
    bundle = compile_bundle(version.schema, version_id=version.id, config=CONFIG)
    catalog.note(bundle, deployed_schema(version.schema))
    return InMemoryDeployment("carol", tables=["notes"], catalog=catalog), bundle


def test_deploy_refuses_documents_the_schema_rejects() -> None:
    dep, bundle = _deployable(V2)  # V2: body is required
    ok = dep.insert("notes", {"userId": "c", "title": "t", "body": "b"})
    bad = dep.insert("notes", {"userId": "c", "title": "no body"})
    with pytest.raises(SchemaValidationFailed) as err:
        dep.deploy(bundle)
    assert err.value.table == "notes" and err.value.documents == [bad]
    assert bad in str(err.value) and ok not in err.value.documents
    assert (dep.version, dep.deploys, dep.deployed) == (None, 0, None)
    dep.tables["notes"][bad]["body"] = ""  # the owner fixes the document
    result = dep.deploy(bundle)
    assert (result.version_id, result.fingerprint) == ("v2", bundle.fingerprint)
    assert (dep.version, dep.fingerprint, dep.kind, dep.deploys) == (
        "v2", bundle.fingerprint, "version", 1)
    assert dep.deployed is bundle and dep.schema is not None
    # once deployed, writes are checked like Convex checks them
    with pytest.raises(FunctionError, match="does not match the schema"):
        dep.mutation("byod:importPage", {"table": "notes", "documents": [{"userId": "c"}]})


def test_deploy_faults_and_hooks() -> None:
    dep, bundle = _deployable(V1)
    dep.fault = "deploy_fails"
    with pytest.raises(SchemaValidationFailed):
        dep.deploy(bundle)
    dep.fault = "ignore_deploy"
    dep.deploy(bundle)
    assert dep.deploys == 1 and dep.version is None  # reported success, did not take
    dep.fault = None
    order: list[str] = []
    dep.before_deploy = lambda b: order.append(b.version_id)
    dep.deploy(bundle)
    assert order == ["v1"] and dep.version == "v1"
    assert [c.path for c in dep.history if c.kind == "deploy"] == ["v1", "v1", "v1"]


def test_a_plan_runs_through_the_fleet_with_the_engines_own_bundles(fleet: Any) -> None:
    """The runner, its own PlanKit (widened bundles with the real data-step module), the
    fleet as its deployer: the fleet works out the bundles from its versions and applies
    the data steps, page by page."""

    dep = fleet.add("dave", version="v1")
    for i in range(7):
        dep.insert("notes", {"userId": "dave", "title": f"t{i}", **({"body": "b"} if i % 2 else {})})
    dep.tx_limit = 3
    kit = PlanKit(fleet.graph, CONFIG)
    out = run_plan(None, user_id="dave", target="v3", adapter=fleet.deployer(fleet.target("dave")),
                   store=fleet.store, kit=kit, emit=EventLog(), lease_ttl_s=5.0)
    assert out.status == "succeeded", out.error
    assert dep.version == "v3" and dep.deployed.fingerprint == kit.version_bundle("v3").fingerprint
    docs = dep.docs("notes")
    assert [d["headline"] for d in docs] == [f"t{i}" for i in range(7)]
    assert all("title" not in d and d["body"] in ("", "b") for d in docs)
    assert dep.violations(deployed_schema(V3.schema)) == []
    assert {s["status"] for s in dep.recorded_steps} == {"completed"}
    assert dep.read_version().recorded["version"] == "v3"


# -- the async view --------------------------------------------------------------------------

def test_async_view_delays_times_out_and_counts_concurrency(dep: InMemoryDeployment) -> None:
    views = [AsyncInMemoryDeployment(dep, timeout=1.0) for _ in range(3)]
    assert all(isinstance(v, AsyncDeployAdapter) for v in views)
    dep.delay = 0.05

    async def read_all() -> list[Any]:
        AsyncInMemoryDeployment.peak = 0
        return await asyncio.gather(*(v.read_version() for v in views))

    assert [i.version for i in asyncio.run(read_all())] == ["v1"] * 3
    assert AsyncInMemoryDeployment.peak == 3
    dep.delay = 5.0
    slow = AsyncInMemoryDeployment(dep, timeout=0.05)
    with pytest.raises(DeploymentTimeout, match="no answer within 0.05 s"):
        asyncio.run(slow.read_version())
    dep.delay = 0.0
    asyncio.run(slow.aclose())
    assert slow.closed


# -- the fleet: registry, vault, Connector ------------------------------------------------------

def test_fleet_is_a_connector_over_the_registry(fleet: Any) -> None:
    assert isinstance(fleet, Connector)
    user = fleet.connect_user("erin", "v2")
    row = user.row
    assert (row.connection_status, row.schema_version, row.schema_fingerprint) == (
        "connected", "v2", user.bundle.fingerprint)
    assert user.deployment.read_version().recorded["fingerprint"] == user.bundle.fingerprint
    target = user.target
    assert (target.url, target.admin_key) == (user.deployment.url, user.deployment.key)
    client = fleet.client(target)
    assert client is user.deployment and isinstance(client, FunctionRunner)
    assert isinstance(fleet.deployer(target), DeployAdapter)
    assert isinstance(fleet.async_client(target, retries=2), AsyncFunctionRunner)
    adapter, functions = fleet.async_deployer(target)
    assert isinstance(adapter, AsyncDeployAdapter) and functions is None
    assert fleet.deployment("erin") is fleet.deployment(user.deployment.url) is user.deployment


def test_fleet_refuses_unknown_urls_and_wrong_keys(fleet: Any) -> None:
    dep = fleet.add("fay", version="v1")
    wrong = DeploymentTarget("fay", dep.url, "prod:x|" + "0" * 40)
    nowhere = DeploymentTarget("fay", "https://nowhere.convex.cloud", dep.key)
    assert isinstance(fleet.client(wrong), RefusedClient)
    with pytest.raises(DeploymentUnauthorized):
        fleet.client(wrong).read_version()
    with pytest.raises(DeploymentUnreachable):
        fleet.deployer(nowhere).deploy(fleet.bundle("v1"))
    with pytest.raises(DeploymentUnreachable):
        asyncio.run(fleet.async_client(nowhere).query("byod:version"))


def test_fleet_markers_statuses_and_main(fleet: Any) -> None:
    drifted = fleet.add("gus", version="v9", fingerprint="f" * 64, record=False)
    assert drifted.deployed is None and drifted.read_version().recorded is None
    fleet.add("hal", status="error", version="v1", error="deployment hal: cannot connect")
    fleet.add("ida", status="pending")
    assert fleet.store.get_user("hal").connection_error == "deployment hal: cannot connect"
    assert fleet.store.get_user("ida").connection_status == "pending"
    with pytest.raises(FunctionError):
        fleet.deployment("ida").read_version()  # nothing deployed yet
    bundle = fleet.deploy_main("v3")
    assert fleet.client(fleet.main_target) is fleet.main
    assert fleet.main.read_version().version == "v3" and "byodMain:importPageOnce" in \
        bundle.manifest["functions"]


def test_a_fleet_without_versions_says_so(tmp_path: Path) -> None:
    with InMemoryFleet(tmp_path) as bare:
        with pytest.raises(Exception, match="no schema versions"):
            bare.connect_user("x")
        assert bare.add("x", version="v1", fingerprint="fp").read_version().version == "v1"
