"""The ``/v1`` API's request and response models: typed, so ``/openapi.json`` describes
every field and a client (``clients/ts``) can be generated from it. Responses never carry a
credential."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AccessInfo", "Blocker", "BlockerRetry", "ConnectRequest", "CredentialTest",
           "CredentialsRequest", "DisconnectRequest", "ErrorBody", "ErrorResponse",
           "CredentialTestRequest", "FleetOverview", "JobEvent", "JobInfo", "JournalRow", "LeaseInfo",
           "Notice", "PageToken", "RolloutRequest", "RunRequest", "RunResult", "UserStatus"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests -------------------------------------------------------------------------------

class CredentialsRequest(_Strict):
    """A deployment's URL (https; http only for loopback when the service allows it) and
    its deploy key. The key is used, never echoed or logged."""

    url: str = Field(max_length=2048, description="the deployment's root URL")
    deploy_key: str = Field(max_length=4096, description="the deployment's deploy key")


class CredentialTestRequest(CredentialsRequest):
    user_id: str | None = Field(default=None, max_length=256,
                                description="the user testing (for the per-user rate limit)")


class ConnectRequest(CredentialsRequest):
    copy_from_main: bool = Field(default=False, description="copy the user's existing "
                                 "content from main to the new deployment")


class DisconnectRequest(_Strict):
    mode: Literal["keep", "migrate", "delete"]
    confirm: bool = Field(default=False, description="required (true) for delete")


class RunRequest(_Strict):
    kind: Literal["query", "mutation", "action"]
    path: str = Field(max_length=512, description="the function, e.g. notes:listForUser")
    args: dict[str, Any] = Field(default_factory=dict)


class RolloutRequest(_Strict):
    to: str = Field(default="head", max_length=256)
    confirm: bool = False
    canary: int = Field(default=1, ge=0, le=1000)


# -- responses ------------------------------------------------------------------------------

class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class JournalRow(BaseModel):
    plan_id: str
    step_id: str
    seq: int
    kind: str
    status: str
    processed: int | None = None
    attempts: int | None = None
    cursor: str | None = None
    error: str | None = None


class LeaseInfo(BaseModel):
    holder: str
    expires_at: float
    host: str | None = None
    pid: int | None = None


class JobInfo(BaseModel):
    job_id: str
    kind: str
    user_id: str
    state: Literal["queued", "running", "succeeded", "failed"]
    stage: str | None = None
    progress: list[dict[str, Any]] = Field(default_factory=list)
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: float
    updated_at: float


class JobEvent(BaseModel):
    event: Literal["progress", "done", "timeout"]
    at: float | None = None
    stage: str | None = None
    message: str | None = None
    job: JobInfo | None = None


class UserStatus(BaseModel):
    """A user's connection and deployment (``connection_status`` ``none``: never
    connected)."""

    user_id: str
    connection_status: Literal["none", "pending", "connected", "error", "disconnected"]
    deployment_status: str | None = None
    deployment_progress: str | None = None
    schema_version: str | None = None
    schema_fingerprint: str | None = None
    last_connection_test: float | None = None
    connection_error: str | None = None
    entitled: bool | None = None
    created_at: float | None = None
    updated_at: float | None = None
    head_version: str
    last_schema_deploy: float | None = None
    pending_migration: bool = False
    lease: LeaseInfo | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)
    journal_plan: str | None = None
    journal: list[JournalRow] = Field(default_factory=list)
    job: JobInfo | None = None


class AccessInfo(BaseModel):
    user_id: str
    entitled: bool
    availability: Literal["everyone", "premium"]
    upgrade_url: str | None
    enabled: bool
    can_connect: bool
    connected: bool


class CredentialTest(BaseModel):
    ok: bool
    latency_ms: float
    deployed_version: str | None = None
    state: str
    error: str | None = None
    error_kind: str | None = None
    note: str | None = None


class Blocker(BaseModel):
    user_id: str
    blocked: bool
    reason: str | None = None
    since: float | None = None
    retry_allowed: bool
    failed_retries: int = 0
    needs_help: bool = False


class BlockerRetry(Blocker):
    test: dict[str, Any] | None = None


class Notice(BaseModel):
    notice: dict[str, Any] | None


class RunResult(BaseModel):
    value: Any = None


class PageToken(BaseModel):
    token: str
    url: str
    expires_in: float


class FleetOverview(BaseModel):
    head_version: str
    enabled: bool
    availability: str
    totals: dict[str, int]
    versions: list[dict[str, Any]]
    users: list[dict[str, Any]]
    rollouts: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    audit: list[dict[str, Any]]
