"""Deploying a bundle with the real Convex CLI (``convex deploy`` from the pinned toolchain).

Each deploy writes the bundle into a work directory whose ``node_modules`` links to the
toolchain's single install, then runs the CLI there with a minimal environment that
carries the key (never argv), ``CI=1`` (no prompts, no error reporting to Sentry) and a
private ``HOME`` (no global login or config leaks in or out). Output is captured, redacted
and classified into typed errors. Functions go through the HTTP client.

A short authenticated HTTP call runs first (``preflight``): an unreachable, slow or
revoked deployment then fails in seconds with a precise error, instead of after the CLI's
own minute of retries.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Literal, Sequence

from engine.bundle.write import write_bundle
from engine.convex.delegate import HttpFunctions
from engine.convex.http import ConvexHttpClient
from engine.convex.targets import base_url, check_target, key_kind
from engine.convex.toolchain import Toolchain, node_executable
from engine.errors import (
    DeployFailed,
    DeploymentError,
    DeploymentServerError,
    DeploymentTimeout,
    DeploymentUnauthorized,
    DeploymentUnreachable,
    SchemaValidationFailed,
)
from engine.ports.bundle import Bundle
from engine.ports.deployment import DeploymentTarget, DeployResult
from engine.redact import redact

__all__ = ["CliDeployAdapter", "classify_cli_failure"]

log = logging.getLogger(__name__)

TypecheckMode = Literal["enable", "try", "disable"]
CodegenMode = Literal["enable", "disable", "auto"]

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_OUTPUT_LIMIT = 20_000
_KILL_GRACE_S = 5.0
# variables passed through only for cloud targets (reaching Convex through a proxy / CA)
_CLOUD_PASSTHROUGH = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                      "no_proxy", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR")

_SCHEMA_FAILED = re.compile(r"schema validation failed|does not match the schema", re.I)
_DOC_IN_TABLE = re.compile(r'Document with ID "([^"]+)" in table "([^"]+)"', re.I)
_TABLE = re.compile(r'\btable "([^"]+)"', re.I)
_DOC_ID = re.compile(r'\bID "([^"]+)"')
_AUTH = re.compile(
    r"\b40[13] (?:Unauthorized|Forbidden)\b|\bunauthori[sz]ed\b|\bforbidden\b"
    r"|\bBad(?:Admin|Deploy)Key\b|\binvalid (?:admin|deploy) key\b"
    r"|\b(?:admin|deploy) key\b[^\n]*\b(?:invalid|revoked|expired)\b", re.I)
_SERVER = re.compile(r"\b(5\d\d) (?:Internal Server Error|Not Implemented|Bad Gateway"
                     r"|Service Unavailable|Gateway Timeout)\b")
_NETWORK = re.compile(
    r"fetch failed|ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH"
    r"|socket hang up|other side closed|UND_ERR_\w+", re.I)
_TYPECHECK = re.compile(r"\berror TS\d+|typecheck via `tsc` failed", re.I)
_BUNDLE = re.compile(r"\[ERROR\]|esbuild|It looks like you are using Node APIs", re.I)
_PROMPT = re.compile(r"Cannot prompt for input in non-interactive terminals", re.I)


def _tail(text: str, lines: int = 12) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def classify_cli_failure(output: str, exit_code: int | None, *, label: str) -> DeploymentError:
    """Turn the (already redacted) output of a failed ``convex deploy`` into a typed error.

    Pure, so every branch is unit-tested against recorded CLI messages."""

    text = _ANSI.sub("", output)
    tail = _tail(text)
    where = f" (exit {exit_code})" if exit_code is not None else ""
    if _SCHEMA_FAILED.search(text):
        pair = _DOC_IN_TABLE.search(text)
        table = pair.group(2) if pair else ""
        if not table:
            found = _TABLE.search(text)
            table = found.group(1) if found else ""
        documents = list(dict.fromkeys(_DOC_ID.findall(text)))
        what = f"table {table!r}" if table else "a table"
        first = f", e.g. document {documents[0]}" if documents else ""
        return SchemaValidationFailed(
            f"existing documents in {what} do not match the new schema{first}; the deployment "
            f"keeps its previous schema and code\n{tail}",
            deployment=label, table=table, documents=documents)
    if _AUTH.search(text):
        return DeploymentUnauthorized(
            f"the deployment rejected the deploy key{where}; check that the key is current and "
            f"belongs to this deployment\n{tail}", deployment=label)
    server = _SERVER.search(text)
    if server:
        return DeploymentServerError(f"the deployment answered HTTP {server.group(1)} during the "
                                     f"deploy{where}\n{tail}", deployment=label)
    if _NETWORK.search(text):
        return DeploymentUnreachable(f"the CLI could not reach the deployment{where}\n{tail}",
                                     deployment=label)
    error = DeployFailed(f"convex deploy failed{where}\n{tail}", deployment=label)
    for kind, pattern in (("typecheck", _TYPECHECK), ("prompt", _PROMPT), ("bundle", _BUNDLE)):
        if pattern.search(text):
            error.kind = kind
            break
    return error


def _safe_dir_name(label: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", label)[:48].strip(".") or "deployment"
    return f"{slug}-{hashlib.sha256(label.encode()).hexdigest()[:8]}"


class CliDeployAdapter(HttpFunctions):
    """A ``DeployAdapter`` for one deployment through the real Convex CLI.

    ``work_root`` keeps one reusable work directory per deployment label (locked while a
    deploy runs); without it every deploy uses a fresh temporary directory. Deploys to
    different deployments may run concurrently."""

    def __init__(self, target: DeploymentTarget, *, toolchain: Toolchain | None = None,
                 timeout: float = 300.0, http_client: ConvexHttpClient | None = None,
                 work_root: Path | None = None, typecheck: TypecheckMode = "disable",
                 codegen: CodegenMode = "auto", preflight: bool = True,
                 http_timeout: float = 30.0, cli_command: Sequence[str] | None = None):
        check_target(target)
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.target = target
        self.toolchain = toolchain or Toolchain.find()
        self.timeout = float(timeout)
        self.work_root = Path(work_root) if work_root is not None else None
        self.typecheck = typecheck
        self.codegen = codegen
        self.preflight = preflight
        self._cli_command = list(cli_command) if cli_command else None
        self._attach_http(http_client, target, min(http_timeout, self.timeout))

    def __repr__(self) -> str:
        return f"CliDeployAdapter(label={self.target.label!r})"

    # -- deploying -----------------------------------------------------------------------

    def deploy(self, bundle: Bundle) -> DeployResult:
        """Push ``bundle`` (a compiled ``Bundle``); raise a typed ``DeploymentError``."""

        label = self.target.label
        started = time.monotonic()
        if self.preflight:
            self.http.ping()
        with self._work_dir() as work:
            bundle_dir = work / "bundle"
            write_bundle(bundle, bundle_dir)
            self.toolchain.link_node_modules(bundle_dir)
            home = work / "home"
            home.mkdir(exist_ok=True)
            argv = self._argv(bundle)
            env = self._env(home)
            log.info("deployment %s: deploying version %s (%s)", label,
                     bundle.version_id, bundle.fingerprint)
            exit_code, output = self._run(argv, env, bundle_dir, started)
        duration = time.monotonic() - started
        if exit_code != 0:
            error = classify_cli_failure(output, exit_code, label=label)
            log.warning("deployment %s: deploy of %s failed (%s)", label, bundle.version_id,
                        type(error).__name__)
            raise error
        log.info("deployment %s: deployed version %s in %.1f s", label, bundle.version_id,
                 duration)
        return DeployResult(label=label, version_id=bundle.version_id,
                            fingerprint=bundle.fingerprint, duration_s=duration, output=output)

    def _needs_codegen(self, bundle: Bundle) -> bool:
        if self.codegen != "auto":
            return self.codegen == "enable"
        files: dict[str, str] = bundle.files
        has_generated = any(p.startswith("convex/_generated/") for p in files)
        imports_generated = any("_generated/" in text for p, text in files.items()
                                if p.startswith("convex/") and p.endswith((".ts", ".js")))
        return imports_generated and not has_generated

    def _argv(self, bundle: Bundle) -> list[str]:
        base = self._cli_command or [node_executable(),
                                     str(self.toolchain.convex_bin.resolve())]
        return [
            *base, "deploy", "--yes",
            "--typecheck", self.typecheck,
            "--codegen", "enable" if self._needs_codegen(bundle) else "disable",
            "--skip-large-indexes-check",
            "--message", f"byod {bundle.version_id} {bundle.fingerprint}",
        ]

    def _env(self, home: Path) -> dict[str, str]:
        """Only what the CLI needs: no unrelated parent variables, secrets only in env."""

        node_dir = os.path.dirname(shutil.which("node") or "/usr/bin/node")
        env = {
            "PATH": os.pathsep.join(dict.fromkeys([node_dir, "/usr/local/bin", "/usr/bin",
                                                   "/bin"])),
            "HOME": str(home),
            "CI": "1",  # no prompts; with CI set and VERCEL unset the CLI skips Sentry
            "NO_COLOR": "1",
            "FORCE_COLOR": "0",
            "LANG": "C.UTF-8",
            "TMPDIR": str(home),
            "NODE_PATH": str(self.toolchain.node_modules),
        }
        if key_kind(self.target.admin_key) == "cloud":
            env["CONVEX_DEPLOY_KEY"] = self.target.admin_key
            env.update({k: os.environ[k] for k in _CLOUD_PASSTHROUGH if k in os.environ})
        else:
            env["CONVEX_SELF_HOSTED_URL"] = base_url(self.target)
            env["CONVEX_SELF_HOSTED_ADMIN_KEY"] = self.target.admin_key
        return env

    @contextmanager
    def _work_dir(self) -> Iterator[Path]:
        if self.work_root is None:
            path = Path(tempfile.mkdtemp(prefix="byod-deploy-"))
            try:
                yield path
            finally:
                shutil.rmtree(path, ignore_errors=True)
            return
        path = self.work_root / _safe_dir_name(self.target.label)
        path.mkdir(parents=True, exist_ok=True)
        with open(path / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one deploy per deployment work dir
            try:
                yield path
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _run(self, argv: list[str], env: dict[str, str], cwd: Path,
             started: float) -> tuple[int, str]:
        """Run the CLI in its own process group; kill the group on timeout."""

        label = self.target.label
        remaining = max(1.0, self.timeout - (time.monotonic() - started))
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        except OSError as exc:
            raise DeployFailed(f"cannot start the Convex CLI: {exc.strerror}",
                               deployment=label) from None
        timed_out = False
        try:
            raw, _ = proc.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            timed_out = True  # raised below, outside this block: the expired exception
            raw = b""         # holds the raw output, which must not ride along as context
        if timed_out:
            output = self._clean(self._kill(proc))
            raise DeploymentTimeout(
                f"convex deploy did not finish within {self.timeout:g} s and was stopped\n"
                f"{_tail(output)}", deployment=label)
        return proc.returncode, self._clean(raw)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> bytes:
        for sig, wait in ((signal.SIGTERM, _KILL_GRACE_S), (signal.SIGKILL, _KILL_GRACE_S)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                raw, _ = proc.communicate(timeout=wait)
                return raw or b""
            except subprocess.TimeoutExpired:
                continue
        return b""

    def _clean(self, raw: bytes | None) -> str:
        text = _ANSI.sub("", (raw or b"").decode("utf-8", errors="replace"))
        text = redact(text, (*self.target.secrets, base_url(self.target)))
        return text if len(text) <= _OUTPUT_LIMIT else "...\n" + text[-_OUTPUT_LIMIT:]
