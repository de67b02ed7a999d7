"""Where a data step resumes, and the read-back after every deploy.

A crash at page k of n must leave the journal at exactly page k, so the resumed run sends
exactly the remaining pages (the first from the cursor page k returned) and the step's
``processed`` ends equal to the table's document count — not restarted from the top, not
one page early. A push that reports success but does not take must fail the deployment
at that deploy step, before anything runs on the wrong code: the call after the push names
the bundle it expects (no version read of its own), and the deploy step completes only
once a call has seen its bundle running."""

from __future__ import annotations

import pytest

from engine.events import EventLog, StepStarted
from engine.fleet.runner import run_plan

from .conftest import add_user
from .fakes import Crash, FakeAdapter

DOCS, BATCH = 23, 5
PAGES = -(-DOCS // BATCH)  # 5 pages: 5, 5, 5, 5, 3 documents


def _run(store, kit, dep, target, *, holder, log=None):
    return run_plan(None, user_id=dep.name, target=target, adapter=FakeAdapter(dep),
                    store=store, kit=kit, holder=holder, emit=log or EventLog(),
                    lease_ttl_s=5.0)


def _page_calls(dep, since=0):
    return [c for c in dep.history[since:]
            if c.kind == "mutation" and c.path.startswith("byodMigrations:")]


@pytest.fixture()
def small_pages(kit):
    kit.batch_size = lambda plan, ds: BATCH  # type: ignore[method-assign]
    return kit


def _data_entry(store, uid):
    (entry,) = [e for e in store.journal(uid) if e.kind == "run_data_step"]
    return entry


@pytest.mark.parametrize("k", range(1, PAGES))
def test_crash_after_page_k_resumes_with_exactly_the_remaining_pages(store, small_pages,
                                                                      book, k):
    kit = small_pages
    uid = f"resume-{k}"
    dep = add_user(store, kit, book, uid, docs=DOCS)
    ids = sorted(dep.docs)
    seen = {"pages": 0}

    def die_before_page_k_plus_1(path, args):
        if path.startswith("byodMigrations:"):
            seen["pages"] += 1
            if seen["pages"] == k + 1:
                raise Crash(f"killed before page {k + 1}")

    dep.before_call = die_before_page_k_plus_1
    with pytest.raises(Crash):
        _run(store, kit, dep, "v2", holder="first")
    entry = _data_entry(store, uid)
    assert (entry.status, entry.processed, entry.cursor) == (
        "running", k * BATCH, ids[k * BATCH - 1])

    dep.before_call = None
    mark = len(dep.history)
    out = _run(store, kit, dep, "v2", holder="second")
    assert out.status == "succeeded", out.error
    pages = _page_calls(dep, mark)
    assert len(pages) == PAGES - k  # exactly the remaining pages
    assert pages[0].args["cursor"] == ids[k * BATCH - 1]  # from where page k stopped
    assert out.processed == DOCS - k * BATCH and out.pages == PAGES - k
    entry = _data_entry(store, uid)
    assert (entry.status, entry.processed) == ("completed", DOCS)
    completed = [s for s in dep.steps if s["status"] == "completed"]
    assert completed and completed[-1]["processed"] == DOCS
    assert all(d["body"] is not None for d in dep.docs.values()) and len(dep.docs) == DOCS


@pytest.mark.parametrize("k", range(1, PAGES + 1))
def test_crash_after_page_k_applied_but_not_journaled_redoes_only_that_page(
        store, small_pages, book, k):
    kit = small_pages
    uid = f"unjournaled-{k}"
    dep = add_user(store, kit, book, uid, docs=DOCS)
    ids = sorted(dep.docs)
    seen = {"pages": 0}

    def die_after_page_k(path, args):
        if path.startswith("byodMigrations:"):
            seen["pages"] += 1
            if seen["pages"] == k:
                raise Crash(f"killed after page {k} applied")

    dep.hook = die_after_page_k
    with pytest.raises(Crash):
        _run(store, kit, dep, "v2", holder="first")
    dep.hook = None
    mark = len(dep.history)
    out = _run(store, kit, dep, "v2", holder="second")
    assert out.status == "succeeded", out.error
    pages = _page_calls(dep, mark)
    assert len(pages) == PAGES - k + 1  # page k once more (idempotent), then the rest
    assert pages[0].args["cursor"] == (ids[(k - 1) * BATCH - 1] if k > 1 else None)
    assert _data_entry(store, uid).processed == DOCS


@pytest.mark.parametrize("which", [1, 2], ids=["widened push", "target push"])
def test_a_push_that_does_not_take_fails_the_deployment_at_that_step(store, kit, book,
                                                                     which):
    dep = add_user(store, kit, book, f"sticky-{which}", docs=6)
    pushes = {"n": 0}

    def maybe_ignore(bundle):
        pushes["n"] += 1
        dep.fault = "ignore_deploy" if pushes["n"] == which else None

    dep.before_deploy = maybe_ignore
    log = EventLog()
    out = _run(store, kit, dep, "v2", holder="h", log=log)
    assert out.status == "failed"
    assert out.error_type == "DeployFailed", out.error
    kind = "deploy_widened" if which == 1 else "deploy_target"
    # no read-back of its own: the next call names the bundle it expects and is refused
    next_kind = "run_data_step" if which == 1 else "verify"
    assert [e.kind for e in log.of(StepStarted)][-1] == next_kind
    failed = [e for e in store.journal(dep.name) if e.status == "failed"]
    assert [e.kind for e in failed] == [kind]  # the deploy step is what failed
    if which == 1:  # no data step ran on code that never took
        assert dep.steps == [] and _page_calls(dep)
        assert all("body" in d or int(i[-5:]) % 3 for i, d in dep.docs.items())
    assert store.get_user(dep.name).schema_version == "v1"
    assert store.get_user(dep.name).deployment_status == "failed"
