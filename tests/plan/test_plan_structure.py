"""Plan structure: every step has its own id (the journal is keyed by it, so two steps
sharing one would make the runner treat the second as already done), and a step that reads
the whole document runs only after earlier writes to its table are deployed and checked."""

from __future__ import annotations

from engine.plan.graph import VersionGraph
from engine.plan.planner import plan
from engine.schema.models import (
    Consent,
    FieldDef,
    Float64V,
    MigrationOp,
    Schema,
    SchemaVersion,
    StringV,
    Table,
)

S = FieldDef(type=StringV())


def _version(number: int, with_u: bool) -> SchemaVersion:
    tables = {"t": Table(name="t", fields={"x": S})}
    if with_u:
        tables["u"] = Table(name="u", fields={"y": S})
    parents = (f"{number - 1:04d}_v",) if number > 1 else ()
    return SchemaVersion(id=f"{number:04d}_v", number=number, parents=parents,
                         schema=Schema(tables=tables),
                         consent=Consent(drop_tables=() if with_u else ("u",)))


def test_a_step_repeated_three_times_in_one_deploy_gets_three_ids() -> None:
    # u is dropped three times along the path: the same "empty u" step, never a split
    graph = VersionGraph([_version(n, n % 2 == 1) for n in range(1, 7)])
    p = plan(graph, 1, 6)
    runs = [s for s in p.steps if s.kind == "run_data_step"]
    assert len(runs) == 3 and len({s.data_step.id for s in runs}) == 1
    ids = [s.id for s in p.steps]
    assert len(ids) == len(set(ids)), ids


def test_code_conversion_after_a_write_to_its_table_is_split() -> None:
    # the convert code receives the whole document (typed by the deployed schema), so a
    # field an earlier edge writes must be in place and checked before it runs
    def v(number: int, fields: dict[str, FieldDef], hints: tuple = ()) -> SchemaVersion:
        return SchemaVersion(id=f"{number:04d}_v", number=number,
                             parents=(f"{number - 1:04d}_v",) if number > 1 else (),
                             schema=Schema(tables={"t": Table(name="t", fields=fields)}),
                             migrations=hints)

    n = FieldDef(type=Float64V())
    graph = VersionGraph([
        v(1, {"d": S}),
        v(2, {"d": S, "b": S}, (MigrationOp(op="backfill", table="t", field="b", value="x"),)),
        v(3, {"d": n, "b": S}, (MigrationOp(op="convert", table="t", field="d",
                                            code="return doc.b.length;"),)),
    ])
    p = plan(graph, 1, 3)
    assert len(p.groups) == 2 and p.notes and "t.*" in p.notes[0]
