"""The service over an in-memory fleet, for the page and dashboard tests: a registry, the
shipped versions, ``create_app`` without background threads (a test runs a queued job with
``run_jobs``), and helpers to sign a user or an operator in and to read a page's CSRF token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr

from engine.commands.service import create_token
from engine.commands.workspace import Workspace
from engine.config import EngineConfig
from engine.serve.app import create_app
from engine.serve.auth import mint_user_token
from engine.serve.settings import ServeSettings
from engine.testing.fleet import InMemoryFleet

ROOT = Path(__file__).resolve().parents[2]
SECRET = "pages-test-signing-secret-" + "x" * 24
_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


@dataclass
class Served:
    fleet: InMemoryFleet
    ws: Workspace
    settings: ServeSettings
    app: Any
    pages: list[str] = field(default_factory=list)  # every HTML body seen, for secret scans

    @property
    def service(self) -> Any:
        return self.app.state.service

    def client(self) -> TestClient:
        return TestClient(self.app, follow_redirects=False,
                          headers={"accept": "text/html,application/xhtml+xml"})

    def login(self, user_id: str) -> TestClient:
        c = self.client()
        r = c.get("/ui/login", params={"token": mint_user_token(self.settings, user_id)})
        assert r.status_code == 303 and r.headers["location"] == "/ui/settings", r.text
        return c

    def admin(self) -> TestClient:
        _, token = create_token(self.ws, "ops", "admin")
        c = self.client()
        r = c.post("/admin/login", data={"token": token})
        assert r.status_code == 303, r.text
        return c

    def get(self, c: TestClient, url: str, **kw: Any) -> Any:
        r = c.get(url, **kw)
        if "text/html" in r.headers.get("content-type", ""):
            self.pages.append(r.text)
        return r

    def post(self, c: TestClient, url: str, **kw: Any) -> Any:
        r = c.post(url, **kw)
        self.pages.append(r.text)
        return r

    def run_jobs(self) -> int:
        """Run every queued job here, to its end; how many ran."""

        n = 0
        while self.service.worker.run_one():
            n += 1
        return n


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def serve(tmp: Path, *, config: dict[str, Any] | None = None, **settings: Any) -> Served:
    fleet = InMemoryFleet(tmp / "fleet", versions=ROOT / "schema_versions")
    config = EngineConfig(registry_path=fleet.store.path, versions_dir=ROOT / "schema_versions",
                          **(config or {}))
    fleet.config = config
    ws = Workspace.open(config, store=fleet.store, vault=fleet.vault, connector=fleet)
    s = ServeSettings(secret=SecretStr(SECRET), **settings)
    app = create_app(ws, s, background=False, main_client=fleet.main)
    return Served(fleet=fleet, ws=ws, settings=s, app=app)
