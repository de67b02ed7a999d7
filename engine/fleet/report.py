"""Rollout reports: a JSON document and a self-contained HTML page.

The HTML page has no external assets (inline CSS and an inline SVG of the version graph),
so it opens from disk in any browser. Everything in it comes from ``RolloutReport``, whose
error texts are already redacted; jinja2 autoescaping covers the rest.
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

__all__ = ["graph_svg", "render_html", "write_reports"]

_OUTCOME_ORDER = ("succeeded", "already", "failed", "skipped", "pending", "planned")


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )


def graph_svg(graph: dict[str, Any]) -> dict[str, Any]:
    """Layout for the inline SVG: versions in columns by depth (longest path from a base),
    stacked within a column; edges as straight lines. Pure arithmetic, no dependencies."""

    nodes = graph.get("nodes", [])
    depth: dict[str, int] = {}
    for node in nodes:  # topological order: parents come first
        depth[node["id"]] = 1 + max((depth[p] for p in node["parents"] if p in depth),
                                    default=-1)
    rows: dict[int, int] = {}
    placed = []
    w, h, gap_x, gap_y = 150, 54, 40, 24
    for node in nodes:
        d = depth[node["id"]]
        r = rows.get(d, 0)
        rows[d] = r + 1
        placed.append({**node, "x": 10 + d * (w + gap_x), "y": 10 + r * (h + gap_y),
                       "head": node["id"] in graph.get("heads", [])})
    where = {n["id"]: n for n in placed}
    edges = [{"x1": where[p]["x"] + w, "y1": where[p]["y"] + h / 2,
              "x2": n["x"], "y2": n["y"] + h / 2}
             for n in placed for p in n["parents"] if p in where]
    width = 20 + (max(depth.values(), default=0) + 1) * (w + gap_x)
    height = 20 + max(rows.values(), default=1) * (h + gap_y)
    return {"nodes": placed, "edges": edges, "width": width, "height": height,
            "w": w, "h": h}


def render_html(report: RolloutReport) -> str:
    data = report.to_dict()
    counts = data["counts"]
    ordered = [(k, counts[k]) for k in _OUTCOME_ORDER if k in counts]
    ordered += [(k, v) for k, v in counts.items() if k not in _OUTCOME_ORDER]
    rows = sorted(data["deployments"], key=lambda r: (
        _OUTCOME_ORDER.index(r["status"]) if r["status"] in _OUTCOME_ORDER else 99,
        r["user_id"]))
    return _environment().get_template("report.html.j2").render(
        report=data, counts=ordered, rows=rows, svg=graph_svg(data["graph"]),
        generated=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(report.finished_at)),
        started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(report.started_at)),
    )


def write_reports(report: RolloutReport, directory: Path) -> tuple[Path, Path]:
    """``<dir>/<rollout id>.json`` and ``.html`` (written atomically, 0644)."""

    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{report.rollout_id}.json"
    html_path = directory / f"{report.rollout_id}.html"
    for path, text in ((json_path, json.dumps(report.to_dict(), indent=2, sort_keys=True,
                                              default=str) + "\n"),
                       (html_path, render_html(report))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return json_path, html_path
