"""What the pages make of the service's answers, checked on their own: a job's stages and
their states, the status card's words, the URL echo that keeps only scheme, host and port,
and the count of failed blocker retries since the block."""

from __future__ import annotations

from typing import Any

import pytest

from engine.ports.registry import AuditEntry
from engine.ports.serve import Job
from engine.serve.page_views import job_view, sanitized_url, status_view
from engine.serve.service import block_history


def _job(state: str, kind: str = "connect", stages: tuple[str, ...] = (),
         error: str | None = None) -> Job:
    return Job(job_id="job_1", kind=kind, user_id="u", state=state,  # type: ignore[arg-type]
               progress=tuple({"at": 1.0, "stage": s, "message": None} for s in stages),
               error=error)


def _states(view: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["name"], s["state"]) for s in view["stages"]]


def test_a_running_connect_shows_what_is_done_running_and_still_to_come() -> None:
    view = job_view(_job("running", stages=("validating", "testing", "deploying")))
    assert _states(view) == [("validating", "done"), ("testing", "done"),
                             ("deploying", "running"), ("recording", "pending"),
                             ("done", "pending")]
    assert view["tone"] == "busy" and not view["finished"]


def test_a_failed_job_marks_its_last_stage_and_says_why() -> None:
    view = job_view(_job("failed", stages=("validating", "testing"), error="the key was refused"))
    assert _states(view) == [("validating", "done"), ("testing", "failed")]
    assert view["message"] == "the key was refused" and view["tone"] == "bad"
    assert _states(job_view(_job("failed", error="x"))) == [("failed", "failed")]


def test_a_finished_disconnect_ends_with_its_done_stage() -> None:
    view = job_view(_job("succeeded", kind="disconnect", stages=("page", "page", "patched")))
    assert _states(view) == [("page", "done"), ("patched", "done"), ("done", "done")]
    assert view["stages"][0]["label"] == "Copying your content back"
    assert _states(job_view(_job("succeeded", kind="disconnect"))) == [("done", "done")]


def test_the_status_card_words() -> None:
    card = status_view({"connection_status": "error", "connection_error": "cannot connect"})
    assert (card["label"], card["tone"], card["message"], card["blocked"]) == \
        ("Unavailable", "bad", "cannot connect", True)
    card = status_view({"connection_status": "pending", "deployment_status": "failed",
                        "connection_error": "deploying: refused"})
    assert (card["label"], card["error"], card["blocked"]) == ("Setup failed", True, False)
    assert status_view({"connection_status": "connected", "last_connection_test": 0})[
        "last_checked"] == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize("raw, echoed", [
    ("https://happy-otter-123.convex.cloud", "https://happy-otter-123.convex.cloud"),
    ("https://user:secret@host.convex.cloud/path?key=prod:x|y#f", "https://host.convex.cloud"),
    ("http://127.0.0.1:3210/", "http://127.0.0.1:3210"),
    ("ftp://host", None), ("prod:x|secret", None), ("", None), ("https://[::1", None),
])
def test_only_scheme_host_and_port_of_a_typed_url_are_echoed(raw: str, echoed: str | None) -> None:
    assert sanitized_url(raw) == echoed


class _Audit:
    def __init__(self, entries: list[AuditEntry]):
        self.entries = entries

    def audit_log(self, user_id: str, limit: int = 100) -> list[AuditEntry]:
        return self.entries[-limit:]  # oldest first, as the store answers


def test_failed_retries_count_since_the_block() -> None:
    def e(at: float, event: str, **detail: Any) -> AuditEntry:
        return AuditEntry(at=at, user_id="u", event=event, detail=detail)

    log = [e(1, "connection_status", **{"from": "connected", "to": "error"}),
           e(2, "blocker_retry", ok=False), e(3, "blocker_retry", ok=True),
           e(4, "connection_status", **{"from": "connected", "to": "error"}),
           e(5, "blocker_retry", ok=False),
           e(6, "connection_status", **{"from": "error", "to": "error"}),
           e(7, "blocker_retry", ok=False)]
    assert block_history(_Audit(log), "u") == (2, 4)
    assert block_history(_Audit([]), "u") == (0, None)


def test_copy_pages_add_up_per_table() -> None:
    progress = tuple({"at": 1.0, "stage": "page", "message": m}
                     for m in ("messages: 100", "messages: 250", "notes: 7"))
    job = Job(job_id="j", kind="disconnect", user_id="u", state="running", progress=progress)
    assert job_view(job)["stages"][0]["detail"] == "257 document(s) from 2 table(s)"
