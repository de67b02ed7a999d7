"""The fleet the chaos tests attack, and the tools they attack it with.

One ``World`` per test session: a local fleet (a main deployment plus one deployment per
user, added as cases need them), one registry and key, the shipped schema versions, and a
push connector whose captured push requests (beside the registry) make every deploy after
the first of each bundle a few HTTP calls. Users are connected and seeded in-process (fast);
the commands under attack run as real ``byod`` processes, killed with SIGKILL at a chosen
instant and then recovered with the command the operator guide documents.

Every user is seeded with the same content (only ``userId`` differs), so a user rolled out
under fire can be compared field by field with a reference user rolled out in peace.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import EngineConfig
from engine.convex.connector import HttpConnector
from engine.convex.http import ConvexHttpClient
from engine.demo.run import deploy_main
from engine.demo.seed import _seed_conversations, _seed_the_rest
from engine.lifecycle.connect import connect
from engine.local import LocalFleet
from engine.plan.graph import VersionGraph
from engine.ports.deployment import DeploymentTarget, FunctionRunner, close_quietly
from engine.registry.sqlite import SqliteStore
from engine.schema.engine_tables import ENGINE_TABLE_NAMES
from engine.schema.loader import load_versions
from engine.vault import Vault, generate_key

ROOT = Path(__file__).resolve().parents[2]
SEED_ENV = "BYOD_CHAOS_SEED"
ROLLOUT_ID = re.compile(r"\br-\d{8}-\d{6}-[0-9a-f]+\b")
CONTENT_SEED = "chaos-content"  # every user gets the same content


def chaos_seed() -> int:
    """``BYOD_CHAOS_SEED`` when set (to replay a run), else a fresh one."""

    raw = os.environ.get(SEED_ENV, "").strip()
    return int(raw) if raw else random.SystemRandom().randrange(1, 2**31)


def seed_content(client: FunctionRunner, user_id: str) -> dict[str, int]:
    """The demo's realistic version-1 content (threaded messages, references in every
    direction), drawn from one fixed seed for every user."""

    rng = random.Random(CONTENT_SEED)
    counts: dict[str, int] = {}

    def put(table: str, docs: list[dict[str, Any]]) -> list[str]:
        ids = [str(i) for i in client.mutation("byod:importPage",
                                                {"table": table, "documents": docs})]
        counts[table] = counts.get(table, 0) + len(ids)
        return ids

    now_ms = 1_714_000_000_000.0
    t = now_ms - 30 * 86_400_000
    conv_ids, message_ids = _seed_conversations(put, rng, user_id, t)
    _seed_the_rest(put, rng, user_id, t, now_ms, conv_ids, message_ids)
    return counts


# -- comparing documents field by field ------------------------------------------------------

Docs = dict[str, list[dict[str, Any]]]


def content_tables(docs: Docs) -> list[str]:
    return sorted(t for t in docs if t not in ENGINE_TABLE_NAMES)


def canonical(docs: Docs, *, owner: str | None = None) -> dict[str, Counter]:
    """Each table's documents as a multiset of field-by-field forms: ``_id`` and
    ``_creationTime`` dropped, the owner's id replaced by a placeholder, and every id that
    names a document of the same deployment replaced by that document's own form (so a
    reference must point at the right document, whatever its id). ``owner``: only that
    user's documents (main holds everybody's)."""

    by_id = {d["_id"]: (t, d) for t in docs for d in docs[t]}

    def value(v: Any, depth: int) -> Any:
        if isinstance(v, str):
            if v in by_id:
                table, target = by_id[v]
                return ("ref", table, form(target, depth - 1) if depth > 0 else None)
            return "<owner>" if owner is not None and v == owner else v
        if isinstance(v, list):
            return ("list",) + tuple(value(x, depth) for x in v)
        if isinstance(v, dict):
            return ("obj",) + tuple(sorted((k, value(x, depth)) for k, x in v.items()))
        if isinstance(v, float) and v.is_integer():
            return int(v)
        return v

    def form(d: dict[str, Any], depth: int) -> tuple:
        return tuple(sorted((k, value(v, depth)) for k, v in d.items()
                            if k not in ("_id", "_creationTime")))

    out: dict[str, Counter] = {}
    for table in content_tables(docs):
        rows = [d for d in docs[table] if owner is None or d.get("userId") == owner]
        if rows:
            out[table] = Counter(form(d, 1) for d in rows)
    return out


def differences(expected: dict[str, Counter], actual: dict[str, Counter]) -> list[str]:
    """Per table: documents missing, documents extra (a duplicate is an extra)."""

    problems = []
    for table in sorted(set(expected) | set(actual)):
        want, got = expected.get(table, Counter()), actual.get(table, Counter())
        missing, extra = want - got, got - want
        if missing or extra:
            sample = next(iter((extra or missing)))
            problems.append(
                f"{table}: {sum(want.values())} expected, {sum(got.values())} present, "
                f"{sum(missing.values())} missing, {sum(extra.values())} extra "
                f"(duplicated {sum(1 for k in extra if k in want)} distinct); e.g. "
                f"{'extra' if extra else 'missing'} {dict(sample)!r:.300}")
    return problems


# -- killing real processes -------------------------------------------------------------------

@dataclass
class Kill:
    """One attack: what ran, when it was killed (or that it finished first), how the
    recovery went."""

    case: str
    command: list[str]
    point: str
    killed: bool = False
    after_s: float = 0.0
    exit_code: int | None = None
    recovery: list[str] = field(default_factory=list)
    recovery_code: int | None = None
    output: str = ""


class Attack:
    """A ``byod`` process whose output lines are collected as they come, killed (the
    whole process group, so a `convex` child dies with it) when ``trigger`` first holds."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path):
        self.lines: list[str] = []
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True, env=env, cwd=cwd,
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def kill_when(self, trigger: Callable[["Attack"], bool], *, jitter_s: float = 0.0,
                  timeout: float = 120.0) -> bool:
        """Poll ``trigger`` every few milliseconds; once it holds, wait ``jitter_s`` and
        SIGKILL. False when the process ended on its own first."""

        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if trigger(self):
                if jitter_s:
                    time.sleep(jitter_s)
                if self.proc.poll() is not None:
                    break
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
                self._reader.join(timeout=5)
                return True
            if time.monotonic() > deadline:
                os.killpg(self.proc.pid, signal.SIGKILL)
                raise AssertionError(f"never reached the kill point in {timeout}s: "
                                     f"{self.lines[-5:]}")
            time.sleep(0.004)
        self._reader.join(timeout=5)
        return False

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def output(self) -> str:
        return "\n".join(self.lines)


