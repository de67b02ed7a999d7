"""A network partition between one `byod worker` process and a real PostgreSQL registry.

Two worker processes share one rollout open for workers. Worker A connects as its own
login role, so the partition can cut A off and leave B alone, for three lease ttls: either
its connections are closed (the role is refused new logins, ``NOLOGIN``, and every backend
it has is terminated, again and again) or the database stalls for it (its backends are
stopped with SIGSTOP, then continued). A must stop the deployments whose claims it cannot
renew (or, woken from the stall, must not take them back); B takes them
over once their claims expire and finishes the rollout; every deployment ends at the
target with each journal step completed once (at most the push in flight when A was cut
off is sent again); after the partition heals A exits when the rollout ends. No password
appears in any output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from .procs import ROOT, Bench
from .test_workers_processes import wait_all

byod_argv = __import__("workers").byod_argv  # the harness's module, on the path via .procs


TTL_S = 3.0


def running_claims(pg_server: Any, database: str, rid: str) -> list[tuple[str, str]]:
    """(user, holder) of the rollout's rows with a claim, read as the superuser."""

    with psycopg.connect(host=str(pg_server.root), port=pg_server.port, user="postgres",
                         dbname=database, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute("SELECT user_id, claimed_by FROM rollout_deployments WHERE "
                            "rollout_id = %s AND status = 'running' AND claimed_by IS NOT "
                            "NULL", (rid,)).fetchall()
    return [(str(u), str(h)) for u, h in rows]


class Partition:
    """Cuts worker A (every session of ``role``) off the server until ``heal()``.

    ``cut``: closed connections — no new login (``NOLOGIN``), and the backends it has are
    terminated every 100 ms (a reconnect that raced the ``NOLOGIN`` is ended too).
    ``stall``: a stalled database — A's backends are stopped (SIGSTOP): its connection
    stays open and its calls get no answer, until they are continued."""

    def __init__(self, pg_server: Any, role: str, mode: str):
        self.pg, self.role, self.mode = pg_server, role, mode
        self.hit: set[int] = set()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._cut, daemon=True)

    def start(self) -> Partition:
        if self.mode == "cut":
            with self.pg.admin() as conn:
                conn.execute(f"ALTER ROLE {self.role} NOLOGIN")
        self._thread.start()
        return self

    def _backends(self, conn: Any) -> list[int]:
        return [int(r[0]) for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE usename = %s AND pid <> "
            "pg_backend_pid()", (self.role,)).fetchall()]

    def _cut(self) -> None:
        with self.pg.admin() as conn:
            while not self._done.is_set():
                for pid in self._backends(conn):
                    if self.mode == "cut":
                        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    elif pid not in self.hit:
                        os.kill(pid, signal.SIGSTOP)
                    self.hit.add(pid)
                self._done.wait(0.1)

    def heal(self) -> None:
        if self._done.is_set():
            return
        self._done.set()
        self._thread.join(timeout=30)
        if self.mode == "stall":
            for pid in self.hit:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        else:
            with self.pg.admin() as conn:
                conn.execute(f"ALTER ROLE {self.role} LOGIN")


@pytest.fixture()
def cut_off_role(pg_server: Any):
    """A login role (member of ``byod``: the same rights) for the worker that is cut off;
    its name and password."""

    with pg_server.member_role("byod_cut") as pair:
        yield pair


