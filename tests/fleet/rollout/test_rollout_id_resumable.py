"""The rollout id on screen is always resumable: ``RolloutStarted`` (which the CLI prints
with the id) comes only after the rollout's state is saved, so a run killed right after the
id is printed can be resumed by that id. A dry run saves nothing."""

from __future__ import annotations

import pytest

from engine.events import Event, RolloutStarted

from .test_rollout_unit import fleet as fleet  # noqa: F401 - the fixture


class Killed(BaseException):
    """A kill right after the id is printed (not an ``Exception``: sinks' errors are
    isolated, a kill is not)."""


def _kill_on_start(seen: list[str]):
    def sink(event: Event) -> None:
        if isinstance(event, RolloutStarted):
            seen.append(event.rollout_id)
            raise Killed()
    return sink


def test_the_printed_rollout_id_is_saved_before_it_is_shown(fleet):
    for i in range(3):
        fleet.add(f"u{i}", "v1")
    seen: list[str] = []
    with pytest.raises(Killed):
        fleet.run(emit=_kill_on_start(seen), canary=1)
    assert len(seen) == 1
    doc = fleet.store.load_rollout(seen[0])
    assert doc is not None and doc["rollout_id"] == seen[0]
    assert sorted(doc["deployments"]) == ["u0", "u1", "u2"]
    report = fleet.run(resume=seen[0])
    assert report.rollout_id == seen[0] and report.status == "completed"
    assert all(fleet.on_v3(u) for u in ("u0", "u1", "u2"))


def test_a_dry_run_saves_nothing_and_says_so(fleet):
    fleet.add("u0", "v1")
    seen: list[RolloutStarted] = []
    report = fleet.run(emit=lambda e: seen.append(e) if isinstance(e, RolloutStarted) else None,
                       dry_run=True)
    assert report.status == "dry_run"
    assert [e.dry_run for e in seen] == [True]
    assert fleet.store.load_rollout(report.rollout_id) is None
