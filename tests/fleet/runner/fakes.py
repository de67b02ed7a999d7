"""In-memory stand-ins for unit tests of the runner and the rollout (never for
integration tests): a deployment that really stores documents, validates them against the
deployed schema on deploy, and applies data-step pages to them, so a runner bug shows up
as lost, duplicated or invalid documents."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from engine.bundle.compiler import Bundle, compile_bundle
from engine.config import EngineConfig
from engine.errors import (
    DeploymentServerError,
    DeploymentTimeout,
    DeploymentUnauthorized,
    FunctionError,
    SchemaValidationFailed,
)
from engine.fleet.artifacts import PlanKit
from engine.plan.datasteps import DataStep
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
from engine.schema.validate_doc import validate_document

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


class SchemaBook:
    """fingerprint → deployed schema, filled as bundles are compiled (the fake deployment
    validates its documents against it, as Convex does on push)."""

    def __init__(self) -> None:
        self.by_fp: dict[str, Schema] = {}
        self.steps_of: dict[str, dict[str, DataStep]] = {}


class RecordingKit(PlanKit):
    """The real planner and compiler, noting each bundle's schema and data steps."""

    def __init__(self, book: SchemaBook, config: EngineConfig | None = None):
        super().__init__(VersionGraph(VERSIONS), config or EngineConfig())
        self.book = book

    def version_bundle(self, version_id: str) -> Bundle:
        b = super().version_bundle(version_id)
        self.book.by_fp[b.fingerprint] = self.graph.get(version_id).schema
        return b

    def step_bundle(self, plan: Any, step: Any) -> Bundle:
        if step.kind != "deploy_widened":
            return super().step_bundle(plan, step)
        # The data-step module's TypeScript is not under test here: compile the widened
        # schema alone and note which steps the real bundle would carry.
        b = compile_bundle(step.schema, version_id=step.version, kind="widen",
                           config=self.config)
        self.book.by_fp[b.fingerprint] = step.schema
        self.book.steps_of[b.fingerprint] = {d.id: d for d in step.data_steps}
        return b


class Crash(BaseException):
    """Simulates the process dying (not caught by the runner's ``except Exception``)."""


@dataclass
class FakeDeployment:
    """One deployment's state, shared by every adapter pointed at it."""

    name: str
    book: SchemaBook
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployed: Bundle | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    deploys: int = 0
    mutations: int = 0
    fault: str | None = None  # "5xx" | "revoked" | "timeout"
    tx_limit: int | None = None  # pages larger than this fail like Convex does
    hook: Callable[[str, dict[str, Any]], None] | None = None  # after a mutation applies
    before_deploy: Callable[[Bundle], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def seed(self, n: int, version: Bundle) -> None:
        """``n`` notes shaped like ``version`` (v1: body sometimes missing; v2: body
        always; v3: ``headline`` instead of ``title``)."""

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
        self.records.append({"version": version.version_id, "fingerprint": version.fingerprint})

    def valid_under(self, schema: Schema) -> list[str]:
        table = schema.tables["notes"]
        return [f"{d['_id']}: {p}" for d in self.docs.values()
                for p in validate_document(d, table)]


class FakeAdapter:
    """The DeployAdapter protocol over a ``FakeDeployment``."""

    def __init__(self, dep: FakeDeployment):
        self.dep = dep

    def _gate(self) -> None:
        if self.dep.fault == "5xx":
            raise DeploymentServerError("HTTP 503 from the deployment", deployment=self.dep.name)
        if self.dep.fault == "revoked":
            raise DeploymentUnauthorized("the deployment rejected the key",
                                         deployment=self.dep.name)
        if self.dep.fault == "timeout":
            raise DeploymentTimeout("no answer within 1s", deployment=self.dep.name)

    def deploy(self, bundle: Bundle) -> DeployResult:
        self._gate()
        if self.dep.before_deploy:
            self.dep.before_deploy(bundle)
        schema = self.dep.book.by_fp[bundle.fingerprint]
        with self.dep.lock:
            bad = self.dep.valid_under(schema)
            if bad:
                raise SchemaValidationFailed(f"Document {bad[0]} does not match the schema",
                                             deployment=self.dep.name, table="notes",
                                             documents=[bad[0].split(":")[0]])
            self.dep.deployed = bundle
            self.dep.deploys += 1
        return DeployResult(self.dep.name, bundle.version_id, bundle.fingerprint, 0.0)

    def read_version(self) -> VersionInfo:
        self._gate()
        b = self.dep.deployed
        assert b is not None
        return VersionInfo(version=b.version_id, fingerprint=b.fingerprint, kind=b.kind,
                           recorded=self.dep.records[-1] if self.dep.records else None)

    def query(self, path: str, args: dict[str, Any] | None = None) -> Any:
        self._gate()
        if path == "byod:countPage":
            assert self.dep.deployed and args and args["table"] in self.dep.deployed.tables
            n = len(self.dep.docs) if args["table"] == "notes" else 0
            return {"count": min(n, args["numItems"]), "continueCursor": "", "isDone": True}
        raise FunctionError("Could not find public function", function=path)

    def run(self, kind: str, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.query(path, args) if kind == "query" else self.mutation(path, args)

    def mutation(self, path: str, args: dict[str, Any] | None = None) -> Any:
        self._gate()
        args = args or {}
        with self.dep.lock:
            self.dep.mutations += 1
            result = self._mutation(path, args)
        if self.dep.hook:
            self.dep.hook(path, args)
        return result

    def _mutation(self, path: str, args: dict[str, Any]) -> Any:
        b = self.dep.deployed
        assert b is not None
        if path == "byod:recordVersion":
            self.dep.records.append({"version": args["version"],
                                     "fingerprint": args["fingerprint"]})
            return None
        if path == "byod:recordStep":
            self.dep.steps.append(dict(args))
            return None
        fn = path.split(":", 1)[1]
        carried = self.dep.book.steps_of.get(b.fingerprint, {})
        if not path.startswith("byodMigrations:") or fn not in carried:
            raise FunctionError(f"Could not find function for '{path}'", function=path)
        size = int(args["batchSize"])
        if self.dep.tx_limit is not None and size > self.dep.tx_limit:
            raise FunctionError("Too many documents read in a single function execution "
                                "(limit: 32000)", function=path)
        step = carried[fn]
        ids = sorted(self.dep.docs)
        cursor = args.get("cursor")
        page = [i for i in ids if cursor is None or i > cursor][:size]
        changed = sum(_apply(step, self.dep.docs[i]) for i in page)
        last = page[-1] if page else cursor
        done = len(page) < size or (page and page[-1] == ids[-1]) or not page
        return {"continueCursor": last or "", "isDone": bool(done), "processed": len(page),
                "changed": changed}


def _apply(step: DataStep, doc: dict[str, Any]) -> int:
    p = step.params
    if step.op == "backfill":
        if p["field"] in doc:
            return 0
        doc[p["field"]] = p["value"]
        return 1
    if step.op == "rename":
        if p["from"] not in doc:
            return 0
        doc[p["to"]] = doc.pop(p["from"])
        return 1
    raise AssertionError(step.op)