def byod_argv() -> list[str]:
    exe = shutil.which("byod", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-c", "from engine.cli.main import main; main()"]


# -- the world ---------------------------------------------------------------------------------

class World:
    def __init__(self, root: Path, seed: int):
        self.root, self.seed = root, seed
        self.rng = random.Random(seed)
        self.kills: list[Kill] = []
        self.config_file = root / "byod.toml"
        self.config_file.write_text("[byod]\n")
        self.config = EngineConfig(registry_path=root / "registry.sqlite3",
                                   versions_dir=ROOT / "schema_versions", http_timeout_s=10.0,
                                   deploy_timeout_s=300.0)
        self.versions = load_versions(self.config.versions_dir, self.config)
        self.graph = VersionGraph(self.versions)
        self.v1 = self.graph.resolve(1)
        self.head = self.graph.resolve("head")
        self.key_hex = generate_key()
        self.old_keys: list[str] = []
        self.store = SqliteStore(self.config.registry_path)
        self.connector = HttpConnector(self.config, kind="push")
        self.fleet_dir = root / "fleet"
        self.fleet = LocalFleet.start(1, self.fleet_dir, timeout=120)
        main_dep = self.fleet.deployments[0]
        self.main_name = main_dep.name
        self.main = DeploymentTarget("main", main_dep.url, main_dep.admin_key, True)
        # main runs the head: users on the head migrate back to it and copy from it
        deploy_main(self.main, self.head, self.config, connector=self.connector)
        self.names: dict[str, str] = {}  # user id -> local deployment name
        self.pool: list[str] = []  # users on the head with content, not yet attacked
        self.reference: dict[str, Counter] = {}  # a head user's content, rolled out in peace

    @property
    def vault(self) -> Vault:
        return Vault.from_hex(self.key_hex, tuple(self.old_keys))

    def close(self) -> None:
        close_quietly(self.connector)
        self.store.close()
        self.fleet.stop()

    # -- users ----------------------------------------------------------------------------
    def new_user(self, uid: str, *, seed: bool = True) -> str:
        """A fresh deployment, connected at version 1 and seeded."""

        [dep] = self.fleet.add(1)
        connect(uid, dep.url, dep.admin_key, store=self.store, vault=self.vault,
                config=self.config, versions=[self.v1], connector=self.connector,
                allow_insecure_local=True)
        self.names[uid] = dep.name
        if seed:
            with ConvexHttpClient(self.vault.target_for(self.store.get_user(uid))) as c:
                seed_content(c, uid)
        return uid

    def fill_pool(self, count: int) -> None:
        """``count`` users connected at version 1, seeded and rolled out to the head in
        this process (no kill): the reference content, and the users the disconnect and
        copy cases start from."""

        from engine.fleet.rollout import RolloutOptions, rollout

        uids = [self.new_user(f"pool{len(self.pool) + i}") for i in range(count)]
        report = rollout("head", store=self.store, vault=self.vault, config=self.config,
                         versions=self.versions, connector=self.connector,
                         options=RolloutOptions(canary=0, waves=("100%",), concurrency=4,
                                                max_failures=0, only=tuple(uids)))
        assert report.ok, report.to_dict()
        forms = [canonical(self.documents(uid), owner=uid) for uid in uids]
        assert all(f == forms[0] for f in forms), "users seeded alike differ after a rollout"
        self.reference = self.reference or forms[0]
        self.pool.extend(uids)

    def take(self) -> str:
        assert self.pool, "the pool of head users is empty"
        return self.pool.pop(0)

    def bare_deployment(self, uid: str) -> str:
        """A fresh deployment running the head bundle (deployed with the push connector,
        nothing recorded): a connect finds the bundle live and skips `convex deploy`."""

        from engine.bundle.compiler import compile_version

        [dep] = self.fleet.add(1)
        bundle = compile_version(self.head, self.config)
        adapter = self.connector.deployer(DeploymentTarget(uid, dep.url, dep.admin_key, True))
        try:
            adapter.deploy(bundle)
        finally:
            close_quietly(adapter)
        self.names[uid] = dep.name
        return dep.name

    def documents(self, uid: str) -> Docs:
        return self.fleet.documents(self.names[uid])

    def main_documents(self) -> Docs:
        return self.fleet.documents(self.main_name)

    def main_client(self) -> ConvexHttpClient:
        return ConvexHttpClient(self.main)

    # -- the CLI ---------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BYOD_")}
        env.update({"BYOD_REGISTRY": str(self.config.registry_path),
                    "BYOD_VERSIONS_DIR": str(self.config.versions_dir),
                    "BYOD_CONFIG": str(self.config_file),
                    "BYOD_ENCRYPTION_KEY": self.key_hex,
                    "BYOD_MAIN_URL": self.main.url, "BYOD_MAIN_ADMIN_KEY": self.main.admin_key,
                    "NO_COLOR": "1", "PYTHONPATH": str(ROOT)})
        if self.old_keys:
            env["BYOD_ENCRYPTION_KEYS_OLD"] = ",".join(self.old_keys)
        return env

    def byod(self, *args: str, timeout: float = 300.0,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*byod_argv(), *args], capture_output=True, text=True,
                              env=env or self.env(), cwd=self.root, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def attack(self, *args: str, env: dict[str, str] | None = None) -> Attack:
        return Attack([*byod_argv(), *args], env or self.env(), self.root)

    def secrets(self) -> list[str]:
        out = [self.key_hex, *self.old_keys, self.main.admin_key]
        out += [self.fleet.deployment(name).admin_key for name in self.names.values()]
        return out

    def assert_no_secrets(self, *texts: str) -> None:
        for text in texts:
            for secret in self.secrets():
                assert secret not in text, "a secret appeared in a command's output"

    def note(self, kill: Kill) -> Kill:
        self.kills.append(kill)
        return kill

    def describe(self, kill: Kill) -> str:
        return (f"[chaos seed {self.seed}: replay with {SEED_ENV}={self.seed}] {kill.case}: "
                f"{' '.join(kill.command)} killed at {kill.point}"
                f"{' after %.2fs' % kill.after_s if kill.killed else ' (ended first)'}")


def user_states(store: SqliteStore, uids: Iterable[str]) -> dict[str, tuple]:
    out = {}
    for uid in uids:
        u = store.get_user(uid)
        out[uid] = (u.connection_status, u.deployment_status, u.schema_version)
    return out
