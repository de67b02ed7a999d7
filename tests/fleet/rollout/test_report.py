"""Reports: the JSON and the self-contained HTML page from a real (in-memory) rollout."""

from __future__ import annotations

import json
import re

from engine.fleet.report import graph_svg, render_html, write_reports

from .test_rollout_unit import Fleet


def test_reports_show_outcomes_rows_and_graph(tmp_path):
    fleet = Fleet(tmp_path)
    try:
        for i in range(3):
            fleet.add(f"ok{i}", "v1" if i else "v2")
        bad = fleet.add("bad0")
        bad.docs["bad0-00001"]["userId"] = 1
        report = fleet.run(canary=0, max_failures="5")
    finally:
        fleet.store.close()
    json_path, html_path = write_reports(report, tmp_path / "reports")
    data = json.loads(json_path.read_text())
    assert data["counts"] == {"failed": 1, "succeeded": 3} and data["status"] == "completed"
    html = html_path.read_text()
    assert "<svg" in html and "bad0" in html and "SchemaValidationFailed" in html
    for name in ("ok0", "ok1", "ok2"):
        assert name in html
    # self-contained: no external scripts, styles, images or fonts
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script" not in html
    # the graph shows where deployments were and are (bad0 stays on v1)
    assert re.search(r">v1</text>\s*<text[^>]*>3 → 1<", html)
    assert re.search(r">v3</text>\s*<text[^>]*>0 → 3<", html)


def test_html_escapes_untrusted_text(tmp_path):
    fleet = Fleet(tmp_path)
    try:
        fleet.add("u0")
        report = fleet.run(canary=0)
    finally:
        fleet.store.close()
    report.rows[0]["error"] = "<script>alert(1)</script>"
    assert "<script>alert" not in render_html(report)


def test_graph_layout_places_children_right_of_parents():
    svg = graph_svg({"nodes": [
        {"id": "a", "number": 1, "parents": [], "before": 1, "after": 0},
        {"id": "b", "number": 2, "parents": ["a"], "before": 0, "after": 0},
        {"id": "c", "number": 3, "parents": ["a"], "before": 0, "after": 0},
        {"id": "d", "number": 4, "parents": ["b", "c"], "before": 0, "after": 1}],
        "heads": ["d"]})
    x = {n["id"]: n["x"] for n in svg["nodes"]}
    assert x["a"] < x["b"] == x["c"] < x["d"] and len(svg["edges"]) == 4
