"""In-memory deployments behind the real HTTP adapters: an ``httpx.MockTransport`` that
answers the Convex function API (``/api/query|mutation``) and the push protocol
(``/api/deploy2/*``) from ``engine.testing`` deployments, and counts every request, so a
test can count the round trips one deployment's rollout makes through the engine's own
push adapter and HTTP client."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import brotli
import httpx

from engine.bundle.compiler import Bundle
from engine.convex.capture import PushPayload
from engine.convex.values import from_convex_json, to_convex_json
from engine.errors import ByodError
from engine.testing.deployment import InMemoryDeployment


def payload_of(bundle: Bundle, convex_version: str = "1.48.0") -> PushPayload:
    """A stand-in captured request that names the bundle it deploys."""

    return PushPayload(version_id=bundle.version_id, kind=str(bundle.kind),
                       fingerprint=bundle.fingerprint, convex_version=convex_version,
                       request={"appDefinition": {"changedModules": [{"path": "byod.js"}]},
                                "byodFingerprint": bundle.fingerprint})


@dataclass
class HttpWorld:
    """Deployments by URL host, the bundles a push may name, and the requests seen."""

    deployments: dict[str, InMemoryDeployment] = field(default_factory=dict)
    bundles: dict[str, Bundle] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (host, path or endpoint)

    def add(self, dep: InMemoryDeployment) -> None:
        self.deployments[httpx.URL(dep.url).host] = dep

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def count(self, dep: InMemoryDeployment) -> Counter[str]:
        host = httpx.URL(dep.url).host
        return Counter(path for h, path in self.requests if h == host)

    def handle(self, request: httpx.Request) -> httpx.Response:
        dep = self.deployments[request.url.host]
        raw = request.content
        encoding = request.headers.get("Content-Encoding", "")
        if encoding == "br":
            raw = brotli.decompress(raw)
        elif encoding == "gzip":
            raw = gzip.decompress(raw)
        body = json.loads(raw) if raw else {}
        endpoint = request.url.path
        if endpoint in ("/api/query", "/api/mutation"):
            self.requests.append((request.url.host, body["path"]))
            try:
                value = dep.run(endpoint.rsplit("/", 1)[1], body["path"],
                                from_convex_json(body.get("args") or {}))
            except ByodError as exc:
                return httpx.Response(200, json={"status": "error", "errorMessage": str(exc)})
            return httpx.Response(200, json={"status": "success",
                                             "value": to_convex_json(value), "logLines": []})
        self.requests.append((request.url.host, endpoint))
        if body.get("adminKey") != dep.key:
            return httpx.Response(401, json={"code": "BadAdminKey", "message": "bad key"})
        if endpoint == "/api/deploy2/start_push":
            if body.get("byodFingerprint") not in self.bundles:
                return httpx.Response(400, json={"code": "Unknown", "message": "bundle"})
            return httpx.Response(200, json={"schemaChange": {
                "bundle": body["byodFingerprint"]}})
        if endpoint == "/api/deploy2/wait_for_schema":
            return httpx.Response(200, json={"type": "complete"})
        if endpoint == "/api/deploy2/finish_push":
            dep.deploy(self.bundles[body["startPush"]["schemaChange"]["bundle"]])
            return httpx.Response(200, json={})
        if endpoint == "/api/deploy2/report_push_completed":
            return httpx.Response(200, json={})
        return httpx.Response(404, json={"code": "UnknownRoute", "message": endpoint})


def answer(value: Any) -> dict[str, Any]:
    return {"status": "success", "value": value}
