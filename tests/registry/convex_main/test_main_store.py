"""The registry on a local main deployment, beyond the shared contract
(``tests/registry/test_store_contract.py`` runs that on ``convex-main`` too): large rollouts
within Convex's transaction limits, a crash mid-save leaving the previous record whole, a
provably dead holder's lease taken over, the app's public status query read by the real JS
client with a user token (and scanned for secrets), and clear errors when main is missing
its bundle or unreachable."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from engine.errors import RegistryError
from engine.ports.deployment import DeploymentTarget
from engine.registry.convex_main import ConvexMainStore, open_convex_main
from engine.registry.convex_main_rollouts import STALE_S
from engine.vault import Vault, generate_key

from .backend import MARKS, ROOT

pytestmark = [*MARKS, pytest.mark.timeout(600)]

SECRET_URL = "https://tenant-secret-7.convex.cloud"
SECRET_KEY = "prod:tenantsecret7|" + secrets.token_hex(32)


@pytest.fixture()
def main(convex_main_fleet: Any) -> DeploymentTarget:
    return convex_main_fleet.fresh()


def store_on(fleet: Any, target: DeploymentTarget, **options: Any) -> ConvexMainStore:
    return ConvexMainStore(fleet.connector.client(target), **options)


def _rollout(n: int) -> dict[str, Any]:
    users = [f"user-{i:05d}" for i in range(n)]
    half = n // 2
    return {"rollout_id": "big", "status": "running", "target": "v7",
            "waves": [{"name": "canary", "deployments": users[:half]},
                      {"name": "rest", "deployments": users[half:]}],
            "deployments": {u: {"status": "pending", "wave": 0 if i < half else 1}
                            for i, u in enumerate(users)}}


def test_a_large_rollout_is_saved_and_read_in_pages_within_the_write_limit(
        tmp_path: Path, convex_main_fleet: Any) -> None:
    """A fleet limited to 600 writes per transaction holds a 2,500-row rollout: every
    call (staging pages, the switch, row saves, page reads) stays inside the limit."""

    from engine.demo.run import deploy_main
    from engine.local.launcher import LocalFleet

    with LocalFleet.start(1, tmp_path / "limited", max_writes=600, timeout=120) as fleet:
        dep = fleet.deployments[0]
        target = DeploymentTarget("main", dep.url, dep.admin_key, True)
        deploy_main(target, convex_main_fleet.version, convex_main_fleet.config,
                    connector=convex_main_fleet.connector)
        store = store_on(convex_main_fleet, target, page=400)
        doc = _rollout(2500)
        store.save_rollout("big", doc)
        assert store.rollout_counts("big") == {"pending": 2500}
        store.save_deployment_row("big", "user-00003", "succeeded", {"wave": 0})
        store.save_deployment_row("big", "user-02000", "failed", {"wave": 1, "error": "x"})
        assert store.rollout_counts("big") == {"failed": 1, "pending": 2498, "succeeded": 1}
        page = store.rollout_rows("big", after=999, limit=3)
        assert [r.position for r in page] == [1000, 1001, 1002]
        assert [r.user_id for r in store.rollout_rows("big", statuses=["failed", "succeeded"])
                ] == ["user-00003", "user-02000"]
        whole = store.load_rollout("big")
        assert whole is not None and len(whole["deployments"]) == 2500
        assert whole["waves"][1]["deployments"][0] == "user-01250"
        assert whole["deployments"]["user-02000"]["error"] == "x"
        # saved again (a smaller record): the old generation's rows are gone
        store.save_rollout("big", _rollout(10))
        assert len(store.rollout_rows("big")) == 10
        assert store.count("rollout_deployments") == 10
        assert len(fleet.documents(dep.name).get("byodRegRolloutRows", [])) == 10
        store.close()


def test_a_crash_mid_save_leaves_the_previous_record_whole(
        main: DeploymentTarget, convex_main_fleet: Any) -> None:
    store = store_on(convex_main_fleet, main, page=50)
    store.save_rollout("r", _rollout(120))
    store.save_deployment_row("r", "user-00001", "succeeded", {})
    before = store.load_rollout("r")

    class Crash(Exception):
        pass

    calls = {"n": 0}
    real = store._mutation

    def dying(name: str, **args: Any) -> Any:
        if name == "putRolloutRows":
            calls["n"] += 1
            if calls["n"] == 2:  # the second page of the new record: the process dies
                raise Crash()
        return real(name, **args)

    store._mutation = dying  # type: ignore[method-assign]
    with pytest.raises(Crash):
        store.save_rollout("r", _rollout(200))
    store._mutation = real  # type: ignore[method-assign]
    assert store.load_rollout("r") == before
    assert store.rollout_counts("r") == {"pending": 119, "succeeded": 1}
    store.save_rollout("r", _rollout(200))  # and a later save goes through
    assert store.rollout_counts("r") == {"pending": 200}
    # the crashed save's first page (50 rows) is left while it could be a save still staging
    fleet = convex_main_fleet.fleet
    [name] = [d.name for d in fleet.deployments if d.url == main.url]
    docs = fleet.documents(name)["byodRegRolloutRows"]
    assert len(docs) == 250
    # a save over an hour later deletes it, with the generation it replaces
    later = store_on(convex_main_fleet, main, page=50,
                     clock=lambda: time.time() + STALE_S + 60)
    later.save_rollout("r", _rollout(200))
    docs = fleet.documents(name)["byodRegRolloutRows"]
    assert len(docs) == 200 and len({d["gen"] for d in docs}) == 1
    assert later.rollout_counts("r") == {"pending": 200}
    later.close()


def test_a_dead_holders_lease_is_taken_over_and_audited(
        main: DeploymentTarget, convex_main_fleet: Any) -> None:
    store = store_on(convex_main_fleet, main)
    dead = subprocess.Popen(["true"])
    dead.wait()
    from engine.registry.process import current_process

    me = current_process()
    store._mutation("acquireLease", deployment="dep", holder="crashed", ttl=600.0,
                    now=time.time(), takeover=None,
                    me={"host": me.host, "pid": float(dead.pid), "pidStarted": None,
                        "pidNamespace": me.pid_namespace})
    lease = store.acquire_lease("dep", "next", 30)
    assert lease.holder == "next" and lease.pid == os.getpid()
    entry = store.audit_log("dep")[-1]
    assert entry.event == "lease_taken_over"
    assert entry.detail["reason"] == "holder process is dead"
    # a live holder (this process, another holder name) is not taken over
    from engine.errors import LeaseHeld

    with pytest.raises(LeaseHeld):
        store.acquire_lease("dep", "third", 30)


def _js_client(tmp_path: Path, url: str, token: str | None) -> Any:
    """``byodRegistry:getConfig`` through the JS ``ConvexHttpClient``, as a front end
    calls it (a user token, or none)."""

    from engine.convex.toolchain import Toolchain

    work = tmp_path / "client"
    work.mkdir(exist_ok=True)
    link = work / "node_modules"
    if not link.exists():
        link.symlink_to(Toolchain.find().root / "node_modules")
    script = work / "get_config.mjs"
    script.write_text(
        'import { ConvexHttpClient } from "convex/browser";\n'
        'import { anyApi } from "convex/server";\n'
        "const [url, token] = process.argv.slice(2);\n"
        "const client = new ConvexHttpClient(url);\n"
        'if (token) client.setAuth(token);\n'
        "const out = {};\n"
        "out.config = await client.query(anyApi.byodRegistry.getConfig, {});\n"
        "try { await client.query(anyApi.byodRegistry.getUser, { userId: 'alice' });\n"
        "      out.internal = 'ran'; } catch (e) { out.internal = e.message; }\n"
        "console.log(JSON.stringify(out));\n")
    done = subprocess.run(["node", str(script), url, token or ""], capture_output=True,
                          text=True, timeout=120, cwd=work)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture()
def idp() -> Iterator[Any]:
    from local.fidelity_app import IdentityProvider

    provider = IdentityProvider()
    yield provider
    provider.close()


def test_the_apps_status_query_returns_no_secret(tmp_path: Path, convex_main_fleet: Any,
                                                  idp: Any) -> None:
    """The front end's read of the signed-in user's status: statuses and version, no
    credential field (not even a ciphertext), nothing for another user or anonymous, and
    the store's own functions stay internal."""

    from local.fidelity_app import APPLICATION_ID

    from engine.config import AuthConfig
    from engine.demo.run import deploy_main

    config = convex_main_fleet.config.model_copy(
        update={"auth": AuthConfig(issuer_domain=idp.issuer, application_id=APPLICATION_ID)})
    [dep] = convex_main_fleet.fleet.add(1)
    target = DeploymentTarget("main", dep.url, dep.admin_key, True)
    deploy_main(target, convex_main_fleet.version, config, connector=convex_main_fleet.connector)
    store = store_on(convex_main_fleet, target)
    vault = Vault.from_hex(generate_key())
    url_ct, key_ct = vault.encrypt_credentials("alice", SECRET_URL, SECRET_KEY)
    store.upsert_credentials("alice", url_ct=url_ct, key_ct=key_ct)
    store.set_connection_status("alice", "error",
                                error=f"could not reach the deployment with {SECRET_KEY}")
    store.set_deployment("alice", status="deployed", version="v7")

    mine = _js_client(tmp_path, dep.url, idp.token("alice"))
    config_seen = mine["config"]
    assert config_seen["userId"] == "alice"
    assert config_seen["connectionStatus"] == "error"
    assert config_seen["deploymentStatus"] == "deployed" and config_seen["schemaVersion"] == "v7"
    assert set(config_seen) == {  # statuses only: no credential field, not even its name
        "userId", "connectionStatus", "deploymentStatus", "deploymentProgress",
        "schemaVersion", "lastConnectionTest", "connectionError", "entitled", "updatedAt"}
    assert "[REDACTED]" in config_seen["connectionError"]
    text = json.dumps(mine)
    for secret in (SECRET_URL, SECRET_KEY, "tenant-secret-7", url_ct, key_ct,
                   url_ct[-24:], key_ct[-24:]):
        assert secret not in text
    assert "Could not find public function" in mine["internal"]
    assert _js_client(tmp_path, dep.url, idp.token("bob"))["config"] is None
    assert _js_client(tmp_path, dep.url, None)["config"] is None
    store.close()


