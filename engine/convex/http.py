"""The Convex HTTP function API (``/api/query|mutation|action``) over httpx, sync and async.

Both clients share one ``_HttpCore``: how a request is built, how a response or an httpx
exception becomes a value or a typed ``DeploymentError``, and when a failure may be
retried. Only the send differs between them; both run it under the engine's one
``RetryPolicy`` (``engine.convex.retry``).

Retry policy: a call is retried (at most ``retries`` times, exponential backoff with full
jitter) when it is idempotent (queries, version reads, pings) and failed on the network,
with a 5xx or with a 429, or for any kind when the connection failed before the request
was sent, or when the server answered 503 with a code that says the call never ran
(``NOT_EXECUTED_CODES``: the local deployments' ``CallInterrupted`` when a neighbouring runaway
function stopped the worker before this call committed). A ``Retry-After`` on a 429 or 503
answer sets the wait (capped at ``max_wait``).
Timeouts are never retried: the deployment already had the whole timeout to answer.

Connections: a client builds each request whole — its own absolute URL, its own
``Authorization`` header, its timeout — and hands it to an httpx transport (the connection
pool) directly, so any number of clients can share one pool (``shared=``;
``engine.convex.connector`` hands one pool to every client of a run) without one
deployment's key reaching another's request. Going past ``httpx.Client`` also means no
redirects are followed, no proxy is read from the environment, no cookie is kept (two
deployments on one loopback host differ only by port, which a cookie jar does not tell
apart), and none of the client's per-request merging of URLs, headers and cookies is paid
for (it cost more CPU than the rest of a call). Every pool is built by ``new_pool`` /
``new_async_pool``: one process-wide SSL context (building one costs ~25 ms of CPU and
tens of MiB) and bounded connections.

Nothing here logs headers, the URL or the key; every text taken from a response passes
through ``redact`` with the target's secrets.
"""

from __future__ import annotations

import functools
import json
import logging
import ssl
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Any, Callable

import httpx
from tenacity import RetryCallState

from engine.convex.pools import AsyncOriginPools, OriginPools
from engine.convex.retry import RetryPolicy, retry_after_of
from engine.convex.targets import base_url, check_target
from engine.convex.values import from_convex_json, to_convex_json
from engine.errors import (
    AdapterUnsupported,
    DeploymentError,
    DeploymentRequestRejected,
    DeploymentServerError,
    DeploymentTimeout,
    DeploymentUnauthorized,
    DeploymentUnreachable,
    FunctionError,
)
from engine.ports.bundle import Bundle
from engine.ports.deployment import (
    DeploymentTarget,
    DeployResult,
    FunctionKind,
    VersionInfo,
)
from engine.redact import REDACTED, redact

__all__ = ["AsyncConvexHttpClient", "ConvexHttpClient", "PING_FUNCTION",
           "VERSION_FUNCTION", "hide_request_urls", "new_async_pool", "new_pool",
           "shared_ssl_context"]

log = logging.getLogger(__name__)


