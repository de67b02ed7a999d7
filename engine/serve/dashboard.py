"""The operator dashboard (``/admin``): totals, the fleet by version (the version graph with
counts), the users failures first with a filter, rollouts live with progress, the audit log,
and buttons for a health run and a rollout — each behind a confirmation step.

Server-rendered like the end-user pages (``templates/serve/dashboard.html.j2``); the filter
and the live rollout progress are ``serve.js`` enhancements (without scripts the filter is a
GET form and the page shows the progress as of its load). Every route needs the admin
session (``auth.page_admin``); the two actions are POSTs with a CSRF token that queue
background jobs (``Service.start_health`` / ``start_rollout``).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from engine.errors import ByodError
from engine.fleet.report import graph_svg
from engine.serve.auth import csrf_token, page_admin, require_csrf
from engine.serve.errors import ApiError, from_engine_error
from engine.serve.page_render import STATIC_URL, iso, page_headers, render

__all__ = ["router", "users_failures_first"]

router = APIRouter(include_in_schema=False)
PREFIX = "/admin"
_ORDER = {"error": 0, "pending": 1, "connected": 2, "disconnected": 3}
_TONES = {"connected": "ok", "error": "bad", "pending": "busy", "disconnected": "idle"}
_ROLLOUT_TONES = {"running": "busy", "completed": "ok", "halted": "bad", "dry_run": "idle"}
_FINISHED = {"succeeded", "failed", "skipped", "already"}


def _service(request: Request) -> Any:
    return request.app.state.service


def users_failures_first(users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Errors first, then pending, connected, disconnected; by user id within each."""

    return sorted(users, key=lambda u: (_ORDER.get(str(u["connection_status"]), 1),
                                        str(u["user_id"])))


def _graph(versions: list[dict[str, Any]]) -> dict[str, Any]:
    """The version graph laid out as in the rollout report, each box counting the
    deployments on that version."""

    nodes = [{"id": v["id"], "parents": v["parents"], "before": v["count"], "after": 0}
             for v in versions]
    svg = graph_svg({"nodes": nodes, "heads": [v["id"] for v in versions if v["head"]]})
    counts = {v["id"]: v["count"] for v in versions}
    for node in svg["nodes"]:
        node["count"] = counts.get(node["id"], 0)
        node["counts"] = f"{node['count']} on it"
    return svg


def _rollout_row(r: dict[str, Any]) -> dict[str, Any]:
    counts: dict[str, int] = dict(r.get("counts") or {})
    total = sum(counts.values())
    done = sum(n for s, n in counts.items() if s in _FINISHED)
    status = str(r.get("status") or "?")
    failed = counts.get("failed", 0)
    text = f"{done} of {total} done" + (f", {failed} failed" if failed else "")
    return {"id": r.get("rollout_id"), "target": r.get("target"), "status": status,
            "tone": _ROLLOUT_TONES.get(status, "idle"), "done": done, "total": total,
            "progress_text": text, "running": status == "running",
            "updated": iso(r.get("updated_at"))}


def _rollouts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_rollout_row(r) for r in rows]


_JOB_TONES = {"queued": "busy", "running": "busy", "succeeded": "ok", "failed": "bad"}


