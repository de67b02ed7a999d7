"""The whole lifecycle through the real CLI with ``BYOD_REGISTRY=convex:main`` on local
deployments: the main bundle deployed, two users connected, a rollout SIGKILLed mid-way
and resumed (its lease taken over from the dead process), a health check, a migrate
disconnect, and the status list. The registry's rows are read back from main's own tables,
no registry file is created, and no secret appears in any output or in main's documents."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from engine.convex.http import ConvexHttpClient
from engine.ports.deployment import DeploymentTarget
from engine.registry.convex_main import ConvexMainStore
from engine.vault import generate_key

from .backend import MARKS, ROOT

pytestmark = [*MARKS, pytest.mark.slow, pytest.mark.timeout(900)]

BYOD = Path(sys.executable).with_name("byod")


class Cli:
    """``byod`` in a clean directory whose environment names the registry on main."""

    def __init__(self, tmp: Path, fleet: Any) -> None:
        self.tmp, self.fleet = tmp, fleet
        self.main, self.u1, self.u2 = fleet.deployments
        self.key = generate_key()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BYOD_")}
        self.env.update({"BYOD_REGISTRY": "convex:main", "BYOD_MAIN_URL": self.main.url,
                         "BYOD_MAIN_ADMIN_KEY": self.main.admin_key,
                         "BYOD_ENCRYPTION_KEY": self.key,
                         "BYOD_VERSIONS_DIR": str(ROOT / "schema_versions"),
                         "NO_COLOR": "1"})
        self.outputs: list[str] = []

    def run(self, *args: str, stdin: str | None = None, ok: bool = True) -> Any:
        proc = subprocess.run([str(BYOD), *args], cwd=self.tmp, env=self.env, input=stdin,
                              capture_output=True, text=True, timeout=600, check=False)
        self.outputs.append(proc.stdout + proc.stderr)
        if ok:
            assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-3000:])
        return json.loads(proc.stdout) if "--json" in args and proc.stdout.strip() else proc

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([str(BYOD), *args], cwd=self.tmp, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)

    def store(self) -> ConvexMainStore:
        target = DeploymentTarget("main", self.main.url, self.main.admin_key, True)
        return ConvexMainStore(ConvexHttpClient(target))

    def secrets(self) -> list[str]:
        out = [self.key]
        for dep in (self.main, self.u1, self.u2):
            out += [dep.admin_key, dep.admin_key.split("|", 1)[1]]
        return out


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    from engine.local.launcher import LocalFleet

    base = tmp_path_factory.mktemp("convex-main-cli")
    (base / "work").mkdir()
    with LocalFleet.start(3, base / "fleet", timeout=120) as fleet:
        yield Cli(base / "work", fleet)


def _wait_for_first_outcome(cli: Cli, proc: subprocess.Popen[str], store: ConvexMainStore,
                            timeout: float = 400) -> str:
    """The rollout's id once one deployment's outcome is saved (the other still to do)."""

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, ("the rollout ended before it could be killed",
                                     proc.communicate()[1][-2000:])
        for header in store.list_rollouts(5):
            if header.get("counts", {}).get("succeeded"):
                return str(header["rollout_id"])
        time.sleep(0.05)
    raise AssertionError("no deployment finished in time")


def test_connect_rollout_kill_resume_health_disconnect_on_main(cli: Cli) -> None:
    from engine.demo.seed import seed_user

    cli.run("deploy", "head", "--target", "main")
    for uid, dep in (("u1", cli.u1), ("u2", cli.u2)):
        cli.run("connect", "--user", uid, "--url", dep.url, "--key-stdin",
                "--allow-insecure-local", "--version", "1", "--json",
                stdin=dep.admin_key + "\n")
    store = cli.store()
    assert [u.connection_status for u in store.list_users()] == ["connected", "connected"]
    for uid, dep in (("u1", cli.u1), ("u2", cli.u2)):
        with ConvexHttpClient(DeploymentTarget(uid, dep.url, dep.admin_key, True)) as c:
            seed_user(c, uid)

    # a rollout killed once the first deployment is done, then resumed by id
    proc = cli.start("rollout", "--to", "head", "--canary", "0", "--waves", "100%",
                     "--concurrency", "1")
    rollout_id = _wait_for_first_outcome(cli, proc, store)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    killed = store.load_rollout(rollout_id)
    assert killed is not None and killed["status"] == "running"
    assert [lease.deployment for lease in store.list_leases()]  # the dead run's leases
    resumed = cli.run("rollout", "--resume", rollout_id, "--json")
    assert resumed["status"] == "completed", resumed
    assert store.rollout_counts(rollout_id) == {"succeeded": 2}
    head = store.get_user("u1").schema_version
    assert head and head == store.get_user("u2").schema_version != "0001_initial"
    # the dead run's leases were taken over at once (its process is provably gone)
    taken = [e for e in store.audit_log(limit=500) if e.event == "lease_taken_over"]
    assert taken and {e.detail["reason"] for e in taken} <= {"holder process is dead",
                                                             "expired"}

    health = cli.run("health", "--all", "--json")
    assert {r["state"] for r in health["results"]} == {"healthy"}, health

    gone = cli.run("disconnect", "--user", "u1", "--data", "migrate", "--json")
    assert gone["status"] == "disconnected" and gone["verified"], gone
    status = cli.run("status", "--json")
    assert "u1" in json.dumps(status) and "u2" in json.dumps(status)
    assert store.get_user("u1").connection_status == "disconnected"
    assert store.get_user("u2").connection_status == "connected"

    # the registry is main's tables; nothing was written beside the working directory
    docs = cli.fleet.documents(cli.main.name)
    assert sorted(d["userId"] for d in docs["byodRegUsers"]) == ["u1", "u2"]
    assert docs["byodRegAudit"] and docs["byodRegJournal"] and docs["byodRegRollouts"]
    assert not list(cli.tmp.rglob("*.sqlite3"))
    # no secret in any output, nor in main's registry documents (ciphertexts only)
    main_text = json.dumps({k: v for k, v in docs.items() if k.startswith("byodReg")})
    for secret in cli.secrets():
        assert secret not in main_text
        for text in cli.outputs:
            assert secret not in text
    for dep in (cli.u1, cli.u2):
        assert dep.url not in main_text
    store.close()
