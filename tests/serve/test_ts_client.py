"""The TypeScript client (``clients/ts``) against the real service on loopback: its
generated types match the service's current OpenAPI (a change of the API that was not
regenerated fails here), it type-checks with ``tsc``, and a node script using it drives
the service over HTTP — status, access, a credential test refused with a typed error, a
connect job waited for, blocker, notice, the data plane (a routed call and a typed
refusal), a page token — over an in-memory fleet, with background jobs and the monitor
running."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pydantic import SecretStr

from engine.commands.service import create_token
from engine.commands.workspace import Workspace
from engine.config import EngineConfig
from engine.serve.app import create_app
from engine.serve.settings import ServeSettings
from engine.testing.fleet import InMemoryFleet

from .api_kit import give_notes

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "ts"
SECRET = "ts-client-test-signing-secret-" + "z" * 24

pytestmark = pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                                reason="node and npm are needed for the TypeScript client")


def _npm(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["npm", *args], cwd=CLIENT, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """The client's pinned dev dependencies (``npm ci`` from its lockfile, once)."""

    marker = CLIENT / "node_modules" / "openapi-typescript" / "package.json"
    if not marker.is_file():
        done = _npm("ci", "--prefer-offline", "--no-audit", "--no-fund")
        assert done.returncode == 0, done.stderr[-2000:]
    return CLIENT / "node_modules"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Compiled:
    tsc: subprocess.CompletedProcess[str]
    build: Path  # dist/ and package.json