class _HideRequestHosts(logging.Filter):
    """httpx logs every request with its full URL at INFO; deployment URLs count as
    secrets here (``DeploymentTarget.secrets``), so its records keep only the path of a
    Convex API call (``/api/...``). Any other URL is hidden whole: a webhook's path is
    often its token."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(_loggable(a) if isinstance(a, httpx.URL) else a
                                for a in record.args)
        return True


def _loggable(url: httpx.URL) -> str:
    return url.path if url.path.startswith("/api/") and not url.query else REDACTED


def hide_request_urls() -> None:
    """Install the filter on httpx's logger (idempotent); every module that sends
    requests with httpx calls it, so no request URL reaches a log."""

    if not any(isinstance(f, _HideRequestHosts) for f in logging.getLogger("httpx").filters):
        logging.getLogger("httpx").addFilter(_HideRequestHosts())


hide_request_urls()

VERSION_FUNCTION = "byod:version"
PING_FUNCTION = "byod:ping"
FUNCTION_FAILED_STATUS = 560  # the JS client's STATUS_CODE_UDF_FAILED
_KINDS: tuple[FunctionKind, ...] = ("query", "mutation", "action")
_MAX_TEXT = 500
_CLIENT_HEADER = "byod-engine"

_ssl_lock = threading.Lock()
_ssl_context: ssl.SSLContext | None = None


def shared_ssl_context() -> ssl.SSLContext:
    """The process's one verifying SSL context (certifi's roots, as httpx's default), built
    on first use: every pool shares it instead of loading the CA bundle again."""

    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            import certifi

            _ssl_context = ssl.create_default_context(cafile=certifi.where())
        return _ssl_context


_ACCEPT_ENCODING = "gzip, deflate, br"  # httpx decodes all three (brotli is a dependency)


@functools.lru_cache(maxsize=64)
def _timeouts(seconds: float) -> dict[str, float]:
    return httpx.Timeout(seconds).as_dict()  # type: ignore[return-value]


def new_pool() -> httpx.BaseTransport:
    """The connection pools of ``ConvexHttpClient``s: one small pool per deployment's origin,
    all with the shared SSL context (``engine.convex.pools``)."""

    return OriginPools(shared_ssl_context())


def new_async_pool() -> httpx.AsyncBaseTransport:
    """The asyncio twin of ``new_pool`` (bound to the event loop that first uses it)."""

    return AsyncOriginPools(shared_ssl_context())


@dataclass(frozen=True)
class _Outcome:
    """What one attempt produced: a value, or an error (and the httpx exception behind it)
    plus whether retrying is allowed for idempotent calls only (``retry_idempotent``) or
    for any call (``retry_any``), and the server's ``Retry-After`` in seconds."""

    value: Any = None
    error: DeploymentError | None = None
    retry_idempotent: bool = False
    retry_any: bool = False
    retry_after: float | None = None
    cause: BaseException | None = None

    def retryable(self, idempotent: bool) -> bool:
        return self.error is not None and (
            self.retry_any or (idempotent and self.retry_idempotent))


#: 503 codes with which a server promises the call wrote nothing, so even a mutation may be
#: sent again. (``CallInterruptedAfterCommit`` is the opposite promise and is never retried.)
NOT_EXECUTED_CODES = frozenset({"CallInterrupted"})


def _retry_after(outcome: _Outcome) -> float | None:
    return outcome.retry_after


