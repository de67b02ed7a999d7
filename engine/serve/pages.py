"""The end-user pages (``/ui``): connect, test, save & deploy with live stages, the status,
instance and migration cards, update credentials, disconnect, the blocker screen and the
upsell — server-rendered from ``templates/serve/``, mounted by ``create_app``.

Why server-rendered: the pages must work embedded in any app (a link or an iframe), offline
and without a build step; every form is a real POST with a CSRF token, and the small
``serve.js`` only enhances (tests in place, live stages over Server-Sent Events, a dialog).

Every route calls ``request.app.state.service`` for the signed-in page user
(``auth.page_user``): a user sees and acts on their own deployment and jobs only. No page
ever renders a deploy key (not even masked); a URL the user typed is echoed into the form
only as scheme, host and port.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from engine.errors import ByodError
from engine.ports.serve import Job
from engine.serve.auth import (
    csrf_token,
    limit_credential_tests,
    page_user,
    require_csrf,
)
from engine.serve.errors import ApiError, from_engine_error
from engine.serve.page_render import STATIC_URL, iso, page_headers, render
from engine.serve.page_views import (
    job_view,
    journal_view,
    plain,
    sanitized_url,
    status_view,
)

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
PREFIX = "/ui"

# -- small helpers -----------------------------------------------------------------------------

def _service(request: Request) -> Any:
    return request.app.state.service


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _error_of(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ByodError):
        return from_engine_error(exc)
    raise exc


def _allow_loopback(request: Request) -> bool:
    """Whether the service accepts plain-http loopback URLs (local deployments), so the
    page's https hint does not refuse them."""

    settings = getattr(_service(request), "settings", None)
    return bool(getattr(settings, "allow_insecure_local", False))


# -- view models ---------------------------------------------------------------------------------

def _base_view(request: Request, user_id: str) -> dict[str, Any]:
    return {"prefix": PREFIX, "user_id": user_id, "csrf": csrf_token(request),
            "errors": {}, "test_result": None, "form_url": None, "key_cleared": False,
            "flash": None, "page_error": None, "notice": None, "job": None,
            "disconnect_mode": None, "allow_loopback": _allow_loopback(request)}


def _settings_view(request: Request, user_id: str, **extra: Any) -> dict[str, Any]:
    service = _service(request)
    v = _base_view(request, user_id)
    status = plain(service.status(user_id))
    access = plain(service.access(user_id))
    user = status
    conn = str(user.get("connection_status") or "none")
    active = conn in ("connected", "error", "pending")
    v.update(status=status_view(status), journal=journal_view(status),
             instance={"version": user.get("schema_version"),
                       "deployment_status": str(user.get("deployment_status") or "not started")
                       .replace("_", " "),
                       "last_deploy": iso(status.get("last_deploy_at") or
                                          (user.get("updated_at")
                                           if user.get("deployment_status") == "deployed" else None)),
                       "fingerprint": (user.get("schema_fingerprint") or "")[:12] or None},
             has_deployment=active, access=access)
    can_connect = bool(access.get("can_connect", access.get("entitled", True)
                                  and access.get("enabled", True)))
    v["show_connect"] = not active and can_connect
    v["show_update"] = active
    v["show_disconnect"] = active
    v["gate_closed"] = not active and not can_connect
    try:
        notice = service.notice(user_id)
    except (ApiError, ByodError):
        notice = None
    if isinstance(notice, dict):
        # the blocked notice repeats the status card; others (an update pending) add to it
        notice = None if notice.get("code") == "blocked" else notice.get("message")
    v["notice"] = notice or None
    open_job = status.get("job")
    v["open_job_id"] = open_job.get("job_id") if isinstance(open_job, dict) else None
    v.update(extra)
    return v


def _job_for(request: Request, user_id: str, job_id: str) -> Job:
    """The user's own job; 404 for another user's (the same answer as for none at all)."""

    try:
        job = _service(request).job(job_id)
    except ApiError:
        job = None
    if job is None or job.user_id != user_id:
        raise ApiError(404, "unknown_job", f"no job {job_id!r} for this user")
    return job


