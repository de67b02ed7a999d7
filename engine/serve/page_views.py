"""What the end-user pages show, as plain dicts for the templates (and ``serve.js``): a
job's stages with their state, the status card, the migration journal; and
``sanitized_url``, the only form in which a URL the user typed is echoed.

Pure functions of the service's answers: no request, no I/O, so each is tested on its own."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from engine.ports.serve import Job
from engine.serve.page_render import iso

__all__ = ["job_view", "journal_view", "plain", "sanitized_url",
           "status_view"]

# The stages each job kind goes through, in order, with the words a user reads.
_STAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "connect": (("queued", "Waiting to start"), ("validating", "Checking the URL and key"),
                ("testing", "Testing the connection"), ("saving", "Saving your credentials, encrypted"),
                ("deploying", "Deploying the app's schema and functions"),
                ("recording", "Recording the version"), ("copying", "Copying your content"),
                ("done", "Connected")),
    # disconnect's progress events: pages of a copy back to main, the links restored,
    # what changed meanwhile copied again, pages deleted (by mode)
    "disconnect": (("queued", "Waiting to start"), ("page", "Copying your content back"),
                   ("patched", "Restoring the links between your items"),
                   ("recopied", "Copying what changed meanwhile"),
                   ("deleted", "Deleting your content"), ("done", "Disconnected")),
}
_TABLE_COUNT = re.compile(r"^(?P<table>[A-Za-z_][A-Za-z0-9_]*): (?P<n>\d+)$")
_STAGES["retry"] = _STAGES["update"] = _STAGES["connect"]
_TITLES = {"connect": "Connecting your database", "retry": "Retrying the connection",
           "update": "Updating your credentials", "disconnect": "Disconnecting your database"}
_STATUS = {  # connection status -> (label, tone)
    "connected": ("Connected", "ok"), "error": ("Unavailable", "bad"),
    "pending": ("Not connected yet", "busy"), "disconnected": ("Disconnected", "idle"),
}


def plain(value: Any) -> dict[str, Any]:
    """A service answer as a dict (a dict, a pydantic model or a dataclass)."""

    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if hasattr(value, "model_dump"):
        return dict(value.model_dump())
    if hasattr(value, "to_dict"):
        return dict(value.to_dict())
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    return dict(vars(value))


def sanitized_url(raw: str | None) -> str | None:
    """``scheme://host[:port]`` of a URL the user typed (never a path, query or userinfo,
    where a secret could hide); None when it is not an http(s) URL."""

    if not raw:
        return None
    try:
        parts = urlsplit(raw.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}"



def job_view(job: Job) -> dict[str, Any]:
    """What a page (and ``serve.js``) shows of a job: its stages with their state, a badge
    and a message; never the job's parameters."""

    seen: list[str] = []
    details: dict[str, str] = {}
    tables: dict[str, dict[str, int]] = {}
    for event in job.progress:
        stage = str(event.get("stage") or "")
        if not stage:
            continue
        if stage not in seen:
            seen.append(stage)
        text = str(event.get("message") or "")
        counted = _TABLE_COUNT.match(text)
        if counted:  # "<table>: <n>" per page of a copy: the latest count per table
            tables.setdefault(stage, {})[counted["table"]] = int(counted["n"])
        elif text:
            details[stage] = text
    for stage, counts in tables.items():
        details.setdefault(stage, f"{sum(counts.values())} document(s) from "
                                  f"{len(counts)} table(s)")
    known = dict(_STAGES.get(job.kind, ()))
    stages: list[dict[str, Any]] = []
    for i, name in enumerate(seen):
        last = i == len(seen) - 1
        state = "done"
        if last and job.state == "failed":
            state = "failed"
        elif last and not job.finished:
            state = "running"
        stages.append({"name": name, "label": known.get(name, name.replace("_", " ").capitalize()),
                       "state": state, "detail": details.get(name)})
    if job.state == "succeeded" and (not seen or seen[-1] != "done"):
        stages.append({"name": "done", "label": known.get("done", "Done"), "state": "done",
                       "detail": None})
    if not job.finished:
        optional = {"queued", "saving", "copying", "page", "patched", "recopied", "deleted"}
        for name, label in _STAGES.get(job.kind, ()):
            if name not in seen and name not in optional:
                stages.append({"name": name, "label": label, "state": "pending", "detail": None})
    if job.state == "failed" and not stages:
        stages.append({"name": "failed", "label": "Failed", "state": "failed", "detail": None})
    labels = {"queued": ("Waiting", "busy"), "running": ("In progress", "busy"),
              "succeeded": ("Done", "ok"), "failed": ("Failed", "bad")}
    label, tone = labels.get(job.state, (job.state, "idle"))
    message = job.error if job.state == "failed" else (
        "Finished." if job.state == "succeeded" else "This takes a minute or two; you can leave "
                                                     "this page, it carries on.")
    return {"id": job.job_id, "kind": job.kind, "title": _TITLES.get(job.kind, job.kind),
            "state": job.state, "state_label": label, "tone": tone, "finished": job.finished,
            "ok": job.state == "succeeded", "message": message, "stages": stages}


def status_view(status: dict[str, Any]) -> dict[str, Any]:
    user = status
    conn = str(user.get("connection_status") or "none")
    label, tone = _STATUS.get(conn, (conn, "idle"))
    progress = user.get("deployment_progress")
    setup_failed = conn == "pending" and user.get("deployment_status") == "failed"
    if setup_failed:
        label, tone = "Setup failed", "bad"
        message = user.get("connection_error") or f"Setting up failed ({progress})."
    elif conn == "error":
        message = user.get("connection_error") or "Your deployment could not be reached."
    elif conn == "connected":
        message = "Your content is stored on your own deployment."
    elif conn == "disconnected":
        message = "The app stores your content in its own database."
    else:
        message = f"Setting up: {progress}." if progress else "Not connected yet."
    host = status.get("deployment_host") or status.get("host")
    return {"label": label, "tone": tone, "message": message, "connection_status": conn,
            "error": conn == "error" or setup_failed, "blocked": conn == "error",
            "last_checked": iso(user.get("last_connection_test")),
            "host": sanitized_url(host) if host and "://" in str(host) else host}


def journal_view(status: dict[str, Any]) -> list[dict[str, Any]]:
    states = {"completed": "done", "skipped": "done", "running": "running", "failed": "failed",
              "pending": "pending"}
    return [{"step_id": e.get("step_id"), "kind": e.get("kind"), "status": e.get("status"),
             "state": states.get(str(e.get("status")), "pending"),
             "processed": e.get("processed") or 0, "error": e.get("error")}
            for e in status.get("journal") or []]


