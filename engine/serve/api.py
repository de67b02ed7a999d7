"""The ``/v1`` API for the app's backend (OpenAPI at ``/openapi.json``).

Each route authenticates (``engine.serve.auth``), calls one ``Service`` method, and answers
with a typed model. Blocking calls run in FastAPI's thread pool (``def`` routes), so a slow
deployment never stalls the event loop. Errors are ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from engine.ports.serve import FLEET_USER
from engine.serve.auth import (
    Principal,
    authenticate,
    limit_credential_tests,
    mint_user_token,
    require_scope,
    require_user_scope,
)
from engine.serve.errors import ApiError
from engine.serve.models import (
    AccessInfo,
    Blocker,
    BlockerRetry,
    ConnectRequest,
    CredentialsRequest,
    CredentialTest,
    CredentialTestRequest,
    DisconnectRequest,
    ErrorResponse,
    FleetOverview,
    JobInfo,
    Notice,
    PageToken,
    RolloutRequest,
    RunRequest,
    RunResult,
    UserStatus,
)
from engine.serve.service import Service

__all__ = ["router"]

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422, 423, 429, 503)}
router = APIRouter(prefix="/v1", responses=_ERRORS)

SettingsUser = Annotated[Principal, Depends(require_user_scope("settings"))]
DataUser = Annotated[Principal, Depends(require_user_scope("data"))]
Admin = Annotated[Principal, Depends(require_scope("admin"))]
Settings = Annotated[Principal, Depends(require_scope("settings"))]


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _job(job: Any) -> JobInfo:
    return JobInfo.model_validate(job.to_dict())


# -- one user's settings ----------------------------------------------------------------------

@router.get("/users/{user_id}", response_model=UserStatus, tags=["settings"])
def get_status(user_id: str, request: Request, _: SettingsUser) -> Any:
    """Connection and deployment status and progress, last test, sanitized error,
    version, fingerprint, journal, lease and the open job."""

    return _service(request).status(user_id)


@router.get("/users/{user_id}/access", response_model=AccessInfo, tags=["settings"])
def get_access(user_id: str, request: Request, _: SettingsUser) -> Any:
    """Whether the user may connect: availability, entitlement, the kill switch."""

    return _service(request).access(user_id)


@router.post("/credentials/test", response_model=CredentialTest, tags=["settings"])
def test_credentials(body: CredentialTestRequest, request: Request, who: Settings) -> Any:
    """Test credentials that are not saved (nothing is written). Rate limited per user
    and per token (429 with Retry-After)."""

    if body.user_id is not None and not who.may_act_for(body.user_id):
        raise ApiError(403, "forbidden", "this token may not act for another user")
    keys = list(who.rate_keys) + ([f"user:{body.user_id}"] if body.user_id else [])
    limit_credential_tests(request, *keys)
    return _service(request).test_credentials(body.url, body.deploy_key)


@router.post("/users/{user_id}/connect", response_model=JobInfo, status_code=202,
             tags=["settings"])
def connect(user_id: str, body: ConnectRequest, request: Request, _: SettingsUser) -> Any:
    """Save & Deploy: save the credentials (encrypted) and connect in a background job."""

    return _job(_service(request).start_connect(user_id, body.url, body.deploy_key,
                                                 copy_from_main=body.copy_from_main))


@router.post("/users/{user_id}/retry", response_model=JobInfo, status_code=202,
             tags=["settings"])
def retry(user_id: str, request: Request, _: SettingsUser) -> Any:
    """Run connect again from the saved credentials, in a background job."""

    return _job(_service(request).start_retry(user_id))


@router.put("/users/{user_id}/credentials", response_model=JobInfo, status_code=202,
            tags=["settings"])
def update_credentials(user_id: str, body: CredentialsRequest, request: Request,
                       who: SettingsUser) -> Any:
    """Test new credentials, then save them and redeploy in a background job."""

    limit_credential_tests(request, *who.rate_keys, f"user:{user_id}")
    return _job(_service(request).start_update(user_id, body.url, body.deploy_key))


@router.post("/users/{user_id}/disconnect", response_model=JobInfo, status_code=202,
             tags=["settings"])
def disconnect(user_id: str, body: DisconnectRequest, request: Request,
               _: SettingsUser) -> Any:
    """Keep, migrate back to main, or delete (``confirm: true``), in a background job."""

    return _job(_service(request).start_disconnect(user_id, body.mode, body.confirm))


@router.get("/users/{user_id}/blocker", response_model=Blocker, tags=["settings"])
def blocker(user_id: str, request: Request, _: SettingsUser) -> Any:
    """Whether the user is blocked, why and since when: cheap, for every page load."""

    return _service(request).blocker(user_id)


@router.post("/users/{user_id}/blocker/retry", response_model=BlockerRetry,
             tags=["settings"])
def blocker_retry(user_id: str, request: Request, who: SettingsUser) -> Any:
    """Test the saved credentials now; unblocks the user when they work."""

    limit_credential_tests(request, *who.rate_keys, f"user:{user_id}")
    return _service(request).retry_blocked(user_id)


@router.get("/users/{user_id}/notice", response_model=Notice, tags=["settings"])
def notice(user_id: str, request: Request, _: SettingsUser) -> Any:
    """A message the app can show this user (or null)."""

    return {"notice": _service(request).notice(user_id)}


@router.post("/users/{user_id}/page-token", response_model=PageToken, tags=["settings"])
def page_token(user_id: str, request: Request, who: SettingsUser) -> Any:
    """A short-lived signed token (and sign-in link) for this user's settings page."""

    if who.kind != "api":
        raise ApiError(403, "forbidden", "only the app's backend mints page tokens")
    service = _service(request)
    token = mint_user_token(service.settings, user_id)
    url = f"{service.settings.base_url}/ui/login?token={token}"
    return {"token": token, "url": url, "expires_in": service.settings.user_token_ttl_s}