class Running:
    def __init__(self, fleet: InMemoryFleet, ws: Workspace, app: Any, url: str):
        self.fleet, self.ws, self.app, self.url = fleet, ws, app, url


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """``create_app`` with its job worker and monitor, served by uvicorn on 127.0.0.1."""

    tmp = tmp_path_factory.mktemp("ts-service")
    config = EngineConfig(registry_path=tmp / "registry.sqlite3",
                          versions_dir=ROOT / "schema_versions", functions_dir=ROOT / "functions")
    fleet = InMemoryFleet(tmp / "fleet", versions=config.versions_dir, config=config)
    fleet.deploy_main()
    give_notes(fleet.main)
    ws = Workspace.open(config, store=fleet.store, vault=fleet.vault, connector=fleet)
    settings = ServeSettings.from_config(config, {}, secret=SecretStr(SECRET))
    app = create_app(ws, settings, background=True, main_client=fleet.client(fleet.main_target))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on",
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)
    try:
        yield Running(fleet, ws, app, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        fleet.close()


def test_the_generated_types_match_the_current_openapi(node_modules: Path) -> None:
    done = subprocess.run(["node", "generate.mjs", "--check"], cwd=CLIENT, capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**os.environ, "BYOD_PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-500:]


@pytest.fixture(scope="module")
def compiled(node_modules: Path, tmp_path_factory: pytest.TempPathFactory) -> Compiled:
    """The client compiled once with its own tsconfig (strict), into a temp directory."""

    build = tmp_path_factory.mktemp("ts-client")
    done = subprocess.run([str(node_modules / ".bin" / "tsc"), "--outDir", str(build / "dist")],
                          cwd=CLIENT, capture_output=True, text=True, timeout=180, check=False)
    (build / "package.json").write_text('{"type": "module"}')
    return Compiled(done, build)


def test_the_client_type_checks(compiled: Compiled) -> None:
    done = compiled.tsc
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
    assert (compiled.build / "dist" / "index.js").is_file()


SCRIPT = textwrap.dedent("""
    import { ByodClient, ByodApiError } from "./dist/index.js";

    const env = process.env;
    const client = new ByodClient({ baseUrl: env.BYOD_URL, token: env.BYOD_TOKEN,
                                    timeoutMs: 20000 });
    const out = {};
    const refused = async (what, call) => {
      try {
        await call();
        out[what] = { thrown: false };
      } catch (error) {
        out[what] = { thrown: true, typed: error instanceof ByodApiError, ...error.toJSON?.(),
                      retryAfter: error.retryAfter ?? null };
      }
    };
    out.before = await client.status("ts-user");
    out.access = await client.access("ts-user");
    await refused("badUrl", () => client.testCredentials("ftp://nope.example", "key"));
    out.test = await client.testCredentials(env.DEP_URL, env.DEP_KEY, "ts-user");
    const job = await client.connect("ts-user", env.DEP_URL, env.DEP_KEY);
    out.queued = job;
    const stages = [];
    out.finished = await client.waitForJob(job.job_id, {
      timeoutMs: 60000, intervalMs: 100, onProgress: (j) => stages.push(j.state) });
    out.stages = stages;
    out.after = await client.status("ts-user");
    out.blocker = await client.blocker("ts-user");
    out.notice = await client.notice("ts-user");
    out.created = await client.run("ts-user", "mutation", "notes:create",
                                   { userId: "ts-user", title: "hello", body: "from ts" });
    out.notes = await client.run("ts-user", "query", "notes:listForUser", { userId: "ts-user" });
    await refused("unknownFunction",
                  () => client.run("ts-user", "query", "notes:nope", {}));
    await refused("unknownUser", () => client.blocker("bad user id\\n"));
    out.pageToken = await client.pageToken("ts-user");
    out.retryBlocked = await client.retryBlocked("ts-user");
    const update = await client.updateCredentials("ts-user", env.DEP_URL, env.DEP_KEY);
    out.updated = await client.waitForJob(update.job_id, { timeoutMs: 60000, intervalMs: 100 });
    const leave = await client.disconnect("ts-user", "keep");
    out.disconnected = await client.waitForJob(leave.job_id, { timeoutMs: 60000,
                                                                intervalMs: 100 });
    out.final = await client.status("ts-user");
    await refused("retryAfterDisconnect", () => client.retry("ts-user"));
    await refused("deleteUnconfirmed", () => client.disconnect("ts-user", "delete"));
    const wrong = new ByodClient({ baseUrl: env.BYOD_URL, token: "byod_wrong-token" });
    await refused("wrongToken", () => wrong.status("ts-user"));
    const closed = new ByodClient({ baseUrl: "http://127.0.0.1:9", token: "t" });
    await refused("network", () => closed.status("ts-user"));
    console.log(JSON.stringify(out));
""")


def test_a_node_script_drives_the_running_service_through_the_client(
        compiled: Compiled, service: Running) -> None:
    assert compiled.tsc.returncode == 0, compiled.tsc.stdout[-3000:]
    build = compiled.build
    (build / "drive.mjs").write_text(SCRIPT)
    dep = service.fleet.add_deployment("ts-user-own")
    give_notes(dep)
    _, token = create_token(service.ws, "ts-client", ["settings", "data"])
    run = subprocess.run(["node", "drive.mjs"], cwd=build, capture_output=True, text=True,
                         timeout=120, check=False,
                         env={**os.environ, "BYOD_URL": service.url, "BYOD_TOKEN": token,
                              "DEP_URL": dep.url, "DEP_KEY": dep.key})
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])

    assert out["before"]["connection_status"] == "none"
    assert out["access"]["can_connect"] is True
    bad = out["badUrl"]
    assert bad["thrown"] and bad["typed"] and bad["status"] == 422
    assert bad["code"] and bad["message"] and bad["field"] == "url"
    assert out["test"]["ok"] is True
    assert out["queued"]["state"] in ("queued", "running")
    assert out["finished"]["state"] == "succeeded", out["finished"]
    assert out["after"]["connection_status"] == "connected"
    assert out["blocker"]["blocked"] is False
    assert out["notice"]["notice"] is None
    assert isinstance(out["created"], str)
    assert [n["title"] for n in out["notes"]] == ["hello"]
    assert out["unknownFunction"]["code"] == "unknown_function"
    assert out["unknownFunction"]["status"] == 404
    assert out["unknownUser"]["typed"] and out["unknownUser"]["status"] == 422
    assert out["pageToken"]["url"].startswith("http") and out["pageToken"]["expires_in"] > 0
    assert out["retryBlocked"]["blocked"] is False
    assert out["updated"]["state"] == "succeeded", out["updated"]
    assert out["disconnected"]["state"] == "succeeded", out["disconnected"]
    assert out["final"]["connection_status"] == "disconnected"
    for refusal in ("retryAfterDisconnect", "deleteUnconfirmed"):
        assert out[refusal]["typed"] and 400 <= out[refusal]["status"] < 500, out[refusal]
        assert out[refusal]["code"] and out[refusal]["message"]
    assert out["wrongToken"]["status"] == 401 and out["wrongToken"]["typed"]
    assert out["network"] == {"thrown": True, "typed": True, "code": "network",
                              "message": "could not reach the service for GET "
                                         "/v1/users/ts-user", "status": 0, "field": None,
                              "retryAfter": None}
    text = run.stdout + run.stderr
    for secret in (token, dep.key, dep.key.split("|", 1)[-1], "byod_wrong-token"):
        assert secret not in text