def _fleet_jobs(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The health runs and rollouts queued from here (the fleet's jobs), newest first."""

    return [{"id": j["job_id"], "kind": j["kind"], "state": j["state"],
             "tone": _JOB_TONES.get(j["state"], "idle"), "stage": j.get("stage"),
             "updated": iso(j.get("updated_at")), "error": j.get("error")}
            for j in jobs if j.get("user_id") == "*"][:10]


def _live(rollouts: list[dict[str, Any]], jobs: list[dict[str, Any]]) -> bool:
    return any(r["running"] for r in rollouts) or \
        any(j["state"] in ("queued", "running") for j in jobs)


def _detail(detail: Any) -> str:
    text = json.dumps(detail, sort_keys=True, default=str) if detail else ""
    return text if len(text) <= 240 else text[:239] + "…"


def dashboard_view(request: Request, *, q: str = "", status: str = "") -> dict[str, Any]:
    """Everything the dashboard shows, from ``Service.fleet_overview`` read now (no
    secrets: user rows are ``public_dict``s, audit details are sanitized when written)."""

    o = _service(request).fleet_overview()
    t = o["totals"]
    totals = [
        {"name": "connected", "label": "connected", "count": t.get("connected", 0), "hot": False},
        {"name": "error", "label": "in error (blocked)", "count": t.get("error", 0),
         "hot": t.get("error", 0) > 0},
        {"name": "pending_migrations", "label": "pending migrations",
         "count": t.get("pending_migrations", 0), "hot": False},
        {"name": "pending", "label": "connecting", "count": t.get("pending", 0), "hot": False},
        {"name": "disconnected", "label": "disconnected", "count": t.get("disconnected", 0),
         "hot": False},
        {"name": "users", "label": "users", "count": t.get("users", 0), "hot": False},
    ]
    rows = []
    for u in users_failures_first(o["users"]):
        if q and q.lower() not in str(u["user_id"]).lower():
            continue
        if status and u["connection_status"] != status:
            continue
        rows.append({"user_id": u["user_id"], "status": u["connection_status"],
                     "tone": _TONES.get(u["connection_status"], "idle"),
                     "version": u["schema_version"],
                     "deployment_status": str(u["deployment_status"]).replace("_", " "),
                     "progress": u["deployment_progress"],
                     "last_checked": iso(u["last_connection_test"]),
                     "error": u["connection_error"]})
    rollouts = _rollouts(o["rollouts"])
    jobs = _fleet_jobs(o.get("jobs") or [])
    audit = [{"at": iso(e["at"]), "user_id": e["user_id"], "event": e["event"],
              "detail": _detail(e["detail"])} for e in reversed(o["audit"])]
    versions = o["versions"]
    head = o.get("head_version")
    targets = ([head] if head else []) + [v["id"] for v in reversed(versions) if v["id"] != head]
    return {"prefix": PREFIX, "csrf": csrf_token(request), "totals": totals,
            "svg": _graph(versions) if versions else None, "graph_error": "no versions",
            "by_version": [(v["id"], v["count"]) for v in versions if v["count"]],
            "users": rows, "users_total": t.get("users", 0), "q": q, "status_filter": status,
            "statuses": ["error", "pending", "connected", "disconnected"],
            "rollouts": rollouts, "jobs": jobs, "rollouts_live": _live(rollouts, jobs),
            "audit": audit, "targets": targets, "flash": None, "confirm": None,
            "enabled": o.get("enabled", True), "availability": o.get("availability")}


def _page(request: Request, d: dict[str, Any], *, status_code: int = 200,
          title: str = "byod dashboard") -> HTMLResponse:
    html = render("serve/dashboard.html.j2", d=d, v={}, title=title, page="dashboard",
                  wide=True, static_url=STATIC_URL)
    return HTMLResponse(html, status_code=status_code, headers=page_headers(request))


@router.get(PREFIX + "/", response_class=HTMLResponse)
def dashboard(request: Request, q: str = "", status: str = "", job: str = "",
              _admin: Any = Depends(page_admin)) -> Response:
    """The dashboard; ``job`` names a health run or rollout just queued (shown as a note)."""

    d = dashboard_view(request, q=q[:100], status=status[:20])
    if job:
        try:
            found = _service(request).job(job)
        except ApiError:
            found = None
        if found is not None and found.user_id == "*":
            label = {"queued": "queued", "running": "running", "succeeded": "finished",
                     "failed": "failed"}.get(found.state, found.state)
            message = f"The {found.kind} job {found.job_id} is {label}."
            if found.error:
                message += f" {found.error}"
            d["flash"] = {"tone": "bad" if found.state == "failed" else "ok", "message": message}
    return _page(request, d)


@router.get(PREFIX, include_in_schema=False)
def dashboard_no_slash() -> Response:
    return RedirectResponse(PREFIX + "/", status_code=307)


@router.get(PREFIX + "/rollouts.json")
def rollouts_json(request: Request, _admin: Any = Depends(page_admin)) -> Response:
    """The rollouts' progress, for the dashboard's polling."""

    from engine import commands

    service = _service(request)
    rollouts = _rollouts(commands.list_rollouts(service.ws, limit=20))
    jobs = _fleet_jobs([j.to_dict() for j in service.store.list_jobs("*", limit=10)])
    return JSONResponse({"rollouts": rollouts, "jobs": jobs, "live": _live(rollouts, jobs)},
                        headers={"Cache-Control": "no-store"})


def _confirm(request: Request, action: str, title: str, description: str, button: str,
             fields: dict[str, str]) -> HTMLResponse:
    d = dashboard_view(request)
    d["confirm"] = {"action": action, "title": title, "description": description,
                    "button": button, "fields": fields}
    return _page(request, d, title=f"Confirm: {title}")


def _queued(request: Request, start: Any, *args: Any) -> Response:
    try:
        job = start(*args)
    except (ApiError, ByodError) as exc:
        err = exc if isinstance(exc, ApiError) else from_engine_error(exc)
        d = dashboard_view(request)
        d["flash"] = {"tone": "bad", "message": err.message}
        return _page(request, d, status_code=err.status)
    return RedirectResponse(f"{PREFIX}/?job={job.job_id}", status_code=303)


@router.post(PREFIX + "/health")
def health(request: Request, confirmed: str = Form(""), _admin: Any = Depends(page_admin),
           _csrf: None = Depends(require_csrf)) -> Response:
    """Check every deployment's health (after a confirmation)."""

    if confirmed != "yes":
        n = len(_service(request).store.list_users(connection_status=["connected", "error"]))
        return _confirm(request, "health", "check every deployment",
                        f"Every connected or blocked deployment ({n}) is checked now. "
                        "Unreachable ones are blocked; recovered ones are unblocked.",
                        "Check health now", {})
    return _queued(request, _service(request).start_health)


@router.post(PREFIX + "/rollout")
def rollout(request: Request, target: str = Form(""), confirmed: str = Form(""),
            _admin: Any = Depends(page_admin), _csrf: None = Depends(require_csrf)) -> Response:
    """Roll the fleet out to a version (after a confirmation naming it)."""

    service = _service(request)
    if not target:
        d = dashboard_view(request)
        d["flash"] = {"tone": "bad", "message": "Choose the version to roll out to."}
        return _page(request, d, status_code=422)
    if confirmed != "yes":
        d_users = service.store.list_users(connection_status=["connected"])
        behind = sum(1 for u in d_users if u.schema_version != target)
        return _confirm(request, "rollout", f"roll out to {target}",
                        f"{behind} of {len(d_users)} connected deployment(s) are not on "
                        f"{target} and will be migrated: a canary first, then waves, halting "
                        "when the failure budget is spent.", f"Roll out to {target}",
                        {"target": target})
    return _queued(request, service.start_rollout, target, True)
