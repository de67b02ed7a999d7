"""`byod connect --copy-from-main` SIGKILLed for real (its own process, killed at a chosen
crash point) on local deployments, then the documented recovery, `byod connect --retry`,
which runs at once (the dead process's lease is taken over, not waited out) and leaves
the user's deployment with exactly their content from main, each document once.

Covers a kill right after documents were imported into the user's deployment but before
their new ids were saved (the copy's marker recovers them), a kill after the copy was
verified but before the user was marked connected, and a kill after the deploy, before
the version was recorded (then --retry --copy-from-main, since no copy had started)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from local_ops import ROOT, needs_toolchain, start

from engine.convex.http import ConvexHttpClient
from engine.demo.run import deploy_main
from engine.demo.seed import seed_user
from lifecycle.crash_kills import KILLED, byod, owned

pytestmark = [pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow, needs_toolchain,
              pytest.mark.timeout(900)]

V1 = "0001_initial"
CASES = {  # user -> (crash point, the recovery's extra flags)
    "u1": ("copy.imported@2", ()),
    "u2": ("copy.verified", ()),
    "u3": ("connect.deployed", ("--copy-from-main",)),
}


def test_killed_connects_with_copy_recover_with_every_document_once(tmp_path: Path) -> None:
    env = start(tmp_path, len(CASES))
    try:
        versions = tmp_path / "versions"  # head = the version main runs
        versions.mkdir()
        shutil.copy(ROOT / "schema_versions" / f"{V1}.yaml", versions)
        deploy_main(env.main, env.graph.resolve(V1), env.config)
        with ConvexHttpClient(env.main) as main:
            seeded = {uid: seed_user(main, uid) for uid in [*CASES, "other"]}
        tables = sorted(seeded["u1"])
        environ = {"BYOD_REGISTRY": str(env.config.registry_path),
                   "BYOD_VERSIONS_DIR": str(versions),
                   "BYOD_ENCRYPTION_KEY": env.key_hex, "BYOD_CONFIG": os.devnull,
                   "BYOD_MAIN_URL": env.main.url, "BYOD_MAIN_ADMIN_KEY": env.main.admin_key,
                   "BYOD_AVAILABILITY": "everyone"}
        main_name = env.fleet.deployments[0].name
        on_main = {uid: owned(env.fleet.documents(main_name), uid, tables)
                   for uid in [*CASES, "other"]}

        for uid, (point, extra) in CASES.items():
            dep = env.users[uid]
            code, out, _ = byod(environ, "connect", "--user", uid, "--url", dep.url,
                                "--key-stdin", "--allow-insecure-local", "--copy-from-main",
                                crash=point, stdin=dep.admin_key + "\n")
            assert code == KILLED, f"{uid} at {point}: {code}\n{out}"
            [lease] = [lease for lease in env.store.list_leases() if lease.deployment == uid]
            assert lease.holder.startswith("connect:") and lease.expires_at > time.time()
            assert env.store.get_user(uid).connection_status != "connected"

            code, out, took = byod(environ, "connect", "--retry", "--user", uid, *extra)
            assert code == 0, f"{uid} after {point}: {out}"
            assert took < 120, f"recovery of {uid} waited {took:.0f}s"
            on_user = owned(env.fleet.documents(dep.name), uid, tables)
            assert on_user == on_main[uid], f"{uid} killed at {point}"
            assert env.store.get_user(uid).connection_status == "connected"
            taken = [e for e in env.store.audit_log(uid) if e.event == "lease_taken_over"]
            assert taken and taken[-1].detail["reason"] == "holder process is dead", uid
            others = env.fleet.documents(dep.name)
            assert not any(d.get("userId") not in (None, uid)
                           for docs in others.values() for d in docs), uid
        after = env.fleet.documents(main_name)  # main keeps everyone's content, unchanged
        assert all(owned(after, uid, tables) == on_main[uid] for uid in on_main)
        assert all(len(on_main[uid][t]) == seeded[uid][t] for uid in CASES for t in tables)
    finally:
        env.fleet.stop()
