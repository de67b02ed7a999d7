"""The in-memory deployment of the runner and rollout unit tests (never of integration
tests), over ``engine.testing``: it really stores documents, checks them against the
deployed schema on deploy, and applies data-step pages to them, so a runner bug shows up
as lost, duplicated or invalid documents. Here every deployment holds one ``notes`` table
of the three versions below."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.bundle.compiler import Bundle, compile_bundle
from engine.config import EngineConfig
from engine.fleet.artifacts import PlanKit
from engine.plan.graph import VersionGraph
from engine.ports.deployment import DeployResult, VersionInfo
from engine.schema.models import (
    BooleanV,
    FieldDef,
    MigrationOp,
    Schema,
    SchemaVersion,
    StringV,
    Table,
)
from engine.testing.catalog import BundleCatalog
from engine.testing.deployment import Crash, InMemoryDeployment
from engine.testing.functions import _MISSING

S = FieldDef(type=StringV())
OPT_S = FieldDef(type=StringV(), optional=True)
OPT_B = FieldDef(type=BooleanV(), optional=True)


def _version(vid: str, number: int, parents: tuple[str, ...], fields: dict[str, FieldDef]) -> SchemaVersion:
    return SchemaVersion(id=vid, number=number, parents=parents,
                         schema=Schema(tables={"notes": Table(name="notes", fields=fields)}))


VERSIONS = (
    _version("v1", 1, (), {"userId": S, "title": S, "body": OPT_S}),
    _version("v2", 2, ("v1",), {"userId": S, "title": S, "body": S, "pinned": OPT_B})
    .model_copy(update={"migrations": (
        MigrationOp(op="backfill", table="notes", field="body", value=""),)}),
    _version("v3", 3, ("v2",), {"userId": S, "headline": S, "body": S, "pinned": OPT_B})
    .model_copy(update={"migrations": (
        MigrationOp(op="rename", table="notes", from_field="title", field="headline"),)}),
)


class SchemaBook(BundleCatalog):
    """fingerprint → deployed schema and data steps, filled as bundles are compiled (the
    deployment checks its documents against it, as Convex does on push)."""


class RecordingKit(PlanKit):
    """The real planner and compiler, noting each bundle's schema and data steps."""

    def __init__(self, book: SchemaBook, config: EngineConfig | None = None):
        super().__init__(VersionGraph(VERSIONS), config or EngineConfig())
        self.book = book

    def version_bundle(self, version_id: str) -> Bundle:
        b = super().version_bundle(version_id)
        self.book.note(b, self.graph.get(version_id).schema)
        return b

    def step_bundle(self, plan: Any, step: Any) -> Bundle:
        if step.kind != "deploy_widened":
            return super().step_bundle(plan, step)
        # The data-step module's TypeScript is not under test here: compile the widened
        # schema alone and note which steps the real bundle would carry.
        b = compile_bundle(step.schema, version_id=step.version, kind="widen",
                           config=self.config)
        self.book.note(b, step.schema, step.data_steps)
        return b


class FakeDeployment(InMemoryDeployment):
    """One deployment's state, shared by every adapter pointed at it: ``docs`` is its
    ``notes`` table, ``records`` its ``byodVersions`` rows (version and fingerprint),
    ``steps`` every committed ``byodSteps`` write, ``hook`` runs after a mutation applied."""

    def __init__(self, name: str, book: SchemaBook):
        super().__init__(name, catalog=book, tables=["notes"])
        self.step_writes: list[dict[str, Any]] = []

    @property  # type: ignore[override]
    def docs(self) -> dict[str, dict[str, Any]]:
        return self.tables["notes"]

    @property
    def records(self) -> list[dict[str, Any]]:
        return [{"version": r["version"], "fingerprint": r["fingerprint"]}
                for r in self.recorded_versions]

    @records.setter
    def records(self, rows: list[dict[str, Any]]) -> None:
        self.tables["byodVersions"].clear()
        for row in rows:
            self.record_version(row["version"], row["fingerprint"])

    @property
    def steps(self) -> list[dict[str, Any]]:
        """Every write to the deployment's ``byodSteps`` journal that committed, in order
        (made by the data-step pages themselves, in their own transaction)."""

        return list(self.step_writes)

    def record_step(self, step_id: str, version: str, status: str = "completed",
                    processed: int = 0, cursor: Any = _MISSING, at: float | None = None) -> str:
        row = {"stepId": step_id, "version": version, "status": status,
               "processed": processed}
        if cursor is not _MISSING:
            row["cursor"] = cursor
        self.step_writes.append(row)
        return super().record_step(step_id, version, status, processed, cursor, at)

    def _fn_byodMigrations_runSteps(self, steps: list[Any], cursor: str | None,
                                    batchSize: Any, expect: Any = None) -> dict[str, Any]:
        mark = len(self.step_writes)
        try:
            return super()._fn_byodMigrations_runSteps(steps, cursor, batchSize, expect)
        except BaseException:
            del self.step_writes[mark:]  # rolled back with the transaction
            raise

    @property
    def hook(self) -> Callable[[str, dict[str, Any]], None] | None:
        return self.after_mutation

    @hook.setter
    def hook(self, fn: Callable[[str, dict[str, Any]], None] | None) -> None:
        self.after_mutation = fn

    def seed(self, n: int, version: Bundle) -> None:
        """``n`` notes shaped like ``version`` (v1: body sometimes missing; v2: body
        always; v3: ``headline`` instead of ``title``), ``version`` deployed and recorded."""

        shape = version.version_id
        for i in range(n):
            doc: dict[str, Any] = {"_id": f"{self.name}-{i:05d}", "userId": self.name,
                                   "title": f"note {i}"}
            if shape != "v1" or i % 3 == 0:
                doc["body"] = f"text {i}"
            if shape == "v3":
                doc["headline"] = doc.pop("title")
            self.docs[doc["_id"]] = doc
        self.deployed = version
        self.record_version(version.version_id, version.fingerprint)

    def valid_under(self, schema: Schema) -> list[str]:
        return [f"{doc_id}: {problem}" for table, doc_id, problem in self.violations(schema)
                if table == "notes"]


class FakeAdapter:
    """The DeployAdapter protocol over a ``FakeDeployment`` (one per run, as the runner's
    factory makes them)."""

    def __init__(self, dep: FakeDeployment):
        self.dep = dep

    def deploy(self, bundle: Bundle) -> DeployResult:
        return self.dep.deploy(bundle)

    def read_version(self) -> VersionInfo:
        return self.dep.read_version()

    def run(self, kind: str, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.dep.run(kind, path, args)

    def query(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.dep.query(path, args)

    def mutation(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.dep.mutation(path, args)

    def close(self) -> None:
        self.dep.close()


__all__ = ["VERSIONS", "Crash", "FakeAdapter", "FakeDeployment", "RecordingKit", "SchemaBook"]
