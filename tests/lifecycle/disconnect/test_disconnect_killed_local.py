"""`byod disconnect` SIGKILLed for real (its own process, killed at a chosen crash point)
on local deployments, then the documented recovery — the same command again — which runs
at once (the dead process's lease is taken over, not waited out) and leaves every
document exactly once where it belongs.

Covers migrate killed after a page was imported on main but before its progress was
saved, killed in the completion window (verified, not yet marked disconnected), killed
after marking; and delete killed mid-way."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from local_ops import connect_all, needs_toolchain, start

from engine.demo.run import deploy_main
from lifecycle.crash_kills import KILLED, byod, owned

pytestmark = [pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow, needs_toolchain,
              pytest.mark.timeout(900)]

V1 = "0001_initial"
CASES = {  # user -> (mode, crash point)
    "u1": ("migrate", "disconnect.imported@3"),
    "u2": ("migrate", "disconnect.verified"),
    "u3": ("migrate", "disconnect.marked"),
    "u4": ("delete", "disconnect.deleted@2"),
}


def test_killed_disconnects_recover_with_every_document_once(tmp_path: Path) -> None:
    env = start(tmp_path, len(CASES))
    try:
        deploy_main(env.main, env.graph.resolve(V1), env.config)
        seeded = connect_all(env, V1, seed=True)
        tables = sorted(next(iter(seeded.values())))
        environ = {"BYOD_REGISTRY": str(env.config.registry_path),
                   "BYOD_VERSIONS_DIR": str(env.config.versions_dir),
                   "BYOD_ENCRYPTION_KEY": env.key_hex, "BYOD_CONFIG": os.devnull,
                   "BYOD_MAIN_URL": env.main.url, "BYOD_MAIN_ADMIN_KEY": env.main.admin_key}
        main_name = env.fleet.deployments[0].name
        before = {uid: owned(env.fleet.documents(dep.name), uid, tables)
                  for uid, dep in env.users.items()}

        for uid, (mode, point) in CASES.items():
            args = ["disconnect", "--user", uid, "--data", mode, "--page-size", "3"]
            if mode == "delete":
                args.append("--yes")
            code, out, _ = byod(environ, *args, crash=point)
            assert code == KILLED, f"{uid} at {point}: {code}\n{out}"
            # a real kill: no finally block ran, the lease is still there, holder dead
            [lease] = [lease for lease in env.store.list_leases() if lease.deployment == uid]
            assert lease.holder.startswith("disconnect:") and lease.pid != os.getpid()
            assert lease.expires_at > time.time()  # not expired yet

            code, out, took = byod(environ, *args)  # the documented recovery
            assert code == 0, f"{uid} after {point}: {out}"
            assert took < 120, f"recovery of {uid} waited {took:.0f}s"
            on_user = owned(env.fleet.documents(env.users[uid].name), uid, tables)
            on_main = owned(env.fleet.documents(main_name), uid, tables)
            if mode == "migrate":  # on main exactly once, and still on the user's deployment
                assert on_main == before[uid], f"{uid} killed at {point}"
                assert on_user == before[uid]
            else:  # deleted from the user's deployment, never copied anywhere
                assert all(not docs for docs in on_user.values()), uid
                assert all(not docs for docs in on_main.values()), uid
            assert env.store.get_user(uid).connection_status == "disconnected"
            taken = [e for e in env.store.audit_log(uid) if e.event == "lease_taken_over"]
            assert taken and taken[-1].detail["reason"] == "holder process is dead", uid

        main_docs = env.fleet.documents(main_name)
        for uid, counts in seeded.items():  # the seed wrote something in every table
            assert all(counts[t] > 0 for t in tables), uid
        assert not main_docs.get("byodImports")  # receipts cleaned up
    finally:
        env.fleet.stop()