def _page(request: Request, template: str, title: str, v: dict[str, Any], *,
          status_code: int = 200, page: str = "settings") -> HTMLResponse:
    html = render(template, title=title, v=v, page=page, wide=False,
                  static_url=STATIC_URL)
    return HTMLResponse(html, status_code=status_code, headers=page_headers(request))


def _error_page(request: Request, err: ApiError, heading: str = "Something went wrong") -> Response:
    if _wants_json(request):
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers())
    v = {"heading": heading, "message": err.message, "back": f"{PREFIX}/settings"}
    response = _page(request, "serve/error.html.j2", heading, v, status_code=err.status,
                     page="error")
    response.headers.update(err.headers() or {})
    return response


# -- settings --------------------------------------------------------------------------------------

@router.get(PREFIX + "/settings", response_class=HTMLResponse)
def settings_page(request: Request, job: str | None = None,
                  user_id: str = Depends(page_user)) -> Response:
    """The settings page: cards, connect or update, disconnect; a job's stages on top."""

    try:
        v = _settings_view(request, user_id)
        if job:
            v["job"] = job_view(_job_for(request, user_id, job))
        elif v.get("open_job_id"):
            v["job"] = job_view(_job_for(request, user_id, v["open_job_id"]))
    except (ApiError, ByodError) as exc:
        return _error_page(request, _error_of(exc))
    if v["gate_closed"] and not v["has_deployment"]:
        return _page(request, "serve/upsell.html.j2", "Bring your own database", v, page="upsell")
    return _page(request, "serve/settings.html.j2", "Bring your own database: settings", v)


def _credential_errors(err: ApiError) -> dict[str, str]:
    field = err.field if err.field in ("url", "deploy_key") else None
    return {field: err.message} if field else {}


@router.post(PREFIX + "/test")
def test_credentials(request: Request, url: str = Form(""), deploy_key: str = Form(""),
                     user_id: str = Depends(page_user),
                     _csrf: None = Depends(require_csrf)) -> Response:
    """Test credentials that are not saved; the answer inline (JSON for ``serve.js``, the
    page again without scripts). The key is never sent back."""

    errors: dict[str, str] = {}
    if not url.strip():
        errors["url"] = "Enter your deployment URL."
    if not deploy_key.strip():
        errors["deploy_key"] = "Enter your deploy key."
    result: dict[str, Any]
    status_code = 200
    if errors:
        result = {"ok": False, "message": "Fill in both fields first.", "errors": errors}
        status_code = 422
    else:
        try:
            limit_credential_tests(request, f"user:{user_id}")
            answer = plain(_service(request).test_credentials(url.strip(), deploy_key.strip()))
            ok = bool(answer.get("ok"))
            message = ("The deployment answered and accepted the key" if ok else
                       f"The test failed: {answer.get('error') or answer.get('state')}")
            if ok and answer.get("note"):
                message += f": {answer['note']}"
            if answer.get("latency_ms") is not None:
                message += f" ({answer['latency_ms']:.0f} ms)"
            message += "."
            result = {"ok": ok, "message": message, "errors": {}}
        except (ApiError, ByodError) as exc:
            err = _error_of(exc)
            result = {"ok": False, "message": err.message, "errors": _credential_errors(err)}
            status_code = err.status
    if _wants_json(request):
        return JSONResponse(result, status_code=status_code, headers=page_headers(request))
    v = _settings_view(request, user_id, test_result=result, errors=result["errors"],
                       form_url=sanitized_url(url), key_cleared=bool(deploy_key))
    return _page(request, "serve/settings.html.j2", "Bring your own database: test",
                 v, status_code=status_code)


def _start(request: Request, user_id: str, start: Any, *args: Any) -> Response:
    try:
        job = start(user_id, *args)
    except (ApiError, ByodError) as exc:
        err = _error_of(exc)
        if _wants_json(request):
            return JSONResponse(err.body(), status_code=err.status, headers=err.headers())
        errors = _credential_errors(err)
        v = _settings_view(request, user_id, errors=errors,
                           page_error=None if errors else err.message,
                           test_result={"ok": False, "message": err.message} if errors else None)
        return _page(request, "serve/settings.html.j2", "Bring your own database: settings",
                     v, status_code=err.status)
    if _wants_json(request):
        return JSONResponse({"job": job_view(job)}, status_code=202, headers=page_headers(request))
    return RedirectResponse(f"{PREFIX}/settings?job={job.job_id}", status_code=303)


