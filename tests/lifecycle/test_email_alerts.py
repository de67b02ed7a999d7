"""Alerts by email, against a real SMTP server on loopback (aiosmtpd): delivered with the
unhealthy count and the user ids and no secret; kept while the server is down and
delivered later exactly once each, in order; a webhook that is down never holds the email
back; STARTTLS and login work, and wrong settings fail with errors that name the setting."""

from __future__ import annotations

import datetime
import email
import ipaddress
import json
import socket
import ssl
import threading
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ops_fakes import ADMIN_KEY_SECRET, Fleet

from engine.config import AlertsConfig, EmailConfig, EngineConfig
from engine.errors import ConfigError
from engine.lifecycle.email_alerts import EmailSettings, email_settings
from engine.lifecycle.health import check

from .health.test_health import FP1, GRAPH
from .health.webhook import Receiver

PASSWORD = "smtp-pass-5e8c1a7f3b"
USER = "alerts@example.com"


class Clock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class Inbox:
    """What the SMTP server accepted (messages in order) and who logged in."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.raw: list[str] = []
        self.logins: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        text = envelope.content.decode("utf-8", "replace")
        with self.lock:
            self.raw.append(text)
            self.messages.append(email.message_from_string(text))
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode()
              and auth_data.password == PASSWORD.encode())
        if ok:
            self.logins.append(USER)
        return AuthResult(success=ok, handled=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Smtp:
    """An aiosmtpd server that can be stopped and started again on the same port."""

    def __init__(self, inbox: Inbox, **kwargs: Any):
        self.inbox, self.kwargs, self.port = inbox, kwargs, _free_port()
        self.controller: Controller | None = None

    def start(self) -> Smtp:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port,
                                     ready_timeout=10, **self.kwargs)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def smtp(inbox: Inbox):  # type: ignore[no-untyped-def]
    server = Smtp(inbox).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1: the server's context and a client context
    that trusts exactly it."""

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


def settings(port: int = 2525, **kw: Any) -> EmailSettings:
    values: dict[str, Any] = dict(host="127.0.0.1", port=port, sender="byod@example.com",
                                  recipients=("ops@example.com",), starttls=False,
                                  timeout_s=2.0)
    values.update(kw)
    return EmailSettings(**values)


def run(fleet: Fleet, clock: Clock, mail: EmailSettings | None, config: EngineConfig | None = None,
        **kw: Any):  # type: ignore[no-untyped-def]
    return check("all", store=fleet.store, vault=fleet.vault, config=config or EngineConfig(),
                 graph=GRAPH, connector=fleet, timeout=0.5, budget_s=3.0, clock=clock,
                 email=mail, **kw)


def _secrets_absent(text: str) -> None:
    for secret in (ADMIN_KEY_SECRET, PASSWORD, "webhook-secret-token", "fake.convex"):
        assert secret not in text


def test_an_unhealthy_deployment_is_emailed_with_the_count_and_user_ids_only(
        tmp_path: Path, inbox: Inbox, smtp: Smtp) -> None:
    fleet = Fleet(tmp_path)
    fleet.add("u1", version="v1", fingerprint=FP1).fault = "down"
    fleet.add("u2", version="v1", fingerprint=FP1).fault = "revoked"
    fleet.add("u3", version="v1", fingerprint=FP1)
    report = run(fleet, Clock(), settings(smtp.port))
    assert [(a.channel, a.event, a.delivered) for a in report.alerts] == [
        ("email", "unhealthy", True)]
    assert len(inbox.messages) == 1
    message = inbox.messages[0]
    assert message["Subject"] == "[byod] 2 deployments unhealthy"
    assert message["To"] == "ops@example.com" and message["From"] == "byod@example.com"
    assert message["Message-ID"] == f"<byod-alert-{report.alerts[0].alert_id}@example.com>"
    body = message.get_payload(decode=True).decode()
    assert "2 deployments became unhealthy" in body
    assert "  - u1 (unreachable)" in body and "  - u2 (unauthorized)" in body
    assert "u3" not in body
    _secrets_absent(inbox.raw[0])
    for dep in fleet.deployments.values():  # no deployment URL either
        assert dep.url not in inbox.raw[0]
    assert fleet.store.pending_alerts() == []


