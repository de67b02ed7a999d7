"""The manual-deploy adapter: "deploying" writes the bundle as a directory or an archive
for a person to deploy by hand (``npx convex deploy`` in it, see its README.md). Nothing
can be run or read through it; those calls fail with a clear ``AdapterUnsupported``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Literal

from engine.bundle.write import write_archive, write_bundle
from engine.errors import AdapterUnsupported
from engine.ports.bundle import Bundle
from engine.ports.deployment import DeployResult, FunctionKind, VersionInfo

__all__ = ["ArchiveAdapter", "ArchiveFormat"]

log = logging.getLogger(__name__)

ArchiveFormat = Literal["tar.gz", "zip", "dir"]
_FORMATS: tuple[str, ...] = ("tar.gz", "zip", "dir")


class ArchiveAdapter:
    """Writes ``<out_dir>/<version id>.tar.gz`` (or ``.zip``, or a ``<version id>/``
    directory) and reports where."""

    def __init__(self, out_dir: Path, format: ArchiveFormat = "tar.gz", *,
                 label: str = "manual"):
        if format not in _FORMATS:
            raise ValueError(f"archive format must be one of {', '.join(_FORMATS)}, "
                             f"not {format!r}")
        self.out_dir = Path(out_dir)
        self.format = format
        self.label = label

    def __repr__(self) -> str:
        return f"ArchiveAdapter(label={self.label!r}, format={self.format!r})"

    def path_for(self, version_id: str) -> Path:
        if self.format == "dir":
            return self.out_dir / version_id
        return self.out_dir / f"{version_id}.{self.format}"

    def deploy(self, bundle: Bundle) -> DeployResult:
        started = time.monotonic()
        path = self.path_for(bundle.version_id)
        if self.format == "dir":
            write_bundle(bundle, path)
        else:
            write_archive(bundle, path, self.format)
        duration = time.monotonic() - started
        log.info("deployment %s: wrote bundle %s for manual deployment to %s", self.label,
                 bundle.version_id, path)
        return DeployResult(
            label=self.label, version_id=bundle.version_id, fingerprint=bundle.fingerprint,
            duration_s=duration, location=str(path),
            output=f"wrote {path}; deploy it by hand with `npx convex deploy` "
                   "(see README.md inside)",
        )

    def _unsupported(self, what: str) -> AdapterUnsupported:
        return AdapterUnsupported(
            f"cannot {what}: this deployment is deployed by hand from an archive; "
            "connect it with a URL and key to drive it", deployment=self.label)

    def run(self, kind: FunctionKind, path: str, args: dict[str, Any] | None = None) -> Any:
        raise self._unsupported(f"run {kind} {path}")

    def query(self, path: str, args: dict[str, Any] | None = None) -> Any:
        raise self._unsupported(f"run query {path}")

    def mutation(self, path: str, args: dict[str, Any] | None = None) -> Any:
        raise self._unsupported(f"run mutation {path}")

    def action(self, path: str, args: dict[str, Any] | None = None) -> Any:
        raise self._unsupported(f"run action {path}")

    def read_version(self) -> VersionInfo:
        raise self._unsupported("read the deployed version")