@router.post(PREFIX + "/connect")
def connect(request: Request, url: str = Form(""), deploy_key: str = Form(""),
            user_id: str = Depends(page_user), _csrf: None = Depends(require_csrf)) -> Response:
    """Save & Deploy: a connect job, then the settings page following its stages."""

    service = _service(request)
    return _start(request, user_id, service.start_connect, url.strip(), deploy_key.strip())


@router.post(PREFIX + "/update")
def update(request: Request, url: str = Form(""), deploy_key: str = Form(""),
           user_id: str = Depends(page_user), _csrf: None = Depends(require_csrf)) -> Response:
    """Update credentials: tested, then saved and redeployed as a job."""

    service = _service(request)
    try:
        limit_credential_tests(request, f"user:{user_id}")  # an update tests the new ones
    except ApiError as err:
        return _error_page(request, err, "Too many tests")
    return _start(request, user_id, service.start_update, url.strip(), deploy_key.strip())


@router.post(PREFIX + "/retry")
def retry(request: Request, user_id: str = Depends(page_user),
          _csrf: None = Depends(require_csrf)) -> Response:
    """Retry a failed connect from the saved credentials."""

    return _start(request, user_id, _service(request).start_retry)


# -- disconnect ---------------------------------------------------------------------------------------

@router.get(PREFIX + "/disconnect", response_class=HTMLResponse)
def disconnect_page(request: Request, user_id: str = Depends(page_user)) -> Response:
    """The disconnect choices as a page (the settings page opens them as a dialog)."""

    v = _base_view(request, user_id)
    return _page(request, "serve/disconnect.html.j2", "Disconnect your database", v,
                 page="disconnect")


@router.post(PREFIX + "/disconnect")
def disconnect(request: Request, mode: str = Form(""), confirm: str = Form(""),
               user_id: str = Depends(page_user),
               _csrf: None = Depends(require_csrf)) -> Response:
    """Start a disconnect job; delete only with the word typed (``delete`` or the user id)."""

    errors: dict[str, str] = {}
    if mode not in ("keep", "migrate", "delete"):
        errors["mode"] = "Choose what happens to your content: keep, migrate back or delete."
    typed = confirm.strip()
    confirmed = mode == "delete" and typed.lower() == "delete" or typed == user_id
    if mode == "delete" and not confirmed:
        errors["confirm"] = ("To delete your content, type delete (or your user id) in the "
                             "confirmation field.")
    if not errors:
        try:
            job = _service(request).start_disconnect(user_id, mode, mode == "delete" and confirmed)
        except (ApiError, ByodError) as exc:
            err = _error_of(exc)
            if err.field == "confirm":
                errors["confirm"] = err.message
            else:
                errors["page"] = err.message
        else:
            if _wants_json(request):
                return JSONResponse({"job": job_view(job)}, status_code=202,
                                    headers=page_headers(request))
            return RedirectResponse(f"{PREFIX}/settings?job={job.job_id}", status_code=303)
    if _wants_json(request):
        return JSONResponse({"error": {"code": "invalid", "message": next(iter(errors.values())),
                                       "fields": errors}}, status_code=422)
    v = _base_view(request, user_id)
    v.update(errors=errors, disconnect_mode=mode or None, page_error=errors.pop("page", None))
    return _page(request, "serve/disconnect.html.j2", "Disconnect your database", v,
                 status_code=409 if v["page_error"] else 422, page="disconnect")


# -- jobs -----------------------------------------------------------------------------------------------

@router.get(PREFIX + "/jobs/{job_id}")
def job_json(request: Request, job_id: str, user_id: str = Depends(page_user)) -> Response:
    """A job's stages as JSON, for polling (the user's own jobs only)."""

    try:
        job = _job_for(request, user_id, job_id)
    except ApiError as err:
        return JSONResponse(err.body(), status_code=err.status)
    return JSONResponse(job_view(job), headers={"Cache-Control": "no-store"})