def test_the_server_down_then_up_delivers_each_alert_later_exactly_once_in_order(
        tmp_path: Path, inbox: Inbox, smtp: Smtp) -> None:
    fleet = Fleet(tmp_path)
    dep = fleet.add("u1", version="v1", fingerprint=FP1)
    mail, clock = settings(smtp.port), Clock()
    smtp.stop()
    dep.fault = "down"
    first = run(fleet, clock, mail)
    assert [(a.channel, a.delivered) for a in first.alerts] == [("email", False)]
    assert "could not reach the SMTP server 127.0.0.1:" in (first.alerts[0].error or "")
    dep.fault = None
    clock.t += 10  # still backing off: the recovery is stored behind the outage
    second = run(fleet, clock, mail)
    assert [t["event"] for t in second.transitions] == ["recovered"]
    assert second.alerts == []
    queued = fleet.store.pending_alerts(channel="email")
    assert [a.event for a in queued] == ["unhealthy", "recovered"]
    assert fleet.store.pending_alerts(channel="webhook") == []  # no webhook configured

    smtp.start()
    clock.t += 3600
    third = run(fleet, clock, mail)
    assert [(a.event, a.delivered) for a in third.alerts] == [("unhealthy", True),
                                                              ("recovered", True)]
    assert [m["X-Byod-Event"] for m in inbox.messages] == ["unhealthy", "recovered"]
    for _ in range(3):
        clock.t += 3600
        assert run(fleet, clock, mail).alerts == []
    assert len(inbox.messages) == 2  # exactly once each
    ids = [m["Message-ID"] for m in inbox.messages]
    assert len(set(ids)) == 2


def test_a_webhook_that_is_down_never_holds_the_email_back(
        tmp_path: Path, inbox: Inbox, smtp: Smtp) -> None:
    fleet = Fleet(tmp_path)
    fleet.add("u1", version="v1", fingerprint=FP1).fault = "down"
    clock = Clock()
    with Receiver(fail_first=10_000) as hook:
        config = EngineConfig(webhook_url=hook.url)
        report = run(fleet, clock, settings(smtp.port), config=config)
        by_channel = {a.channel: a.delivered for a in report.alerts}
        assert by_channel == {"webhook": False, "email": True}
        assert [a.channel for a in fleet.store.pending_alerts()] == ["webhook"]
        hook.fail_first = 0
        clock.t += 3600
        later = run(fleet, clock, settings(smtp.port), config=config)
    assert [(a.channel, a.delivered) for a in later.alerts] == [("webhook", True)]
    assert len(inbox.messages) == 1 and len(hook.bodies) == 1
    assert hook.bodies[0]["alert_id"] != int(inbox.messages[0]["Message-ID"].split("-")[2]
                                             .split("@")[0])  # one row per channel
    _secrets_absent(json.dumps(later.to_dict()) + inbox.raw[0])


