"""Email alerts: the ``email`` channel of the alert queue (``engine.lifecycle.alerts``).

Every alert the health check stores for the webhook is stored for email too when SMTP is
configured (one row per channel), and delivered oldest first until the SMTP server accepts
the message; a server that is down holds that channel's queue back with the same bounded
backoff, never the webhook's.

Delivery uses the standard library's ``smtplib`` in a worker thread: alerts are rare and
small, the blocking call is bounded by a socket timeout and the run's budget, and STARTTLS
and login come built in, so no extra runtime dependency is needed. The subject and body
name the event, how many deployments it covers and the affected user ids (no reasons:
a reason may name a host), never a URL, key or the SMTP password; the text is redacted
against the password once more before it leaves. ``Message-ID`` carries the alert id, so a
mail system can drop the rare duplicate (a process killed between the server's acceptance
and recording it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from engine.config import EngineConfig
from engine.convex.retry import DEADLINE_MARGIN_S, RetryPolicy
from engine.errors import ConfigError
from engine.lifecycle.alerts import ALERT_BACKOFF_S, AlertResult, deliver_queue
from engine.ports.registry import AlertStore
from engine.redact import redact

__all__ = ["PASSWORD_ENV", "EmailSettings", "compose", "deliver_pending_email",
           "email_settings", "send_email"]

log = logging.getLogger(__name__)

PASSWORD_ENV = "BYOD_SMTP_PASSWORD"
_ADDRESS = re.compile(r"[^@\s<>\"',;]+@[^@\s<>\"',;]+")
_MAX_LISTED = 200  # user ids listed in one message; the rest are counted

_SUBJECTS = {
    "unhealthy": "{n} deployment{s} unhealthy",
    "recovered": "{n} deployment{s} recovered",
    "vault_error": "{n} deployment{s}: stored credentials do not decrypt",
}
_LEADS = {
    "unhealthy": "{n} deployment{s} became unhealthy: {their} users are blocked until "
                 "{it} answer{verb} again.",
    "recovered": "{n} deployment{s} recovered: {their} users are unblocked.",
    "vault_error": "The stored credentials of {n} deployment{s} do not decrypt with the "
                   "configured encryption keys (an operator problem: check the keys; no "
                   "user was blocked).",
}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class EmailSettings:
    """Where alert emails go and how to reach the SMTP server. Checked when built: a
    ``ConfigError`` names the setting that is wrong (never the password)."""

    host: str
    sender: str
    recipients: tuple[str, ...]
    port: int = 587
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # from BYOD_SMTP_PASSWORD
    starttls: bool = True
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if isinstance(self.recipients, str):  # one address given as a string
            object.__setattr__(self, "recipients", (self.recipients,))
        object.__setattr__(self, "recipients", tuple(self.recipients))
        if not self.host or not self.host.strip() or any(c in self.host for c in " /@:"):
            raise ConfigError(f"smtp host {self.host!r} is not a host name (e.g. "
                              "smtp.example.com)")
        if not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ConfigError(f"smtp port must be a number from 1 to 65535, not {self.port!r}")
        if not _ADDRESS.fullmatch(self.sender or ""):
            raise ConfigError(f"smtp from address {self.sender!r} is not an email address")
        if not self.recipients:
            raise ConfigError("smtp to: no recipient address; alert emails need at least one")
        for address in self.recipients:
            if not _ADDRESS.fullmatch(address or ""):
                raise ConfigError(f"smtp to address {address!r} is not an email address")
        if self.username and not self.password:
            raise ConfigError(f"smtp username {self.username!r} is set but the password is "
                              f"missing: set {PASSWORD_ENV}")
        if self.password and not self.username:
            raise ConfigError(f"{PASSWORD_ENV} is set but no smtp username: set the "
                              "username the SMTP server expects")
        if self.username and not self.starttls and not _is_loopback(self.host):
            raise ConfigError(
                f"smtp starttls is off, so the SMTP password would cross the network to "
                f"{self.host} in clear text: turn starttls on (only a loopback server may "
                "go without)")
        if not self.timeout_s > 0:
            raise ConfigError(f"smtp timeout must be positive, not {self.timeout_s!r}")

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.password,) if self.password else ()

    def where(self) -> str:
        return f"{self.host}:{self.port}"


def email_settings(config: EngineConfig,
                   env: Mapping[str, str] | None = None) -> EmailSettings | None:
    """The email channel ``config`` asks for (``[alerts.email]``, the password from
    ``BYOD_SMTP_PASSWORD`` in ``env``, the process environment by default); None when no
    ``smtp_host`` is configured. ``ConfigError`` for settings that cannot work."""

    email = config.alerts.email
    if not email.smtp_host:
        return None
    env = os.environ if env is None else env
    return EmailSettings(host=email.smtp_host, port=email.smtp_port,
                         sender=email.from_address, recipients=tuple(email.to_addresses),
                         username=email.username or None,
                         password=env.get(PASSWORD_ENV) or None, starttls=email.starttls,
                         timeout_s=email.timeout_s)


def _plural(n: int) -> dict[str, str]:
    one = n == 1
    return {"n": str(n), "s": "" if one else "s", "their": "its" if one else "their",
            "it": "it" if one else "they", "verb": "s" if one else ""}


def compose(settings: EmailSettings, payload: dict[str, Any]) -> EmailMessage:
    """The message for one alert body (``build_alert``'s payload plus ``alert_id``): the
    count and the affected user ids (with their state), nothing else from the payload."""

    event = str(payload.get("event", "alert"))
    deployments = [d for d in payload.get("deployments") or [] if isinstance(d, dict)]
    n = int(payload.get("count") or len(deployments))
    words = _plural(n)
    subject = "[byod] " + _SUBJECTS.get(event, "{n} deployment{s}: " + event).format(**words)
    lines = [_LEADS.get(event, "Event " + event + " for {n} deployment{s}.").format(**words),
             "", "Affected users:"]
    for d in deployments[:_MAX_LISTED]:
        state = str(d.get("state") or "")
        lines.append(f"  - {d.get('user_id')}" + (f" ({state})" if state else ""))
    if len(deployments) > _MAX_LISTED:
        lines.append(f"  ... and {len(deployments) - _MAX_LISTED} more")
    summary = payload.get("summary")
    if isinstance(summary, dict) and summary:
        lines += ["", "Fleet in this check: " + ", ".join(
            f"{k} {v}" for k, v in sorted(summary.items()))]
    alert_id = payload.get("alert_id")
    lines += ["", f"Detected at {payload.get('at', '')} (alert {alert_id}).",
              "See the operator dashboard, or run `byod status` and `byod health --all`."]
    secrets = list(settings.secrets)
    message = EmailMessage()
    message["Subject"] = redact(subject, secrets)
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.recipients)
    message["Date"] = formatdate(usegmt=True)
    if alert_id is not None:
        message["Message-ID"] = f"<byod-alert-{alert_id}@{settings.sender.split('@', 1)[1]}>"
    message["X-Byod-Event"] = event
    message.set_content(redact("\n".join(lines) + "\n", secrets))
    return message


@dataclass(frozen=True)
class _Try:
    delivered: bool = False
    error: str | None = None
    retry: bool = False


def _smtp_send(settings: EmailSettings, message: EmailMessage, timeout: float,
               ssl_context: ssl.SSLContext | None) -> None:
    with smtplib.SMTP(settings.host, settings.port, timeout=timeout) as smtp:
        smtp.ehlo()
        if settings.starttls:
            if not smtp.has_extn("starttls"):
                raise _NoStartTls()
            smtp.starttls(context=ssl_context or ssl.create_default_context())
            smtp.ehlo()
        if settings.username:
            smtp.login(settings.username, settings.password or "")
        smtp.send_message(message)


class _NoStartTls(Exception):
    pass


def _attempt(settings: EmailSettings, message: EmailMessage, timeout: float,
             ssl_context: ssl.SSLContext | None) -> _Try:
    """One SMTP session, classified: what went wrong (named, no secret) and whether
    another try in this round could help."""

    where = settings.where()
    try:
        _smtp_send(settings, message, timeout, ssl_context)
    except _NoStartTls:
        return _Try(error=f"the SMTP server {where} does not offer STARTTLS (smtp starttls "
                          "is on: the message was not sent in clear text)")
    except smtplib.SMTPAuthenticationError as exc:
        return _Try(error=f"the SMTP server {where} refused the login of "
                          f"{settings.username!r} (code {exc.smtp_code})")
    except smtplib.SMTPNotSupportedError:
        return _Try(error=f"the SMTP server {where} does not support login (AUTH); remove "
                          "the smtp username or use another server")
    except smtplib.SMTPRecipientsRefused as exc:
        return _Try(error=f"the SMTP server {where} refused the recipient(s) "
                          f"{', '.join(sorted(exc.recipients))}")
    except smtplib.SMTPResponseException as exc:
        temporary = 400 <= exc.smtp_code < 500
        return _Try(error=f"the SMTP server {where} answered {exc.smtp_code}"
                          + (" (temporary)" if temporary else ""), retry=temporary)
    except ssl.SSLError as exc:
        return _Try(error=f"STARTTLS with the SMTP server {where} failed "
                          f"({type(exc).__name__}: {exc.reason or 'handshake'})")
    except (smtplib.SMTPServerDisconnected, socket.timeout, TimeoutError) as exc:
        return _Try(error=f"the SMTP server {where} did not answer in time or hung up "
                          f"({type(exc).__name__})", retry=True)
    except (OSError, smtplib.SMTPException) as exc:
        return _Try(error=f"could not reach the SMTP server {where} ({type(exc).__name__})",
                    retry=True)
    return _Try(delivered=True)


async def send_email(settings: EmailSettings, payload: dict[str, Any], *, attempts: int = 2,
                     backoff_s: float = 0.5, budget_s: float | None = None,
                     ssl_context: ssl.SSLContext | None = None,
                     sleep: Callable[[float], Awaitable[None]] | None = None) -> AlertResult:
    """Send one alert as an email; a dropped connection or a 4xx answer is tried again
    (at most ``attempts`` tries, never past ``budget_s``). Delivered means the SMTP server
    accepted the message."""

    event = str(payload.get("event", ""))
    count = int(payload.get("count", 0) or 0)
    message = compose(settings, payload)
    deadline = time.monotonic() + budget_s if budget_s is not None else None
    policy = RetryPolicy(retries=max(1, attempts) - 1, backoff_base=backoff_s,
                         backoff_max=max(backoff_s, 5.0), max_wait=5.0, deadline=deadline)
    tried = 0
    last: _Try | None = None

    async def attempt() -> _Try:
        nonlocal tried, last
        remaining = policy.remaining()
        if remaining is not None and remaining <= DEADLINE_MARGIN_S:
            return _Try(error=(last and last.error) or "no time left in this run's budget")
        timeout = settings.timeout_s if remaining is None else max(
            0.1, min(settings.timeout_s, remaining))
        tried += 1
        last = await asyncio.to_thread(_attempt, settings, message, timeout, ssl_context)
        return last

    result = await policy.acall(attempt, retry_on=lambda t: t.retry, sleep=sleep)
    if result.delivered:
        return AlertResult(event, True, tried, None, count, channel="email")
    error = redact(result.error or "not delivered", list(settings.secrets))
    log.warning("alert email %s not delivered after %d attempt(s): %s", event, tried, error)
    return AlertResult(event, False, tried, error, count, channel="email")


async def deliver_pending_email(outbox: AlertStore, settings: EmailSettings, *, now: float,
                                budget_s: float | None = None,
                                backoff: tuple[float, float] = ALERT_BACKOFF_S,
                                ssl_context: ssl.SSLContext | None = None,
                                sleep: Callable[[float], Awaitable[None]] | None = None,
                                ) -> list[AlertResult]:
    """Send the stored email alerts in order, oldest first, within ``budget_s``, until the
    SMTP server accepts each (``engine.lifecycle.alerts.deliver_queue``)."""

    async def send(payload: dict[str, Any], remaining: float | None) -> AlertResult:
        return await send_email(settings, payload, budget_s=remaining,
                                ssl_context=ssl_context, sleep=sleep)

    return await deliver_queue(outbox, "email", send, now=now, budget_s=budget_s,
                               backoff=backoff)
