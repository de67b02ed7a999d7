"""Connect against real local deployments: the real Convex CLI pushes the head bundle, the
HTTP API answers, faults are injected by the local fleet. Marked ``local``."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from engine.config import EngineConfig
from engine.convex.http import ConvexHttpClient
from engine.errors import (
    DeploymentUnauthorized,
    DeploymentUnreachable,
    InvalidCredentials,
    NotEntitled,
)
from engine.lifecycle import connect as conn
from engine.ports.deployment import DeploymentTarget
from engine.registry.sqlite import SqliteStore
from engine.vault import Vault, generate_key

pytestmark = [pytest.mark.local, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[3]


def _toolchain_ready() -> bool:
    try:
        from engine.convex.toolchain import Toolchain

        root = Toolchain.find().root
    except Exception:
        return False
    return shutil.which("node") is not None and (root / "node_modules" / "convex-test").is_dir()


if not _toolchain_ready():
    pytest.skip("the npm toolchain is not installed", allow_module_level=True)

from engine.local import LocalFleet  # noqa: E402


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = LocalFleet.start(3, tmp_path_factory.mktemp("fleet"), timeout=120)
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture(autouse=True)
def _no_faults(fleet):
    yield
    for dep in fleet.deployments:
        fleet.set_fault(dep.name, "none")


@pytest.fixture()
def env(tmp_path):
    config = EngineConfig(versions_dir=ROOT / "schema_versions",
                          registry_path=tmp_path / "reg" / "registry.sqlite3")
    store = SqliteStore(config.registry_path)
    key_hex = generate_key()
    yield config, store, Vault.from_hex(key_hex), key_hex
    store.close()


def _connect(env, user, dep, key=None, **kw):
    config, store, vault, _ = env
    kw.setdefault("config", config)
    kw.setdefault("allow_insecure_local", True)
    return conn.connect(user, dep.url, key or dep.admin_key, store=store, vault=vault, **kw)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_clean(texts, secrets) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, "a secret leaked"


def test_happy_path_then_reconnect_without_duplicates(fleet, env, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    config, store, vault, key_hex = env
    dep = fleet.deployments[0]
    stages: list[str] = []
    user = _connect(env, "alice", dep, on_stage=lambda _u, s: stages.append(s))
    assert stages == ["validating", "testing", "saving", "deploying", "recording", "done"]
    head = conn.head_version(None, config)
    assert (user.connection_status, user.deployment_status, user.schema_version) == (
        "connected", "deployed", head.id)
    target = DeploymentTarget("alice", dep.url, dep.admin_key, allow_insecure_local=True)
    with ConvexHttpClient(target) as http:
        info = http.read_version()
    assert (info.version, info.fingerprint) == (head.id, user.schema_fingerprint)
    assert info.recorded and info.recorded["version"] == head.id
    pushes = fleet.state(dep.name)["pushes"]

    again = _connect(env, "alice", dep)
    assert [u.user_id for u in store.list_users()] == ["alice"]
    assert again.created_at == user.created_at and again.connection_status == "connected"
    assert fleet.state(dep.name)["pushes"] == pushes  # already on head: not pushed again

    result = conn.test_connection("alice", store=store, vault=vault, config=config)
    assert result.ok and result.deployed_version == head.id

    store.close()
    blob = b"".join(p.read_bytes() for p in config.registry_path.parent.iterdir())
    secrets = (dep.url, dep.admin_key, dep.admin_key.split("|")[1], key_hex)
    _assert_clean([blob.decode("latin-1")], secrets)
    _assert_clean([r.getMessage() for r in caplog.records], secrets)


def test_bad_url_and_bad_key_format_fail_before_any_io(fleet, env) -> None:
    dep = fleet.deployments[0]
    config, store, vault, _ = env
    with pytest.raises(InvalidCredentials, match="--allow-insecure-local"):
        conn.connect("bob", dep.url, dep.admin_key, store=store, vault=vault, config=config)
    with pytest.raises(InvalidCredentials, match="no '\\|'"):
        _connect(env, "bob", dep, key=dep.admin_key.replace("|", ""))
    assert store.find_user("bob") is None


def test_unreachable_deployment(fleet, env) -> None:
    config, store, vault, _ = env
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(DeploymentUnreachable) as err:
        conn.connect("carol", url, fleet.deployments[0].admin_key, store=store, vault=vault,
                     config=config, allow_insecure_local=True)
    assert url not in str(err.value)
    assert store.find_user("carol") is None


def test_revoked_and_wrong_keys_are_unauthorized(fleet, env) -> None:
    dep = fleet.deployments[1]
    fleet.set_fault(dep.name, "revoked")
    with pytest.raises(DeploymentUnauthorized):
        _connect(env, "dave", dep)
    fleet.set_fault(dep.name, "none")
    name, secret = dep.admin_key.split("|", 1)
    wrong = f"{name}|{secret[::-1]}"
    with pytest.raises(DeploymentUnauthorized) as err:
        _connect(env, "dave", dep, key=wrong)
    _assert_clean([str(err.value)], (secret, secret[::-1]))
    assert env[1].find_user("dave") is None


def test_connected_user_goes_to_error_and_back(fleet, env) -> None:
    config, store, vault, _ = env
    dep = fleet.deployments[0]
    _connect(env, "erin", dep)
    fleet.set_fault(dep.name, "error500")
    result = conn.test_connection("erin", store=store, vault=vault, config=config)
    assert not result.ok and store.get_user("erin").connection_status == "error"
    fleet.set_fault(dep.name, "none")
    result = conn.test_connection("erin", store=store, vault=vault, config=config)
    assert result.ok and store.get_user("erin").connection_status == "connected"


def test_premium_gate_on_then_entitled(fleet, env, tmp_path) -> None:
    config, store, vault, _ = env
    premium = config.model_copy(update={"availability": "premium"})
    dep = fleet.deployments[1]
    with pytest.raises(NotEntitled):
        _connect(env, "frank", dep, config=premium)
    assert fleet.state(dep.name)["pushes"] == 0
    store.set_entitled("frank", True)
    user = _connect(env, "frank", dep, config=premium)
    assert user.connection_status == "connected" and user.entitled
    assert fleet.state(dep.name)["pushes"] == 1


def test_cli_end_to_end_leaks_nothing(fleet, tmp_path) -> None:
    dep = fleet.deployments[2]
    key_hex = generate_key()
    registry = tmp_path / "cli" / "registry.sqlite3"
    env = {"BYOD_ENCRYPTION_KEY": key_hex, "BYOD_REGISTRY": str(registry),
           "BYOD_VERSIONS_DIR": str(ROOT / "schema_versions"), "BYOD_CONFIG": os.devnull}
    runner = CliRunner()
    outputs: list[str] = []

    def byod(*args: str, stdin: str | None = None, code: int = 0):
        result = runner.invoke(cli, list(args), input=stdin, env=env, catch_exceptions=False)
        outputs.extend([result.stdout, result.stderr])
        assert result.exit_code == code, result.output
        return result

    # the key never goes on argv: --key-stdin is a flag
    byod("connect", "--user", "gina", "--url", dep.url, "--key-stdin",
         "--allow-insecure-local", stdin=dep.admin_key + "\n")
    status = json.loads(byod("status", "--user", "gina", "--json").stdout)
    assert status["connection_status"] == "connected" and status["schema_version"]
    listing = json.loads(byod("status", "--json").stdout)
    assert [u["user_id"] for u in listing["users"]] == ["gina"]
    assert json.loads(byod("test-connection", "--user", "gina", "--json").stdout)["ok"]
    byod("connect", "--user", "gina", "--retry")
    # failures print classified, sanitized errors
    fleet.set_fault(dep.name, "revoked")
    failed = json.loads(byod("test-connection", "--user", "gina", "--json", code=1).stdout)
    assert failed["error_kind"] == "auth"
    byod("connect", "--user", "gina", "--retry", "--json", code=1)
    fleet.set_fault(dep.name, "none")
    byod("connect", "--user", "hal", "--url", dep.url + "?adminKey=" + dep.admin_key,
         "--key-stdin", "--allow-insecure-local", stdin=dep.admin_key, code=1)
    byod("status")
    # rotation under a new key keeps the user working
    env["BYOD_ENCRYPTION_KEYS_OLD"], env["BYOD_ENCRYPTION_KEY"] = key_hex, generate_key()
    assert json.loads(byod("keys", "rotate", "--json").stdout)["rotated"] == ["gina"]
    del env["BYOD_ENCRYPTION_KEYS_OLD"]
    assert json.loads(byod("test-connection", "--user", "gina", "--json").stdout)["ok"]

    blob = b"".join(p.read_bytes() for p in registry.parent.iterdir()).decode("latin-1")
    secret = dep.admin_key.split("|")[1]
    _assert_clean(outputs + [blob], (dep.url, dep.admin_key, secret, key_hex,
                                     env["BYOD_ENCRYPTION_KEY"]))
