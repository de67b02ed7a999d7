"""How the runner answers a failed data-step page, keyed to Convex's error table
(``engine.convex.errors``): every transaction limit (documents and bytes, read and written)
and every timeout halves the batch, in Convex's wording and the test runtime's; the
write-rate limit is waited out; an invalid journaled cursor restarts the step once, and
the step still ends with ``processed`` equal to the document count."""

from __future__ import annotations

import pytest

from engine.convex.errors import CONVEX_ERRORS
from engine.convex.retry import RetryPolicy
from engine.errors import DeploymentRequestRejected, DeploymentTimeout, FunctionError
from engine.events import BatchResized, CursorReset, EventLog, PageDone
from engine.fleet import run_steps as runner_mod
from engine.fleet.runner import run_plan

from .conftest import add_user
from .fakes import Crash, FakeAdapter

DOCS, BATCH, LIMIT = 23, 8, 3


def _run(store, kit, dep, *, holder="h", log=None):
    return run_plan(None, user_id=dep.name, target="v2", adapter=FakeAdapter(dep),
                    store=store, kit=kit, holder=holder, emit=log or EventLog(),
                    lease_ttl_s=5.0)


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setattr(runner_mod, "_PAGE_RETRY", RetryPolicy(backoff_base=0.001,
                                                               backoff_max=0.002))


@pytest.fixture()
def kit8(kit):
    kit.batch_size = lambda plan, ds: BATCH  # type: ignore[method-assign]
    return kit


def _wrap_pages(dep, fail):
    """Run ``fail(args)`` before every data-step page; it may raise."""

    original = dep._data_step_page

    def page(step, path, args):
        fail(args)
        return original(step, path, args)

    dep._data_step_page = page


def _texts(category):
    for rule in CONVEX_ERRORS:
        if rule.category == category:
            for text in (*rule.convex_texts, *rule.runtime_texts):
                yield pytest.param(text, id=f"{rule.kind}:{text[:30]}")


_SHRINKING = list(_texts("limit")) + list(_texts("timeout"))


@pytest.mark.parametrize("text", _SHRINKING)
def test_every_limit_and_timeout_halves_the_batch(store, kit8, book, text):
    dep = add_user(store, kit8, book, "lim", docs=DOCS)

    def limit(args):
        if args["batchSize"] > LIMIT:
            raise FunctionError(f"Uncaught Error: {text} (limit: {LIMIT})",
                                deployment=dep.name, function="byodMigrations:x")

    _wrap_pages(dep, limit)
    log = EventLog()
    out = _run(store, kit8, dep, log=log)
    assert out.status == "succeeded", out.error
    shrinks = log.of(BatchResized)
    assert [(e.old, e.new) for e in shrinks[:2]] == [(8, 4), (4, 2)]
    assert all(e.batch_size <= LIMIT for e in log.of(PageDone))
    assert log.of(PageDone)[-1].total_processed == DOCS
    assert all("body" in d for d in dep.docs.values())


def test_a_request_level_timeout_and_a_client_timeout_also_shrink(store, kit8, book):
    dep = add_user(store, kit8, book, "slow", docs=DOCS)
    errors = [
        DeploymentRequestRejected("the deployment refused the request (HTTP 400: "
                                  "SystemTimeoutError: Your request timed out performing "
                                  "too many system operations.)", deployment="slow"),
        DeploymentTimeout("byodMigrations:x: no answer within 10s", deployment="slow"),
    ]

    def fail(args):
        if errors:
            raise errors.pop(0)

    _wrap_pages(dep, fail)
    log = EventLog()
    out = _run(store, kit8, dep, log=log)
    assert out.status == "succeeded", out.error
    assert [e.reason for e in log.of(BatchResized)][:2] == [
        "function timeout (SystemTimeoutError)", "request timeout"]


def test_a_limit_at_batch_size_one_fails_with_the_convex_message(store, kit8, book):
    dep = add_user(store, kit8, book, "huge", docs=3)
    text = "Too many bytes written in a single function execution (limit: 16 MiB)"

    def always(args):
        raise FunctionError(f"Uncaught Error: {text}", deployment="huge",
                            function="byodMigrations:x")

    _wrap_pages(dep, always)
    out = _run(store, kit8, dep)
    assert out.status == "failed" and "Too many bytes written" in (out.error or "")


def test_the_write_rate_limit_is_retried_without_shrinking(store, kit8, book):
    dep = add_user(store, kit8, book, "rate", docs=DOCS)
    left = {"n": 2}
    rate = ("Too many writes per second. Your deployment is limited to 4 MiB bytes "
            "written per 1s.")

    def throttled(args):
        if left["n"]:
            left["n"] -= 1
            raise FunctionError(f"Uncaught Error: {rate}", deployment="rate",
                                function="byodMigrations:x")

    _wrap_pages(dep, throttled)
    log = EventLog()
    out = _run(store, kit8, dep, log=log)
    assert out.status == "succeeded", out.error
    assert log.of(BatchResized) == []

    dep2 = add_user(store, kit8, book, "rate2", docs=DOCS)
    calls = {"n": 0}

    def forever(args):
        calls["n"] += 1
        raise FunctionError(f"Uncaught Error: {rate}", deployment="rate2",
                            function="byodMigrations:x")

    _wrap_pages(dep2, forever)
    out = _run(store, kit8, dep2)
    assert out.status == "failed" and calls["n"] == 1 + 3  # bounded: page_retries = 3