def test_starttls_and_login_deliver_and_a_wrong_password_is_named_without_the_password(
        tmp_path: Path, inbox: Inbox,
        tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_tls, client_tls = tls
    server = Smtp(inbox, tls_context=server_tls, require_starttls=True,
                  authenticator=inbox.authenticate, auth_required=True,
                  auth_require_tls=True).start()
    try:
        fleet = Fleet(tmp_path)
        fleet.add("u1", version="v1", fingerprint=FP1).fault = "down"
        clock = Clock()
        wrong = settings(server.port, starttls=True, username=USER,
                         password="not-the-password-0000")
        first = run(fleet, clock, wrong, email_tls=client_tls)
        error = first.alerts[0].error or ""
        assert not first.alerts[0].delivered
        assert f"refused the login of {USER!r} (code 535)" in error
        assert "not-the-password-0000" not in error + json.dumps(first.to_dict())
        good = settings(server.port, starttls=True, username=USER, password=PASSWORD)
        clock.t += 3600
        second = run(fleet, clock, good, email_tls=client_tls)
        assert [a.delivered for a in second.alerts] == [True]
        assert inbox.logins == [USER] and len(inbox.messages) == 1
        _secrets_absent(inbox.raw[0])

        # the system trust store does not know the self-signed certificate: named failure
        fleet.add("u2", version="v1", fingerprint=FP1).fault = "down"
        clock.t += 60
        third = run(fleet, clock, good)
        assert not third.alerts[0].delivered
        assert "STARTTLS with the SMTP server 127.0.0.1:" in (third.alerts[0].error or "")
    finally:
        server.stop()


def test_starttls_required_by_the_settings_but_not_offered_is_refused(
        tmp_path: Path, inbox: Inbox, smtp: Smtp) -> None:
    fleet = Fleet(tmp_path)
    fleet.add("u1", version="v1", fingerprint=FP1).fault = "down"
    report = run(fleet, Clock(), settings(smtp.port, starttls=True))
    assert not report.alerts[0].delivered
    assert "does not offer STARTTLS" in (report.alerts[0].error or "")
    assert inbox.messages == []


@pytest.mark.parametrize("kwargs, message", [
    ({"username": USER}, "smtp username 'alerts@example.com' is set but the password is "
                         "missing: set BYOD_SMTP_PASSWORD"),
    ({"password": PASSWORD}, "BYOD_SMTP_PASSWORD is set but no smtp username"),
    ({"host": "smtp.example.com", "username": USER, "password": PASSWORD},
     "smtp starttls is off, so the SMTP password would cross the network to "
     "smtp.example.com in clear text"),
    ({"sender": "nobody"}, "smtp from address 'nobody' is not an email address"),
    ({"recipients": ()}, "smtp to: no recipient address"),
    ({"recipients": ("ops@example.com", "x y")}, "smtp to address 'x y' is not an email"),
    ({"port": 0}, "smtp port must be a number from 1 to 65535, not 0"),
    ({"host": "https://smtp.example.com"}, "smtp host 'https://smtp.example.com' is not a"),
])
def test_settings_that_cannot_work_fail_with_errors_naming_the_setting(
        kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(**kwargs)
    assert message in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_the_settings_come_from_the_config_and_the_password_from_the_environment() -> None:
    config = EngineConfig(alerts=AlertsConfig(email=EmailConfig(
        smtp_host="smtp.example.com", username=USER, from_address="byod@example.com",
        to_addresses=("ops@example.com",))))
    mail = email_settings(config, {"BYOD_SMTP_PASSWORD": PASSWORD})
    assert mail is not None and mail.port == 587 and mail.starttls
    assert mail.password == PASSWORD and PASSWORD not in repr(mail)
    with pytest.raises(ConfigError, match="set BYOD_SMTP_PASSWORD"):
        email_settings(config, {})
    assert email_settings(EngineConfig(), {}) is None


def test_a_bad_email_setting_fails_the_check_before_any_status_moves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BYOD_SMTP_PASSWORD", raising=False)
    fleet = Fleet(tmp_path)
    fleet.add("u1", version="v1", fingerprint=FP1).fault = "down"
    config = EngineConfig(alerts=AlertsConfig(email=EmailConfig(
        smtp_host="smtp.example.com", username=USER, to_addresses=("ops@example.com",))))
    with pytest.raises(ConfigError, match="set BYOD_SMTP_PASSWORD"):
        run(fleet, Clock(), None, config=config)
    assert fleet.store.get_user("u1").connection_status == "connected"  # nothing lost
    assert fleet.store.pending_alerts() == []
