"""The record-key rule (BYOD-E132): a record's key validator must be a subtype of
``v.string()`` — Convex refuses anything else at push with "Records can only have string
keys. Your validator contains a record with key typed as `…`, which is not a subtype of
`v.string()`", and string-literal keys with "Records cannot have string literal keys"
(``crates/common/src/schemas/json.rs``, ``ValidatorJson::Record``). A union counts only when
every member is string-like, so ``record(string | number, …)`` is refused even though one
member is a string."""

from __future__ import annotations

import pytest

from .test_rules import codes, run, table, version

REFUSED = [
    ("string | number", "record(string | number, string)"),
    ("number | string", "record(number | string, string)"),
    ("id | number", "record(id(notes) | float64, string)"),
    ("string | int64", "record(string | int64, any)"),
    ("string | boolean", "record(string | boolean, string)"),
    ("nested union", "record(string | (id(notes) | number), string)"),
    ("string | literal", "record(string | \"a\", string)"),
    ("number", "record(number, string)"),
    ("any", "record(any, string)"),
]

ACCEPTED = [
    ("string", "record(string, number)"),
    ("id", "record(id(notes), string | number)"),
    ("string | id", "record(string | id(notes), any)"),
    ("id | id", "record(id(notes) | id(t), number)"),
]


@pytest.mark.parametrize("keys", [r[1] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_keys_that_are_not_all_string_like_are_refused(write, problems_of, keys):
    problems = run(write, problems_of, version(table(f"fields: {{r: '{keys}'}}")))
    assert codes(problems) == ["BYOD-E132"], [p.render() for p in problems]
    assert problems[0].location.endswith("tables.t.fields.r")


@pytest.mark.parametrize("keys", [r[1] for r in ACCEPTED], ids=[r[0] for r in ACCEPTED])
def test_string_like_keys_are_accepted(write, problems_of, keys):
    problems = run(write, problems_of, version(table(f"fields: {{r: '{keys}'}}")))
    assert problems == [], [p.render() for p in problems]


@pytest.mark.parametrize("where", ["'{{inner: {r}}}'", "'{r}[]'", "'record(string, {r})'"],
                         ids=["in an object", "in an array", "as a record value"])
def test_the_rule_applies_at_every_depth(write, problems_of, where):
    field = where.format(r="record(string | number, string)")
    problems = run(write, problems_of, version(table(f"fields: {{deep: {field}}}")))
    assert codes(problems) == ["BYOD-E132"], [p.render() for p in problems]
