"""Deploying by replaying a captured push request over HTTP (no CLI per deployment).

The Convex CLI's push is five HTTP calls: ``get_config_hashes`` → ``start_push`` →
``wait_for_schema`` → ``finish_push`` → ``report_push_completed``. Building the
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
from typing import Any, Mapping, Union
from urllib.parse import urlsplit

import brotli  # type: ignore[import-untyped]

from ..errors import (
    DeployFailed,
    DeploymentError,
    DeploymentRequestRejected,
    DeploymentServerError,
    DeploymentTimeout,
    SchemaValidationFailed,
)
from ..redact import redact
from .adapter import DeploymentTarget, DeployResult, FunctionKind, VersionInfo
from .capture import PayloadCache, PushPayload, capture_push
from .cli import classify_cli_failure
from .http import AsyncConvexHttpClient, ConvexHttpClient
from .targets import base_url, check_target, is_loopback_host

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
        return self._encode(payload.body_for(self.target.admin_key), payload)

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

    def payload_for(self, payloads: Payloads, bundle: Any) -> PushPayload | None:
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

    def check_payload(self, payload: PushPayload, bundle: Any) -> None:
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


class PushDeployAdapter(_PushCore):
    """A ``DeployAdapter`` that deploys captured push requests; functions over HTTP.

    ``payloads`` is a ``PayloadCache`` (captures on a miss) or a mapping of bundle
    fingerprint → ``PushPayload`` (a miss is an error). ``timeout`` bounds a whole push."""

    def __init__(self, target: DeploymentTarget, *, payloads: Payloads,
                 http_client: ConvexHttpClient | None = None, timeout: float = 300.0,
                 http_timeout: float = 30.0, compress: bool | None = None):
        super().__init__(target, timeout=timeout, compress=compress)
        self.payloads = payloads
        self._owns_http = http_client is None
        self.http = http_client or ConvexHttpClient(target, timeout=min(http_timeout, timeout))

    def __enter__(self) -> "PushDeployAdapter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def run(self, kind: FunctionKind, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.http.run(kind, path, args)

    def query(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.http.query(path, args)

    def mutation(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.http.mutation(path, args)

    def action(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.http.action(path, args)

    def read_version(self) -> VersionInfo:
        return self.http.read_version()

    def ping(self) -> float:
        return self.http.ping()

    def deploy(self, bundle: Any) -> DeployResult:
        """Push ``bundle``'s captured request; raise a typed ``DeploymentError``."""

        payload = self.payload_for(self.payloads, bundle)
        if payload is None:
            assert isinstance(self.payloads, PayloadCache)
            payload = self.payloads.get(bundle)
        self.check_payload(payload, bundle)
        started = time.monotonic()
        deadline = started + self.timeout
        try:
            body, headers = self.start_request(payload)
            start = self.check_start(self.http.admin_call(
                START_PUSH, body, headers=headers, timeout=self.remaining(deadline)))
            while True:
                body, window = self.wait_request(start, self.remaining(deadline))
                status = self.http.admin_call(WAIT_FOR_SCHEMA, body, idempotent=True,
                                              timeout=min(window, self.remaining(deadline)))
                if self.schema_done(status):
                    break
            body, headers = self.finish_request(start, payload)
            self.http.admin_call(FINISH_PUSH, body, headers=headers,
                                 timeout=self.remaining(deadline))
        except DeploymentError as exc:
            error = self.translate(exc)
            log.warning("deployment %s: push of %s failed (%s)", self.label,
                        payload.version_id, type(error).__name__)
            raise error from None
        try:
            self.http.admin_call(REPORT_PUSH_COMPLETED, self.report_request(), timeout=5.0)
        except DeploymentError:
            pass  # fire and forget, as the CLI does
        return self.result(payload, started)


class AsyncPushDeployAdapter(_PushCore):
    """The asyncio twin of ``PushDeployAdapter`` (awaitable deploy and functions)."""

    def __init__(self, target: DeploymentTarget, *, payloads: Payloads,
                 http_client: AsyncConvexHttpClient | None = None, timeout: float = 300.0,
                 http_timeout: float = 30.0, compress: bool | None = None):
        super().__init__(target, timeout=timeout, compress=compress)
        self.payloads = payloads
        self._owns_http = http_client is None
        self.http = http_client or AsyncConvexHttpClient(
            target, timeout=min(http_timeout, timeout))

    async def __aenter__(self) -> "AsyncPushDeployAdapter":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    async def run(self, kind: FunctionKind, path: str,
                  args: dict[str, Any] | None = None) -> Any:
        return await self.http.run(kind, path, args)

    async def query(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return await self.http.query(path, args)

    async def mutation(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return await self.http.mutation(path, args)

    async def action(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return await self.http.action(path, args)

    async def read_version(self) -> VersionInfo:
        return await self.http.read_version()

    async def ping(self) -> float:
        return await self.http.ping()

    async def deploy(self, bundle: Any) -> DeployResult:
        payload = self.payload_for(self.payloads, bundle)
        if payload is None:  # a capture is CPU work: off the event loop
            assert isinstance(self.payloads, PayloadCache)
            payload = await asyncio.to_thread(self.payloads.get, bundle)
        self.check_payload(payload, bundle)
        started = time.monotonic()
        deadline = started + self.timeout
        try:
            body, headers = self.start_request(payload)
            start = self.check_start(await self.http.admin_call(
                START_PUSH, body, headers=headers, timeout=self.remaining(deadline)))
            while True:
                body, window = self.wait_request(start, self.remaining(deadline))
                status = await self.http.admin_call(
                    WAIT_FOR_SCHEMA, body, idempotent=True,
                    timeout=min(window, self.remaining(deadline)))
                if self.schema_done(status):
                    break
            body, headers = self.finish_request(start, payload)
            await self.http.admin_call(FINISH_PUSH, body, headers=headers,
                                       timeout=self.remaining(deadline))
        except DeploymentError as exc:
            error = self.translate(exc)
            log.warning("deployment %s: push of %s failed (%s)", self.label,
                        payload.version_id, type(error).__name__)
            raise error from None
        try:
            await self.http.admin_call(REPORT_PUSH_COMPLETED, self.report_request(),
                                       timeout=5.0)
        except DeploymentError:
            pass
        return self.result(payload, started)
