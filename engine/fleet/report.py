"""Rollout reports: a JSON document and a self-contained HTML page.

The HTML page has no external assets (inline CSS, a small inline script for the row
filter, and an inline SVG of the version graph), so it opens from disk in any browser,
offline. Without scripts every row stays visible. Everything in it comes from
``RolloutReport``, whose error texts are already redacted; jinja2 autoescaping covers the
rest.

The page leads with what needs attention: an outcome badge that says "completed" only when
nothing failed ("completed with failures", "halted" with its reason, "dry run" otherwise),
and the failed rows first. Every run of a rollout gets its own pair of files: the first run
``<rollout id>.json`` / ``.html``, the Nth resume ``<rollout id>.r<N>.json`` / ``.html``,
each linking to the report of the run before it (``previous_report`` in the JSON).
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from engine.bundle.compiler import templates_dir
from engine.fleet.rollout import RolloutReport

__all__ = ["graph_svg", "outcome", "render_html", "report_stem", "sorted_rows",
           "write_reports"]

_OUTCOME_ORDER = ("failed", "skipped", "pending", "planned", "succeeded", "already")
_ROW_ORDER = {"failed": 0, "skipped": 1, "succeeded": 3, "already": 3}  # anything else: 2

# Graph geometry (px). Text widths are estimated from the character count with a wide
# enough per-character advance for 12px system fonts, so boxes fit their labels.
_LABEL_MAX = 24  # characters of a version id shown before the ellipsis
_CHAR_W = 7.6
_PAD = 10
_MIN_W, _NODE_H, _GAP_X, _GAP_Y, _MARGIN = 96, 50, 56, 18, 12


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )


def outcome(report: RolloutReport) -> dict[str, str]:
    """The badge: ``{"label", "tone", "detail"}``. "completed" only when nothing failed."""

    failed = report.failed
    if report.status == "dry_run":
        return {"label": "dry run", "tone": "dry", "detail": "nothing was deployed"}
    if report.status == "halted":
        return {"label": "halted", "tone": "bad",
                "detail": report.halted_reason or "the rollout stopped"}
    if report.status == "completed":
        if failed:
            return {"label": "completed with failures", "tone": "warn",
                    "detail": f"{failed} of {len(report.rows)} deployment(s) failed"}
        return {"label": "completed", "tone": "ok", "detail": ""}
    return {"label": report.status.replace("_", " "), "tone": "bad",
            "detail": report.halted_reason or ""}


def sorted_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failures first, then skipped, then anything else (pending, planned, ...), then the
    deployments that succeeded; by user id within each group."""

    return sorted(rows, key=lambda r: (_ROW_ORDER.get(str(r["status"]), 2), str(r["user_id"])))


def _label(text: str) -> str:
    return text if len(text) <= _LABEL_MAX else text[:_LABEL_MAX - 1] + "…"


def _text_w(text: str) -> float:
    return len(text) * _CHAR_W


def _layers(nodes: list[dict[str, Any]]) -> dict[str, int]:
    """Longest-path layering: a version's layer is one more than its deepest parent's
    (bases at 0). Parents missing from the graph are ignored; a cycle cannot occur in a
    version graph, but would only stop the walk, not loop."""

    parents = {n["id"]: [p for p in n.get("parents", []) if p != n["id"]] for n in nodes}
    layer: dict[str, int] = {}
    for start in parents:
        stack: list[tuple[str, bool]] = [(start, False)]
        visiting: set[str] = set()
        while stack:
            vid, expanded = stack.pop()
            if vid in layer:
                continue
            known = [p for p in parents[vid] if p in parents]
            if expanded:
                visiting.discard(vid)
                layer[vid] = 1 + max((layer.get(p, 0) for p in known), default=-1)
                continue
            visiting.add(vid)
            stack.append((vid, True))
            stack.extend((p, False) for p in known if p not in layer and p not in visiting)
    return layer


