"""Starts, finds and stops a fleet of local Convex-compatible deployments.

One Node process (``harness/main.mjs``) hosts every deployment of a fleet, each on its own
loopback port, and runs their functions in a pool of worker threads under Convex's time
limits; a separate control port takes fault switches, document reads, new deployments and
shutdown. The data directory holds everything a restart needs:

- ``secrets.json`` (mode 0600): the control token and each deployment's name, port and
  admin key. Keys are never printed; read them from here (or ``LocalFleet.deployments``).
- ``fleet.json``: pid, control port and each deployment's name and URL, so
  ``byod local status/down`` can find a fleet started by ``byod local up``.
- ``deployments/<name>/``: documents (snapshot + write log) and the active code/schema.
- ``modules/<hash>/``: pushed code, shared by deployments that run the same code.
- ``harness.log``: the Node process's output (contains no keys).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import httpx

from engine.convex.toolchain import Toolchain, node_executable
from engine.errors import LocalFleetError, ToolchainError

__all__ = ["FAULT_MODES", "FaultMode", "LocalDeployment", "LocalFleet"]

FaultMode = Literal["none", "delay", "timeout", "error500", "revoked", "drop"]
FAULT_MODES: tuple[str, ...] = ("none", "delay", "timeout", "error500", "revoked", "drop")

_HARNESS = Path(__file__).resolve().parent / "harness" / "main.mjs"
_SECRETS = "secrets.json"
_FLEET = "fleet.json"
_LOG = "harness.log"
_CONTROL_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LocalDeployment:
    """One local deployment. ``admin_key`` is a self-hosted style key ``<name>|<64 hex>``;
    it is left out of ``repr`` so it never lands in a log by accident."""

    name: str
    port: int
    admin_key: str = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _write_private(path: Path, data: dict[str, Any]) -> None:
    """Atomically writes JSON readable by the owner only (it holds admin keys)."""

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _write_public(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LocalFleetError(f"{path}: unreadable ({exc})") from exc


def _free_ports(count: int) -> list[int]:
    """Ports the OS considers free right now (all held open together so none repeats)."""

    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (our own exited child not yet reaped) is not alive
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def _is_our_harness(pid: int, data_dir: Path) -> bool:
    """True when ``pid`` runs the harness for ``data_dir`` (guards against a reused pid)."""

    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return _pid_alive(pid)  # no /proc: trust the pid
    args = [a.decode(errors="replace") for a in cmdline]
    return any(a.endswith("main.mjs") for a in args) and str(data_dir) in args


def _log_tail(data_dir: Path, lines: int = 12) -> str:
    try:
        text = (data_dir / _LOG).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _refuse_running(data_dir: Path) -> None:
    """Two harnesses on one data directory would corrupt it: refuse while ours runs."""

    running = _read_json(data_dir / _FLEET)
    if running and running.get("running") and _pid_alive(running.get("pid")) \
            and _is_our_harness(int(running["pid"]), data_dir):
        raise LocalFleetError(
            f"a local fleet is already running in {data_dir} (pid {running['pid']}); "
            f"stop it with `byod local down --dir {data_dir}`"
        )


def _installed_toolchain(toolchain: Path | None) -> Path:
    """The npm toolchain's root, checked to hold ``convex-test`` (the harness needs it)."""

    tc_root = Path(toolchain) if toolchain else Toolchain.find().root
    if not (tc_root / "node_modules" / "convex-test" / "package.json").is_file():
        raise ToolchainError(
            f"the npm toolchain in {tc_root} is not installed; run `byod toolchain install`"
        )
    return tc_root


def _pick_ports(base_port: int | None, specs: list[dict[str, Any]],
                new: int) -> tuple[int, list[int]]:
    """(control port, ports for ``new`` deployments): after ``base_port`` and clear of the
    existing deployments' ports, or free ones from the OS."""

    if base_port is not None:
        used = {s["port"] for s in specs}
        candidates = (p for p in range(base_port + 1, base_port + 10_000) if p not in used)
        return base_port, [next(candidates) for _ in range(new)]
    control_port, *ports = _free_ports(new + 1)
    return control_port, ports


