"""The rollout report page in a real browser (Chromium, headless, driven by Playwright).

A report of 300 deployments (6 failed, 4 skipped) over a 40-version graph with long version
names is written to disk and opened from ``file://`` (no network), at a desktop and a phone
viewport (390×844). The DOM must show: the badge "completed with failures"; the 6 failures
as the first 6 rows; the "failed" filter leaving exactly those 6 rows visible (and "all"
bringing back 300); no element widening the page (``scrollWidth <= innerWidth``); every
graph node's text inside its box, the graph scrolling inside its own container; and, with
scripts off, all 300 rows visible and the filter hidden.

Screenshots (``report-desktop.png``, ``report-desktop-failed.png``, ``report-phone.png``,
``report-phone-failed.png``) go to the directory named by the environment variable
``BYOD_ARTIFACTS_DIR`` when it is set, otherwise to the test's pytest ``tmp_path``.

Uses the system Chromium at ``/usr/bin/chromium`` (no browser download). Skipped when it or
the ``playwright`` package is missing, except under CI (``CI`` set), where that fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from engine.fleet.report import write_reports
from engine.fleet.rollout import RolloutReport

from .chromium import CHROMIUM, VIEWPORTS
from .chromium import missing as _missing

pytestmark = pytest.mark.browser

FAILED = {17, 58, 121, 177, 230, 299}
SKIPPED = {5, 90, 150, 260}


def _graph(n: int) -> dict[str, Any]:
    """``n`` versions: mostly a chain, a few side branches merging back, long names."""

    nodes: list[dict[str, Any]] = []
    for i in range(1, n + 1):
        vid = f"v{i:02d}"
        if i % 7 == 0:
            vid += "-add-billing-address-and-normalise-customer-records"
        elif i % 5 == 0:
            vid += "-rename-field"
        parents = [nodes[-1]["id"]] if nodes else []
        if i % 9 == 0 and i > 2:
            parents = [nodes[-2]["id"]]  # a branch off the version before last
        if i % 9 == 1 and i > 9:
            parents = [nodes[-1]["id"], nodes[-2]["id"]]  # ... merged back
        nodes.append({"id": vid, "number": i, "parents": parents,
                      "before": 300 if i == 1 else 0, "after": 0})
    nodes[0]["after"] = len(FAILED) + len(SKIPPED)
    nodes[-1]["after"] = 300 - nodes[0]["after"]
    return {"nodes": nodes, "heads": [nodes[-1]["id"]]}


def _report() -> RolloutReport:
    graph = _graph(40)
    base, target = graph["nodes"][0]["id"], graph["nodes"][-1]["id"]
    rows = []
    for i in range(300):
        row: dict[str, Any] = {"user_id": f"user-{i:03d}", "before": base, "wave": "100%",
                               "action": "migrate", "duration_s": 1.25, "deploys": 2}
        if i in FAILED:
            row.update(status="failed", after=base, error_type="SchemaValidationFailed",
                       step_id="backfill-customer-billing-address",
                       error="document customers/k57f3 does not match the schema: field "
                             "billingAddress.postcode expected string, got number")
        elif i in SKIPPED:
            row.update(status="skipped", after=base, error_type="Disconnected",
                       error="the user disconnected before the wave reached them")
        else:
            row.update(status="succeeded", after=target, changed=120)
        rows.append(row)
    return RolloutReport(
        rollout_id="r-20260101-120000-abc123", target=target, status="completed",
        options={"canary": 1, "waves": ["10%", "50%", "100%"], "concurrency": 8},
        waves=[{"name": "canary", "size": 1}, {"name": "10%", "size": 29},
               {"name": "50%", "size": 120}, {"name": "100%", "size": 150}],
        rows=rows, graph=graph, started_at=1_767_268_800.0, finished_at=1_767_269_100.0,
        max_failures=30)


@pytest.fixture(scope="module")
def page_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    _, html = write_reports(_report(), tmp_path_factory.mktemp("reports"))
    return html.as_uri()


_VISIBLE_ROWS = """() => Array.from(document.querySelectorAll('#rows tbody tr'))
    .filter(tr => tr.offsetParent !== null)
    .map(tr => tr.getAttribute('data-status'))"""

_OVERFLOW = """() => {
  const vw = window.innerWidth;
  const doc = document.documentElement;
  const wide = Array.from(document.body.querySelectorAll('*'))
    .filter(el => !el.closest('.scroll, .graph'))
    .filter(el => el.getBoundingClientRect().right > vw + 0.5)
    .map(el => el.tagName + (el.id ? '#' + el.id : '') + '.' + el.className);
  return {scrollWidth: doc.scrollWidth, bodyScrollWidth: document.body.scrollWidth,
          innerWidth: vw, wide: wide};
}"""

_NODES_FIT = """() => Array.from(document.querySelectorAll('svg g.node')).map(g => {
  const r = g.querySelector('rect').getBBox();
  const texts = Array.from(g.querySelectorAll('text')).map(t => t.getBBox());
  const fits = texts.every(b => b.x >= r.x && b.x + b.width <= r.x + r.width
                                && b.y >= r.y && b.y + b.height <= r.y + r.height);
  return {id: g.getAttribute('data-id'), title: g.querySelector('title').textContent,
          fits: fits, label: g.querySelector('text.name').textContent};
})"""

_GRAPH_BOX = """() => {
  const c = document.querySelector('.graph');
  const r = c.getBoundingClientRect();
  return {right: r.right, clientWidth: c.clientWidth, scrollWidth: c.scrollWidth,
          arrows: document.querySelectorAll('svg path.edge[marker-end]').length,
          markers: document.querySelectorAll('svg marker').length};
}"""


@pytest.mark.parametrize("viewport", sorted(VIEWPORTS))
def test_report_page_puts_failures_first_and_fits_the_screen(browser: Any, page_url: str,
                                                              artifacts: Path,
                                                              viewport: str) -> None:
    phone = viewport == "phone"
    context = browser.new_context(viewport=VIEWPORTS[viewport], is_mobile=phone,
                                  has_touch=phone, device_scale_factor=2 if phone else 1)
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    try:
        page = context.new_page()
        page.goto(page_url)
        page.wait_for_load_state("load")

        assert page.inner_text("#outcome").strip() == "completed with failures"
        assert "6 of 300 deployment(s) failed" in page.inner_text("#outcome-detail")
        statuses = page.evaluate(_VISIBLE_ROWS)
        assert len(statuses) == 300
        assert statuses[:6] == ["failed"] * 6 and "failed" not in statuses[6:]
        assert statuses[6:10] == ["skipped"] * 4

        overflow = page.evaluate(_OVERFLOW)
        assert overflow["scrollWidth"] <= overflow["innerWidth"], overflow
        assert overflow["bodyScrollWidth"] <= overflow["innerWidth"], overflow
        assert overflow["wide"] == [], overflow

        nodes = page.evaluate(_NODES_FIT)
        assert len(nodes) == 40
        assert [n["id"] for n in nodes if not n["fits"]] == []
        long = [n for n in nodes if len(n["id"]) > 24]
        assert long and all(n["label"].endswith("…") and n["title"] == n["id"] for n in long)
        graph = page.evaluate(_GRAPH_BOX)
        assert graph["right"] <= VIEWPORTS[viewport]["width"] + 0.5, graph
        assert graph["scrollWidth"] > graph["clientWidth"], graph  # it scrolls, inside
        assert graph["markers"] == 1 and graph["arrows"] >= 39, graph

        # the whole page on a desktop; on a phone the first screen (a full page of 300 rows
        # at phone scale is a very tall image); the filtered page below is whole on both
        page.screenshot(path=str(artifacts / f"report-{viewport}.png"), full_page=not phone)

        page.click('#filters button[data-filter="failed"]')
        assert page.evaluate(_VISIBLE_ROWS) == ["failed"] * 6
        assert page.get_attribute('button[data-filter="failed"]', "aria-pressed") == "true"
        page.screenshot(path=str(artifacts / f"report-{viewport}-failed.png"), full_page=True)
        page.click('#filters button[data-filter="skipped"]')
        assert page.evaluate(_VISIBLE_ROWS) == ["skipped"] * 4
        page.click('#filters button[data-filter="all"]')
        assert len(page.evaluate(_VISIBLE_ROWS)) == 300
        assert page.evaluate(_OVERFLOW)["scrollWidth"] <= VIEWPORTS[viewport]["width"]
    finally:
        context.close()
    assert all(u.startswith("file://") for u in requests), requests


def test_report_page_without_scripts_shows_every_row(browser: Any, page_url: str) -> None:
    context = browser.new_context(java_script_enabled=False, viewport=VIEWPORTS["phone"])
    try:
        page = context.new_page()
        page.goto(page_url)
        assert not page.is_visible("#filters")
        assert len(page.evaluate(_VISIBLE_ROWS)) == 300
    finally:
        context.close()


def test_chromium_is_the_system_one() -> None:
    """Guard the no-download promise: the test drives Debian's Chromium."""

    if not os.path.isfile(CHROMIUM):
        _missing(f"no Chromium at {CHROMIUM}")
    assert shutil.which("chromium") in (CHROMIUM, None) or os.path.isfile(CHROMIUM)
