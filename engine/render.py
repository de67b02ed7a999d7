"""How text is drawn for people: one table renderer and one rollout progress renderer.

Both draw with rich on a terminal and fall back to plain text otherwise, so a pipe, a CI log
or a test reads stable columns and one line per event:

* ``render_table`` — a rich table (minimal box, never wider than the terminal, long values
  folded) on a terminal; on anything else plain columns separated by two spaces, one row a
  line, an empty cell shown as ``-``, so ``cut``/``awk`` and tests can read them.
* ``RolloutProgress`` — a sink for the typed events of ``engine.events``: a progress bar over
  deployments on a terminal, one plain line per meaningful event otherwise, nothing when
  quiet. A resumed rollout counts the deployments an earlier run already finished, so its
  bar ends at N/N.

Layer 1: it imports only rich and ``engine.events`` (layer 0), so the CLI and the demo (which
sits below the CLI) share it. Colour is the caller's to decide (``color=``); text and events are
already sanitized by whoever produced them.
"""

from __future__ import annotations

import io
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from engine.events import (
    BudgetExhausted,
    DeploymentDone,
    DeploymentFailed,
    DeploymentReconciled,
    DeploymentSkipped,
    Event,
    RolloutFinished,
    RolloutStarted,
    StepCompleted,
    StepStarted,
    WaveStarted,
)

__all__ = ["Echo", "RolloutProgress", "format_table", "render_table"]

Echo = Callable[[str], None]
Cell = Any


def _cell(value: Cell) -> str:
    """One cell as a single line; ``-`` for nothing, so plain columns stay aligned."""

    text = "" if value is None else str(value)
    text = " ".join(text.split()) if ("\n" in text or "\r" in text or "\t" in text) else text
    return text if text.strip() else "-"


def _terminal_width() -> int:
    return max(20, shutil.get_terminal_size((100, 24)).columns)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], *,
                 title: str | None = None, terminal: bool = False, color: bool = True,
                 width: int | None = None, indent: int = 0) -> list[str]:
    """The lines of a table: rich (``terminal``) or plain columns.

    Plain: the title (if any), the header row, then one line per row; columns are padded to
    their widest cell and separated by two spaces; the last column is not padded, and no
    value is ever cut. Rich: a minimal-box table at most ``width`` columns wide (default:
    the terminal's), long values folded inside their cell, without colour unless ``color``.
    """

    head = [str(h) for h in headers]
    body = [[_cell(c) for c in row] for row in rows]
    pad = " " * indent
    if not terminal:
        lines = [f"{pad}{title}"] if title else []
        widths = [max([len(head[i])] + [len(r[i]) for r in body if i < len(r)])
                  for i in range(len(head))]
        for row in [head, *body]:
            cells = [c.ljust(w) for c, w in zip(row, widths)]
            lines.append(pad + "  ".join(cells).rstrip())
        return lines

    from rich import box
    from rich.console import Console
    from rich.table import Column, Table
    from rich.text import Text

    total = (width or _terminal_width()) - indent
    table = Table(*[Column(header=Text(h), overflow="fold") for h in head], title=title,
                  box=box.MINIMAL, expand=False, header_style="bold" if color else "",
                  title_style="bold" if color else "", show_edge=False, pad_edge=False,
                  highlight=False)
    for row in body:
        table.add_row(*[Text(c) for c in row])
    buffer = io.StringIO()
    console = Console(file=buffer, width=max(20, total), force_terminal=color,
                      color_system="standard" if color else None, no_color=not color,
                      highlight=False, emoji=False, markup=False, soft_wrap=False)
    console.print(table)
    return [pad + line.rstrip() for line in buffer.getvalue().splitlines()]


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Cell]], *,
                 title: str | None = None, echo: Echo | None = None, color: bool = True,
                 terminal: bool | None = None, indent: int = 0) -> None:
    """Print a table through ``echo`` (default: stdout); rich when ``terminal`` (default:
    stdout is a terminal), plain columns otherwise (see ``format_table``)."""

    if terminal is None:
        terminal = _isatty(sys.stdout)
    out = echo or (lambda line: print(line))
    for line in format_table(headers, rows, title=title, terminal=terminal, color=color,
                             indent=indent):
        out(line)


