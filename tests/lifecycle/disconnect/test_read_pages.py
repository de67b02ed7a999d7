"""Paginated reads end at isDone and refuse a deployment whose cursor stops moving."""

from __future__ import annotations

import pytest

from engine.errors import DeploymentServerError
from engine.lifecycle.progress import read_pages


def test_reads_every_page_in_order() -> None:
    answers = {None: {"page": [1], "continueCursor": "a", "isDone": False},
               "a": {"page": [2], "continueCursor": "b", "isDone": False},
               "b": {"page": [3], "continueCursor": "c", "isDone": True}}
    seen: list[str | None] = []

    def fetch(cursor: str | None) -> dict:
        seen.append(cursor)
        return answers[cursor]

    pages = list(read_pages(fetch, what="reading t"))
    assert [p["page"] for p in pages] == [[1], [2], [3]]
    assert seen == [None, "a", "b"]


@pytest.mark.parametrize("stuck", ["a", None])
def test_a_cursor_that_does_not_move_is_an_error_not_a_hang(stuck: str | None) -> None:
    def fetch(cursor: str | None) -> dict:
        return {"page": [], "continueCursor": stuck if cursor else "a", "isDone": False}

    with pytest.raises(DeploymentServerError, match="reading notes: .*neither finished nor"):
        for _ in read_pages(fetch, what="reading notes", deployment="u1"):
            pass