class _HttpCore:
    """Request building, response decoding, error mapping and retry decisions: no I/O."""

    def __init__(self, target: DeploymentTarget, *, timeout: float, retries: int,
                 backoff_base: float, backoff_max: float, max_wait: float):
        check_target(target)
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.target = target
        self.timeout = float(timeout)
        self.policy = RetryPolicy(retries=retries, backoff_base=backoff_base,
                                  backoff_max=backoff_max, max_wait=max_wait)
        self._base = base_url(target)
        self._urls: dict[str, httpx.URL] = {}
        # this deployment's headers, sent with each of its requests (never set on a pool)
        self._headers = {"Authorization": f"Convex {target.admin_key}",
                         "Convex-Client": _CLIENT_HEADER,
                         "Content-Type": "application/json",
                         "Accept-Encoding": _ACCEPT_ENCODING}
        self._closed = False

    @property
    def retries(self) -> int:
        return self.policy.retries

    @property
    def label(self) -> str:
        return self.target.label

    def __repr__(self) -> str:
        return f"{type(self).__name__}(label={self.label!r})"

    def _url(self, endpoint: str) -> httpx.URL:
        """The absolute URL of ``endpoint`` on this deployment (parsed once per endpoint)."""

        url = self._urls.get(endpoint)
        if url is None:
            url = self._urls[endpoint] = httpx.URL(self._base + endpoint)
        return url

    def _build(self, endpoint: str, body: bytes, headers: dict[str, str] | None,
               timeout: float | None) -> httpx.Request:
        """One POST, complete: this deployment's URL, key and timeout on the request itself,
        so a pool shared with other deployments adds nothing of theirs."""

        if self._closed:
            raise RuntimeError(f"the HTTP client of {self.label} is closed")
        return httpx.Request(
            "POST", self._url(endpoint), content=body,
            headers={**self._headers, **headers} if headers else self._headers,
            extensions={"timeout": _timeouts(self.timeout if timeout is None else timeout)})

    @staticmethod
    def _request(kind: str, path: str, args: dict[str, Any] | None) -> tuple[str, bytes]:
        if kind not in _KINDS:
            raise ValueError(f"function kind must be one of {', '.join(_KINDS)}, not {kind!r}")
        if not path or not isinstance(path, str):
            raise ValueError("function path must be a non-empty string like 'module:function'")
        # Convex-encoded results keep int64 and bytes exact (plain "json" renders them as
        # strings), so documents survive export/import round trips unchanged.
        body = {"path": path, "args": to_convex_json(args or {}),
                "format": "convex_encoded_json"}
        return f"/api/{kind}", json.dumps(body, allow_nan=False).encode()

    def _clean(self, text: Any) -> str:
        text = redact(str(text), self.target.secrets)
        return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."

    def _clean_data(self, data: Any) -> Any:
        if isinstance(data, str):
            return redact(data, self.target.secrets)
        if isinstance(data, list):
            return [self._clean_data(item) for item in data]
        if isinstance(data, dict):
            return {key: self._clean_data(item) for key, item in data.items()}
        return data

    def _error_detail(self, response: httpx.Response) -> tuple[str, str]:
        """(code, message) from a request-level error body ``{"code", "message"}``."""
        try:
            payload = response.json()
        except ValueError:
            return "", self._clean(response.text.strip()) if response.text.strip() else ""
        if isinstance(payload, dict):
            return (self._clean(payload.get("code") or ""),
                    self._clean(payload.get("message") or payload.get("errorMessage") or ""))
        return "", ""

    def _interpret(self, response: httpx.Response, path: str) -> _Outcome:
        status = response.status_code
        label = self.label
        if status in (200, FUNCTION_FAILED_STATUS):
            try:
                payload = response.json()
            except ValueError:
                payload = None
            if isinstance(payload, dict) and payload.get("status") == "success":
                try:
                    return _Outcome(value=from_convex_json(payload.get("value")))
                except ValueError as exc:
                    return _Outcome(error=DeploymentServerError(
                        f"{path}: the result is not valid Convex JSON ({exc})", deployment=label))
            if isinstance(payload, dict) and payload.get("status") == "error":
                data = payload.get("errorData")
                try:
                    data = from_convex_json(data)
                except ValueError:
                    pass
                return _Outcome(error=FunctionError(
                    self._clean(payload.get("errorMessage") or "the function failed"),
                    deployment=label, function=path, data=self._clean_data(data)))
            return _Outcome(error=DeploymentServerError(
                f"{path}: answered HTTP {status} with a body that is not a Convex function "
                "response (is this a Convex deployment URL?)", deployment=label))
        return self._status_outcome(response, path)

    def _interpret_admin(self, response: httpx.Response, path: str) -> _Outcome:
        """An admin API answer (the push protocol): any JSON on 2xx, else the status."""
        status = response.status_code
        if 200 <= status < 300:
            try:
                return _Outcome(value=response.json() if response.content else {})
            except ValueError:
                return _Outcome(error=DeploymentServerError(
                    f"{path}: answered HTTP {status} with a body that is not JSON",
                    deployment=self.label))
        return self._status_outcome(response, path)

    def _status_outcome(self, response: httpx.Response, path: str) -> _Outcome:
        """A request-level failure (any status that is not an answer) as a typed error."""
        status = response.status_code
        label = self.label
        code, message = self._error_detail(response)
        detail = ": " + " ".join(p for p in (code, message) if p) if (code or message) else ""
        if status in (401, 403):
            return _Outcome(error=DeploymentUnauthorized(
                f"the deployment rejected the key (HTTP {status}{detail}); "
                "check that the key is current and belongs to this deployment",
                deployment=label))
        if status >= 500:
            return _Outcome(
                error=DeploymentServerError(f"{path}: server error HTTP {status}{detail}",
                                            deployment=label),
                retry_idempotent=True, retry_after=retry_after_of(response),
                retry_any=status == 503 and code in NOT_EXECUTED_CODES,
            )
        if status == 429:
            return _Outcome(
                error=DeploymentRequestRejected(f"{path}: rate limited (HTTP 429){detail}",
                                                deployment=label, status=status, code=code),
                retry_idempotent=True, retry_after=retry_after_of(response),
            )
        return _Outcome(error=DeploymentRequestRejected(
            f"{path}: the deployment refused the request (HTTP {status}{detail})",
            deployment=label, status=status, code=code))

    def _map_exception(self, exc: httpx.HTTPError, path: str,
                       timeout: float | None = None) -> _Outcome:
        """Translate an httpx failure; ``retry_any`` only when nothing reached the server."""
        label = self.label
        reason = self._clean(str(exc) or type(exc).__name__)
        if isinstance(exc, httpx.TimeoutException):
            waited = self.timeout if timeout is None else timeout
            return _Outcome(error=DeploymentTimeout(
                f"{path}: no answer within {waited:g} s ({type(exc).__name__})",
                deployment=label))
        if isinstance(exc, httpx.ConnectError):
            return _Outcome(error=DeploymentUnreachable(
                f"{path}: cannot connect ({reason})", deployment=label),
                retry_idempotent=True, retry_any=True)
        if isinstance(exc, (httpx.NetworkError, httpx.RemoteProtocolError)):
            return _Outcome(error=DeploymentUnreachable(
                f"{path}: the connection was dropped ({reason})", deployment=label),
                retry_idempotent=True)
        return _Outcome(error=DeploymentUnreachable(
            f"{path}: request failed ({type(exc).__name__}: {reason})", deployment=label))

    def _settled(self, kind: str, path: str, outcome: _Outcome, started: float) -> _Outcome:
        """One attempt's outcome, logged; both clients' attempts end here."""
        self._log_attempt(kind, path, outcome, started)
        return outcome

    def _caught(self, exc: httpx.HTTPError, path: str, timeout: float | None) -> _Outcome:
        return replace(self._map_exception(exc, path, timeout), cause=exc)

    @staticmethod
    def _result(outcome: _Outcome) -> Any:
        """The value of the last attempt, or its error raised."""
        if outcome.error is not None:
            raise outcome.error from outcome.cause
        return outcome.value

    def _retry_args(self, kind: str, path: str, idempotent: bool) -> dict[str, Any]:
        """What both clients hand the policy: which outcomes to retry, the server's wait,
        and the log line before each wait."""

        def before_sleep(state: RetryCallState) -> None:
            outcome = state.outcome.result() if state.outcome is not None else None
            if isinstance(outcome, _Outcome) and outcome.error is not None:
                delay = state.next_action.sleep if state.next_action is not None else 0.0
                self._log_retry(kind, path, outcome.error, state.attempt_number - 1, delay)

        return {"retry_on": lambda outcome: outcome.retryable(idempotent),
                "retry_after": _retry_after, "before_sleep": before_sleep}

    def _log_attempt(self, kind: str, path: str, outcome: _Outcome, started: float) -> None:
        if log.isEnabledFor(logging.DEBUG):
            result = "ok" if outcome.error is None else type(outcome.error).__name__
            log.debug("deployment %s: %s %s -> %s in %.1f ms", self.label, kind, path, result,
                      (time.monotonic() - started) * 1000)

    def _log_retry(self, kind: str, path: str, error: DeploymentError, attempt: int,
                   delay: float) -> None:
        log.warning("deployment %s: %s %s failed (%s); retry %d of %d in %.2f s",
                    self.label, kind, path, type(error).__name__, attempt + 1, self.retries,
                    delay)

    def _version(self, value: Any) -> VersionInfo:
        if not isinstance(value, dict) or not value.get("version"):
            raise DeploymentServerError(
                f"{VERSION_FUNCTION} answered something that is not a version record; "
                "was this deployment deployed by byod?", deployment=self.label)
        recorded = value.get("recorded")
        return VersionInfo(
            version=str(value["version"]),
            fingerprint=str(value.get("fingerprint") or ""),
            kind=str(value.get("kind") or ""),
            recorded=recorded if isinstance(recorded, dict) else None,
        )

    def deploy(self, bundle: Bundle) -> DeployResult:
        raise AdapterUnsupported(
            "the HTTP function API cannot deploy code; use the CLI adapter (kind='cli') "
            "or an archive for manual deployment", deployment=self.label)


