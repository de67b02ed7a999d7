"""The shared pool over real loopback sockets: each deployment's connection is kept alive
and reused across its calls, each server sees only its own key, and httpcore's lock
set-up no longer fails an ``import sniffio`` per request (the dependency is installed)."""

from __future__ import annotations

import asyncio
import importlib.abc
import json
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from engine.config import EngineConfig
from engine.convex.connector import HttpConnector
from engine.ports.deployment import DeploymentTarget

KEYS = ("convex-self-hosted|aa11bb22cc33dd44ee55ff66aa77bb88cc99dd00ee11ff22aa33bb44cc55dd66",
        "convex-self-hosted|0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0")


class Deployment:
    """A loopback server answering every function call, recording keys and connections."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.connections = 0
        self.auth: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                owner.connections += 1
                super().setup()

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.auth.append(self.headers.get("Authorization") or "")
                body = json.dumps({"status": "success", "value": "ok"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def target(self) -> DeploymentTarget:
        return DeploymentTarget(label=f"dep-{self.httpd.server_address[1]}",
                                url=f"http://127.0.0.1:{self.httpd.server_address[1]}",
                                admin_key=self.key, allow_insecure_local=True)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def deployments() -> Iterator[list[Deployment]]:
    deps = [Deployment(k) for k in KEYS]
    yield deps
    for d in deps:
        d.close()


class Searches(importlib.abc.MetaPathFinder):
    """Counts the import system's searches for a module: an imported module is found in
    ``sys.modules`` without one, so a search after the first is an import that failed."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        self.counts[name] += 1
        return None


def _run(connector: HttpConnector, deps: list[Deployment], calls: int) -> None:
    async def one(dep: Deployment) -> None:
        client = connector.async_client(dep.target)
        try:
            for _ in range(calls):
                assert await client.query("m:f") == "ok"
        finally:
            await client.aclose()

    async def both() -> None:
        await asyncio.gather(*(one(d) for d in deps))

    asyncio.run(both())


def test_one_kept_alive_connection_per_deployment_and_only_its_key(
        deployments: list[Deployment]) -> None:
    connector = HttpConnector(EngineConfig(http_timeout_s=10))
    _run(connector, deployments, calls=5)
    for dep in deployments:
        assert dep.auth == [f"Convex {dep.key}"] * 5
        assert dep.connections == 1, "calls to one deployment did not reuse its connection"


def test_no_failed_sniffio_import_per_request(deployments: list[Deployment]) -> None:
    connector = HttpConnector(EngineConfig(http_timeout_s=10))
    _run(connector, deployments, calls=1)  # warm: whatever imports once has imported
    assert "sniffio" in sys.modules, "sniffio is not installed (see pyproject dependencies)"
    searches = Searches()
    sys.meta_path.insert(0, searches)
    try:
        _run(connector, deployments, calls=10)
    finally:
        sys.meta_path.remove(searches)
    assert searches.counts["sniffio"] == 0
