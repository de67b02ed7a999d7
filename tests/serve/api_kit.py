"""The ``/v1`` API over an in-memory fleet: a registry, the shipped versions and example
app functions, a main deployment carrying the main bundle, ``create_app`` without
background threads (``Api.run_jobs`` runs queued jobs here), tokens of each scope, and a
log of every response body for the secret scans."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from engine.commands.service import create_token
from engine.commands.workspace import Workspace
from engine.config import EngineConfig
from engine.serve.app import create_app
from engine.serve.auth import mint_user_token
from engine.serve.settings import ServeSettings
from engine.testing.deployment import InMemoryDeployment
from engine.testing.fleet import InMemoryFleet

ROOT = Path(__file__).resolve().parents[2]
SECRET = "api-test-signing-secret-" + "y" * 24


@dataclass
class Api:
    fleet: InMemoryFleet
    ws: Workspace
    settings: ServeSettings
    app: Any
    client: TestClient
    tokens: dict[str, str]  # scope set name -> token
    bodies: list[str] = field(default_factory=list)

    @property
    def service(self) -> Any:
        return self.app.state.service

    def auth(self, who: str = "settings") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def user_auth(self, user_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_user_token(self.settings, user_id)}"}

    def call(self, method: str, url: str, who: str | None = "all", **kw: Any) -> Any:
        headers = dict(kw.pop("headers", {}))
        if who is not None:
            headers.update(self.auth(who))
        response = self.client.request(method, url, headers=headers, **kw)
        self.bodies.append(response.text)
        return response

    def run_jobs(self) -> int:
        n = 0
        while self.service.worker.run_one():
            n += 1
        return n

    def job(self, job_id: str) -> dict[str, Any]:
        return self.call("GET", f"/v1/jobs/{job_id}").json()

    def finish(self, response: Any) -> dict[str, Any]:
        """Run the job a 202 response queued; the finished job."""

        assert response.status_code == 202, response.text
        self.run_jobs()
        return self.job(response.json()["job_id"])

    def deployment(self, name: str) -> InMemoryDeployment:
        """A fresh deployment nobody uses yet, with the example app's notes functions."""

        dep = self.fleet.add_deployment(name)
        give_notes(dep)
        return dep


def give_notes(dep: InMemoryDeployment) -> None:
    """Stand-ins for the example app's ``notes:*`` functions on an in-memory deployment."""

    def list_for_user(userId: str, includeArchived: bool | None = None) -> list[Any]:
        return [d for d in dep.tables.get("notes", {}).values() if d.get("userId") == userId]

    def create(userId: str, title: str, body: str) -> str:
        now = time.time() * 1000
        return dep._insert("notes", {"userId": userId, "title": title, "body": body,
                                     "createdAt": now, "updatedAt": now}, validate=False)

    dep._fn_notes_listForUser = list_for_user  # type: ignore[attr-defined]
    dep._fn_notes_create = create  # type: ignore[attr-defined]


def make_api(tmp_path: Path, **overrides: Any) -> Api:
    config = EngineConfig(registry_path=tmp_path / "registry.sqlite3",
                          versions_dir=ROOT / "schema_versions",
                          functions_dir=ROOT / "functions")
    fleet = InMemoryFleet(tmp_path / "fleet", versions=config.versions_dir, config=config)
    fleet.deploy_main()
    give_notes(fleet.main)
    ws = Workspace.open(config, store=fleet.store, vault=fleet.vault, connector=fleet)
    settings = ServeSettings.from_config(config, {}, secret=SecretStr(SECRET), **overrides)
    app = create_app(ws, settings, background=False, main_client=fleet.client(fleet.main_target))
    tokens = {}
    for name, scopes in (("all", "settings,data,admin"), ("settings", "settings"),
                         ("data", "data"), ("admin", "admin")):
        tokens[name] = create_token(ws, name, scopes)[1]
    return Api(fleet, ws, settings, app, TestClient(app), tokens)


@pytest.fixture(name="api")
def api_fixture(tmp_path: Path) -> Any:
    served = make_api(tmp_path)
    with served.client:
        yield served
    served.fleet.close()
