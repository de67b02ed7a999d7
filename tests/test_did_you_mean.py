""""Did you mean": a shortened name suggests the names it begins, a misspelling the closest."""

from __future__ import annotations

from engine.errors import close_matches, did_you_mean

VERSIONS = ["0001_initial", "0002_tags", "0003_content_package", "0004_task_priorities"]


def test_a_shortened_name_suggests_the_names_it_begins() -> None:
    assert close_matches("0004_task", VERSIONS) == ["0004_task_priorities"]
    assert close_matches("000", VERSIONS) == ["0001_initial", "0002_tags"]


def test_a_misspelling_suggests_the_closest_spelling() -> None:
    assert did_you_mean("0004_task_priorites", VERSIONS) == "; did you mean '0004_task_priorities'?"
    assert did_you_mean("zzz", VERSIONS) == ""
    assert did_you_mean("", VERSIONS) == ""