@router.get(PREFIX + "/jobs/{job_id}/view", response_class=HTMLResponse)
def job_page(request: Request, job_id: str, user_id: str = Depends(page_user)) -> Response:
    """A job's stages as a page that refreshes itself without scripts."""

    try:
        job = _job_for(request, user_id, job_id)
    except ApiError as err:
        return _error_page(request, err, "No such job")
    v = _base_view(request, user_id)
    v["job"] = job_view(job)
    return _page(request, "serve/job.html.j2", v["job"]["title"], v, page="job")


@router.get(PREFIX + "/jobs/{job_id}/events")
async def job_events(request: Request, job_id: str,
                     user_id: str = Depends(page_user)) -> Response:
    """Server-Sent Events: the job's view after each of its events, until it finishes."""

    service = _service(request)
    try:
        job = await asyncio.to_thread(_job_for, request, user_id, job_id)
    except ApiError as err:
        return JSONResponse(err.body(), status_code=err.status)

    async def stream() -> AsyncIterator[str]:
        current = job
        yield f"data: {json.dumps(job_view(current))}\n\n"
        if current.finished:
            return
        deadline = time.monotonic() + 3600
        async for _event in service.job_events(job_id):
            if await request.is_disconnected() or time.monotonic() > deadline:
                return
            found = await asyncio.to_thread(service.job, job_id)
            if found is None:
                return
            current = found
            yield f"data: {json.dumps(job_view(current))}\n\n"
            if current.finished:
                return
        found = await asyncio.to_thread(service.job, job_id)
        if found is not None and found.updated_at != current.updated_at:
            yield f"data: {json.dumps(job_view(found))}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# -- the blocker screen ---------------------------------------------------------------------------------

def _blocked_view(request: Request, user_id: str) -> dict[str, Any]:
    service = _service(request)
    b = plain(service.blocker(user_id))
    v = _base_view(request, user_id)
    v.update(blocked=bool(b.get("blocked")), reason=b.get("reason"), since=iso(b.get("since")),
             retry_allowed=bool(b.get("retry_allowed")),
             failed=int(b.get("failed_retries") or 0), needs_help=bool(b.get("needs_help")),
             retry_result=None, support_url=getattr(request.app.state, "support_url", None))
    return v


@router.get(PREFIX + "/blocked", response_class=HTMLResponse)
def blocked_page(request: Request, retried: int = 0, user_id: str = Depends(page_user)) -> Response:
    """The blocker screen: why the user's content is unavailable, possible causes, retry,
    and "still having issues?" once three retries failed (counted by the service)."""

    try:
        v = _blocked_view(request, user_id)
    except (ApiError, ByodError) as exc:
        return _error_page(request, _error_of(exc))
    if retried and not v["blocked"]:
        v["retry_result"] = {"ok": True, "message": "Your deployment answered again: "
                                                    "everything works as before."}
    elif retried:
        v["retry_result"] = {"ok": False, "message": "Retried just now: your deployment still "
                                                     "does not answer correctly (the reason "
                                                     "is above)."}
    title = "Your database is unavailable" if v["blocked"] else "Your database is available"
    return _page(request, "serve/blocked.html.j2", title, v, page="blocked")


@router.post(PREFIX + "/blocked/retry")
def blocked_retry(request: Request, user_id: str = Depends(page_user),
                  _csrf: None = Depends(require_csrf)) -> Response:
    """Re-test the user's deployment now; unblocks them when it answers."""

    try:
        limit_credential_tests(request, f"user:{user_id}")
        answer = plain(_service(request).retry_blocked(user_id))
    except (ApiError, ByodError) as exc:
        return _error_page(request, _error_of(exc), "Cannot retry right now")
    if _wants_json(request):
        return JSONResponse({k: answer.get(k) for k in
                             ("blocked", "reason", "failed_retries", "needs_help")})
    return RedirectResponse(f"{PREFIX}/blocked?retried=1", status_code=303)