# -- the data plane ---------------------------------------------------------------------------

@router.post("/users/{user_id}/run", response_model=RunResult, tags=["data"])
def run(user_id: str, body: RunRequest, request: Request, _: DataUser) -> Any:
    """Run an app function where this user's data lives (main or their deployment)."""

    return {"value": _service(request).run(user_id, body.kind, body.path, body.args)}


# -- jobs -------------------------------------------------------------------------------------

def _visible_job(request: Request, job_id: str) -> Any:
    principal = authenticate(request)
    job = _service(request).job(job_id)
    if principal.kind == "api":
        wanted = "admin" if job.user_id == FLEET_USER else "settings"
        if wanted not in principal.scopes and "admin" not in principal.scopes:
            raise ApiError(403, "forbidden", f"this token lacks the {wanted!r} scope")
    elif job.user_id == FLEET_USER or job.user_id != principal.user_id:
        raise ApiError(403, "forbidden", "this token may not see another user's job")
    return job


@router.get("/jobs/{job_id}", response_model=JobInfo, tags=["jobs"])
def get_job(job_id: str, request: Request) -> Any:
    """A job's state, stage and progress (poll until ``succeeded`` or ``failed``)."""

    return _job(_visible_job(request, job_id))


@router.get("/jobs/{job_id}/events", tags=["jobs"],
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "Server-Sent Events: progress, then done"}})
def job_events(job_id: str, request: Request) -> StreamingResponse:
    """The job's progress as Server-Sent Events (``progress`` events, then ``done``)."""

    _visible_job(request, job_id)
    service = _service(request)

    async def stream() -> AsyncIterator[str]:
        async for event in service.job_events(job_id):
            if await request.is_disconnected():
                return
            yield f"event: {event['event']}\ndata: {json.dumps(event, default=str)}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store",
                                      "X-Accel-Buffering": "no"})


# -- operators --------------------------------------------------------------------------------

@router.get("/fleet", response_model=FleetOverview, tags=["admin"])
def fleet(request: Request, _: Admin) -> Any:
    """Totals, the fleet by version, users failures first, rollouts, jobs, audit."""

    return _service(request).fleet_overview()


@router.post("/health/run", response_model=JobInfo, status_code=202, tags=["admin"])
def health_run(request: Request, _: Admin) -> Any:
    """Check every deployment now, in a background job."""

    return _job(_service(request).start_health())


@router.post("/rollouts", response_model=JobInfo, status_code=202, tags=["admin"])
def start_rollout(body: RolloutRequest, request: Request, _: Admin) -> Any:
    """Roll the fleet out to a version (``confirm: true``), in a background job."""

    return _job(_service(request).start_rollout(body.to, body.confirm, canary=body.canary))
