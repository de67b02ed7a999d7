"""Deploying by replaying a captured push request over HTTP (no CLI per deployment).

The Convex CLI's push is five HTTP calls: ``get_config_hashes`` → ``start_push`` →
``wait_for_schema`` → ``finish_push`` → ``report_push_completed``. Here the completion
report is off the critical path (beside the next steps, or when the adapter settles),
and the ``start_push`` body is compressed once per bundle: the deployment's key goes at
its end, after the captured request's once-compressed stream. Building the
``start_push`` request (bundling) costs seconds of CPU; the rest costs the deployment
milliseconds. ``capture.capture_push`` builds the request once per bundle with the real
CLI; the adapters here send it to each deployment with that deployment's key, poll the
schema check, and finish the push, exactly as the CLI does. Every module is sent, so
``get_config_hashes`` is not needed.

Failures use the HTTP client's error mapping (auth, server, network, timeout, refused
request); a schema that existing documents violate becomes ``SchemaValidationFailed``
through the CLI adapter's classifier, naming the table and the first failing document.
The key travels only in headers and bodies; no message or log carries it or the URL.

``PushDeployAdapter`` is synchronous (``byod`` commands, tests); ``AsyncPushDeployAdapter``
is its asyncio twin for rollouts, where many deployments are pushed concurrently over one
event loop and the CPU is spent only on captures.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Generator, Mapping, Union
from urllib.parse import urlsplit

import brotli

from engine.convex.capture import PayloadCache, PushPayload, capture_push
from engine.convex.delegate import AsyncHttpFunctions, HttpFunctions
from engine.convex.deploy_cli import classify_cli_failure
from engine.convex.http import AsyncConvexHttpClient, ConvexHttpClient
from engine.convex.targets import base_url, check_target, is_loopback_host
from engine.errors import (
    DeployFailed,
    DeploymentError,
    DeploymentRequestRejected,
    DeploymentServerError,
    DeploymentTimeout,
    SchemaValidationFailed,
)
from engine.ports.bundle import Bundle
from engine.ports.deployment import DeploymentTarget, DeployResult
from engine.redact import redact

__all__ = ["AsyncPushDeployAdapter", "PayloadCache", "Payloads", "PushDeployAdapter",
           "PushPayload", "capture_push"]

log = logging.getLogger(__name__)

Payloads = Union[PayloadCache, Mapping[str, PushPayload]]

START_PUSH = "/api/deploy2/start_push"
WAIT_FOR_SCHEMA = "/api/deploy2/wait_for_schema"
FINISH_PUSH = "/api/deploy2/finish_push"
REPORT_PUSH_COMPLETED = "/api/deploy2/report_push_completed"
SCHEMA_POLL_MS = 10_000  # the CLI's long-poll window
_BROTLI_QUALITY = 4  # what the CLI uses: fast, and the modules compress well


@dataclass(frozen=True)
class _Call:
    """One admin API request of the push protocol (``ConvexHttpClient.admin_call``)."""

    endpoint: str
    body: bytes
    headers: dict[str, str] | None = None
    idempotent: bool = False
    timeout: float | None = None


class _PushCore:
    """The protocol without I/O: request bodies, answer checks, failures as errors."""

    cpu_bound = False  # the runner need not hold a CPU slot for a push

    def __init__(self, target: DeploymentTarget, *, timeout: float,
                 compress: bool | None) -> None:
        check_target(target)
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.target = target
        self.timeout = float(timeout)
        host = urlsplit(base_url(target)).hostname or ""
        # brotli over the network (as the CLI does); loopback is faster uncompressed
        self.compress = (not is_loopback_host(host)) if compress is None else compress

    @property
    def label(self) -> str:
        return self.target.label

    def __repr__(self) -> str:
        return f"{type(self).__name__}(label={self.label!r})"

    def _encode(self, data: bytes, payload: PushPayload) -> tuple[bytes, dict[str, str]]:
        # the backend reads a push in the format of the CLI version that built it
        headers = {"Content-Type": "application/json",
                   "Convex-Client": f"npm-cli-{payload.convex_version}"}
        if self.compress:
            data = brotli.compress(data, mode=brotli.MODE_TEXT, quality=_BROTLI_QUALITY)
            headers["Content-Encoding"] = "br"
        return data, headers

    def start_request(self, payload: PushPayload) -> tuple[bytes, dict[str, str]]:
        """The captured request with this deployment's key; compressed, it is the
        payload's own stream compressed once per bundle plus the key (``compressed_for``)."""

        headers = {"Content-Type": "application/json",
                   "Convex-Client": f"npm-cli-{payload.convex_version}"}
        if not self.compress:
            return payload.body_for(self.target.admin_key), headers
        headers["Content-Encoding"] = "br"
        return payload.compressed_for(self.target.admin_key, quality=_BROTLI_QUALITY), headers

    def wait_request(self, start: dict[str, Any], remaining_s: float) -> tuple[bytes, float]:
        """The long-poll body and the HTTP timeout that covers it."""

        window_ms = max(100, min(SCHEMA_POLL_MS, int(remaining_s * 1000) - 500))
        body = json.dumps({"adminKey": self.target.admin_key,
                           "schemaChange": start["schemaChange"], "timeoutMs": window_ms,
                           "dryRun": False}).encode()
        return body, window_ms / 1000 + 30.0

    def finish_request(self, start: dict[str, Any],
                       payload: PushPayload) -> tuple[bytes, dict[str, str]]:
        body = json.dumps({"adminKey": self.target.admin_key, "startPush": start,
                           "dryRun": False,
                           "message": f"byod {payload.version_id} {payload.fingerprint}"})
        return self._encode(body.encode(), payload)

    def report_request(self) -> bytes:
        return json.dumps({"adminKey": self.target.admin_key, "spans": []}).encode()

    def payload_for(self, payloads: Payloads, bundle: Bundle) -> PushPayload | None:
        """The captured payload, or None when a cache must capture it first."""

        if isinstance(payloads, PayloadCache):
            return payloads.peek(bundle)
        found = payloads.get(bundle.fingerprint)
        if found is None:
            raise DeployFailed(
                f"no captured push request for {bundle.version_id} "
                f"({bundle.fingerprint[:12]}); capture it before deploying",
                deployment=self.label)
        return found

    def check_payload(self, payload: PushPayload, bundle: Bundle) -> None:
        if (payload.fingerprint, payload.version_id, payload.kind) != (
                bundle.fingerprint, bundle.version_id, str(bundle.kind)):
            raise DeployFailed(
                f"the captured push request is for {payload.version_id} "
                f"({payload.fingerprint[:12]}), not {bundle.version_id} "
                f"({bundle.fingerprint[:12]})", deployment=self.label)

    def check_start(self, start: Any) -> dict[str, Any]:
        if not isinstance(start, dict) or not isinstance(start.get("schemaChange"), dict):
            raise DeploymentServerError("start_push answered without a schemaChange",
                                        deployment=self.label)
        return start

    def schema_done(self, status: Any) -> bool:
        """True when the schema check is complete, False to poll again; raises otherwise."""

        kind = status.get("type") if isinstance(status, dict) else None
        if kind == "complete":
            return True
        if kind == "inProgress":
            return False
        if kind == "failed":
            raise self.schema_failed(str(status.get("error") or ""),
                                     str(status.get("tableName") or ""))
        if kind == "raceDetected":
            raise DeployFailed("the schema was overwritten by another push to this deployment "
                               "while this one ran; deploy again", deployment=self.label)
        raise DeploymentServerError("wait_for_schema answered an unknown status",
                                    deployment=self.label)

    def schema_failed(self, error: str, table: str) -> DeploymentError:
        text = redact(error, (*self.target.secrets, base_url(self.target)))
        failure = classify_cli_failure(f"Schema validation failed.\n{text}", None,
                                       label=self.label)
        if isinstance(failure, SchemaValidationFailed) and table and not failure.table:
            failure.table = table
        return failure

    def translate(self, exc: DeploymentError) -> DeploymentError:
        """A refused push whose reason is the schema (finish_push re-validates)."""

        if isinstance(exc, DeploymentRequestRejected) and exc.code == "SchemaValidationFailed":
            return self.schema_failed(str(exc), "")
        return exc

    def steps(self, payload: PushPayload, deadline: float) -> Generator[_Call | None, Any, None]:
        """The push after capture, as the admin calls to make: each answer is sent back
        in; ``None`` marks the end. Both adapters drive this one sequence."""

        body, headers = self.start_request(payload)
        start = self.check_start((yield _Call(START_PUSH, body, headers,
                                              timeout=self.remaining(deadline))))
        while True:
            body, window = self.wait_request(start, self.remaining(deadline))
            status = yield _Call(WAIT_FOR_SCHEMA, body, idempotent=True,
                                 timeout=min(window, self.remaining(deadline)))
            if self.schema_done(status):
                break
        body, headers = self.finish_request(start, payload)
        yield _Call(FINISH_PUSH, body, headers, timeout=self.remaining(deadline))
        yield None

    def failed(self, exc: DeploymentError, payload: PushPayload) -> DeploymentError:
        """The error to raise for a failed push step, logged once."""

        error = self.translate(exc)
        log.warning("deployment %s: push of %s failed (%s)", self.label,
                    payload.version_id, type(error).__name__)
        return error

    def remaining(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeploymentTimeout(f"the push did not finish within {self.timeout:g} s",
                                    deployment=self.label)
        return left

    def result(self, payload: PushPayload, started: float) -> DeployResult:
        duration = time.monotonic() - started
        log.info("deployment %s: pushed version %s (%d modules) in %.2f s", self.label,
                 payload.version_id, payload.modules, duration)
        return DeployResult(label=self.label, version_id=payload.version_id,
                            fingerprint=payload.fingerprint, duration_s=duration,
                            output=f"pushed {payload.modules} modules of {payload.version_id}")


class PushDeployAdapter(_PushCore, HttpFunctions):
    """A ``DeployAdapter`` that deploys captured push requests; functions over HTTP.

    ``payloads`` is a ``PayloadCache`` (captures on a miss) or a mapping of bundle
    fingerprint → ``PushPayload`` (a miss is an error). ``timeout`` bounds a whole push."""

    def __init__(self, target: DeploymentTarget, *, payloads: Payloads,
                 http_client: ConvexHttpClient | None = None, timeout: float = 300.0,
                 http_timeout: float = 30.0, compress: bool | None = None):
        super().__init__(target, timeout=timeout, compress=compress)
        self.payloads = payloads
        self._reports = 0
        self._attach_http(http_client, target, min(http_timeout, timeout))

    def deploy(self, bundle: Bundle) -> DeployResult:
        """Push ``bundle``'s captured request; raise a typed ``DeploymentError``."""

        payload = self.payload_for(self.payloads, bundle)
        if payload is None:
            assert isinstance(self.payloads, PayloadCache)
            payload = self.payloads.get(bundle)
        self.check_payload(payload, bundle)
        started = time.monotonic()
        steps = self.steps(payload, started + self.timeout)
        try:
            call = next(steps)
            while call is not None:
                call = steps.send(self.http.admin_call(
                    call.endpoint, call.body, headers=call.headers,
                    idempotent=call.idempotent, timeout=call.timeout))
        except DeploymentError as exc:
            raise self.failed(exc, payload) from None
        self._reports += 1  # sent after the work, by ``settle_reports`` / ``close``
        return self.result(payload, started)

    def settle_reports(self) -> None:
        """Send the completion reports of the pushes so far (fire and forget, as the CLI
        does): off the critical path, once the deployment's work is done."""

        while self._reports:
            self._reports -= 1
            try:
                self.http.admin_call(REPORT_PUSH_COMPLETED, self.report_request(),
                                     timeout=5.0)
            except (DeploymentError, RuntimeError):
                pass

    def close(self) -> None:
        self.settle_reports()
        super().close()


class AsyncPushDeployAdapter(_PushCore, AsyncHttpFunctions):
    """The asyncio twin of ``PushDeployAdapter`` (awaitable deploy and functions)."""

    def __init__(self, target: DeploymentTarget, *, payloads: Payloads,
                 http_client: AsyncConvexHttpClient | None = None, timeout: float = 300.0,
                 http_timeout: float = 30.0, compress: bool | None = None):
        super().__init__(target, timeout=timeout, compress=compress)
        self.payloads = payloads
        self._reports: set[asyncio.Task[None]] = set()
        self._attach_http(http_client, target, min(http_timeout, timeout))

    async def deploy(self, bundle: Bundle) -> DeployResult:
        payload = self.payload_for(self.payloads, bundle)
        if payload is None:  # a capture is CPU work: off the event loop
            assert isinstance(self.payloads, PayloadCache)
            payload = await asyncio.to_thread(self.payloads.get, bundle)
        self.check_payload(payload, bundle)
        started = time.monotonic()
        steps = self.steps(payload, started + self.timeout)
        try:
            call = next(steps)
            while call is not None:
                call = steps.send(await self.http.admin_call(
                    call.endpoint, call.body, headers=call.headers,
                    idempotent=call.idempotent, timeout=call.timeout))
        except DeploymentError as exc:
            raise self.failed(exc, payload) from None
        # the completion report runs beside the next steps, never awaited between them
        task = asyncio.create_task(self._report())
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)
        return self.result(payload, started)

    async def _report(self) -> None:
        try:
            await self.http.admin_call(REPORT_PUSH_COMPLETED, self.report_request(),
                                       timeout=5.0)
        except (DeploymentError, RuntimeError):
            pass  # fire and forget, as the CLI does (RuntimeError: the client closed)

    async def settle_reports(self) -> None:
        """Wait for the completion reports still on their way (each bounded by its own
        timeout); the runner calls it once the deployment's work is done."""

        if self._reports:
            await asyncio.gather(*list(self._reports), return_exceptions=True)

    async def aclose(self) -> None:
        await self.settle_reports()
        await super().aclose()
