"""Reports: the JSON and the self-contained HTML page from a real (in-memory) rollout."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

from engine.commands import fleet as verbs
from engine.fleet.report import graph_svg, render_html, sorted_rows, write_reports
from engine.fleet.rollout import RolloutReport

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
    # self-contained: no external scripts, styles, images or fonts; the one script is inline
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert not re.search(r"<script[^>]*\ssrc=", html) and html.count("<script") == 1
    # one failure: not a green "completed"
    assert _badge(html) == "completed with failures"
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


def _badge(html: str) -> str:
    m = re.search(r'<span id="outcome" class="[^"]*">([^<]*)</span>', html)
    assert m, "no outcome badge"
    return m.group(1)


def _tone(html: str) -> str:
    m = re.search(r'<span id="outcome" class="[^"]*tone-(\w+)[^"]*">', html)
    assert m, "no outcome badge"
    return m.group(1)


def _row_statuses(html: str) -> list[str]:
    return re.findall(r'<tr class="row row-[^"]*" data-status="([^"]*)"', html)


def _report(statuses: dict[str, str], *, status: str = "completed",
            halted_reason: str | None = None, rollout_id: str = "r-1") -> RolloutReport:
    rows = [{"user_id": uid, "status": st, "before": "v1", "wave": "100%", "action": "migrate",
             **({"error": "boom", "error_type": "DeployFailed"} if st == "failed" else {})}
            for uid, st in statuses.items()]
    return RolloutReport(
        rollout_id=rollout_id, target="v2", status=status,
        options={"canary": 1, "waves": ["100%"], "concurrency": 4}, waves=[], rows=rows,
        graph={"nodes": [{"id": "v1", "number": 1, "parents": [], "before": len(rows),
                          "after": 0},
                         {"id": "v2", "number": 2, "parents": ["v1"], "before": 0,
                          "after": len(rows)}], "heads": ["v2"]},
        started_at=1_700_000_000.0, finished_at=1_700_000_010.0, max_failures=5,
        halted_reason=halted_reason)


def test_badge_says_completed_only_when_nothing_failed():
    ok = render_html(_report({"a": "succeeded", "b": "already"}))
    assert _badge(ok) == "completed" and _tone(ok) == "ok"
    some = render_html(_report({"a": "succeeded", "b": "failed"}))
    assert _badge(some) == "completed with failures" and _tone(some) == "warn"
    assert "1 of 2 deployment(s) failed" in some
    halted = render_html(_report({"a": "failed", "b": "pending"}, status="halted",
                                 halted_reason="the canary failed (a)"))
    assert _badge(halted) == "halted" and _tone(halted) == "bad"
    assert "the canary failed (a)" in halted and "--resume r-1" in halted
    dry = render_html(_report({"a": "planned"}, status="dry_run"))
    assert _badge(dry) == "dry run" and _tone(dry) == "dry"


def test_rows_put_failures_first_then_skipped_then_the_rest():
    statuses = {f"u{i:03d}": "succeeded" for i in range(50)}
    statuses.update({"u007": "failed", "u040": "failed", "u001": "skipped",
                     "u020": "already", "u030": "pending"})
    html = render_html(_report(statuses))
    order = _row_statuses(html)
    assert order[:4] == ["failed", "failed", "skipped", "pending"]
    assert set(order[4:]) == {"succeeded", "already"} and len(order) == 50
    users = [r["user_id"] for r in sorted_rows(_report(statuses).rows)]
    assert users[:2] == ["u007", "u040"]
    # the filter: inline, hidden until the script shows it, so all rows show without it
    assert re.search(r'<div class="filters" id="filters"[^>]*hidden>', html)
    for name, n in (("all", 50), ("failed", 2), ("skipped", 1)):
        assert f'data-filter="{name}" aria-pressed="' in html and f"{name} ({n})" in html
    assert not re.search(r'<tr class="row[^>]*hidden', html)


def test_status_colours_are_distinct():
    html = render_html(_report({"a": "succeeded"}))
    css = {m.group(1): m.group(2) for m in re.finditer(
        r"^\s*(\.st-[^{]+)\{([^}]*)\}", html, re.M)}
    colour = {}
    for selectors, body in css.items():
        for sel in re.findall(r"\.st-(\w+)", selectors):
            colour[sel] = body.strip()
    assert colour["disconnected"] != colour["connected"]
    assert len({colour[s] for s in ("succeeded", "failed", "skipped", "disconnected",
                                    "pending")}) == 5


def test_every_resume_writes_a_new_report_linked_to_the_previous(tmp_path):
    out = tmp_path / "reports"
    first = write_reports(_report({"a": "failed"}, status="halted", halted_reason="x"), out)
    assert [p.name for p in first] == ["r-1.json", "r-1.html"]
    second = write_reports(_report({"a": "failed"}), out, resumed=1)
    third = write_reports(_report({"a": "succeeded"}), out, resumed=2)
    assert [p.name for p in second] == ["r-1.r1.json", "r-1.r1.html"]
    assert [p.name for p in third] == ["r-1.r2.json", "r-1.r2.html"]
    # nothing overwritten: each file still says what its own run did
    assert _badge(first[1].read_text()) == "halted"
    assert _badge(second[1].read_text()) == "completed with failures"
    assert _badge(third[1].read_text()) == "completed"
    assert json.loads(first[0].read_text())["previous_report"] is None
    assert json.loads(second[0].read_text())["previous_report"] == {
        "json": "r-1.json", "html": "r-1.html"}
    assert json.loads(third[0].read_text())["resumed"] == 2
    assert json.loads(third[0].read_text())["previous_report"]["html"] == "r-1.r1.html"
    assert 'id="previous-report"' not in first[1].read_text()
    assert re.search(r'<a id="previous-report" rel="prev" href="r-1.r1.html">previous report</a>',
                     third[1].read_text())
    # a dry run of a resume never replaces the real run's report
    dry = write_reports(_report({"a": "planned"}, status="dry_run"), out, resumed=3)
    assert dry[1].name == "r-1.r3.dry-run.html"


def test_resumed_rollout_report_takes_its_number_from_the_saved_state(tmp_path):
    fleet = Fleet(tmp_path)
    try:
        bad = fleet.add("bad0")
        for i in range(3):
            fleet.add(f"ok{i}")
        bad.docs["bad0-00001"]["userId"] = 1
        first = fleet.run(canary=4, max_failures="0")
        assert first.status == "halted"
        ws = SimpleNamespace(store=fleet.store)
        out = tmp_path / "reports"
        j1, h1 = verbs.write_reports(ws, first, out)  # type: ignore[arg-type]
        bad.docs["bad0-00001"]["userId"] = "bad0"
        again = fleet.run(resume=first.rollout_id)
        j2, h2 = verbs.write_reports(ws, again, out)  # type: ignore[arg-type]
    finally:
        fleet.store.close()
    rid = first.rollout_id
    assert (j1.name, h1.name) == (f"{rid}.json", f"{rid}.html")
    assert (j2.name, h2.name) == (f"{rid}.r1.json", f"{rid}.r1.html")
    assert _badge(h1.read_text()) == "halted" and _badge(h2.read_text()) == "completed"
    assert f'href="{rid}.html">previous report<' in h2.read_text()