def start_worker(bench: Bench, rid: str, url: str, slots: int) -> subprocess.Popen[str]:
    env = {**bench.env(), "BYOD_REGISTRY": url}
    return subprocess.Popen([*byod_argv(), "worker", "--rollout", rid, "--slots", str(slots),
                             "--grace", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            env=env, cwd=bench.work)


@pytest.mark.local
@pytest.mark.toolchain
@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", ["cut", "stall"])
def test_a_worker_cut_off_from_postgres_stops_and_the_other_takes_over(
        mode: str, pg_server: Any, pg_database: str, cut_off_role: tuple[str, str],
        tmp_path: Path) -> None:
    role, role_pw = cut_off_role
    database = pg_database.rsplit("/", 1)[1]
    url_a = f"postgresql://{role}:{role_pw}@127.0.0.1:{pg_server.port}/{database}"
    bench = Bench(tmp_path, ROOT / "schema_versions", registry=pg_database)
    procs: list[subprocess.Popen[str]] = []
    partition: Partition | None = None
    try:
        users = bench.fresh(5, rtt_ms=400)
        rid = bench.open_rollout(lease_ttl=TTL_S, concurrency=6)
        a = start_worker(bench, rid, url_a, slots=3)
        procs.append(a)
        deadline = time.monotonic() + 120
        held_by_a: set[str] = set()
        while not held_by_a:  # A works some deployments: cut it off now
            assert time.monotonic() < deadline and a.poll() is None, "A never claimed"
            held_by_a = {u for u, h in running_claims(pg_server, database, rid)
                         if f"-{a.pid}-" in h}
            time.sleep(0.05)
        partition = Partition(pg_server, role, mode).start()
        procs.append(start_worker(bench, rid, pg_database, slots=3))
        time.sleep(TTL_S * 3)  # well past the ttl: A's claims have expired
        partition.heal()
        outputs = wait_all(procs, 300)
        out_a, out_b = outputs
        assert partition.hit  # A's sessions were really cut off
        assert [p.returncode for p in procs] == [0, 0], outputs
        check = bench.check(rid, users)
        assert check["status"] == "completed" and check["problems"] == [], (check, outputs)
        taken_over = {line.split(" took over ")[1].split()[0] for line in out_b.splitlines()
                      if " took over " in line}
        # what A held when it was cut off was either finished by A before it lost its
        # claim or taken over by B; A said it stopped (or could not record) the others
        rows = (bench.store.load_rollout(rid) or {})["deployments"]
        names_a = {line.split()[1].rstrip(":") for line in out_a.splitlines()
                   if line.startswith("worker ")}
        finished_by_a = {u for u, row in rows.items() if row.get("worker") in names_a}
        lost_by_a = held_by_a - finished_by_a
        assert lost_by_a, ("A finished everything it held before the partition", outputs)
        assert lost_by_a <= taken_over, (held_by_a, finished_by_a, taken_over, outputs)
        for uid in lost_by_a:
            assert (f"stopped {uid}: " in out_a or f"cannot record {uid}" in out_a
                    or f"{uid} was taken over" in out_a), (uid, out_a)
            assert f"finished {uid}:" not in out_a, (uid, out_a)
        if mode == "cut":  # A saw the partition, and said so once, not at every poll
            assert 1 <= out_a.count("while the registry is unreachable") <= 3, out_a
        # a push in flight when A was cut off may be sent again; nothing else is
        assert set(check["extra_pushes"]) <= taken_over, (check, outputs)
        assert all(n <= 1 for n in check["extra_pushes"].values()), check
        text = "".join(outputs)
        for secret in (role_pw, pg_server.password, bench.key):
            assert secret not in text
        assert not [k for k in bench.admin_keys if k in text or k.split("|")[-1] in text]
    finally:
        if partition is not None:
            partition.heal()
        for p in procs:
            if p.poll() is None:
                p.kill()
        bench.close()


def test_the_registry_connection_fails_fast_on_a_dead_network(pg_database: str) -> None:
    """A silent peer (a cut cable, a vanished host) ends the store's connection within
    about half a minute instead of the OS's hours: TCP keepalives and a user timeout are
    set on its socket."""

    import socket as so

    from engine.registry.postgres import PostgresStore

    with PostgresStore(pg_database) as store, store._borrow() as conn:
        fd = conn.raw.pgconn.socket
        sock = so.socket(fileno=os.dup(fd))
        try:
            assert sock.getsockopt(so.SOL_SOCKET, so.SO_KEEPALIVE) == 1
            assert sock.getsockopt(so.IPPROTO_TCP, so.TCP_KEEPIDLE) == 10
            assert sock.getsockopt(so.IPPROTO_TCP, so.TCP_KEEPINTVL) == 5
            assert sock.getsockopt(so.IPPROTO_TCP, so.TCP_KEEPCNT) == 3
            assert sock.getsockopt(so.IPPROTO_TCP, so.TCP_USER_TIMEOUT) == 30_000
        finally:
            sock.close()
