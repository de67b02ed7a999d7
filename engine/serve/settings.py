"""The service's settings: ``[serve]`` and ``[alerts.email]`` of the engine's config plus the
secrets read from the environment (``BYOD_SERVE_SECRET``, ``BYOD_SMTP_PASSWORD``).

Secrets are pydantic ``SecretStr``: their ``repr`` and ``str`` print ``**********``, so a
settings object can be logged or shown in a traceback without leaking them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from engine.commands.service import SECRET_ENV, serve_secret
from engine.config import EngineConfig

__all__ = ["SMTP_PASSWORD_ENV", "SECRET_ENV", "ServeSettings", "SmtpSettings"]

SMTP_PASSWORD_ENV = "BYOD_SMTP_PASSWORD"


class SmtpSettings(BaseModel):
    """Where email alerts go (``[alerts.email]``); ``host`` None: no email."""

    model_config = ConfigDict(frozen=True)
    host: str | None = None
    port: int = 587
    username: str | None = None
    password: SecretStr | None = None
    from_address: str = "byod@localhost"
    to_addresses: tuple[str, ...] = ()
    starttls: bool = True
    timeout_s: float = 30.0

    @property
    def enabled(self) -> bool:
        return bool(self.host and self.to_addresses)


class ServeSettings(BaseModel):
    """Everything ``byod serve`` needs besides the workspace. ``enabled`` is the kill
    switch: false refuses new connections while existing ones keep working."""

    model_config = ConfigDict(frozen=True)
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    enabled: bool = True
    upgrade_url: str | None = None
    monitor_interval_s: float = 300.0
    user_token_ttl_s: float = 900.0
    credential_tests_per_minute: int = 10
    credential_tests_per_token_per_minute: int = 300
    main_functions: tuple[str, ...] = ()
    job_claim_ttl_s: float = 30.0
    allow_insecure_local: bool = False
    frame_ancestors: tuple[str, ...] = ()
    secret: SecretStr = Field(repr=False)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)

    @classmethod
    def from_config(cls, config: EngineConfig, env: Mapping[str, str] | None = None,
                    **overrides: object) -> "ServeSettings":
        """The settings of ``config`` with the secrets of ``env`` (default: the process
        environment). A missing ``BYOD_SERVE_SECRET`` is a ``ConfigError`` naming it."""

        env = os.environ if env is None else env
        serve, email = config.serve, config.alerts.email
        password = env.get(SMTP_PASSWORD_ENV) or None
        smtp = SmtpSettings(host=email.smtp_host, port=email.smtp_port,
                            username=email.username,
                            password=SecretStr(password) if password else None,
                            from_address=email.from_address,
                            to_addresses=email.to_addresses, starttls=email.starttls,
                            timeout_s=email.timeout_s)
        values: dict[str, object] = dict(
            host=serve.host, port=serve.port, public_url=serve.public_url,
            enabled=serve.enabled, upgrade_url=serve.upgrade_url,
            monitor_interval_s=serve.monitor_interval_s,
            user_token_ttl_s=serve.user_token_ttl_s,
            credential_tests_per_minute=serve.credential_tests_per_minute,
            credential_tests_per_token_per_minute=serve.credential_tests_per_token_per_minute,
            main_functions=serve.main_functions, job_claim_ttl_s=serve.job_claim_ttl_s,
            allow_insecure_local=serve.allow_insecure_local,
            frame_ancestors=serve.frame_ancestors, smtp=smtp)
        if "secret" not in overrides:
            values["secret"] = serve_secret(env)
        values.update(overrides)
        return cls.model_validate(values)

    @property
    def base_url(self) -> str:
        """Where users reach the service (links in pages and emails)."""

        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def secure_cookies(self) -> bool:
        """Session cookies are ``Secure`` when users reach the service over https."""

        return (self.public_url or "").startswith("https://") or self.embedded

    @property
    def embedded(self) -> bool:
        """The pages may be framed by the app (``frame_ancestors``): their session cookie
        must then travel in a cross-site iframe (SameSite=None, which requires Secure)."""

        return bool(self.frame_ancestors)
