"""Chaos: real `byod` processes SIGKILLed at random instants, each followed by the recovery
the operator guide documents, then every user checked: registry state, documents present
exactly once where they belong (compared field by field), no lease left behind.

* rollout            -> `byod rollout --resume ID` (the id from its first line or `--list`)
* disconnect migrate, delete, keep -> the same command again
* connect --copy-from-main -> `byod connect --user U --retry --copy-from-main`
                        (the original command while nothing was saved yet)
* keys rotate        -> `byod keys rotate` again

Instants come from ``BYOD_CHAOS_SEED`` (printed at the end and with every failure; set it to
replay a run): a number of output lines, or of documents the registry's progress says are
done, then a random delay. The kills hit whatever the process is doing then: a deploy, a
data page, a registry write, the window between two of them.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from engine.vault import Vault, generate_key

from .world import ROLLOUT_ID, Attack, Kill, World, canonical, differences

pytestmark = [pytest.mark.chaos, pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow,
              pytest.mark.timeout(900)]

ROLLOUT_ROUNDS = 2
MIGRATE_ROUNDS = 2
DELETE_ROUNDS = 1
KEEP_ROUNDS = 1
COPY_ROUNDS = 2
ROTATE_ROUNDS = 2
ROTATE_USERS = 300
# the engine's deterministic crash points (engine/lifecycle/crashpoints.py, BYOD_CRASH_AT):
# the process SIGKILLs itself there, at the n-th time it gets there (n drawn from the seed)
DISCONNECT_POINTS = [("migrate", "disconnect.imported"), ("migrate", "disconnect.page"),
                     ("migrate", "disconnect.verified"), ("migrate", "disconnect.marked"),
                     ("delete", "disconnect.deleted"), ("delete", "disconnect.verified"),
                     ("delete", "disconnect.marked")]
COPY_POINTS = ["copy.imported", "copy.page", "copy.verified"]
REPEATED_POINTS = {"disconnect.imported", "disconnect.page", "disconnect.deleted",
                   "copy.imported", "copy.page"}  # reached once per page
POOL = (MIGRATE_ROUNDS + DELETE_ROUNDS + KEEP_ROUNDS + COPY_ROUNDS + len(DISCONNECT_POINTS)
        + len(COPY_POINTS))


def _done_count(world: World, uid: str) -> int:
    doc = world.store.load_progress("disconnect", uid) or {}
    return sum(int(t.get("copied", 0)) + int(t.get("deleted", 0))
               for t in (doc.get("tables") or {}).values())


def _attack(world: World, case: str, args: list[str], point: str, trigger,
            jitter: float) -> Kill:
    attack = world.attack(*args)
    killed = attack.kill_when(trigger, jitter_s=jitter)
    kill = world.note(Kill(case, args, point, killed=killed, after_s=attack.elapsed,
                           exit_code=attack.proc.returncode))
    world.assert_no_secrets(attack.output())
    kill.output = attack.output()
    return kill


def _recover(world: World, kill: Kill, args: list[str]) -> str:
    result = world.byod(*args)
    kill.recovery, kill.recovery_code = args, result.returncode
    out = result.stdout + result.stderr
    world.assert_no_secrets(out)
    assert result.returncode == 0, (
        f"{world.describe(kill)}; recovery `byod {' '.join(args)}` exited "
        f"{result.returncode}: {out[-1500:]}")
    return out


def _no_live_lease(world: World, uids: list[str]) -> None:
    now = time.time()
    live = [lease for lease in world.store.list_leases()
            if lease.deployment in uids and lease.expires_at > now]
    assert not live, f"leases left behind: {[(x.deployment, x.holder) for x in live]}"


def _same(world: World, kill: Kill, expected: dict[str, Counter], actual: dict[str, Counter],
          where: str) -> None:
    problems = differences(expected, actual)
    assert not problems, f"{world.describe(kill)}; {where}:\n  " + "\n  ".join(problems)


# -- rollout -----------------------------------------------------------------------------------

def _rollout_id(world: World, lines: list[str], uids: list[str]) -> str | None:
    for line in lines:
        found = ROLLOUT_ID.search(line)
        if found:
            return found.group(0)
    listed = world.byod("rollout", "--list", "--json")
    for row in json.loads(listed.stdout or "[]"):
        doc = world.store.load_rollout(row["rollout_id"]) or {}
        if set(uids) <= set((doc.get("options") or {}).get("only") or ()):
            return str(row["rollout_id"])
    return None


def test_rollout_killed_then_resumed(chaos_world: World) -> None:
    world = chaos_world
    for round_ in range(ROLLOUT_ROUNDS):
        uids = [world.new_user(f"roll{round_}-{i}") for i in range(2)]
        args = ["rollout", "--to", "head", "--canary", "0", "--waves", "100%",
                "--concurrency", "2", "--max-failures", "100%", "--batch-size", "3"]
        for uid in uids:
            args += ["--only", uid]
        lines = world.rng.randint(1, 6)
        kill = _attack(world, "rollout", args, f"output line {lines}",
                       lambda a, n=lines: len(a.lines) >= n, world.rng.uniform(0, 0.4))
        rollout_id = _rollout_id(world, kill.output.splitlines(), uids)
        recover = ["rollout", "--resume", rollout_id] if rollout_id else args
        if world.rng.random() < 0.5:  # kill the recovery too, then recover again
            lines = world.rng.randint(1, 4)  # a resume prints less
            again = _attack(world, "rollout resume", recover, f"output line {lines}",
                            lambda a, n=lines: len(a.lines) >= n, world.rng.uniform(0, 0.4))
            rollout_id = rollout_id or _rollout_id(world, again.output.splitlines(), uids)
            recover = ["rollout", "--resume", rollout_id] if rollout_id else args
        _recover(world, kill, recover)
        for uid in uids:
            user = world.store.get_user(uid)
            state = (user.connection_status, user.deployment_status, user.schema_version)
            assert state == ("connected", "deployed", world.head.id), \
                f"{world.describe(kill)}; {uid}: {state}"
            journal = world.store.journal(uid)
            last = [e for e in journal if e.plan_id == journal[-1].plan_id]
            assert all(e.status == "completed" for e in last), \
                f"{world.describe(kill)}; {uid}: {[(e.step_id, e.status) for e in last]}"
            _same(world, kill, world.reference, canonical(world.documents(uid), owner=uid),
                  f"{uid}'s deployment against a rollout without kills")
        _no_live_lease(world, uids)


# -- disconnect --------------------------------------------------------------------------------

def _crash_at(world: World, point: str) -> str:
    """``point@n``: n drawn from the seed for points reached once per page (at least nine
    pages: one per table at least), else the first time."""

    return f"{point}@{world.rng.randint(1, 9)}" if point in REPEATED_POINTS else point


def _crash(world: World, case: str, args: list[str], spec: str) -> Kill:
    env = {**world.env(), "BYOD_CRASH_AT": spec}
    attack = world.attack(*args, env=env)
    attack.kill_when(lambda a: False, timeout=300)  # it kills itself
    code = attack.proc.returncode
    kill = world.note(Kill(case, args, f"crash point {spec}", killed=code == -9,
                           after_s=attack.elapsed, exit_code=code, output=attack.output()))
    world.assert_no_secrets(kill.output)
    assert kill.killed, f"{world.describe(kill)}: never reached it (exit {code}): " \
                        f"{kill.output[-800:]}"
    return kill


def _disconnect_round(world: World, mode: str,
                      point: str | None = None) -> tuple[str, Kill, dict]:
    uid = world.take()
    before_raw = world.documents(uid)
    total = sum(len(v) for t, v in before_raw.items() if t in world.reference)
    args = ["disconnect", "--user", uid, "--data", mode, "--page-size", "3"]
    if mode == "delete":
        args.append("--yes")
    if point is not None:
        kill = _crash(world, f"disconnect {mode}", args, _crash_at(world, point))
    elif mode == "keep" and world.rng.random() < 0.5:
        delay = world.rng.uniform(0.2, 1.5)
        kill = _attack(world, f"disconnect {mode}", args, f"{delay:.2f}s after start",
                       lambda a, d=delay: a.elapsed >= d, 0.0)
    elif mode == "keep":  # right after the status write, before the audit row
        kill = _attack(world, f"disconnect {mode}", args, "status written",
                       lambda a: world.store.get_user(uid).connection_status == "disconnected",
                       0.0)
    else:
        k = world.rng.randint(0, total)
        kill = _attack(world, f"disconnect {mode}", args, f"{k} of {total} documents done",
                       lambda a, k=k: (world.store.load_progress("disconnect", uid) or {})
                       .get("state") is not None and _done_count(world, uid) >= k,
                       world.rng.uniform(0, 0.06))
        if world.rng.random() < 0.5:
            k = world.rng.randint(_done_count(world, uid), total)
            _attack(world, f"disconnect {mode} again", args, f"{k} of {total} documents done",
                    lambda a, k=k: _done_count(world, uid) >= k, world.rng.uniform(0, 0.06))
    out = _recover(world, kill, args)
    assert "disconnected" in out, f"{world.describe(kill)}: {out[-800:]}"
    user = world.store.get_user(uid)
    assert user.connection_status == "disconnected", f"{world.describe(kill)}; {uid}: {user}"
    _no_live_lease(world, [uid])
    return uid, kill, before_raw


def _check_migrated(world: World, uid: str, kill: Kill, before: dict) -> None:
    source = canonical(before, owner=uid)
    _same(world, kill, source, canonical(world.main_documents(), owner=uid),
          f"{uid}'s documents on main (each exactly once)")
    _same(world, kill, source, canonical(world.documents(uid), owner=uid),
          f"{uid}'s own deployment keeps its copy")


def _check_deleted(world: World, uid: str, kill: Kill) -> None:
    left = canonical(world.documents(uid))
    assert not left, f"{world.describe(kill)}; left on {uid}'s deployment: {sorted(left)}"
    assert not canonical(world.main_documents(), owner=uid), world.describe(kill)


def test_disconnect_migrate_killed_then_rerun(chaos_world: World) -> None:
    world = chaos_world
    for _ in range(MIGRATE_ROUNDS):
        uid, kill, before = _disconnect_round(world, "migrate")
        _check_migrated(world, uid, kill, before)


def test_disconnect_delete_killed_then_rerun(chaos_world: World) -> None:
    world = chaos_world
    for _ in range(DELETE_ROUNDS):
        uid, kill, _before = _disconnect_round(world, "delete")
        _check_deleted(world, uid, kill)


@pytest.mark.parametrize("mode,point", DISCONNECT_POINTS)
def test_disconnect_crash_point_then_rerun(chaos_world: World, mode: str, point: str) -> None:
    uid, kill, before = _disconnect_round(chaos_world, mode, point)
    if mode == "migrate":
        _check_migrated(chaos_world, uid, kill, before)
    else:
        _check_deleted(chaos_world, uid, kill)


def test_disconnect_keep_killed_then_rerun(chaos_world: World) -> None:
    world = chaos_world
    for _ in range(KEEP_ROUNDS):
        uid, kill, before = _disconnect_round(world, "keep")
        assert world.documents(uid) == before, f"{world.describe(kill)}; {uid}'s data changed"
        assert not canonical(world.main_documents(), owner=uid), world.describe(kill)


# -- connect with a copy from main ---------------------------------------------------------

def _copy_round(world: World, point: str | None = None) -> None:
    from engine.lifecycle.disconnect import disconnect

    uid = world.take()
    with world.main_client() as main:  # the user's content moves to main, in peace
        report = disconnect(uid, "migrate", store=world.store, vault=world.vault,
                            config=world.config, main_client=main, graph=world.graph,
                            connector=world.connector)
    assert report.verified
    on_main = canonical(world.main_documents(), owner=uid)
    name = world.bare_deployment(uid)
    args = ["connect", "--user", uid, "--local", name, "--local-dir", str(world.fleet_dir),
            "--copy-from-main"]
    if point is not None:
        kill = _crash(world, "connect --copy-from-main", args, _crash_at(world, point))
    else:
        if world.rng.random() < 0.5:
            lines = world.rng.randint(1, 8)
            where, trigger = f"output line {lines}", (lambda a, n=lines: len(a.lines) >= n)
        else:
            k = world.rng.randint(0, sum(sum(c.values()) for c in on_main.values()))

            def copied(a: Attack, k: int = k) -> bool:
                doc = world.store.load_progress("copy_from_main", uid) or {}
                if doc.get("state") is None:
                    return False
                return sum(int(t.get("copied", 0))
                           for t in (doc.get("tables") or {}).values()) >= k

            where, trigger = f"{k} documents copied", copied
        kill = _attack(world, "connect --copy-from-main", args, where, trigger,
                       world.rng.uniform(0, 0.15))
    nothing_saved = world.store.get_user(uid).connection_status == "disconnected"
    recover = args if nothing_saved else ["connect", "--user", uid, "--retry",
                                          "--copy-from-main"]
    _recover(world, kill, recover)
    user = world.store.get_user(uid)
    state = (user.connection_status, user.deployment_status, user.schema_version)
    assert state == ("connected", "deployed", world.head.id), \
        f"{world.describe(kill)}; {uid}: {state}"
    _same(world, kill, on_main, canonical(world.documents(uid), owner=uid),
          f"{uid}'s new deployment against their content on main")
    _same(world, kill, world.reference, canonical(world.documents(uid), owner=uid),
          f"{uid}'s new deployment against a rollout without kills")
    _same(world, kill, on_main, canonical(world.main_documents(), owner=uid),
          f"main keeps {uid}'s content unchanged")
    _no_live_lease(world, [uid])


def test_connect_copy_from_main_killed_then_retried(chaos_world: World) -> None:
    for _ in range(COPY_ROUNDS):
        _copy_round(chaos_world)


@pytest.mark.parametrize("point", COPY_POINTS)
def test_connect_copy_crash_point_then_retried(chaos_world: World, point: str) -> None:
    _copy_round(chaos_world, point)


# -- key rotation ----------------------------------------------------------------------------

def test_key_rotation_killed_then_rerun(chaos_world: World, tmp_path) -> None:
    """A registry of its own with many rows (rotation is a loop of compare-and-swaps):
    every row ends on the newest key, decrypting to exactly what was stored."""

    from engine.registry.sqlite import SqliteStore

    world = chaos_world
    registry = tmp_path / "registry.sqlite3"
    store = SqliteStore(registry)
    keys = [generate_key()]
    plain = {}
    vault = Vault.from_hex(keys[0])
    for i in range(ROTATE_USERS):
        uid = f"rot{i:03d}"
        plain[uid] = (f"https://chaos-{i}.convex.cloud", f"prod:chaos-{i}|{generate_key()}")
        url_ct, key_ct = vault.encrypt_credentials(uid, *plain[uid])
        store.upsert_credentials(uid, url_ct=url_ct, key_ct=key_ct)
    try:
        for _ in range(ROTATE_ROUNDS):
            keys.append(generate_key())
            env = {**world.env(), "BYOD_REGISTRY": str(registry),
                   "BYOD_ENCRYPTION_KEY": keys[-1],
                   "BYOD_ENCRYPTION_KEYS_OLD": ",".join(reversed(keys[:-1]))}
            new = Vault.from_hex(keys[-1])
            k = world.rng.randint(0, ROTATE_USERS)

            def rotated(a: Attack, k: int = k, new: Vault = new) -> bool:
                return sum(1 for u in store.list_users() if new.is_current(u.url_ct)) >= k

            attack = world.attack("keys", "rotate", env=env)
            killed = attack.kill_when(rotated, jitter_s=world.rng.uniform(0, 0.05))
            kill = world.note(Kill("keys rotate", ["keys", "rotate"],
                                   f"{k} of {ROTATE_USERS} rows rotated", killed=killed,
                                   after_s=attack.elapsed))
            result = world.byod("keys", "rotate", "--json", env=env)
            kill.recovery_code = result.returncode
            assert result.returncode == 0, f"{world.describe(kill)}: {result.stderr[-800:]}"
            report = json.loads(result.stdout)
            assert not report["failed"], f"{world.describe(kill)}: {report['failed']}"
            only_new = Vault.from_hex(keys[-1])  # the old keys are gone now
            users = store.list_users()
            assert len(users) == ROTATE_USERS, world.describe(kill)
            for u in users:
                got = (only_new.decrypt(u.user_id, "deployment_url", u.url_ct),
                       only_new.decrypt(u.user_id, "deploy_key", u.key_ct))
                assert got == plain[u.user_id], f"{world.describe(kill)}; {u.user_id}"
            world.assert_no_secrets(attack.output(), result.stdout, result.stderr)
    finally:
        store.close()


# -- the whole fleet at the end ----------------------------------------------------------------

def test_fleet_is_sane_after_the_chaos(chaos_world: World) -> None:
    """Rotate the shared registry's key under fire too, then drop the old key: every user
    the cases left connected is healthy, the registry agrees with every deployment, and no
    lease is left."""

    world = chaos_world
    world.old_keys = [world.key_hex]
    world.key_hex = generate_key()
    new = Vault.from_hex(world.key_hex)
    k = world.rng.randint(1, len(world.store.list_users()))
    attack = world.attack("keys", "rotate")
    killed = attack.kill_when(
        lambda a: sum(1 for u in world.store.list_users() if new.is_current(u.url_ct)) >= k)
    kill = world.note(Kill("keys rotate (fleet)", ["keys", "rotate"], f"{k} rows rotated",
                           killed=killed, after_s=attack.elapsed))
    _recover(world, kill, ["keys", "rotate"])
    world.old_keys = []

    users = world.store.list_users()
    connected = [u.user_id for u in users if u.connection_status == "connected"]
    assert connected
    bad = [(u.user_id, u.connection_status, u.connection_error) for u in users
           if u.connection_status not in ("connected", "disconnected")]
    assert not bad, f"{world.describe(kill)}; users left blocked or pending: {bad}"
    health = world.byod("health", "--all", "--json")
    assert health.returncode == 0, f"{world.describe(kill)}: {health.stdout[-1500:]}"
    states = {r["user_id"]: r["state"] for r in json.loads(health.stdout)["results"]}
    assert set(states) >= set(connected) and set(states.values()) == {"healthy"}, states
    reconcile = world.byod("reconcile", "--all", "--json")
    assert reconcile.returncode == 0, f"{world.describe(kill)}: {reconcile.stdout[-1500:]}"
    _no_live_lease(world, [u.user_id for u in users])
    world.assert_no_secrets(health.stdout, reconcile.stdout, reconcile.stderr)


def test_registry_check_after_the_chaos(chaos_world: World) -> None:
    world = chaos_world
    result = world.byod("registry", "check")
    assert result.returncode == 0, result.stdout + result.stderr
