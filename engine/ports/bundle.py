"""A compiled bundle: the record the compiler produces and every deployer consumes.

It lives with the ports because both ends need it: the pure compiler (``engine.bundle``)
builds it, and the adapters (``engine.convex``) and the runner only read it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Bundle"]


@dataclass(frozen=True)
class Bundle:
    """One compiled bundle: relative path → text (sorted), its fingerprint and manifest.

    Treat ``files`` and ``manifest`` as read-only; ``bundle_io`` writes them to disk.
    """

    version_id: str
    kind: str
    files: dict[str, str] = field(repr=False)
    fingerprint: str
    manifest: dict[str, Any] = field(repr=False)

    @property
    def tables(self) -> list[str]:
        return list(self.manifest["tables"])

    @property
    def content_key(self) -> str:
        """sha256 over every file, the version marker included. Two bundles can share a
        fingerprint (same behaviour) yet answer different versions (e.g. the widened
        bundles of 0001→0006 and 0002→0006), so anything that caches what is *pushed*
        keys on this, not on the fingerprint."""

        digest = hashlib.sha256()
        for path, text in sorted(self.files.items()):
            digest.update(path.encode() + b"\0" + text.encode() + b"\0")
        return digest.hexdigest()
