"""The service's errors: one ``ApiError`` carrying the HTTP status, a stable code and a
sanitized message, and the mapping of the engine's errors onto it.

Every error leaves the service as JSON ``{"error": {"code", "message"}}`` (plus
``Retry-After`` when there is one); a message is redacted once more on the way out, and
an unknown user is never answered with other users' ids ("did you mean")."""

from __future__ import annotations

from typing import Any

from engine.errors import (
    ByodError,
    ConfigError,
    ConfirmationRequired,
    DeploymentBlocked,
    DeploymentError,
    DisconnectError,
    InvalidCredentials,
    InvalidTransition,
    LeaseHeld,
    NotEntitled,
    RegistryError,
    UnknownUser,
)
from engine.redact import redact

__all__ = ["ApiError", "from_engine_error"]


class ApiError(Exception):
    """An error the API answers with ``status`` and ``{"error": {"code", "message"}}``;
    ``field`` names the request field at fault (validation), ``retry_after`` seconds set
    ``Retry-After``."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None,
                 retry_after: int | None = None, extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = redact(message)
        self.field = field
        self.retry_after = retry_after
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        error.update(self.extra)
        return {"error": error}

    def headers(self) -> dict[str, str] | None:
        return None if self.retry_after is None else {"Retry-After": str(self.retry_after)}


def from_engine_error(exc: ByodError, *, secrets: tuple[str, ...] = ()) -> ApiError:
    """The API's answer to an engine error (its message redacted with ``secrets``)."""

    text = redact(str(exc), list(secrets))
    if isinstance(exc, UnknownUser):
        return ApiError(404, "unknown_user", f"no BYOD configuration for user {exc.user_id!r}")
    if isinstance(exc, InvalidCredentials):
        field = "deploy_key" if "deploy key" in text else "url" if "URL" in text else None
        return ApiError(422, "invalid_credentials", text, field=field)
    if isinstance(exc, NotEntitled):
        return ApiError(403, "not_entitled", text)
    if isinstance(exc, LeaseHeld):
        return ApiError(409, "busy", "another run is working this deployment; try again "
                                     "shortly", retry_after=10)
    if isinstance(exc, DeploymentBlocked):
        return ApiError(423, "blocked", redact(exc.reason, list(secrets)))
    if isinstance(exc, ConfirmationRequired):
        return ApiError(422, "confirmation_required", text, field="confirm")
    if isinstance(exc, (DisconnectError, InvalidTransition)):
        return ApiError(409, "conflict", text)
    if isinstance(exc, RegistryError):
        return ApiError(409, "conflict", text)
    if isinstance(exc, ConfigError):
        return ApiError(503, "not_configured", text)
    if isinstance(exc, DeploymentError):
        return ApiError(502, "deployment_error", text)
    return ApiError(500, "internal", text)