class ConvexHttpClient(_HttpCore):
    """Synchronous client for one deployment; reuses connections (keep-alive). Use as a
    context manager or call ``close()``."""

    def __init__(self, target: DeploymentTarget, *, timeout: float = 30.0, retries: int = 2,
                 transport: httpx.BaseTransport | None = None, backoff_base: float = 0.2,
                 backoff_max: float = 5.0, max_wait: float = 30.0,
                 sleep: Callable[[float], None] | None = None,
                 shared: httpx.BaseTransport | None = None):
        """``shared``: a pool (``new_pool``, or any sync httpx transport) this client sends
        through and does not close; else ``transport`` or a new pool, closed with the
        client."""

        super().__init__(target, timeout=timeout, retries=retries,
                         backoff_base=backoff_base, backoff_max=backoff_max,
                         max_wait=max_wait)
        self._sleep = sleep
        self._owns_pool = shared is None
        self._pool: httpx.BaseTransport = (
            shared if shared is not None else transport if transport is not None
            else new_pool())

    def __enter__(self) -> "ConvexHttpClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._owns_pool:
                self._pool.close()

    def _call(self, kind: FunctionKind, path: str, args: dict[str, Any] | None, *,
              idempotent: bool) -> Any:
        endpoint, body = self._request(kind, path, args)
        return self._send(kind, endpoint, body, path, self._interpret, idempotent=idempotent)

    def _send(self, kind: str, endpoint: str, body: bytes, path: str,
              interpret: Callable[[httpx.Response, str], _Outcome], *, idempotent: bool,
              headers: dict[str, str] | None = None, timeout: float | None = None) -> Any:
        request = self._build(endpoint, body, headers, timeout)

        def attempt() -> _Outcome:
            started = time.monotonic()
            try:
                response = self._pool.handle_request(request)
                try:
                    response.read()
                finally:
                    response.close()
            except httpx.HTTPError as exc:
                return self._settled(kind, path, self._caught(exc, path, timeout), started)
            return self._settled(kind, path, interpret(response, path), started)

        return self._result(self.policy.call(
            attempt, sleep=self._sleep, **self._retry_args(kind, path, idempotent)))

    def admin_call(self, endpoint: str, body: bytes, *, headers: dict[str, str] | None = None,
                   timeout: float | None = None, idempotent: bool = False) -> Any:
        """POST an admin API request (e.g. the push protocol's ``/api/deploy2/...``) and
        return its decoded JSON; failures map to the same typed errors as functions."""
        return self._send("admin", endpoint, body, endpoint, self._interpret_admin,
                          idempotent=idempotent, headers=headers, timeout=timeout)

    def run(self, kind: FunctionKind, path: str, args: dict[str, Any] | None = None) -> Any:
        return self._call(kind, path, args, idempotent=kind == "query")

    def query(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.run("query", path, args)

    def mutation(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.run("mutation", path, args)

    def action(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return self.run("action", path, args)

    def read_version(self) -> VersionInfo:
        return self._version(self.query(VERSION_FUNCTION))

    def ping(self) -> float:
        """Round-trip seconds of an authenticated call. A function error still proves the
        deployment is reachable and accepts the key (it may have nothing deployed yet)."""
        started = time.monotonic()
        try:
            self.query(PING_FUNCTION)
        except FunctionError:
            pass
        return time.monotonic() - started


class AsyncConvexHttpClient(_HttpCore):
    """The asyncio twin of ``ConvexHttpClient`` (same behaviour, awaitable methods)."""

    def __init__(self, target: DeploymentTarget, *, timeout: float = 30.0, retries: int = 2,
                 transport: httpx.AsyncBaseTransport | None = None, backoff_base: float = 0.2,
                 backoff_max: float = 5.0, max_wait: float = 30.0,
                 sleep: Callable[[float], Awaitable[None]] | None = None,
                 shared: httpx.AsyncBaseTransport | None = None,
                 release: Callable[[], Awaitable[None]] | None = None):
        """``shared``: a pool (``new_async_pool``, or any async httpx transport) this
        client sends through and does not close; ``release`` is awaited once when this
        client closes (the owner of the pool counts its users). Else ``transport`` or a new
        pool, closed with the client."""

        super().__init__(target, timeout=timeout, retries=retries,
                         backoff_base=backoff_base, backoff_max=backoff_max,
                         max_wait=max_wait)
        self._sleep = sleep
        self._owns_pool = shared is None
        self._release = release
        self._pool: httpx.AsyncBaseTransport = (
            shared if shared is not None else transport if transport is not None
            else new_async_pool())

    async def __aenter__(self) -> "AsyncConvexHttpClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_pool:
            await self._pool.aclose()
        elif self._release is not None:
            await self._release()

    async def _call(self, kind: FunctionKind, path: str, args: dict[str, Any] | None, *,
                    idempotent: bool) -> Any:
        endpoint, body = self._request(kind, path, args)
        return await self._send(kind, endpoint, body, path, self._interpret,
                                idempotent=idempotent)

    async def admin_call(self, endpoint: str, body: bytes, *,
                         headers: dict[str, str] | None = None, timeout: float | None = None,
                         idempotent: bool = False) -> Any:
        """The awaitable twin of ``ConvexHttpClient.admin_call``."""
        return await self._send("admin", endpoint, body, endpoint, self._interpret_admin,
                                idempotent=idempotent, headers=headers, timeout=timeout)

    async def _send(self, kind: str, endpoint: str, body: bytes, path: str,
                    interpret: Callable[[httpx.Response, str], _Outcome], *, idempotent: bool,
                    headers: dict[str, str] | None = None,
                    timeout: float | None = None) -> Any:
        request = self._build(endpoint, body, headers, timeout)

        async def attempt() -> _Outcome:
            started = time.monotonic()
            try:
                response = await self._pool.handle_async_request(request)
                try:
                    await response.aread()
                finally:
                    await response.aclose()
            except httpx.HTTPError as exc:
                return self._settled(kind, path, self._caught(exc, path, timeout), started)
            return self._settled(kind, path, interpret(response, path), started)

        return self._result(await self.policy.acall(
            attempt, sleep=self._sleep, **self._retry_args(kind, path, idempotent)))

    async def run(self, kind: FunctionKind, path: str,
                  args: dict[str, Any] | None = None) -> Any:
        return await self._call(kind, path, args, idempotent=kind == "query")

    async def query(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return await self.run("query", path, args)

    async def mutation(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return await self.run("mutation", path, args)

    async def action(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return await self.run("action", path, args)

    async def read_version(self) -> VersionInfo:
        return self._version(await self.query(VERSION_FUNCTION))

    async def ping(self) -> float:
        started = time.monotonic()
        try:
            await self.query(PING_FUNCTION)
        except FunctionError:
            pass
        return time.monotonic() - started
