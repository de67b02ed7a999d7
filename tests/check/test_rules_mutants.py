"""Exact texts of the project's own reference rules, the engine-table rule and the int64
rule, and a reference inside a record's values (mutation testing, scripts/mutation.py,
found these unpinned)."""

from __future__ import annotations

from engine.schema.engine_tables import ENGINE_TABLE_NAMES

MAIN_AND_USER = """\
description: d
parents: []
tables:
  accounts:
    location: main
    fields: {{name: string}}
  notes:
    location: user
    fields: {{userId: string, {field}}}
    indexes: {{by_user: [userId]}}
"""


def _only(problems, code):
    found = [p for p in problems if p.code == code]
    assert len(found) == 1, [(p.code, p.message) for p in problems]
    return found[0]


def test_a_user_table_referencing_a_main_table(write, problems_of):
    write("0001_a.yaml", MAIN_AND_USER.format(field="account: id(accounts)"))
    p = _only(problems_of(), "BYOD-E135")
    assert p.message == ("user table 'notes' references main table 'accounts': the user's "
                         "deployment cannot hold ids of the main deployment")
    assert p.hint == ("store the main-side key as a string (e.g. the Clerk user id) instead "
                      "of id(accounts)")


def test_a_reference_inside_a_records_values_is_checked(write, problems_of):
    write("0001_a.yaml", MAIN_AND_USER.format(field="links: 'record(string, id(accounts))'"))
    p = _only(problems_of(), "BYOD-E135")
    assert p.location.endswith("notes.fields.links")


def test_a_main_table_referencing_a_user_table(write, problems_of):
    write("0001_a.yaml", """\
        description: d
        parents: []
        tables:
          notes:
            location: user
            fields: {userId: string}
            indexes: {by_user: [userId]}
          audit:
            location: main
            fields: {note: id(notes)}
            indexes: {by_note: [note]}
        """)
    p = _only(problems_of(), "BYOD-W142")
    assert p.hint == "store the id as a string and resolve it through routing"


def test_an_engine_table_name_is_refused_with_the_list(write, problems_of):
    name = sorted(ENGINE_TABLE_NAMES)[0]
    write("0001_a.yaml", f"""\
        description: d
        parents: []
        tables:
          {name}:
            location: user
            fields: {{x: string}}
        """)
    p = _only(problems_of(), "BYOD-E103")
    assert p.hint == "rename the table; engine tables: " + ", ".join(sorted(ENGINE_TABLE_NAMES))


def test_an_int64_literal_beyond_64_bits():
    """The loader refuses such a literal (BYOD-E007); a version built in Python reaches
    the rule, which reports it and checks the rest of the table as ``any``."""

    from engine.check.rules import check_versions
    from engine.config import EngineConfig
    from engine.schema.models import (
        FieldDef,
        LiteralV,
        Schema,
        SchemaVersion,
        StringV,
        Table,
    )

    table = Table(name="t", fields={"x": FieldDef(type=LiteralV(value=2**70, bigint=True)),
                                    "y": FieldDef(type=StringV())})
    version = SchemaVersion(id="0001_a", number=1, parents=(), schema=Schema(tables={"t": table}))
    problems = check_versions([version], EngineConfig())
    p = _only(problems, "BYOD-E137")
    assert (p.message, p.hint) == ("int64 literal is not a 64-bit integer",
                                   "int64 literals range from -2^63 to 2^63-1")
    assert p.location == "tables.t.fields.x"
    assert [q.code for q in problems if q.severity == "error"] == ["BYOD-E137"]