def test_a_main_without_the_bundle_names_the_deploy_command(convex_main_fleet: Any,
                                                            monkeypatch: Any) -> None:
    [dep] = convex_main_fleet.fleet.add(1)  # nothing deployed on it
    monkeypatch.setenv("BYOD_MAIN_URL", dep.url)
    monkeypatch.setenv("BYOD_MAIN_ADMIN_KEY", dep.admin_key)
    with pytest.raises(RegistryError) as caught:
        open_convex_main("convex:main", convex_main_fleet.connector)
    assert "byod deploy head --target main" in str(caught.value)
    assert dep.admin_key not in str(caught.value)


def test_an_unreachable_main_is_a_registry_error_without_secrets(convex_main_fleet: Any,
                                                                 monkeypatch: Any) -> None:
    key = "prod:mainsecret|" + secrets.token_hex(32)
    monkeypatch.setenv("BYOD_MAIN_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("BYOD_MAIN_ADMIN_KEY", key)
    with pytest.raises(RegistryError) as caught:
        open_convex_main("convex:main", convex_main_fleet.connector)
    text = f"{caught.value!s} {caught.value!r}"
    assert "registry on the main deployment" in text
    assert key not in text and key.split("|")[1] not in text
    monkeypatch.delenv("BYOD_MAIN_URL")
    with pytest.raises(RegistryError, match="BYOD_MAIN_URL"):
        open_convex_main("convex:main", convex_main_fleet.connector)


def test_open_store_dispatches_convex_main(main: DeploymentTarget, convex_main_fleet: Any,
                                           monkeypatch: Any) -> None:
    from engine.registry.open import open_store

    monkeypatch.setenv("BYOD_MAIN_URL", main.url)
    monkeypatch.setenv("BYOD_MAIN_ADMIN_KEY", main.admin_key)
    with open_store("convex:main", connector=convex_main_fleet.connector) as store:
        assert isinstance(store, ConvexMainStore)
        assert repr(store) == "ConvexMainStore('convex:main')"
    with pytest.raises(RegistryError, match="connector"):
        open_store("convex:main")


def test_the_main_bundle_declares_the_registry_and_refuses_app_tables_named_like_it() -> None:
    from engine.bundle.compiler import REGISTRY_FUNCTIONS, compile_main
    from engine.config import EngineConfig
    from engine.errors import CompileError
    from engine.schema.loader import load_versions
    from engine.schema.main_registry_tables import REGISTRY_TABLE_NAMES

    config = EngineConfig(versions_dir=ROOT / "schema_versions")
    version = load_versions(config.versions_dir, config)[-1]
    bundle = compile_main(version, config)
    assert REGISTRY_TABLE_NAMES <= set(bundle.manifest["tables"])
    assert set(REGISTRY_FUNCTIONS) <= set(bundle.manifest["functions"])
    modules = ("byodRegistry", "byodRegistryRollouts", "byodRegistryTables")
    public = [n for n, kind in REGISTRY_FUNCTIONS.items() if not kind.startswith("internal")]
    assert public == ["byodRegistry:getConfig"]
    assert sum(bundle.files[f"convex/{m}.ts"].count("export const") for m in modules) \
        == len(REGISTRY_FUNCTIONS)
    for path in REGISTRY_FUNCTIONS:
        module, name = path.split(":")
        assert f"export const {name} = " in bundle.files[f"convex/{module}.ts"], path
    clash = version.schema.model_copy(update={"tables": {
        **version.schema.tables, "byodRegUsers": next(iter(version.schema.tables.values()))}})
    from engine.bundle.compiler import compile_bundle

    with pytest.raises(CompileError, match="byodRegUsers"):
        compile_bundle(clash, version_id="x", config=config, target="main")


def test_registry_check_finds_bad_documents_and_counts_on_main(
        main: DeploymentTarget, convex_main_fleet: Any, monkeypatch: Any) -> None:
    from engine.commands.registry_file import check_registry
    from engine.commands.workspace import Workspace
    from engine.config import EngineConfig

    monkeypatch.setenv("BYOD_MAIN_URL", main.url)
    monkeypatch.setenv("BYOD_MAIN_ADMIN_KEY", main.admin_key)
    with Workspace.open(EngineConfig(registry_path="convex:main")) as ws:
        store = ws.store
        store.save_rollout("r", _rollout(6))
        store.audit("u", "note", {"n": 1})
        sound = check_registry(ws)
        assert sound["ok"] and sound["problems"] == [] and sound["registry"] == "convex:main"
        # a count that disagrees with the rows, and an audit entry that is not JSON
        store._mutation("loadRows", table="byodRegRolloutCounts", docs=[
            {"rolloutId": "r", "status": "failed", "n": 2.0, "updatedAt": 0.0}])
        store._mutation("loadRows", table="byodRegAudit", docs=[
            {"seq": 99.0, "at": 1.0, "userId": "u", "event": "x", "detail": "{oops"}])
        found = check_registry(ws)["problems"]
    assert any("rollout r: its summary counts 2 failed deployment(s), its rows 0" in p
               for p in found), found
    assert any(p.startswith("audit 99: detail is not JSON") for p in found), found


def test_alerts_stay_pending_until_their_channel_acknowledges_them(
        main: DeploymentTarget, convex_main_fleet: Any) -> None:
    from engine.ports.registry import AlertStore

    now = [100.0]
    store = store_on(convex_main_fleet, main, clock=lambda: now[0])
    assert isinstance(store, AlertStore)
    hook = store.enqueue_alert("deployment_failed", {"user_id": "u3", "error": SECRET_KEY})
    mail = store.enqueue_alert("deployment_failed", {"user_id": "u3"}, channel="email")
    assert (hook.id, mail.id) == (1, 2) and hook.next_at == 100.0
    assert SECRET_KEY not in json.dumps(hook.payload)
    with pytest.raises(ValueError, match="channel"):
        store.enqueue_alert("x", {}, channel="pager")
    assert [a.id for a in store.pending_alerts()] == [1, 2]
    assert [a.id for a in store.pending_alerts(channel="email")] == [2]
    # one round per claim: a second monitor that read the same attempts loses
    assert store.claim_alert(1, attempts=0, until=160.0)
    assert not store.claim_alert(1, attempts=0, until=160.0)
    store.alert_attempted(1, delivered=False, error=f"502 from {SECRET_KEY}", next_at=130.0)
    [again] = store.pending_alerts(channel="webhook")
    assert (again.attempts, again.next_at) == (1, 130.0) and SECRET_KEY not in again.last_error
    assert store.claim_alert(1, attempts=1, until=200.0)
    store.alert_attempted(1, delivered=True)
    assert [a.id for a in store.pending_alerts()] == [2]
    # delivered alerts are pruned once they are old enough
    from engine.registry.sql_alerts import KEEP_DELIVERED_S

    now[0] += KEEP_DELIVERED_S + 1
    assert store.claim_alert(2, attempts=0, until=now[0] + 60)
    store.alert_attempted(2, delivered=True)
    assert store.pending_alerts() == [] and store.count("alerts") == 1


def test_racing_processes_get_one_lease_and_one_count_per_row(
        main: DeploymentTarget, convex_main_fleet: Any) -> None:
    """Eight clients at once: exactly one takes the lease (the others see who holds it),
    and concurrent outcome saves of different rows leave counts equal to the rows."""

    from concurrent.futures import ThreadPoolExecutor

    from engine.errors import LeaseHeld

    stores = [store_on(convex_main_fleet, main) for _ in range(8)]

    def take(i: int) -> str:
        try:
            return stores[i].acquire_lease("shared", f"runner-{i}", 30).holder
        except LeaseHeld as exc:
            return f"held by {exc.holder}"

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(take, range(8)))
    winners = [a for a in answers if not a.startswith("held by")]
    assert len(winners) == 1 and answers.count(f"held by {winners[0]}") == 7

    stores[0].save_rollout("race", _rollout(40))

    def save(i: int) -> None:
        for k in range(i, 40, 8):
            stores[i].save_deployment_row("race", f"user-{k:05d}",
                                          "succeeded" if k % 3 else "failed", {})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(save, range(8)))
    assert stores[1].rollout_counts("race") == {"failed": 14, "succeeded": 26}
    assert stores[2].verify() == []
    for store in stores:
        store.close()
