"""The pinned npm toolchain (the real ``convex`` library and CLI, TypeScript, esbuild,
convex-test): where it is, installing it once, and running its tools.

``toolchain/`` at the repository root holds ``package.json`` and ``package-lock.json``
(``BYOD_TOOLCHAIN_DIR`` points elsewhere). An installed wheel carries only those two files,
in a package directory that may be read-only, so it installs into a per-user cache
directory named by the lock's hash (``$XDG_CACHE_HOME/byod/toolchain/<hash>``, else
``~/.cache/...``), seeded with the packaged manifest. ``npm ci`` runs only when
``node_modules`` is missing or the lock file changed since the last install (a stamp in
``node_modules`` holds the lock's sha256), so deploys and checks reuse one install instead
of installing per use.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from engine import assets
from engine.errors import ByodError, ToolchainError

__all__ = ["MIN_NODE_MAJOR", "Toolchain", "node_executable"]

MIN_NODE_MAJOR = 18
_STAMP = ".byod-lock-sha256"
_INSTALL_TIMEOUT_S = 900.0


_MANIFEST = ("package.json", "package-lock.json")


def _cache_home(env: Mapping[str, str]) -> Path:
    configured = env.get("XDG_CACHE_HOME")
    if configured and Path(configured).is_absolute():
        return Path(configured)
    return Path(env.get("HOME") or Path.home()) / ".cache"


def _seeded_cache_dir(manifest: Path, env: Mapping[str, str]) -> Path:
    """A writable toolchain directory for a packaged manifest: the per-user cache dir for
    this lock file, holding copies of ``package.json`` and ``package-lock.json`` (``npm ci``
    writes ``node_modules`` beside them). Several installs of the same lock share it."""

    lock = manifest / "package-lock.json"
    try:
        digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    except OSError as exc:
        raise ToolchainError(f"{lock}: unreadable: {exc}") from exc
    root = _cache_home(env) / "byod" / "toolchain" / digest
    try:
        root.mkdir(parents=True, exist_ok=True)
        for name in _MANIFEST:
            data = (manifest / name).read_bytes()
            target = root / name
            if target.is_file() and target.read_bytes() == data:
                continue
            partial = root / f".{name}.{os.getpid()}.tmp"
            partial.write_bytes(data)
            os.replace(partial, target)  # readers never see half a file
    except OSError as exc:
        raise ToolchainError(
            f"cannot prepare the toolchain directory {root}: {exc}; set BYOD_TOOLCHAIN_DIR "
            "to a writable directory holding the toolchain's package.json and package-lock.json"
        ) from exc
    return root


def _default_toolchain_dir(env: Mapping[str, str]) -> Path:
    """A checkout's ``toolchain/`` itself; for an installed wheel, the cache directory
    seeded from its packaged manifest."""

    try:
        manifest = assets.toolchain_manifest_dir()
    except ByodError as exc:
        raise ToolchainError(str(exc)) from exc
    if assets.is_packaged(manifest):
        return _seeded_cache_dir(manifest, env)
    return manifest


def node_executable() -> str:
    """The ``node`` on PATH, checked to be new enough for the convex CLI."""

    node = shutil.which("node")
    if node is None:
        raise ToolchainError(
            f"node is not installed (Node.js {MIN_NODE_MAJOR} or newer is needed for the "
            "Convex toolchain); install Node.js and npm, then run `byod toolchain install`"
        )
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolchainError(f"cannot run node: {exc}") from exc
    match = re.match(r"v(\d+)\.", out.stdout.strip())
    if not match or int(match.group(1)) < MIN_NODE_MAJOR:
        raise ToolchainError(
            f"node {out.stdout.strip() or '(unknown version)'} is too old: "
            f"Node.js {MIN_NODE_MAJOR} or newer is needed"
        )
    return node


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run_captured(argv: list[str], *, tool: str, what: str, timeout: float,
                  **options: Any) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with text output captured; a timeout or a tool that cannot start is a
    ``ToolchainError`` naming ``what`` ran (or which ``tool``), never a traceback."""

    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              **options)
    except subprocess.TimeoutExpired as exc:
        raise ToolchainError(f"{what} did not finish within {timeout:.0f} s") from exc
    except OSError as exc:
        raise ToolchainError(f"cannot run {tool}: {exc}") from exc


