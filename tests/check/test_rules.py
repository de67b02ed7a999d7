"""Every validation rule: a good case that passes and a bad case that is caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.check.rules import check_versions, identifier_problem
from engine.config import EngineConfig
from engine.errors import Problem

from .reference import MESSAGES_DRAFT

BASE_TABLES = """
  users:
    location: main
    fields: {clerkId: string}
    indexes: {by_clerk: [clerkId]}
  notes:
    location: user
    fields:
      userId: string
      body: string
      meta: {source: string, tags: 'string[]'}
      embedding?: float64[]
      parentId?: nullable(id(notes))
    indexes:
      by_user: [userId]
      by_source: [meta.source, userId]
      by_parent: [parentId]
    search_indexes:
      search_body: {field: body, filters: [userId]}
    vector_indexes:
      emb: {field: embedding, dimensions: 3, filters: [userId]}
"""


def version(tables: str = BASE_TABLES, extra: str = "", parents: str = "[]") -> str:
    return f"parents: {parents}\ntables:{tables}{extra}"


def table(body: str, name: str = "t", location: str = "user") -> str:
    indented = "\n".join("    " + line if line else line for line in body.strip("\n").split("\n"))
    return f"{BASE_TABLES}  {name}:\n    location: {location}\n{indented}\n"


def run(write, problems_of, text: str, config: EngineConfig | None = None) -> list[Problem]:
    write("0001_v.yaml", text)
    return problems_of(config)


def codes(problems: list[Problem]) -> list[str]:
    return [p.code for p in problems]


def test_base_is_clean(write, problems_of) -> None:
    assert run(write, problems_of, version()) == []


def test_identifier_rules() -> None:
    assert identifier_problem("ok_1") is None
    assert identifier_problem("_x") is None
    assert "underscores" in identifier_problem("__")
    assert "start with" in identifier_problem("1abc")
    assert "invalid character" in identifier_problem("café")
    assert "too long" in identifier_problem("a" * 65)
    assert identifier_problem("a" * 64) is None
    assert "only contain" in identifier_problem("a-b")


CASES: list[tuple[str, str, str, str]] = [
    # (id, table body (added as table t) or full text, expected code, location)
    ("bad table name", table("fields: {}", name="'my-table'"), "BYOD-E101", "tables.my-table"),
    ("reserved table", table("fields: {}", name="_secret"), "BYOD-E102", "tables._secret"),
    ("engine table", table("fields: {}", name="byodVersions"), "BYOD-E103",
     "tables.byodVersions"),
    ("field with $", table("fields: {'$x': string}"), "BYOD-E104", "tables.t.fields.$x"),
    # Convex drops top-level `_` fields from the schema (filter_system_fields,
    # crates/common/src/schemas/json.rs) and refuses documents carrying them.
    ("field with _", table("fields: {_x: string}"), "BYOD-E109", "tables.t.fields._x"),
    ("field not identifier", table("fields: {'a-b': string}"), "BYOD-E104",
     "tables.t.fields.a-b"),
    ("nested key", table("fields: {o: '{\"a b\": string}'}"), "BYOD-E105",
     "tables.t.fields.o.a b"),
    ("index name", table("fields: {a: string}\nindexes: {'by-a': [a]}"), "BYOD-E106",
     "tables.t.indexes.by-a"),
    ("reserved index by_id", table("fields: {a: string}\nindexes: {by_id: [a]}"), "BYOD-E107",
     "tables.t.indexes.by_id"),
    ("reserved index _", table("fields: {a: string}\nindexes: {_mine: [a]}"), "BYOD-E107",
     "tables.t.indexes._mine"),
    ("index name shared", table("fields: {a: string}\nindexes: {s: [a]}\n"
                                "search_indexes: {s: {field: a}}"), "BYOD-E108",
     "tables.t.search_indexes.s"),
    ("index on _id", table("fields: {a: string}\nindexes: {i: [_id]}"), "BYOD-E110",
     "tables.t.indexes.i"),
    # crates/application/src/lib.rs _validate_user_defined_index_fields
    ("index on _creationTime", table("fields: {a: string}\nindexes: {i: [a, _creationTime]}"),
     "BYOD-E117", "tables.t.indexes.i"),
    ("index on _field", table("fields: {a: string}\nindexes: {i: [_other]}"), "BYOD-E118",
     "tables.t.indexes.i"),
    ("index on nested _field", table("fields: {o: '{_x: string}'}\nindexes: {i: [o._x]}"),
     "BYOD-E118", "tables.t.indexes.i"),
    ("index path with dots", table("fields: {a: string}\nindexes: {i: ['a.']}"), "BYOD-W119",
     "tables.t.indexes.i"),
    ("same search index", table("fields: {a: string}\nsearch_indexes: {s: {field: a}, "
                                "s2: {field: a}}"), "BYOD-E127", "tables.t.search_indexes.s2"),
    ("same vector index", table("fields: {e: 'float64[]'}\nvector_indexes: {v: {field: e, "
                                "dimensions: 8}, v2: {field: e, dimensions: 8, filters: []}}"),
     "BYOD-E129", "tables.t.vector_indexes.v2"),
    ("fivetran index name", table("fields: {a: string}\nindexes: {_fivetran_a: [a]}"),
     "BYOD-W145", "tables.t.indexes._fivetran_a"),
    ("vector filter missing", table("fields: {e: 'float64[]'}\n"
                                    "vector_indexes: {v: {field: e, dimensions: 8, "
                                    "filters: [z]}}"), "BYOD-W148",
     "tables.t.vector_indexes.v"),
    ("search on system field", table("fields: {a: string}\n"
                                     "search_indexes: {s: {field: a, filters: [_id]}}"),
     "BYOD-W149", "tables.t.search_indexes.s"),

    ("duplicate field in index", table("fields: {a: string}\nindexes: {i: [a, a]}"),
     "BYOD-E111", "tables.t.indexes.i"),
    ("same field lists", table("fields: {a: string}\nindexes: {i: [a], j: [a]}"), "BYOD-E112",
     "tables.t.indexes.j"),
    ("16 index fields", table("fields: {" + ", ".join(f"f{i}: string" for i in range(16))
                              + "}\nindexes: {i: [" + ", ".join(f"f{i}" for i in range(16))
                              + "]}"), "BYOD-E113", "tables.t.indexes.i"),
    ("index field missing", table("fields: {a: string}\nindexes: {i: [b]}"), "BYOD-E114",
     "tables.t.indexes.i"),
    ("nested path missing", table("fields: {o: {x: string}}\nindexes: {i: [o.y]}"),
     "BYOD-E114", "tables.t.indexes.i"),
    ("path into non-object", table("fields: {a: string}\nindexes: {i: [a.b]}"), "BYOD-E114",
     "tables.t.indexes.i"),
    ("search field missing", table("fields: {a: string}\nsearch_indexes: {s: {field: b}}"),
     "BYOD-E114", "tables.t.search_indexes.s"),
    ("filter field missing", table("fields: {a: string}\n"
                                   "search_indexes: {s: {field: a, filters: [z]}}"),
     "BYOD-E114", "tables.t.search_indexes.s"),
    ("empty index", table("fields: {a: string}\nindexes: {i: []}"), "BYOD-E115",
     "tables.t.indexes.i"),
    ("bad index path", table("fields: {a: string}\nindexes: {i: ['a..b']}"), "BYOD-E116",
     "tables.t.indexes.i"),
    # MAX_INDEXES_PER_TABLE = 64, crates/common/src/schemas/mod.rs (no per-kind limit)
    ("65 indexes", table("fields: {" + ", ".join(f"f{i}: string" for i in range(65))
                         + "}\nindexes: {" + ", ".join(f"i{i}: [f{i}]" for i in range(64))
                         + "}\nsearch_indexes: {s: {field: f64}}"), "BYOD-E120", "tables.t"),
    ("17 filters", table("fields: {a: string, " + ", ".join(f"f{i}: string" for i in range(17))
                         + "}\nsearch_indexes: {s: {field: a, filters: ["
                         + ", ".join(f"f{i}" for i in range(17)) + "]}}"),
     "BYOD-E123", "tables.t.search_indexes.s"),
    ("search non-string", table("fields: {n: number}\nsearch_indexes: {s: {field: n}}"),
     "BYOD-W124", "tables.t.search_indexes.s"),
    ("vector not float64[]", table("fields: {e: 'int64[]'}\n"
                                   "vector_indexes: {v: {field: e, dimensions: 8}}"),
     "BYOD-E125", "tables.t.vector_indexes.v"),
    ("vector scalar", table("fields: {e: number}\n"
                            "vector_indexes: {v: {field: e, dimensions: 8}}"),
     "BYOD-E125", "tables.t.vector_indexes.v"),
    ("1 dimension", table("fields: {e: 'float64[]'}\n"
                          "vector_indexes: {v: {field: e, dimensions: 1}}"),
     "BYOD-E126", "tables.t.vector_indexes.v"),
    ("4097 dimensions", table("fields: {e: 'float64[]'}\n"
                              "vector_indexes: {v: {field: e, dimensions: 4097}}"),
     "BYOD-E126", "tables.t.vector_indexes.v"),
    ("filter twice", table("fields: {a: string, b: string}\n"
                           "search_indexes: {s: {field: a, filters: [b, b]}}"),
     "BYOD-W128", "tables.t.search_indexes.s"),
    # MAX_OBJECT_FIELDS = 1024 (crates/value/src/object.rs) counts _id and _creationTime
    ("1023 fields", table("fields: {" + ", ".join(f"f{i}: string" for i in range(1023)) + "}"),
     "BYOD-E130", "tables.t.fields"),
    ("1025 nested fields", table("fields:\n  o: '{" + ", ".join(f"f{i}: string"
                                                              for i in range(1025)) + "}'"),
     "BYOD-E130", "tables.t.fields.o"),
    ("nesting 17", table("fields: {deep: '" + "{a: " * 16 + "string" + "}" * 16 + "'}"),
     "BYOD-E131", "tables.t.fields.deep" + ".a" * 15),
    ("array nesting 17", table("fields: {deep: 'string" + "[]" * 16 + "'}"),
     "BYOD-E131", "tables.t.fields.deep"),
    ("record number keys", table("fields: {r: 'record(number, string)'}"), "BYOD-E132",
     "tables.t.fields.r"),
    ("record literal keys", table("fields: {r: 'record(\"a\" | \"b\", string)'}"),
     "BYOD-E132", "tables.t.fields.r"),
    ("unsafe integer", table("fields: {n: '9007199254740993'}"), "BYOD-W138",
     "tables.t.fields.n"),
    ("id to missing", table("fields: {r: id(nowhere)}\nindexes: {by_r: [r]}"), "BYOD-E134",
     "tables.t.fields.r"),
    ("id to unknown system", table("fields: {r: id(_jobs)}\nindexes: {by_r: [r]}"),
     "BYOD-E134", "tables.t.fields.r"),
    ("user refs main", table("fields: {u: id(users)}\nindexes: {by_u: [u]}"), "BYOD-E135",
     "tables.t.fields.u"),
    ("user refs main nested", table("fields: {o: {u: 'id(users)[]'}}"), "BYOD-E135",
     "tables.t.fields.o.u"),
    ("storage id on user", table("fields: {f: id(_storage)}\nindexes: {by_f: [f]}"),
     "BYOD-E136", "tables.t.fields.f"),
    ("unindexed reference", table("fields: {n: id(notes)}"), "BYOD-W140", "tables.t.fields.n"),
    ("unindexed optional nullable", table("fields:\n  n?: nullable(id(notes))\n  x: string\n"
                                          "indexes: {i: [x, n]}"),
     "BYOD-W140", "tables.t.fields.n"),
    ("main refs user", table("fields: {n: id(notes)}\nindexes: {by_n: [n]}", location="main"),
     "BYOD-W142", "tables.t.fields.n"),
]


@pytest.mark.parametrize(("text", "code", "location"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_rule_catches(write, problems_of, text: str, code: str, location: str) -> None:
    problems = run(write, problems_of, version(text))
    found = [p for p in problems if p.code == code]
    assert found, "\n".join(p.render() for p in problems) or "no problems"
    assert found[0].location == location
    assert found[0].hint or code.startswith(("BYOD-E121", "BYOD-E122", "BYOD-E123",
                                             "BYOD-E113"))
    assert found[0].line is not None
    expected = "warning" if code.startswith("BYOD-W") else "error"
    assert found[0].severity == expected


GOOD_TABLES: list[tuple[str, str]] = [
    ("15 index fields", "fields: {" + ", ".join(f"f{i}: string" for i in range(15))
     + "}\nindexes: {i: [" + ", ".join(f"f{i}" for i in range(15)) + "]}"),
    ("32 indexes", "fields: {" + ", ".join(f"f{i}: string" for i in range(30))
     + ", e: 'float64[]'}\nindexes: {" + ", ".join(f"i{i}: [f{i}]" for i in range(30))
     + "}\nsearch_indexes: {s: {field: f0}}\nvector_indexes: {v: {field: e, dimensions: 2}}"),
    # no per-kind sub-limit: 8 search and 8 vector indexes (distinct definitions)
    ("8 search, 8 vector", "fields: {a: string, e: 'float64[]', "
     + ", ".join(f"f{i}: string" for i in range(8)) + "}\nsearch_indexes: {"
     + ", ".join(f"s{i}: {{field: a, filters: [f{i}]}}" for i in range(8))
     + "}\nvector_indexes: {"
     + ", ".join(f"v{i}: {{field: e, dimensions: {4096 - i}}}" for i in range(8)) + "}"),
    ("64 indexes", "fields: {" + ", ".join(f"f{i}: string" for i in range(64))
     + "}\nindexes: {" + ", ".join(f"i{i}: [f{i}]" for i in range(63))
     + "}\nsearch_indexes: {s: {field: f63}}"),
    ("search filter on nested _ key", "fields: {a: string, o: '{_x: string}'}\n"
     "search_indexes: {s: {field: a, filters: [o._x]}}"),
    ("16 filters", "fields: {a: string, " + ", ".join(f"f{i}: string" for i in range(16))
     + "}\nsearch_indexes: {s: {field: a, filters: ["
     + ", ".join(f"f{i}" for i in range(16)) + "]}}"),
    ("optional search string", "fields: {'a?': string}\nsearch_indexes: {s: {field: a}}"),
    ("nested path through union", "fields: {o: '{k: string} | {k: number, z: string}'}\n"
     "indexes: {i: [o.k], j: [o.z]}"),
    ("record keys", "fields: {r: 'record(string | id(notes), any)', s: 'record(id(t), "
     "number)'}"),
    ("system storage refs", "fields: {j: id(_scheduled_functions)}\nindexes: {by_j: [j]}"),
    ("nesting 16", "fields: {deep: '" + "{a: " * 15 + "string" + "}" * 15 + "'}"),
    ("int64 literals", "fields: {n: '9223372036854775807n | -9223372036854775808n'}"),
    ("user refs user", "fields: {n: id(notes)}\nindexes: {by_n: [n, _creationTime]}"
     .replace(", _creationTime", "")),
    ("1022 fields", "fields: {" + ", ".join(f"f{i}: string" for i in range(1022)) + "}"),
]


@pytest.mark.parametrize("body", [g[1] for g in GOOD_TABLES], ids=[g[0] for g in GOOD_TABLES])
def test_rule_accepts(write, problems_of, body: str) -> None:
    problems = run(write, problems_of, version(table(body)))
    assert problems == [], "\n".join(p.render() for p in problems)


def test_int64_literal_outside_64_bits_built_in_python() -> None:
    """The loader refuses such literals (BYOD-E007); a version built in Python gets E137."""

    from engine.schema.models import FieldDef, LiteralV, Schema, SchemaVersion, Table

    t = Table(name="t", fields={"n": FieldDef(type=LiteralV(value=2**63, bigint=True))},
              indexes=())
    v = SchemaVersion(id="0001_v", number=1, schema=Schema(tables={"t": t}))
    assert [(p.code, p.location) for p in check_versions([v])] == [
        ("BYOD-E137", "tables.t.fields.n")]


def test_storage_on_user_allows_storage_ids(write, problems_of, tmp_path: Path) -> None:
    text = version(table("fields: {f: id(_storage)}\nindexes: {by_f: [f]}"))
    assert codes(run(write, problems_of, text)) == ["BYOD-E136"]
    config = EngineConfig(versions_dir=tmp_path, storage_on="user")
    assert run(write, problems_of, text, config) == []
    main = version(table("fields: {f: id(_storage)}\nindexes: {by_f: [f]}", location="main"))
    assert run(write, problems_of, main) == []


def test_missing_index_field_is_a_warning_without_schema_validation(write, problems_of) -> None:
    text = "schemaValidation: false\n" + version(table("fields: {a: string}\nindexes: {i: [b]}"))
    [p] = run(write, problems_of, text)
    assert (p.code, p.severity) == ("BYOD-W147", "warning")


def test_reference_draft_of_messages_is_rejected(write, problems_of, tmp_path: Path) -> None:
    """The published draft declares the vector index but forgets the embedding field."""

    path = write("0001_v.yaml", MESSAGES_DRAFT)
    [p] = problems_of()
    assert p.code == "BYOD-E114" and p.severity == "error"
    assert p.file == str(path) and p.line == 16
    assert p.location == "tables.messages.vector_indexes.embedding"
    assert 'index "embedding"' in p.message and '"messages"' in p.message
    assert 'field "embedding"' in p.message and "does not exist" in p.message


# ---------------------------------------------------------------------------------------
# Migration hints and consent
# ---------------------------------------------------------------------------------------

V1 = version(table("fields: {a: string, old: string}"))
DROP_OLD = "consent: {drop_fields: [t.old]}\n"


@pytest.mark.parametrize(
    ("hints", "code"),
    [
        ("migrations:\n  - {op: rename, table: t, from: old, to: a}\n", None),
        # (version 2 drops `old`: every edge must plan, so those hints come with its consent)
        ("migrations:\n  - {op: backfill, table: t, field: a, value: x}\n" + DROP_OLD, None),
        ("migrations:\n  - {op: convert, table: t, field: a, code: 'return String(value)'}\n"
         + DROP_OLD, None),
        ("migrations:\n  - {op: delete_rows, table: t, where: {a: x}}\n"
         "consent: {delete_rows: [t], drop_fields: [t.old]}\n", None),
        ("consent: {drop_fields: [t.old], drop_tables: [t]}\n", None),
        ("migrations:\n  - {op: backfill, table: nope, field: a, value: 1}\n", "BYOD-E160"),
        ("migrations:\n  - {op: backfill, table: t, field: nope, value: 1}\n", "BYOD-E161"),
        ("migrations:\n  - {op: rename, table: t, from: ghost, to: a}\n", "BYOD-E161"),
        ("migrations:\n  - {op: rename, table: t, to: a}\n", "BYOD-E162"),
        ("migrations:\n  - {op: map_values, table: t, field: a}\n", "BYOD-E162"),
        ("migrations:\n  - {op: convert, table: t, field: a}\n", "BYOD-E162"),
        ("migrations:\n  - {op: custom, table: t}\n", "BYOD-E162"),
        ("migrations:\n  - {op: drop_field, table: t}\n", "BYOD-E162"),
        ("consent: {drop_tables: [ghost]}\n", "BYOD-E163"),
        ("consent: {drop_fields: [t]}\n", "BYOD-E163"),
        ("consent: {drop_fields: [t.ghost]}\n", "BYOD-E163"),
        ("consent: {delete_rows: [ghost]}\n", "BYOD-E163"),
    ],
)
def test_migration_hints(write, problems_of, hints: str, code: str | None) -> None:
    # The hints live in version 2, whose table t no longer has `old`: names from the parent
    # still count.
    write("0001_v.yaml", V1)
    write("0002_w.yaml", version(table("fields: {a: string}"), parents="[0001_v]") + "\n"
          + hints)
    problems = problems_of()
    assert codes(problems) == ([code] if code else []), \
        "\n".join(p.render() for p in problems)
    if code:
        assert problems[0].location.startswith(("migrations.", "consent."))
        assert problems[0].line is not None


# ---------------------------------------------------------------------------------------
# The graph
# ---------------------------------------------------------------------------------------

EMPTY = "tables: {}\n"


def graph_problems(write, problems_of, files: dict[str, str],
                   config: EngineConfig | None = None) -> list[Problem]:
    for name, parents in files.items():
        write(name, f"parents: {parents}\n{EMPTY}")
    return problems_of(config)


def test_linear_graph_is_clean(write, problems_of) -> None:
    files = {"0001_a.yaml": "[]", "0002_b.yaml": "[1]", "0003_c.yaml": "[0002_b]"}
    assert graph_problems(write, problems_of, files) == []


def test_merge_is_clean(write, problems_of) -> None:
    files = {"0001_a.yaml": "[]", "0002_b.yaml": "[1]", "0003_c.yaml": "[1]",
             "0004_m.yaml": "[2, 3]"}
    assert graph_problems(write, problems_of, files) == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"0001_a.yaml": "[]", "0002_b.yaml": "[0009_x]"}, ["BYOD-E152", "BYOD-E154",
                                                           "BYOD-E154"]),
        ({"0001_a.yaml": "[]", "0002_b.yaml": "[1]", "0003_c.yaml": "[1]"},
         ["BYOD-E154", "BYOD-E154"]),
        ({"0001_a.yaml": "[3]", "0002_b.yaml": "[1]", "0003_c.yaml": "[2]"},
         ["BYOD-W157", "BYOD-E153"]),
        ({"0001_a.yaml": "[]", "0002_b.yaml": "[0002_b]"}, ["BYOD-E155", "BYOD-E153"]),
        ({"0001_a.yaml": "[]", "0002_b.yaml": "[1, 1]"}, ["BYOD-E155"]),
        ({"0001_a.yaml": "[]", "0002_b.yaml": "[1]", "0002_c.yaml": "[1]"},
         ["BYOD-E150", "BYOD-E150", "BYOD-E154", "BYOD-E154"]),
        ({"0001_a.yaml": "[]", "0002_b.yaml": "[3]", "0003_c.yaml": "[1]"}, ["BYOD-W157"]),
    ],
)
def test_graph_rules(write, problems_of, files: dict[str, str], expected: list[str]) -> None:
    problems = graph_problems(write, problems_of, files)
    assert sorted(codes(problems)) == sorted(expected), \
        "\n".join(p.render() for p in problems)
    assert all(p.file.endswith(".yaml") for p in problems)


def test_expected_heads(write, problems_of, tmp_path: Path) -> None:
    files = {"0001_a.yaml": "[]", "0002_b.yaml": "[1]", "0003_c.yaml": "[1]"}
    ok = EngineConfig(versions_dir=tmp_path, expected_heads=("0002_b", "3"))
    assert graph_problems(write, problems_of, files, ok) == []
    only_b = EngineConfig(versions_dir=tmp_path, expected_heads=("0002_b",))
    [p] = problems_of(only_b)
    assert p.code == "BYOD-E154" and "0003_c" in p.message
    stale = EngineConfig(versions_dir=tmp_path, expected_heads=("1", "2", "3"))
    [p] = problems_of(stale)
    assert p.code == "BYOD-E154" and "0001_a is in expected_heads" in p.message
    unknown = EngineConfig(versions_dir=tmp_path, expected_heads=("2", "3", "9"))
    [p] = problems_of(unknown)
    assert p.code == "BYOD-E154" and "'9'" in p.message


def test_no_versions(tmp_path: Path) -> None:
    [p] = check_versions([], EngineConfig(versions_dir=tmp_path))
    assert p.code == "BYOD-E156"


# ---------------------------------------------------------------------------------------
# Ignoring warnings (lint.ignore in a version, lint_ignore in the config)
# ---------------------------------------------------------------------------------------

_NOT_STRING = table("fields: {n: number}\nsearch_indexes: {s: {field: n}}")


def test_version_ignores_a_warning_code(write, problems_of) -> None:
    assert codes(run(write, problems_of, version(_NOT_STRING))) == ["BYOD-W124"]
    ignored = version(_NOT_STRING, extra="lint:\n  ignore: [BYOD-W124]\n")
    assert run(write, problems_of, ignored) == []


def test_config_ignores_a_warning_code_everywhere(write, problems_of, tmp_path: Path) -> None:
    config = EngineConfig(versions_dir=tmp_path, lint_ignore=("BYOD-W124",))
    assert run(write, problems_of, version(_NOT_STRING), config) == []
    other = EngineConfig(versions_dir=tmp_path, lint_ignore=("BYOD-W140",))
    assert codes(run(write, problems_of, version(_NOT_STRING), other)) == ["BYOD-W124"]


def test_ignore_never_hides_errors(write, problems_of, tmp_path: Path) -> None:
    text = version(table("fields: {a: string}\nindexes: {by_id: [a]}"),
                   extra="lint:\n  ignore: [BYOD-W124]\n")
    assert codes(run(write, problems_of, text)) == ["BYOD-E107"]


def test_byod_toml_lint_ignore(tmp_path: Path) -> None:
    from engine.config import load_config
    from engine.errors import ConfigError

    path = tmp_path / "byod.toml"
    path.write_text('[byod]\nlint_ignore = ["BYOD-W124", "BYOD-W128"]\n')
    assert load_config(path, {}).lint_ignore == ("BYOD-W124", "BYOD-W128")
    path.write_text('[byod]\nlint_ignore = ["BYOD-E101"]\n')
    with pytest.raises(ConfigError, match="only warning codes"):
        load_config(path, {})


def test_nullable_search_field_is_not_a_warning(write, problems_of) -> None:
    """Null (like a missing value) just leaves the document unsearchable."""

    text = version(table("fields: {s: nullable(string)}\nsearch_indexes: {x: {field: s}}"))
    assert run(write, problems_of, text) == []


def test_table_count_is_per_deployment() -> None:
    """MAX_USER_TABLES (crates/database/src/bootstrap_model/table.rs:62) bounds one
    deployment: 10,000 user-located plus main-located tables pass, 10,001 of one kind fail."""

    from engine.schema.models import Location, Schema, SchemaVersion, Table

    def tables(n: int, location: Location, prefix: str) -> dict[str, Table]:
        return {f"{prefix}{i}": Table(name=f"{prefix}{i}", location=location)
                for i in range(n)}

    ok = {**tables(10_000, Location.USER, "u"), **tables(5, Location.MAIN, "m")}
    v = SchemaVersion(id="0001_v", number=1, schema=Schema(tables=ok))
    assert check_versions([v]) == []
    bad = {**ok, "u10000": Table(name="u10000")}
    v = SchemaVersion(id="0001_v", number=1, schema=Schema(tables=bad))
    [p] = check_versions([v])
    assert (p.code, p.location) == ("BYOD-E170", "tables")
    assert "user-located tables: Number of tables cannot exceed 10000." in p.message
