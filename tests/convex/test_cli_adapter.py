"""The CLI adapter against a fake `convex` executable: how the CLI is called (argv, a
minimal environment, the key only in env, a linked node_modules), output redaction,
failure classification, the process-group timeout, work directories and concurrency."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.bundle.compiler import MANIFEST_FILE, Bundle
from engine.convex.deploy_cli import CliDeployAdapter, classify_cli_failure
from engine.convex.http import ConvexHttpClient
from engine.convex.toolchain import Toolchain
from engine.errors import (
    DeployFailed,
    DeploymentServerError,
    DeploymentTimeout,
    DeploymentUnauthorized,
    DeploymentUnreachable,
    SchemaValidationFailed,
)
from engine.ports.deployment import DeployAdapter, DeploymentTarget

from .conftest import ADMIN_KEY, SECRET_PART, assert_logs_clean, assert_no_secret

FAKE = Path(__file__).with_name("fake_convex_cli.py")
LOCAL_URL = "http://127.0.0.1:39999"


def make_bundle(version: str = "0001_initial", extra: dict[str, str] | None = None) -> Bundle:
    files = {
        "convex/schema.ts": "export default {};\n",
        "convex/byod.ts": "export const version = 1;\n",
        "package.json": "{}\n",
        **(extra or {}),
    }
    manifest = {"version": version, "files": {p: "x" for p in files}}
    files[MANIFEST_FILE] = json.dumps(manifest) + "\n"
    return Bundle(version_id=version, kind="version", files=dict(sorted(files.items())),
                  fingerprint="f" * 64, manifest=manifest)


class FakeCli:
    def __init__(self, root: Path):
        self.dir = root / "fake"
        self.dir.mkdir()
        shutil.copy(FAKE, self.dir / "cli.py")
        self.behave()

    def behave(self, **behavior: Any) -> None:
        (self.dir / "behavior.json").write_text(json.dumps(behavior))

    @property
    def command(self) -> list[str]:
        return [sys.executable, str(self.dir / "cli.py")]

    def calls(self) -> list[dict[str, Any]]:
        path = self.dir / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def fake(tmp_path: Path) -> FakeCli:
    return FakeCli(tmp_path)


@pytest.fixture
def toolchain(tmp_path: Path) -> Toolchain:
    root = tmp_path / "toolchain"
    (root / "node_modules").mkdir(parents=True)
    return Toolchain(root=root)


def ping_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"status": "success", "value": {"ok": True}})


def local_target(label: str = "local-1", key: str = ADMIN_KEY) -> DeploymentTarget:
    return DeploymentTarget(label=label, url=LOCAL_URL, admin_key=key, allow_insecure_local=True)


def adapter(target: DeploymentTarget, fake: FakeCli, toolchain: Toolchain,
            handler: Any = ping_ok, **kw: Any) -> CliDeployAdapter:
    http = ConvexHttpClient(target, transport=httpx.MockTransport(handler), backoff_base=0)
    return CliDeployAdapter(target, toolchain=toolchain, http_client=http,
                            cli_command=fake.command, **kw)


def test_successful_deploy_runs_the_cli_safely(fake: FakeCli, toolchain: Toolchain,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNRELATED_PARENT_VARIABLE", "do-not-leak")
    monkeypatch.setenv("CONVEX_DEPLOYMENT", "prod:someone-else")
    fake.behave(echo_key=True, output="Deployed Convex functions\n")
    cli = adapter(local_target(), fake, toolchain)
    assert isinstance(cli, DeployAdapter)
    result = cli.deploy(make_bundle())

    assert result.label == "local-1" and result.version_id == "0001_initial"
    assert result.fingerprint == "f" * 64 and result.duration_s > 0
    assert "Deployed Convex functions" in result.output
    for secret in (ADMIN_KEY, SECRET_PART, LOCAL_URL):
        assert secret not in result.output
    [call] = fake.calls()
    argv = call["argv"]
    assert argv[:2] == ["deploy", "--yes"]
    assert argv[argv.index("--typecheck") + 1] == "disable"
    assert argv[argv.index("--codegen") + 1] == "disable"
    assert not any(SECRET_PART in a or "127.0.0.1" in a for a in argv)
    env = call["env"]
    assert env["CONVEX_SELF_HOSTED_URL"] == LOCAL_URL
    assert env["CONVEX_SELF_HOSTED_ADMIN_KEY"] == ADMIN_KEY
    assert env["CI"] == "1"
    for absent in ("UNRELATED_PARENT_VARIABLE", "CONVEX_DEPLOYMENT", "CONVEX_DEPLOY_KEY"):
        assert absent not in env
    assert env["HOME"] != os.environ.get("HOME")
    assert call["stdin_tty"] is False and call["stdin_data"] == ""
    assert call["node_modules_link"] is True
    assert {"convex/schema.ts", "convex/byod.ts", "package.json"} <= set(call["files"])
    assert not Path(call["cwd"]).exists()  # the temporary work directory is gone


def test_cloud_key_uses_convex_deploy_key(fake: FakeCli, toolchain: Toolchain) -> None:
    key = "prod:happy-otter-123|eyJ2IjoiMSIsImtleSI6ImFiY2RlZmdoaWprbG1ub3AifQ=="
    target = DeploymentTarget(label="user_9", url="https://happy-otter-123.convex.cloud",
                              admin_key=key)
    adapter(target, fake, toolchain).deploy(make_bundle())
    env = fake.calls()[0]["env"]
    assert env["CONVEX_DEPLOY_KEY"] == key
    assert "CONVEX_SELF_HOSTED_URL" not in env and "CONVEX_SELF_HOSTED_ADMIN_KEY" not in env


def test_codegen_enabled_only_when_the_bundle_needs_it(fake: FakeCli,
                                                       toolchain: Toolchain) -> None:
    needs = make_bundle(extra={"convex/app.ts": 'import { query } from "./_generated/server";\n'})
    adapter(local_target(), fake, toolchain, typecheck="try").deploy(needs)
    argv = fake.calls()[0]["argv"]
    assert argv[argv.index("--codegen") + 1] == "enable"
    assert argv[argv.index("--typecheck") + 1] == "try"


CLI_FAILURES = [
    ("✖ Schema validation failed.\nDocument with ID \"k57a9x2\" in table \"messages\" does not "
     "match the schema: Object is missing the required field `tags`.\n",
     SchemaValidationFailed, {"table": "messages", "documents": ["k57a9x2"]}),
    ("Schema validation failed.\nTable \"users\": a document fails\n",
     SchemaValidationFailed, {"table": "users", "documents": []}),
    ("✖ Error fetching POST  [REDACTED]/api/get_config_hashes 401 Unauthorized: BadAdminKey: "
     "The provided admin key was invalid for this instance\nAuthenticate with `npx convex dev`\n",
     DeploymentUnauthorized, {}),
    ("Error fetching POST [REDACTED]/api/deploy2/start_push 403 Forbidden: Forbidden\n",
     DeploymentUnauthorized, {}),
    ("✖ Error fetching POST [REDACTED]/api/deploy2/start_push 500 Internal Server Error: "
     "InternalServerError: boom\n", DeploymentServerError, {}),
    ("✖ TypeError: fetch failed\n", DeploymentUnreachable, {}),
    ("connect ECONNREFUSED 127.0.0.1:3210\n", DeploymentUnreachable, {}),
    ("convex/byod.ts(3,7): error TS2322: Type 'string' is not assignable to type 'number'.\n",
     DeployFailed, {"kind": "typecheck"}),
    ("✘ [ERROR] Could not resolve \"./missing\"\n", DeployFailed, {"kind": "bundle"}),
    ("Cannot prompt for input in non-interactive terminals. (Continue?)\n",
     DeployFailed, {"kind": "prompt"}),
    ("something nobody expected\n", DeployFailed, {"kind": "other"}),
]


@pytest.mark.parametrize("output,error_type,fields", CLI_FAILURES)
def test_classification(output: str, error_type: type, fields: dict[str, Any]) -> None:
    error = classify_cli_failure(output, 1, label="user_3")
    assert type(error) is error_type
    assert "user_3" in str(error)
    for name, value in fields.items():
        assert getattr(error, name) == value


@pytest.mark.parametrize("output,error_type,fields", CLI_FAILURES[:6])
def test_failed_deploy_raises_classified_redacted_error(
        fake: FakeCli, toolchain: Toolchain, caplog: pytest.LogCaptureFixture,
        output: str, error_type: type, fields: dict[str, Any]) -> None:
    caplog.set_level(logging.DEBUG)
    fake.behave(echo_key=True, output=output, exit=1)
    with pytest.raises(error_type) as info:
        adapter(local_target(), fake, toolchain).deploy(make_bundle())
    assert "local-1" in str(info.value)
    assert_no_secret(info.value, LOCAL_URL)
    assert_logs_clean(caplog.records, LOCAL_URL)


def test_timeout_kills_the_whole_process_group(fake: FakeCli, toolchain: Toolchain) -> None:
    fake.behave(mode="hang", echo_key=True)
    started = time.monotonic()
    with pytest.raises(DeploymentTimeout, match="within 1.5 s") as info:
        adapter(local_target(), fake, toolchain, timeout=1.5).deploy(make_bundle())
    assert time.monotonic() - started < 10
    assert_no_secret(info.value, LOCAL_URL)
    call = fake.calls()[0]
    for pid in (call["pid"], call["child_pid"]):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        assert not _alive(pid), f"process {pid} survived the timeout"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_preflight_fails_fast_without_running_the_cli(fake: FakeCli,
                                                      toolchain: Toolchain) -> None:
    def revoked(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"code": "BadAdminKey", "message": "revoked"})

    with pytest.raises(DeploymentUnauthorized):
        adapter(local_target(), fake, toolchain, handler=revoked).deploy(make_bundle())
    assert fake.calls() == []


def test_functions_go_through_the_http_client(fake: FakeCli, toolchain: Toolchain) -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        value = {"version": "0002_tags", "fingerprint": "abc", "kind": "version",
                 "recorded": None}
        return httpx.Response(200, json={"status": "success", "value": value})

    cli = adapter(local_target(), fake, toolchain, handler=handler)
    info = cli.read_version()
    assert (info.version, info.fingerprint, info.kind) == ("0002_tags", "abc", "version")
    assert cli.query("a:b", {"x": 1})["version"] == "0002_tags"
    assert [s["path"] for s in seen] == ["byod:version", "a:b"]


def test_work_root_reuses_one_directory_per_deployment(fake: FakeCli, toolchain: Toolchain,
                                                       tmp_path: Path) -> None:
    work = tmp_path / "work"
    cli = adapter(local_target("user/a b"), fake, toolchain, work_root=work)
    cli.deploy(make_bundle("0001", extra={"convex/old.ts": "export {};\n"}))
    cli.deploy(make_bundle("0002"))
    adapter(local_target("user_b"), fake, toolchain, work_root=work).deploy(make_bundle())
    first, second, other = fake.calls()
    assert first["cwd"] == second["cwd"] != other["cwd"]
    assert "convex/old.ts" in first["files"] and "convex/old.ts" not in second["files"]
    assert Path(first["cwd"]).parent.parent == work.resolve()


def test_concurrent_deploys_use_separate_directories(fake: FakeCli,
                                                     toolchain: Toolchain) -> None:
    fake.behave(sleep=1.0)
    errors: list[BaseException] = []

    def deploy(label: str) -> None:
        try:
            adapter(local_target(label), fake, toolchain).deploy(make_bundle())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=deploy, args=(f"local-{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert time.monotonic() - started < 2.8  # ran side by side, not one after another
    calls = fake.calls()
    assert len(calls) == 3 and len({c["cwd"] for c in calls}) == 3
    assert {c["env"]["CONVEX_SELF_HOSTED_ADMIN_KEY"] for c in calls} == {ADMIN_KEY}


def test_cli_missing_is_a_clear_error(toolchain: Toolchain) -> None:
    target = local_target()
    http = ConvexHttpClient(target, transport=httpx.MockTransport(ping_ok))
    cli = CliDeployAdapter(target, toolchain=toolchain, http_client=http,
                           cli_command=["/nonexistent/convex"])
    with pytest.raises(DeployFailed, match="cannot start the Convex CLI"):
        cli.deploy(make_bundle())
