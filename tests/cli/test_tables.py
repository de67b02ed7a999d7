"""The one table renderer and the one rollout progress renderer (``engine.render``)."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from engine.cli import output
from engine.cli.tables import render_table as cli_table
from engine.events import (
    DeploymentDone,
    DeploymentFailed,
    Event,
    RolloutFinished,
    RolloutStarted,
    StepCompleted,
    WaveStarted,
)
from engine.render import RolloutProgress, format_table

ANSI = re.compile(r"\x1b\[[0-9;]*m")
HEADERS = ("user", "state", "version", "reason")
ROWS = [("alice", "healthy", "0006_merge", None),
        ("bob", "unreachable", None, "connection refused " * 20)]


def test_plain_columns_are_parseable() -> None:
    lines = format_table(HEADERS, ROWS)
    assert lines[0].split() == list(HEADERS)
    assert lines[1].split() == ["alice", "healthy", "0006_merge", "-"]
    assert lines[2].split()[:3] == ["bob", "unreachable", "-"]
    # every column starts where its header does
    starts = [lines[0].index(h) for h in HEADERS]
    assert [lines[1][s - 2:s] == "  " for s in starts[1:]] == [True] * 3
    assert lines[2][starts[3]:].startswith("connection refused")


def test_wide_values_are_never_cut_in_plain_text() -> None:
    lines = format_table(HEADERS, ROWS)
    assert len(lines) == 3
    assert lines[2].rstrip().endswith(("connection refused " * 20).strip())


def test_values_with_newlines_stay_on_one_line() -> None:
    lines = format_table(("a", "b"), [("x", "first\nsecond")])
    assert lines == ["a  b", "x  first second"]


def test_terminal_table_is_never_wider_than_the_terminal() -> None:
    lines = format_table(HEADERS, ROWS, terminal=True, color=False, width=60)
    assert all(len(line) <= 60 for line in lines)
    text = "\n".join(lines)
    assert "alice" in text and "unreachable" in text
    assert text.replace("│", " ").count("connection") >= 20  # folded, not truncated


def test_no_colour_codes_without_color() -> None:
    lines = format_table(HEADERS, ROWS, terminal=True, color=False, width=80, title="health")
    assert not any(ANSI.search(line) for line in lines)
    coloured = format_table(HEADERS, ROWS, terminal=True, color=True, width=80)
    assert any(ANSI.search(line) for line in coloured)


def test_markup_in_values_is_printed_as_is() -> None:
    lines = format_table(("a",), [("[red]x[/red]",)], terminal=True, color=False, width=40)
    assert any("[red]x[/red]" in line for line in lines)


def test_cli_table_on_a_pipe_is_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    import click

    @click.command()
    def show() -> None:
        cli_table(HEADERS, ROWS, title="fleet")

    monkeypatch.setattr(output.settings, "color", False)
    result = CliRunner().invoke(show)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "fleet" and lines[1].split() == list(HEADERS)
    assert not ANSI.search(result.output) and "│" not in result.output


# -- progress ------------------------------------------------------------------------------


def _resumed_events() -> list[Event]:
    """What a resume emits for a rollout of 3 (canary 1, then 2) whose canary and one more
    finished in an earlier run: the total, then only the waves with work left."""

    return [
        RolloutStarted("r-1", "v3", total=3, waves=(1, 2), concurrency=2, max_failures=1,
                       resumed=True),
        WaveStarted("r-1", "100%", 1, ("carol",)),
        DeploymentDone("carol", "v1", "v3", deploys=2, duration_s=0.5),
        RolloutFinished("r-1", "completed", (("succeeded", 3),), 1.0),
    ]


def test_resumed_rollout_progress_ends_at_n_of_n() -> None:
    lines: list[str] = []
    progress = RolloutProgress(lines.append)
    for event in _resumed_events():
        progress(event)
    assert (progress.completed, progress.total) == (3, 3)
    assert any(line.startswith("[3/3] ok") and "carol" in line for line in lines)
    assert "(resumed)" in lines[0]
    assert "2 done by an earlier run" in lines[1]


def test_resumed_rollout_skipping_whole_waves_counts_them() -> None:
    progress = RolloutProgress(lambda _line: None)
    progress(RolloutStarted("r-1", "v3", total=5, waves=(1, 2, 2), concurrency=2,
                            max_failures=1, resumed=True))
    progress(WaveStarted("r-1", "100%", 2, ("dave",)))  # canary and 50% were done before
    assert progress.completed == 4
    progress(DeploymentFailed("dave", "RuntimeError", "other", "boom\nmore", 0.1))
    assert (progress.completed, progress.failed) == (5, 1)


def test_progress_bar_counts_a_resume() -> None:
    import io

    stream = io.StringIO()
    with RolloutProgress(live=True, color=False, stream=stream) as progress:
        for event in _resumed_events():
            progress(event)
        task = progress._progress.tasks[0]
        assert (task.completed, task.total) == (3, 3)


def test_quiet_progress_prints_nothing() -> None:
    lines: list[str] = []
    progress = RolloutProgress(lines.append, quiet=True, live=True)
    with progress:
        for event in _resumed_events():
            progress(event)
    assert lines == [] and progress.completed == 3


def test_canary_steps_are_shown_with_steps() -> None:
    lines: list[str] = []
    progress = RolloutProgress(lines.append, steps=True, indent="  ")
    progress(RolloutStarted("r-2", "v2", total=2, waves=(1, 1), concurrency=1,
                            max_failures=0))
    progress(WaveStarted("r-2", "canary", 0, ("alice",)))
    progress(StepCompleted("alice", "p", "s1", "deploy", 0.2))
    progress(StepCompleted("bob", "p", "s1", "deploy", 0.2))
    assert all(line.startswith("  ") for line in lines)
    assert sum("s1" in line for line in lines) == 1


def test_a_real_resumed_rollout_ends_at_n_of_n(tmp_path) -> None:
    """The budget halts a rollout of 8 after 2 done and 2 failed; the resume's progress
    starts from the 2 already done and ends at 8/8."""

    from fleet.rollout.test_rollout_unit import Fleet

    from engine.events import EventLog

    fleet = Fleet(tmp_path)
    try:
        for i in range(8):
            fleet.add(f"u{i}")
        for bad in ("u2", "u3"):
            fleet.deps[bad].docs[f"{bad}-00001"]["userId"] = 7  # violates every schema
        first = fleet.run(emit=EventLog(), canary=1, waves=("100%",), concurrency=1,
                          max_failures="1")
        assert first.status == "halted"
        for bad in ("u2", "u3"):
            fleet.deps[bad].docs[f"{bad}-00001"]["userId"] = bad
        lines: list[str] = []
        progress = RolloutProgress(lines.append)
        again = fleet.run(resume=first.rollout_id, concurrency=4, emit=progress)
        assert again.status == "completed"
        assert (progress.completed, progress.total) == (8, 8)
        done = [line for line in lines if " ok " in line]
        assert len(done) == 6 and done[0].startswith("[3/8]") and done[-1].startswith("[8/8]")
    finally:
        fleet.store.close()
