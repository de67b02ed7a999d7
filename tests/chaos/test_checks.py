"""The chaos suite's own yardstick: the field-by-field comparison catches a duplicated
document, a missing one, a changed field, a reference pointing at the wrong document and
another user's document, and ignores what legitimately differs (ids, creation times, the
owner's id when comparing two users)."""

from __future__ import annotations

import copy

from .world import canonical, differences

DOCS = {
    "conversations": [{"_id": "1c", "_creationTime": 1.0, "userId": "a", "title": "T1"},
                      {"_id": "2c", "_creationTime": 2.0, "userId": "a", "title": "T2"}],
    "messages": [{"_id": "3m", "_creationTime": 3.0, "userId": "a", "conversationId": "1c",
                  "content": "hi", "meta": {"n": 1.0}},
                 {"_id": "4m", "_creationTime": 4.0, "userId": "a", "conversationId": "2c",
                  "content": "yo", "parentMessageId": "3m"}],
    "byodVersions": [{"_id": "9v", "_creationTime": 9.0, "version": "v1"}],
}


def _renumbered(docs, owner="a"):
    """The same content under other ids, creation times and owner (what a copy makes)."""

    ids = {"1c": "71c", "2c": "72c", "3m": "73m", "4m": "74m", "9v": "79v"}
    out = {}
    for table, rows in docs.items():
        out[table] = []
        for d in rows:
            d = {k: (ids.get(v, v) if isinstance(v, str) else v) for k, v in d.items()}
            d["_creationTime"] += 100
            if "userId" in d:
                d["userId"] = owner
            out[table].append(d)
    return out


def test_same_content_under_other_ids_is_equal():
    assert differences(canonical(DOCS), canonical(_renumbered(DOCS))) == []
    assert differences(canonical(DOCS, owner="a"),
                       canonical(_renumbered(DOCS, owner="b"), owner="b")) == []
    assert "byodVersions" not in canonical(DOCS)


def test_a_duplicate_is_caught():
    docs = copy.deepcopy(DOCS)
    docs["messages"].append({**docs["messages"][0], "_id": "5m"})
    [problem] = differences(canonical(DOCS), canonical(docs))
    assert problem.startswith("messages: 2 expected, 3 present, 0 missing, 1 extra "
                              "(duplicated 1 distinct)")


def test_a_missing_document_and_a_changed_field_are_caught():
    docs = copy.deepcopy(DOCS)
    docs["conversations"].pop()
    docs["messages"][0]["meta"]["n"] = 2
    problems = differences(canonical(DOCS), canonical(docs))
    assert [p.split(":")[0] for p in problems] == ["conversations", "messages"]
    assert "1 missing" in problems[0]
    # both messages differ: one changed, the other points at a document that changed
    assert "2 missing, 2 extra" in problems[1]


def test_a_reference_to_the_wrong_document_is_caught():
    docs = copy.deepcopy(DOCS)
    docs["messages"][0]["conversationId"] = "2c"
    assert differences(canonical(DOCS), canonical(docs))


def test_another_users_documents_are_not_counted_as_the_owners():
    docs = copy.deepcopy(DOCS)
    docs["messages"].append({"_id": "6m", "_creationTime": 6.0, "userId": "b",
                             "conversationId": "1c", "content": "hi", "meta": {"n": 1}})
    assert differences(canonical(DOCS, owner="a"), canonical(docs, owner="a")) == []
    assert differences(canonical(DOCS), canonical(docs))
