"""In-memory deployments behind the HTTP protocol the engine speaks to a Convex deployment.

``ConvexMockTransport`` is an httpx transport (sync and async) that answers what
``engine.convex.http`` and ``engine.convex.push`` send to a deployment, from the
``InMemoryDeployment`` its URL names: function calls (``/api/query``, ``/api/mutation``,
``/api/action``; Convex-encoded JSON in and out, a failing function as HTTP 560) and the
push protocol (``get_config_hashes``, ``deploy2/start_push``, ``wait_for_schema``,
``finish_push``, ``report_push_completed``). Every request must carry the deployment's own
key (``Authorization`` and, in a push body, ``adminKey``) or is refused with 401. A push
takes effect at ``finish_push``: the bundle named by its message (``byod <version>
<fingerprint>``, as the engine writes it) is deployed with ``InMemoryDeployment.deploy``,
so a schema the documents violate is refused as ``SchemaValidationFailed``.

Hand it to ``HttpConnector(config, kind="push", transport=..., payload_cache=...)`` to run
the real engine — HTTP clients, retries, push adapters — with no network and no Node.js:
``InstantPayloads`` makes each bundle's push request from the bundle itself instead of
capturing it with the Convex CLI, and tells the transport which bundle a fingerprint is.
The deployments' faults (``fault``, ``delay``) become what a real deployment would answer:
refused connections, timeouts, 401, 503.

The transport counts every request by endpoint, by function and by deployment, and the
CPU time spent answering (``handler_cpu_s``), so a benchmark can subtract the
deployments' share from the process's.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import brotli
import httpx

from engine.convex.capture import PayloadCache, PushPayload
from engine.convex.values import from_convex_json, to_convex_json
from engine.errors import (
    DeploymentError,
    DeploymentServerError,
    DeploymentTimeout,
    DeploymentUnauthorized,
    DeploymentUnreachable,
    FunctionError,
    SchemaValidationFailed,
)
from engine.ports.bundle import Bundle
from engine.testing.deployment import DEFAULT_CONVEX_VERSION, InMemoryDeployment
from engine.testing.faults import check_fault

__all__ = ["FUNCTION_ENDPOINTS", "ConvexMockTransport", "InstantPayloads"]

FUNCTION_ENDPOINTS = {"/api/query": "query", "/api/mutation": "mutation",
                      "/api/action": "action"}
FUNCTION_FAILED = 560  # what a deployment answers for a function that threw
_FIXED: dict[str, Any] = {
    "/api/get_config_hashes": {"config": {"functions": "convex/", "authInfo": []},
                               "moduleHashes": [], "nodeDependencies": [],
                               "udfServerVersion": None},
    "/api/deploy2/wait_for_schema": {"type": "complete"},
    "/api/deploy2/report_push_completed": {},
}
_FINISH_ANSWER: dict[str, Any] = {"authDiff": {"added": [], "removed": []}, "definitionDiffs": {},
                  "componentDiffs": {}}


class InstantPayloads(PayloadCache):
    """Push payloads built from each bundle's own files, without the Convex CLI: the
    request has the shape of a captured one (every ``convex/`` file as a module), so the
    engine sends realistic bytes. ``bundle(fingerprint)`` is what the transport deploys."""

    def __init__(self, convex_version: str = DEFAULT_CONVEX_VERSION) -> None:
        super().__init__(None)
        self._convex_version = self._version = convex_version
        self._bundles: dict[str, Bundle] = {}

    def bundle(self, fingerprint: str) -> Bundle | None:
        with self._lock:
            return self._bundles.get(fingerprint)

    def peek(self, bundle: Bundle) -> PushPayload | None:
        return self.get(bundle)

    def get(self, bundle: Bundle) -> PushPayload:
        with self._lock:
            found = self._memory.get(bundle.fingerprint)
            if found is not None:
                return found
        modules = [{"path": path.removeprefix("convex/"), "source": text,
                    "environment": "isolate"}
                   for path, text in sorted(bundle.files.items())
                   if path.startswith("convex/") and path.endswith((".ts", ".js"))]
        payload = PushPayload(
            version_id=bundle.version_id, kind=str(bundle.kind),
            fingerprint=bundle.fingerprint, convex_version=self._version,
            request={"appDefinition": {"changedModules": modules, "definition": None,
                                       "udfServerVersion": self._convex_version},
                     "componentDefinitions": [], "nodeDependencies": [], "dryRun": False},
            captured_at=time.time())
        with self._lock:
            self._bundles[bundle.fingerprint] = bundle
            return self._memory.setdefault(bundle.fingerprint, payload)


class _Refused(Exception):
    """An answer other than 200, raised from deep inside a handler."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ConvexMockTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Answers the engine's requests from in-memory deployments (module docstring).

    ``deployments``: base URL (``https://name.convex.cloud``) → deployment, e.g. an
    ``InMemoryFleet``'s ``deployments`` (read at each request, so deployments added later
    are reached); ``bundles``: fingerprint → ``Bundle`` for pushes (e.g.
    ``InstantPayloads.bundle``)."""

    def __init__(self, deployments: Mapping[str, InMemoryDeployment], *,
                 bundles: Callable[[str], Bundle | None] | None = None) -> None:
        self.deployments = deployments
        self.bundles = bundles
        self.by_endpoint: Counter[str] = Counter()
        self.by_function: Counter[str] = Counter()
        self.by_deployment: Counter[str] = Counter()
        self.handler_cpu_s = 0.0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    # -- what was asked -----------------------------------------------------------------
    @property
    def requests(self) -> int:
        return sum(self.by_endpoint.values())

    def reset(self) -> None:
        with self._lock:
            self.by_endpoint.clear()
            self.by_function.clear()
            self.by_deployment.clear()
            self.handler_cpu_s = 0.0

    # -- httpx ------------------------------------------------------------------------------
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        dep = self._deployment(request)
        if dep is not None and dep.delay:
            time.sleep(dep.delay)
        return self._answer(request, dep)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        dep = self._deployment(request)
        if dep is not None and dep.delay:
            await asyncio.sleep(dep.delay)
        return self._answer(request, dep)

    def _deployment(self, request: httpx.Request) -> InMemoryDeployment | None:
        url = request.url
        return self.deployments.get(f"{url.scheme}://{url.netloc.decode('ascii')}")

    def _answer(self, request: httpx.Request, dep: InMemoryDeployment | None) -> httpx.Response:
        started = time.process_time()
        endpoint = request.url.path
        try:
            with self._lock:
                self.by_endpoint[endpoint] += 1
                if dep is not None:
                    self.by_deployment[dep.name] += 1
            if dep is None:
                raise httpx.ConnectError("connection refused", request=request)
            try:
                return self._json(200, self._route(request, dep, endpoint))
            except _Refused as refused:
                return self._json(refused.status, {"code": refused.code,
                                                   "message": refused.message})
            except FunctionError as exc:
                data = None if exc.data is None else to_convex_json(exc.data)
                return self._json(FUNCTION_FAILED, {
                    "status": "error", "errorMessage": _bare(exc), "errorData": data,
                    "logLines": []})
            except DeploymentError as exc:
                return self._fault(exc, request)
        finally:
            elapsed = time.process_time() - started
            with self._lock:
                self.handler_cpu_s += elapsed

    @staticmethod
    def _json(status: int, body: Any) -> httpx.Response:
        return httpx.Response(status, content=json.dumps(body).encode(),
                              headers={"content-type": "application/json"})

    def _fault(self, exc: DeploymentError, request: httpx.Request) -> httpx.Response:
        if isinstance(exc, DeploymentUnreachable):
            raise httpx.ConnectError("connection refused", request=request)
        if isinstance(exc, DeploymentTimeout):
            raise httpx.ReadTimeout("timed out", request=request)
        if isinstance(exc, DeploymentUnauthorized):
            return self._json(401, {"code": "BadAdminKey", "message": "the key was rejected"})
        if isinstance(exc, SchemaValidationFailed):
            return self._json(400, {"code": "SchemaValidationFailed", "message": _bare(exc)})
        if isinstance(exc, DeploymentServerError):
            return self._json(503, {"code": "ServiceUnavailable", "message": _bare(exc)})
        return self._json(500, {"code": "InternalServerError", "message": _bare(exc)})

    # -- the protocol -------------------------------------------------------------------------
    def _route(self, request: httpx.Request, dep: InMemoryDeployment, endpoint: str) -> Any:
        if request.headers.get("authorization") != f"Convex {dep.key}":
            raise _Refused(401, "BadAdminKey", "the admin key is not this deployment's")
        body = _body(request)
        kind = FUNCTION_ENDPOINTS.get(endpoint)
        if kind is not None:
            return self._function(dep, kind, body)
        if not isinstance(body, dict) or body.get("adminKey", dep.key) != dep.key:
            raise _Refused(401, "BadAdminKey", "the admin key is not this deployment's")
        check_fault(dep.fault, endpoint, dep.name)
        if endpoint in _FIXED:
            return _FIXED[endpoint]
        if endpoint == "/api/deploy2/start_push":
            return {"environmentVariables": {}, "externalDepsId": None, "appAuth": [],
                    "componentDefinitionPackages": {}, "analysis": {}, "app": {},
                    "schemaChange": {"allocatedComponentIds": {},
                                     "schemaIds": {"": f"schema{next(self._ids)}"},
                                     "indexDiffs": {}}}
        if endpoint == "/api/deploy2/finish_push":
            self._deploy(dep, body)
            return _FINISH_ANSWER
        raise _Refused(404, "UnknownRoute", endpoint)

    def _function(self, dep: InMemoryDeployment, kind: str, body: Any) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("path"), str):
            raise _Refused(400, "BadRequest", "a function call needs a path")
        path = body["path"]
        with self._lock:
            self.by_function[path] += 1
        args = from_convex_json(body.get("args") or {})
        value = dep.run(kind, path, args)
        return {"status": "success", "value": to_convex_json(value), "logLines": []}

    def _deploy(self, dep: InMemoryDeployment, body: dict[str, Any]) -> None:
        parts = str(body.get("message") or "").split()
        fingerprint = parts[2] if len(parts) == 3 and parts[0] == "byod" else ""
        bundle = self.bundles(fingerprint) if self.bundles and fingerprint else None
        if bundle is None:
            raise _Refused(400, "UnknownBundle",
                           "finish_push names no bundle this transport knows")
        dep.deploy(bundle)


def _body(request: httpx.Request) -> Any:
    raw = request.content
    encoding = request.headers.get("content-encoding", "").lower()
    try:
        if encoding == "br":
            raw = brotli.decompress(raw)
        elif encoding == "gzip":
            raw = gzip.decompress(raw)
        return json.loads(raw) if raw else {}
    except (ValueError, brotli.error, OSError):
        raise _Refused(400, "BadRequestBody", "the body is not JSON") from None


def _bare(exc: DeploymentError) -> str:
    """The message without the ``deployment X: `` prefix the engine adds again."""

    text = str(exc)
    text = text.removeprefix(f"deployment {exc.deployment}: " if exc.deployment else "")
    function = getattr(exc, "function", "")
    return text.removeprefix(f"{function}: ") if function else text