@dataclass(frozen=True)
class Toolchain:
    """One toolchain directory. Cheap to construct; nothing runs until asked."""

    root: Path

    # -- locating ------------------------------------------------------------------------

    @classmethod
    def find(cls, env: Mapping[str, str] | None = None) -> "Toolchain":
        """``BYOD_TOOLCHAIN_DIR``, else the checkout's ``toolchain/``, else (an installed
        wheel) the per-user cache directory seeded from the packaged manifest; must hold a
        ``package.json`` and a ``package-lock.json``."""

        env = os.environ if env is None else env
        configured = env.get("BYOD_TOOLCHAIN_DIR")
        root = Path(configured).expanduser() if configured else _default_toolchain_dir(env)
        for name in _MANIFEST:
            if not (root / name).is_file():
                source = "BYOD_TOOLCHAIN_DIR" if configured else "the engine's manifest"
                raise ToolchainError(
                    f"toolchain directory {root} (from {source}) has no {name}; "
                    "it must be the pinned npm project with its lock file"
                )
        return cls(root=root.resolve())

    @property
    def node_modules(self) -> Path:
        return self.root / "node_modules"

    @property
    def lock_sha256(self) -> str:
        return hashlib.sha256((self.root / "package-lock.json").read_bytes()).hexdigest()

    @property
    def convex_bin(self) -> Path:
        """The real Convex CLI (``convex deploy`` runs through it)."""

        return self.bin("convex")

    def bin(self, name: str) -> Path:
        path = self.node_modules / ".bin" / name
        if not path.exists():
            raise ToolchainError(
                f"{name} is not installed in the toolchain at {self.root}; "
                "run `byod toolchain install`"
            )
        return path

    def package_version(self, name: str) -> str | None:
        """The installed version of one package, or ``None``."""

        try:
            data = json.loads((self.node_modules / name / "package.json").read_text())
        except (OSError, ValueError):
            return None
        version = data.get("version")
        return version if isinstance(version, str) else None

    # -- installing ----------------------------------------------------------------------

    def _stamp(self) -> str | None:
        try:
            return (self.node_modules / _STAMP).read_text().strip()
        except OSError:
            return None

    def _matches_lock(self) -> bool:
        """Whether ``node_modules`` holds exactly the locked versions (an install made
        without the stamp, e.g. by hand, is adopted when it matches)."""

        try:
            lock = json.loads((self.root / "package-lock.json").read_text())
        except (OSError, ValueError) as exc:
            raise ToolchainError(f"{self.root / 'package-lock.json'}: unreadable: {exc}") from exc
        packages = lock.get("packages", {})
        for key, entry in packages.items():
            if not key.startswith("node_modules/") or "/node_modules/" in key:
                continue
            installed = self.package_version(key[len("node_modules/") :])
            if installed is None and entry.get("optional"):
                continue  # a platform-specific optional package for another platform
            if installed != entry.get("version"):
                return False
        return bool(packages)

    def is_installed(self) -> bool:
        if not self.node_modules.is_dir():
            return False
        stamp = self._stamp()
        if stamp is not None:
            return stamp == self.lock_sha256
        return self._matches_lock()

    def ensure_installed(self, *, force: bool = False) -> "Toolchain":
        """Run ``npm ci`` unless the install already matches the lock file."""

        node_executable()
        lock_path = self.root / ".byod-install.lock"
        with open(lock_path, "w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)  # one installer at a time
            try:
                if force or not self.is_installed():
                    self._npm_ci()
                (self.node_modules / _STAMP).write_text(self.lock_sha256 + "\n")
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
        return self

    def _npm_ci(self) -> None:
        npm = shutil.which("npm")
        if npm is None:
            raise ToolchainError(
                "npm is not installed; install Node.js with npm, then run `byod toolchain install`"
            )
        result = _run_captured([npm, "ci", "--no-audit", "--no-fund"], tool="npm",
                               what=f"npm ci in {self.root}", timeout=_INSTALL_TIMEOUT_S,
                               cwd=self.root)
        if result.returncode != 0:
            raise ToolchainError(
                f"npm ci in {self.root} failed (exit {result.returncode}):\n"
                + _tail(result.stderr or result.stdout)
            )

    # -- running -------------------------------------------------------------------------

    def run_node(
        self,
        script: Path | str,
        args: Sequence[str] = (),
        *,
        timeout: float = 300.0,
        input: str | None = None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``node script args`` with this toolchain's packages resolvable (CommonJS via
        ``NODE_PATH``; ESM scripts resolve through ``createRequire`` or a ``node_modules``
        link beside their files). Output is captured; a timeout raises ``ToolchainError``."""

        node = node_executable()
        full_env = dict(os.environ if env is None else env)
        full_env["NODE_PATH"] = str(self.node_modules)
        full_env.setdefault("CI", "1")  # no interactive prompts, no CLI error reporting
        return _run_captured([node, str(script), *args], tool="node",
                             what=f"node {Path(script).name}", timeout=timeout,
                             cwd=cwd or self.root, input=input, env=full_env)

    def link_node_modules(self, directory: Path) -> Path:
        """Make ``directory/node_modules`` point at this toolchain's packages (a bundle
        directory then type-checks and deploys without its own install)."""

        link = Path(directory) / "node_modules"
        if link.is_symlink():
            if link.resolve() == self.node_modules.resolve():
                return link
            link.unlink()
        elif link.exists():
            return link  # a real install is already there; leave it alone
        link.symlink_to(self.node_modules, target_is_directory=True)
        return link