def graph_svg(graph: dict[str, Any]) -> dict[str, Any]:
    """Layout for the inline SVG, left to right: each version in the column of its longest
    path from a base, columns as wide as their widest box, versions within a column ordered
    by the mean row of their parents (fewer crossings); edges as curves from a parent's
    right side to a child's left side, drawn with arrowheads. Pure arithmetic."""

    nodes = list(graph.get("nodes", []))
    heads = set(graph.get("heads", []))
    layer = _layers(nodes)
    columns: dict[int, list[dict[str, Any]]] = {}
    for node in nodes:
        label = _label(str(node["id"]))
        counts = f"{node.get('before', 0)} → {node.get('after', 0)}"
        width = max(_MIN_W, _PAD * 2 + max(_text_w(label), _text_w(counts)))
        columns.setdefault(layer[node["id"]], []).append(
            {**node, "label": label, "counts": counts, "w": round(width, 1),
             "head": node["id"] in heads})
    row_of: dict[str, float] = {}
    for d in sorted(columns):
        col = columns[d]
        order = {n["id"]: i for i, n in enumerate(col)}
        col.sort(key=lambda n: (sum(row_of[p] for p in n["parents"] if p in row_of)
                                / max(1, sum(1 for p in n["parents"] if p in row_of))
                                if any(p in row_of for p in n["parents"]) else order[n["id"]],
                                order[n["id"]]))
        for i, n in enumerate(col):
            row_of[n["id"]] = i
    x = float(_MARGIN)
    placed: list[dict[str, Any]] = []
    for d in sorted(columns):
        col = columns[d]
        col_w = max(n["w"] for n in col)
        for i, n in enumerate(col):
            n.update(x=round(x, 1), y=_MARGIN + i * (_NODE_H + _GAP_Y), w=col_w)
            placed.append(n)
        x += col_w + _GAP_X
    where = {n["id"]: n for n in placed}
    edges = []
    for n in placed:
        for p in n["parents"]:
            if p not in where:
                continue
            a = where[p]
            x1, y1 = a["x"] + a["w"], a["y"] + _NODE_H / 2
            x2, y2 = n["x"] - 2, n["y"] + _NODE_H / 2  # the arrowhead ends at the box
            bend = max(20.0, (x2 - x1) / 2)
            edges.append({"from": p, "to": n["id"],
                          "d": f"M{x1:g},{y1:g} C{x1 + bend:g},{y1:g} "
                               f"{x2 - bend:g},{y2:g} {x2:g},{y2:g}"})
    width = (x - _GAP_X + _MARGIN) if placed else 2 * _MARGIN
    tallest = max((len(c) for c in columns.values()), default=0)
    height = 2 * _MARGIN + max(1, tallest) * (_NODE_H + _GAP_Y) - _GAP_Y
    return {"nodes": placed, "edges": edges, "width": round(width, 1), "height": height,
            "h": _NODE_H, "pad": _PAD}


def render_html(report: RolloutReport, *, resumed: int = 0,
                previous_report: str | None = None) -> str:
    """The page. ``resumed``: which resume of the rollout this run was (0: the first run);
    ``previous_report``: the relative address of the previous run's HTML report."""

    data = report.to_dict()
    counts = data["counts"]
    ordered = [(k, counts[k]) for k in _OUTCOME_ORDER if k in counts]
    ordered += [(k, v) for k, v in counts.items() if k not in _OUTCOME_ORDER]
    rows = sorted_rows(data["deployments"])
    filters = [("all", len(rows)), ("failed", counts.get("failed", 0)),
               ("skipped", counts.get("skipped", 0))]
    return _environment().get_template("report.html.j2").render(
        report=data, counts=ordered, rows=rows, svg=graph_svg(data["graph"]),
        outcome=outcome(report), filters=filters, resumed=resumed,
        previous_report=previous_report,
        generated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(report.finished_at)),
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(report.started_at)),
    )


def report_stem(rollout_id: str, resumed: int = 0, *, dry_run: bool = False) -> str:
    """The file name without suffix: ``<id>`` for the first run, ``<id>.r<N>`` for the Nth
    resume; a dry run of a resume adds ``.dry-run`` so it never replaces the report of the
    real run that shares its number (a fresh dry run's id is never saved, so never shared)."""

    if resumed <= 0:
        return rollout_id
    return f"{rollout_id}.r{resumed}" + (".dry-run" if dry_run else "")


def _previous(directory: Path, rollout_id: str, resumed: int) -> str | None:
    """The stem of the latest earlier run's report present in ``directory``."""

    for n in range(resumed - 1, -1, -1):
        stem = report_stem(rollout_id, n)
        if (directory / f"{stem}.html").exists() or (directory / f"{stem}.json").exists():
            return stem
    return None


def write_reports(report: RolloutReport, directory: Path, *,
                  resumed: int | None = None) -> tuple[Path, Path]:
    """``<dir>/<rollout id>.json`` and ``.html`` for a rollout's first run,
    ``<rollout id>.r<N>.json`` / ``.html`` for its Nth resume (written atomically, 0644).

    ``resumed`` defaults to the report's own count (``RolloutReport.resumed``).
    A resumed run's reports name the previous run's (``previous_report`` in the JSON, a
    "previous report" link in the page) when that one is in the same directory."""

    if resumed is None:
        resumed = report.resumed
    directory.mkdir(parents=True, exist_ok=True)
    stem = report_stem(report.rollout_id, resumed, dry_run=report.status == "dry_run")
    prev = _previous(directory, report.rollout_id, resumed) if resumed > 0 else None
    json_path = directory / f"{stem}.json"
    html_path = directory / f"{stem}.html"
    data = {**report.to_dict(), "resumed": resumed,
            "previous_report": ({"json": f"{prev}.json", "html": f"{prev}.html"}
                                if prev else None)}
    html = render_html(report, resumed=resumed,
                       previous_report=f"{prev}.html" if prev else None)
    for path, text in ((json_path, json.dumps(data, indent=2, sort_keys=True,
                                              default=str) + "\n"),
                       (html_path, html)):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)
        tmp.replace(path)
    return json_path, html_path
