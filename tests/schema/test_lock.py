"""The lock of released versions, pure: canonical digests, the lock's text and checksum line,
and the problems ``byod check`` reports from them."""

from __future__ import annotations

from engine.schema.lock import (
    CHANGED,
    LOCK_EDITED,
    MISSING,
    content_digest,
    lock_problems,
    parse_lock,
    render_lock,
)

V1 = """\
description: "first"   # a comment
parents: []
tables:
  notes:
    location: user
    fields: {title: string, body: string}
lint:
  acknowledge: {BYOD-W140: "why"}
"""


def test_layout_comments_and_lint_do_not_count_but_content_does() -> None:
    same = ("parents: []\n\ndescription: first\ntables:\n  notes:\n    fields:\n"
            "      body: string\n      title: string\n    location: user\n")
    assert content_digest(same) == content_digest(V1)
    assert content_digest(V1.replace("body: string", "body: number")) != content_digest(V1)
    assert content_digest(V1.replace('"first"', '"First"')) != content_digest(V1)
    assert content_digest("not: [valid") != content_digest("not: [valid2")


def test_render_then_parse_round_trips_and_is_intact() -> None:
    entries = {"0002_b": content_digest("b: 1"), "0001_a": content_digest(V1)}
    text = render_lock(entries)
    assert text.index("0001_a") < text.index("0002_b")
    lock = parse_lock(text)
    assert lock.intact and lock.entries == entries
    assert lock_problems(lock, "versions.lock", {"0001_a": ("a.yaml", entries["0001_a"]),
                                                  "0002_b": ("b.yaml", entries["0002_b"])}) == []


def test_a_hand_edit_of_the_lock_breaks_its_checksum() -> None:
    a, b = content_digest("a: 1"), content_digest("a: 2")
    text = render_lock({"0001_a": a})
    edited = parse_lock(text.replace(a, b))
    assert not edited.intact and "edited by hand" in edited.defects[0][1]
    [problem] = lock_problems(edited, "versions.lock", {"0001_a": ("a.yaml", b)})
    assert problem.code == LOCK_EDITED and problem.file == "versions.lock"
    assert problem.line == 3 and "--rehash all --yes" in problem.hint
    added = parse_lock(text + f"0002_b {a}\n")
    assert not added.intact
    assert not parse_lock(text.replace("sum ", "# sum ")).intact  # checksum line gone
    garbled = parse_lock(text + "0003_c deadbeef\n")
    assert [line for line, _ in garbled.defects] == [5]


def test_changed_and_missing_released_versions_are_errors_naming_the_file() -> None:
    a, b = content_digest("a: 1"), content_digest("a: 2")
    lock = parse_lock(render_lock({"0001_a": a, "0002_b": a}))
    problems = lock_problems(lock, "v/versions.lock",
                             {"0001_a": ("v/0001_a.yaml", b), "0009_new": ("v/0009.yaml", b)})
    by_code = {p.code: p for p in problems}
    assert set(by_code) == {CHANGED, MISSING}
    changed = by_code[CHANGED]
    assert changed.file == "v/0001_a.yaml" and "released version 0001_a changed" in changed.message
    assert "byod new NAME" in changed.hint and "--rehash 0001_a --yes" in changed.hint
    assert by_code[MISSING].file == "v/versions.lock" and "0002_b" in by_code[MISSING].message