def _isatty(stream: TextIO | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


class RolloutProgress:
    """One renderer for a rollout's events: a progress bar when ``live``, plain lines through
    ``echo`` otherwise, nothing when ``quiet``. Use it as a context manager (the bar starts
    and stops with it; plain mode needs none) and pass it as the rollout's ``emit``.

    ``completed`` counts the deployments worked (done, already on target, failed, skipped),
    including, on a resumed rollout, those an earlier run finished: ``RolloutStarted`` gives
    the total and every wave's size, each ``WaveStarted`` lists only the deployments left to
    do, and ``RolloutFinished`` carries the final counts.

    ``steps`` shows the step lines of the first deployment of the first wave (the canary),
    as the demo does; ``indent`` prefixes every plain line.
    """

    def __init__(self, echo: Echo | None = None, *, live: bool = False, quiet: bool = False,
                 color: bool = True, steps: bool = False, indent: str = "",
                 stream: TextIO | None = None):
        self.echo: Echo = echo or (lambda line: print(line, file=sys.stderr))
        self.live, self.quiet, self.color = live and not quiet, quiet, color
        self.steps, self.indent = steps, indent
        self.stream = stream
        self.total = 0
        self.completed = 0
        self.failed = 0
        self.waves: tuple[int, ...] = ()
        self._seen_waves: set[int] = set()
        self._detailed: str | None = None
        self._progress: Any = None
        self._task: Any = None

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> RolloutProgress:  # noqa: PYI034 - a final class
        if self.live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            console = Console(file=self.stream or sys.stderr, no_color=not self.color,
                              color_system="auto" if self.color else None, highlight=False)
            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                                      TimeElapsedColumn(), console=console, transient=False)
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    # -- events --------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        if self.quiet:
            self._count(event)
            return
        before = self.completed
        self._count(event)
        if self._progress is not None:
            self._draw(event)
        else:
            self._lines(event, before)

    def _count(self, event: Event) -> None:
        """Keep ``total`` and ``completed`` (the counts are the same whatever is drawn)."""

        if isinstance(event, RolloutStarted):
            self.total, self.waves = event.total, tuple(event.waves)
            self.completed, self.failed, self._seen_waves = 0, 0, set()
        elif isinstance(event, WaveStarted):
            # waves before this one that never started were finished by an earlier run,
            # and so were this wave's deployments that are not listed
            for index in range(min(event.index, len(self.waves))):
                if index not in self._seen_waves:
                    self._seen_waves.add(index)
                    self.completed += self.waves[index]
            self._seen_waves.add(event.index)
            if event.index < len(self.waves):
                self.completed += max(0, self.waves[event.index] - len(event.deployments))
        elif isinstance(event, (DeploymentDone, DeploymentFailed, DeploymentSkipped)):
            self.completed += 1
            self.failed += isinstance(event, DeploymentFailed)
        elif isinstance(event, RolloutFinished) and event.status != "dry_run":
            counts = dict(event.counts)
            if counts:
                self.completed = sum(n for s, n in counts.items() if s != "pending")
        self.completed = min(self.completed, self.total) if self.total else self.completed

    def _prefix(self) -> str:
        return f"[{self.completed}/{self.total}]"

    def _lines(self, event: Event, before: int) -> None:
        def say(text: str) -> None:
            self.echo(f"{self.indent}{text}")

        if isinstance(event, RolloutStarted):
            say(f"rollout {event.rollout_id}: {event.total} deployment(s) to {event.target}"
                f"{' (dry run)' if event.dry_run else ''}"
                f"{' (resumed)' if event.resumed else ''}")
        elif isinstance(event, WaveStarted):
            if self._detailed is None and event.deployments:
                self._detailed = event.deployments[0]
            already = self.completed - before
            say(f"wave {event.wave}: {len(event.deployments)} deployment(s)"
                + (f" ({already} done by an earlier run)" if already else ""))
        elif isinstance(event, DeploymentDone):
            if event.already:
                what = "already on target"
            elif event.source == event.target:
                what = f"refreshed {event.target} (stale bundle), {event.deploys} deploy(s)"
            else:
                what = f"{event.source} -> {event.target}, {event.deploys} deploy(s)"
            say(f"{self._prefix()} ok      {event.user_id}: {what} in {event.duration_s:.1f}s")
        elif isinstance(event, DeploymentFailed):
            say(f"{self._prefix()} FAILED  {event.user_id}: {event.error_type}: "
                f"{_first_line(event.error)}")
        elif isinstance(event, DeploymentSkipped):
            say(f"{self._prefix()} skipped {event.user_id}: {event.reason}")
        elif isinstance(event, DeploymentReconciled):
            say(f"        {event.user_id}: registry said {event.registry_version}, "
                f"deployment is on {event.actual_version} (reconciled)")
        elif isinstance(event, StepCompleted):
            if self.steps and event.user_id == self._detailed:
                say(f"        {event.kind:<15} {event.step_id} ({event.duration_s:.1f}s)")
        elif isinstance(event, BudgetExhausted):
            say(f"HALTED: {event.failures} failure(s) over a budget of {event.max_failures}; "
                f"{event.untouched} deployment(s) left untouched")

    def _draw(self, event: Event) -> None:
        p = self._progress
        if isinstance(event, RolloutStarted):
            # the id first, so an interrupted run can be resumed from what is on screen
            resume_hint = "" if event.dry_run else (
                f": resume with `byod rollout --resume {event.rollout_id}`")
            p.console.print(f"rollout {event.rollout_id} to {event.target}"
                            f"{' (dry run)' if event.dry_run else ''}"
                            f"{' (resumed)' if event.resumed else ''}{resume_hint}",
                            markup=False, highlight=False)
            self._task = p.add_task(f"rollout to {event.target}", total=event.total,
                                    completed=self.completed, status="")
            return
        if self._task is None:
            return
        p.update(self._task, completed=self.completed)
        if isinstance(event, WaveStarted):
            p.update(self._task, status=f"wave {event.wave}")
        elif isinstance(event, StepStarted):
            p.update(self._task, status=f"{event.user_id}: {event.kind}")
        elif isinstance(event, DeploymentFailed):
            p.console.print(f"FAILED {event.user_id}: {event.error_type}: "
                            f"{_first_line(event.error)}", style="red" if self.color else None,
                            markup=False, highlight=False)
        elif isinstance(event, BudgetExhausted):
            p.console.print(f"HALTED: {event.failures} failure(s) over a budget of "
                            f"{event.max_failures}; {event.untouched} untouched",
                            style="bold red" if self.color else None, markup=False,
                            highlight=False)
        elif isinstance(event, RolloutFinished):
            p.update(self._task, status=event.status)


def _first_line(text: str | None) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0][:300] if lines else "-"