_CURSOR_ERRORS = [
    pytest.param("InvalidCursor: Tried to run a query starting from a cursor, but it looks "
                 "like this cursor is from a different query.",
                 {"isConvexSystemError": True, "paginationError": "InvalidCursor"},
                 id="convex-different-query"),
    pytest.param("Failed to parse cursor", None, id="convex-unparsable"),
    pytest.param("Uncaught ConvexError", {"paginationError": "InvalidCursor"},
                 id="convex-error-data-only"),
    pytest.param("Unexpected token 's', \"stale-cursor\" is not valid JSON", None,
                 id="runtime-unparsable"),
]


def _crash_after_pages(store, kit, dep, pages):
    seen = {"n": 0}

    def die(path, args):
        if path.startswith("byodMigrations:"):
            seen["n"] += 1
            if seen["n"] == pages + 1:
                raise Crash("killed")

    dep.before_call = die
    with pytest.raises(Crash):
        _run(store, kit, dep, holder="first")
    dep.before_call = None


@pytest.mark.parametrize("message,data", _CURSOR_ERRORS)
def test_an_invalid_journaled_cursor_restarts_the_step_once(store, kit8, book, message,
                                                            data):
    dep = add_user(store, kit8, book, "cur", docs=DOCS)
    _crash_after_pages(store, kit8, dep, 2)
    (entry,) = [e for e in store.journal("cur") if e.kind == "run_data_step"]
    assert entry.processed == 2 * BATCH
    store.journal_update("cur", entry.plan_id, entry.step_id, cursor="stale-cursor")

    def refuse_unknown(args):
        cursor = args["cursor"]
        if cursor is not None and cursor not in dep.docs:
            raise FunctionError(f"Uncaught Error: {message}", deployment="cur",
                                function="byodMigrations:x", data=data)

    _wrap_pages(dep, refuse_unknown)
    log = EventLog()
    out = _run(store, kit8, dep, holder="second", log=log)
    assert out.status == "succeeded", out.error
    assert len(log.of(CursorReset)) == 1
    pages = log.of(PageDone)
    assert len(pages) == -(-DOCS // BATCH)  # the whole table again, from the start
    assert out.processed == DOCS
    (entry,) = [e for e in store.journal("cur") if e.kind == "run_data_step"]
    assert (entry.status, entry.processed) == ("completed", DOCS)
    assert [s["processed"] for s in dep.steps if s["status"] == "completed"][-1] == DOCS


def test_a_cursor_refused_again_after_the_reset_fails_instead_of_looping(store, kit8, book):
    dep = add_user(store, kit8, book, "cur2", docs=DOCS)
    _crash_after_pages(store, kit8, dep, 1)

    def refuse_every_cursor(args):
        if args["cursor"] is not None:
            raise FunctionError("Uncaught Error: Failed to parse cursor", deployment="cur2",
                                function="byodMigrations:x")

    _wrap_pages(dep, refuse_every_cursor)
    log = EventLog()
    out = _run(store, kit8, dep, holder="second", log=log)
    assert out.status == "failed" and "Failed to parse cursor" in (out.error or "")
    assert len(log.of(CursorReset)) == 1


def test_a_crash_right_after_the_reset_resumes_from_the_start_without_another_reset(
        store, kit8, book):
    dep = add_user(store, kit8, book, "cur3", docs=DOCS)
    _crash_after_pages(store, kit8, dep, 2)
    (entry,) = [e for e in store.journal("cur3") if e.kind == "run_data_step"]
    store.journal_update("cur3", entry.plan_id, entry.step_id, cursor="stale-cursor")

    def refuse_unknown(args):
        if args["cursor"] is not None and args["cursor"] not in dep.docs:
            raise FunctionError("Uncaught Error: Failed to parse cursor", deployment="cur3",
                                function="byodMigrations:x")

    _wrap_pages(dep, refuse_unknown)

    def die_on_the_first_page_from_the_top(path, args):
        if path.startswith("byodMigrations:") and args["cursor"] is None:
            raise Crash("killed right after the reset")

    dep.before_call = die_on_the_first_page_from_the_top
    log = EventLog()
    with pytest.raises(Crash):
        _run(store, kit8, dep, holder="second", log=log)
    assert len(log.of(CursorReset)) == 1
    (entry,) = [e for e in store.journal("cur3") if e.kind == "run_data_step"]
    assert (entry.cursor or None, entry.processed) == (None, 0)  # the refused cursor is gone
    dep.before_call = None
    log = EventLog()
    out = _run(store, kit8, dep, holder="third", log=log)
    assert out.status == "succeeded", out.error
    assert log.of(CursorReset) == [] and out.processed == DOCS


def test_a_cursor_refused_mid_run_counts_each_document_once(store, kit8, book):
    """The deployment was reset under a running step: the pages already done this run are
    redone from the top, and ``processed`` still equals the document count."""

    dep = add_user(store, kit8, book, "cur4", docs=DOCS)
    calls = {"n": 0}

    def refuse_the_third_page(args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise FunctionError("Uncaught Error: Failed to parse cursor", deployment="cur4",
                                function="byodMigrations:x")

    _wrap_pages(dep, refuse_the_third_page)
    log = EventLog()
    out = _run(store, kit8, dep, log=log)
    assert out.status == "succeeded", out.error
    assert len(log.of(CursorReset)) == 1
    assert out.processed == DOCS and out.pages == 2 + -(-DOCS // BATCH)
    (entry,) = [e for e in store.journal("cur4") if e.kind == "run_data_step"]
    assert entry.processed == DOCS
