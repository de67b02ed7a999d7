"""A throwaway PostgreSQL cluster for the tests: the registry's PostgreSQL store (and
anything else that needs a server) runs against a real server, not a fake.

One cluster per pytest process (session scope): ``initdb`` on a temporary directory,
started with ``pg_ctl -w`` listening on 127.0.0.1 only, on a free port, its Unix socket in
the same directory; durability off (``fsync``, ``synchronous_commit``, ``full_page_writes``:
the data is thrown away). Connections over TCP need a password (scram-sha-256); the Unix
socket is trusted, for the set-up only. The tests connect as role ``byod``, whose password
is random and at least 16 characters, so a test can scan what the engine printed, raised or
logged for it. The cluster is stopped at the end of the session, even when tests failed.

Run as root (CI containers), ``initdb`` and ``postgres`` refuse to start: they run as the
``postgres`` OS user (``runuser``) on a directory chowned to it. Several pytest processes
at once each start their own cluster (own directory, own port). When no server binaries
are installed the fixtures skip, saying so (``.ci/run`` installs Debian's ``postgresql``).

Fixtures: ``pg_server`` (the ``PgServer``), ``pg_url`` (a database ``byod`` owned by role
``byod``: the session's URL) and ``pg_database`` (a new, empty database per test, dropped
after it: its URL).
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

__all__ = ["PgServer", "find_bindir", "pg_database", "pg_server", "pg_url"]

ROLE = "byod"
START_TIMEOUT_S = 60


def find_bindir() -> Path | None:
    """The directory of ``initdb`` and ``pg_ctl``: ``pg_config --bindir`` when it has them,
    else the newest ``/usr/lib/postgresql/*/bin`` (Debian installs them off the PATH)."""

    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout.strip()
            if (Path(out) / "initdb").exists() and (Path(out) / "pg_ctl").exists():
                return Path(out)
        except (OSError, subprocess.SubprocessError):
            pass
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One running cluster: ``url(db)`` for the ``byod`` role, ``admin()`` for set-up."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="byodpg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.password = "pw-" + secrets.token_hex(12)
        self.port = 0
        self._as_postgres = os.geteuid() == 0
        self._counter = itertools.count(1)
        self.running = False

    # -- running the server's tools ---------------------------------------------------------
    def _run(self, *args: str, timeout: float = START_TIMEOUT_S) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd=self.root, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr[-2000:]}"
                               f"{done.stdout[-1000:]}\n{log}")

    def start(self) -> "PgServer":
        pwfile = self.root / "pwfile"
        pwfile.write_text(secrets.token_hex(16) + "\n")  # the bootstrap superuser's, unused
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        os.chmod(self.root, 0o700)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
                  "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256",
                  f"--pwfile={pwfile}", "--no-sync")
        pwfile.unlink()
        for attempt in range(3):  # a free port can be taken between the probe and the bind
            self.port = _free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                       "-c max_connections=200 -c shared_buffers=32MB")
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
                          "-t", str(START_TIMEOUT_S), "-o", options, "start",
                          timeout=START_TIMEOUT_S + 10)
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        self.running = True
        atexit.register(self.stop)  # a session that dies before its teardown
        with self.admin() as conn:
            conn.execute(f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{self.password}'")
            conn.execute(f"CREATE DATABASE {ROLE} OWNER {ROLE}")
        return self

    def stop(self) -> None:
        if self.running:
            self.running = False
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30",
                          "stop", timeout=40)
            except (RuntimeError, OSError, subprocess.SubprocessError):
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    # -- using it ---------------------------------------------------------------------------
    def admin(self):  # type: ignore[no-untyped-def]
        """An autocommit superuser connection over the Unix socket (set-up only)."""

        import psycopg

        return psycopg.connect(host=str(self.root), port=self.port, user="postgres",
                               dbname="postgres", autocommit=True, connect_timeout=10)

    def url(self, database: str = ROLE) -> str:
        return f"postgresql://{ROLE}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database owned by ``byod``: its name."""

        name = f"t{os.getpid()}_{next(self._counter)}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} OWNER {ROLE}")
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    @contextmanager
    def member_role(self, prefix: str) -> Iterator[tuple[str, str]]:
        """A login role that is a member of ``byod`` (the same rights), for a test that
        cuts one client off (``ALTER ROLE … NOLOGIN``, terminated sessions) and leaves the
        others alone: its name and password. Dropped afterwards, sessions ended first."""

        role, password = f"{prefix}_{secrets.token_hex(4)}", "pw-" + secrets.token_hex(12)
        with self.admin() as conn:
            conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}' IN ROLE {ROLE}")
        try:
            yield role, password
        finally:
            with self.admin() as conn:
                conn.execute(f"ALTER ROLE {role} NOLOGIN")
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                             "usename = %s", (role,))
                for _ in range(50):  # DROP ROLE waits for no session of it to be left
                    try:
                        conn.execute(f"DROP ROLE IF EXISTS {role}")
                        break
                    except Exception:  # noqa: BLE001 - a backend still exiting
                        time.sleep(0.1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("the PostgreSQL server binaries (initdb, pg_ctl) are not installed: "
                    "install Debian's postgresql package (.ci/run does)")
    server = PgServer(bindir)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_url(pg_server: PgServer) -> str:
    """The session's database (``byod``) as a password-bearing URL."""

    return pg_server.url()


@pytest.fixture()
def pg_database(pg_server: PgServer) -> Iterator[str]:
    """A new, empty database for one test (its URL); dropped afterwards."""

    name = pg_server.create_database()
    try:
        yield pg_server.url(name)
    finally:
        pg_server.drop_database(name)