class LocalFleet:
    """A running fleet of local deployments (see the module docstring)."""

    def __init__(self, data_dir: Path, *, pid: int, control_port: int, token: str,
                 deployments: list[LocalDeployment],
                 process: subprocess.Popen[bytes] | None = None) -> None:
        self.data_dir = data_dir
        self.pid = pid
        self.control_port = control_port
        self._token = token
        self.deployments = deployments
        self._process = process
        self._client = httpx.Client(
            base_url=f"http://127.0.0.1:{control_port}",
            headers={"x-byod-control-token": token},
            timeout=_CONTROL_TIMEOUT_S,
        )

    # -- starting and finding ---------------------------------------------------------------

    @classmethod
    def start(cls, count: int, data_dir: Path, *, base_port: int | None = None,
              toolchain: Path | None = None, max_writes: int | None = None,
              max_reads: int | None = None, max_bytes_written: int | None = None,
              max_bytes_read: int | None = None, max_index_ranges: int | None = None,
              query_timeout: float | None = None, action_timeout: float | None = None,
              workers: int | None = None, timeout: float = 60.0) -> LocalFleet:
        """Starts the fleet in ``data_dir`` in the background and waits until it answers.

        A data directory that already holds deployments restarts all of them (documents
        and deployed code kept, same names, ports and keys) and adds new ones up to
        ``count``. With ``base_port`` the control server listens on ``base_port`` and new
        deployments on the ports after it; otherwise free ports are picked.

        ``max_*`` lower Convex's per-transaction limits and ``query_timeout`` /
        ``action_timeout`` (seconds) Convex's time limits (1 s for queries and mutations,
        30 min for actions, 10 min for Node actions), for tests. ``workers`` is the number
        of worker threads running the deployments' functions (default: min(4, cores)).
        """

        if count < 0:
            raise LocalFleetError("count must be 0 or more")
        data_dir = Path(data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        _refuse_running(data_dir)
        tc_root = _installed_toolchain(toolchain)
        node = node_executable()

        stored = _read_json(data_dir / _SECRETS) or {}
        token = stored.get("control_token") or secrets.token_hex(24)
        specs: list[dict[str, Any]] = list(stored.get("deployments", []))
        new = max(0, count - len(specs))
        control_port, ports = _pick_ports(base_port, specs, new)
        specs.extend(cls._new_specs(specs, ports))
        _write_private(data_dir / _SECRETS, {"control_token": token, "deployments": specs})

        args = [node, str(_HARNESS), "--data-dir", str(data_dir), "--toolchain", str(tc_root),
                "--control-port", str(control_port)]
        if max_writes is not None:
            args += ["--max-writes", str(int(max_writes))]
        if max_reads is not None:
            args += ["--max-reads", str(int(max_reads))]
        for flag, value in (("--max-bytes-written", max_bytes_written),
                            ("--max-bytes-read", max_bytes_read),
                            ("--max-index-ranges", max_index_ranges),
                            ("--workers", workers)):
            if value is not None:
                args += [flag, str(int(value))]
        for flag, seconds in (("--query-timeout-ms", query_timeout),
                              ("--action-timeout-ms", action_timeout)):
            if seconds is not None:
                args += [flag, str(max(1, round(seconds * 1000)))]
        with open(data_dir / _LOG, "ab") as log:
            # BYOD_HARNESS_PYTHON: the interpreter of the push gate (harness/schema_gate.mjs)
            process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                       start_new_session=True, cwd=data_dir,
                                       env={**os.environ, "BYOD_HARNESS_PYTHON": sys.executable})
        fleet = cls(data_dir, pid=process.pid, control_port=control_port, token=token,
                    deployments=[cls._deployment(s) for s in specs], process=process)
        try:
            fleet._wait_ready(timeout)
        except BaseException:
            fleet._kill()
            fleet._client.close()
            raise
        fleet._write_fleet_file(running=True, toolchain=tc_root)
        return fleet

    @classmethod
    def attach(cls, data_dir: Path) -> LocalFleet:
        """The fleet already running in ``data_dir`` (started by ``byod local up``)."""

        data_dir = Path(data_dir).resolve()
        info = _read_json(data_dir / _FLEET)
        stored = _read_json(data_dir / _SECRETS)
        if not info or not stored or not info.get("running"):
            raise LocalFleetError(f"no local fleet is running in {data_dir}")
        pid = int(info["pid"])
        if not _pid_alive(pid) or not _is_our_harness(pid, data_dir):
            raise LocalFleetError(f"no local fleet is running in {data_dir} (pid {pid} is gone)")
        return cls(data_dir, pid=pid, control_port=int(info["control_port"]),
                   token=stored["control_token"],
                   deployments=[cls._deployment(s) for s in stored.get("deployments", [])])

    @staticmethod
    def recorded(data_dir: Path) -> dict[str, Any]:
        """What ``fleet.json`` in ``data_dir`` says (running or not; no keys), or ``{}``."""

        return _read_json(Path(data_dir).resolve() / _FLEET) or {}

    @staticmethod
    def _new_specs(existing: list[dict[str, Any]], ports: list[int]) -> list[dict[str, Any]]:
        start = len(existing) + 1
        names = {s["name"] for s in existing}
        out = []
        i = start
        for port in ports:
            while f"local-{i:03d}" in names:
                i += 1
            name = f"local-{i:03d}"
            names.add(name)
            out.append({"name": name, "port": port, "admin_key": f"{name}|{secrets.token_hex(32)}"})
            i += 1
        return out

    @staticmethod
    def _deployment(spec: dict[str, Any]) -> LocalDeployment:
        return LocalDeployment(name=spec["name"], port=int(spec["port"]), admin_key=spec["admin_key"])

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise LocalFleetError(
                    f"the local deployment process exited with code {self._process.returncode}:\n"
                    + _log_tail(self.data_dir)
                )
            try:
                health = self._client.get("/_control/health", timeout=2.0)
                if health.status_code == 200 and health.json().get("pid") == self.pid:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise LocalFleetError(
            f"local deployments did not become ready within {timeout:.0f} s:\n" + _log_tail(self.data_dir)
        )

    def _write_fleet_file(self, *, running: bool, toolchain: Path | None = None) -> None:
        previous = _read_json(self.data_dir / _FLEET) or {}
        _write_public(self.data_dir / _FLEET, {
            "running": running,
            "pid": self.pid if running else None,
            "control_port": self.control_port,
            "toolchain": str(toolchain) if toolchain else previous.get("toolchain"),
            "started_at": previous.get("started_at") if not toolchain else time.time(),
            "keys_file": _SECRETS,
            "deployments": [{"name": d.name, "port": d.port, "url": d.url} for d in self.deployments],
        })

    # -- using ------------------------------------------------------------------------------

    def deployment(self, name: str) -> LocalDeployment:
        for dep in self.deployments:
            if dep.name == name:
                return dep
        raise LocalFleetError(f"no local deployment named {name!r}")

    def _control(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise LocalFleetError(f"the local fleet's control port did not answer: {exc}") from exc
        if response.status_code != 200:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise LocalFleetError(f"local fleet control {path}: {message}")
        return response.json()

    def set_fault(self, name: str, mode: FaultMode | str, delay_ms: int = 0) -> None:
        """Makes one deployment misbehave (every request on its port) until set back to
        ``"none"``: ``delay`` waits ``delay_ms`` then answers; ``timeout`` never answers
        (the socket closes after ``delay_ms`` or 10 minutes); ``error500`` answers 500;
        ``revoked`` answers 401 BadAdminKey; ``drop`` closes the connection unanswered."""

        if mode not in FAULT_MODES:
            raise LocalFleetError(f"fault mode must be one of {', '.join(FAULT_MODES)}, not {mode!r}")
        self.deployment(name)
        self._control("POST", "/_control/fault",
                      json={"deployment": name, "mode": mode, "delay_ms": int(delay_ms)})

    def add(self, count: int) -> list[LocalDeployment]:
        """Adds ``count`` deployments to the running fleet (kept across restarts)."""

        stored = _read_json(self.data_dir / _SECRETS) or {"control_token": self._token, "deployments": []}
        specs = list(stored["deployments"])
        used = {s["port"] for s in specs} | {self.control_port}
        ports = [p for p in _free_ports(count + len(used)) if p not in used][:count]
        new = self._new_specs(specs, ports)
        specs.extend(new)
        _write_private(self.data_dir / _SECRETS, {**stored, "deployments": specs})
        added = []
        for spec in new:
            self._control("POST", "/_control/deployments", json=spec)
            dep = self._deployment(spec)
            self.deployments.append(dep)
            added.append(dep)
        self._write_fleet_file(running=True)
        return added

    def documents(self, name: str, table: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Every stored document of a deployment (Convex JSON), by table; for tests."""

        params = {"deployment": name, **({"table": table} if table else {})}
        return self._control("GET", "/_control/documents", params=params)["documents"]

    def state(self, name: str) -> dict[str, Any]:
        """The deployment's active schema JSON, push count, fault mode and code hash."""

        return self._control("GET", "/_control/state", params={"deployment": name})

    def status(self) -> list[dict[str, Any]]:
        """Each deployment's name, URL, fault, code hash, push count and worker index."""

        return self._control("GET", "/_control/deployments")["deployments"]

    def health(self) -> dict[str, Any]:
        """The process: pid, deployment and worker counts, worker restarts (each one a
        function stopped at its time limit, or a failed worker), time limits in ms."""

        return self._control("GET", "/_control/health")

    # -- stopping ---------------------------------------------------------------------------

    def stop(self, timeout: float = 15.0) -> None:
        """Flushes every deployment to disk and stops the process (then its group)."""

        try:
            if _pid_alive(self.pid):
                try:
                    self._client.post("/_control/shutdown", timeout=5.0)
                except httpx.HTTPError:
                    pass
                if not self._wait_exit(timeout):
                    self._kill()
        finally:
            self._client.close()
            if (self.data_dir / _FLEET).exists():
                self._write_fleet_file(running=False)

    def _wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None:
                if self._process.poll() is not None:
                    return True
            elif not _pid_alive(self.pid):
                return True
            time.sleep(0.05)
        return False

    def _kill(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                return
            if self._wait_exit(3.0):
                return

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalFleet({self.data_dir}, pid={self.pid}, deployments={len(self.deployments)})"
