"""The lock of released versions (``versions.lock`` beside the version files), like
``atlas.sum``: one line per released version (its id and the sha256 of its file's canonical
content) after a checksum line over those lines, so a hand edit of the lock shows too.

Pure: texts in, texts, digests and ``Problem`` records out; reading and writing the files
is the caller's (``engine.commands.released``). Why canonical content and not bytes: a
comment, blank line, quoting style or key order changes nothing a bundle or a plan holds,
and neither do ``lint`` settings (they only change what ``byod check`` reports), so these
may change in a released file; anything else may not.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Mapping

import yaml

from engine.errors import Problem

__all__ = ["CHANGED", "LOCK_EDITED", "LOCK_NAME", "MISSING", "VersionLock", "canonical_content",
           "content_digest", "lock_problems", "parse_lock", "render_lock"]

LOCK_NAME = "versions.lock"
CHANGED = "BYOD-E180"  # a released version's file changed
LOCK_EDITED = "BYOD-E181"  # the lock itself was edited (checksum line, unreadable line)
MISSING = "BYOD-E182"  # a released version has no file any more

_PREFIX = "sha256:"
_HEADER = ("# Released schema versions: `byod release` writes this file and `byod check` "
           "fails when\n# a released version's file (or this file) changes. "
           "Do not edit it by hand.\n")
_UNCOUNTED = ("lint",)  # keys that change no bundle and no plan


def canonical_content(text: str) -> str:
    """The content of a version file that matters: its YAML document as JSON with sorted
    keys and no layout, without ``lint``. Text that is not one YAML mapping counts as it is
    (with normalized line ends), so any change to it still shows."""

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict):
        return "\n".join(line.rstrip() for line in text.splitlines())
    kept = {str(k): v for k, v in data.items() if str(k) not in _UNCOUNTED}
    return json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def content_digest(text: str) -> str:
    """``sha256:<hex>`` of :func:`canonical_content`."""

    return _PREFIX + hashlib.sha256(canonical_content(text).encode("utf-8")).hexdigest()


def _entry_lines(entries: Mapping[str, str]) -> list[str]:
    return [f"{vid} {digest}" for vid, digest in sorted(entries.items())]


def _sum(lines: list[str]) -> str:
    return _PREFIX + hashlib.sha256("".join(f"{line}\n" for line in lines).encode()).hexdigest()


@dataclass(frozen=True)
class VersionLock:
    """The released versions (id -> digest) as the lock lists them, and what is wrong
    with the lock itself: each ``(line or None, message)`` in ``defects``."""

    entries: dict[str, str]
    defects: tuple[tuple[int | None, str], ...] = ()

    @property
    def intact(self) -> bool:
        return not self.defects


def render_lock(entries: Mapping[str, str]) -> str:
    """The lock's text: a header, the checksum line, then one line per version by id."""

    lines = _entry_lines(entries)
    return _HEADER + f"sum {_sum(lines)}\n" + "".join(f"{line}\n" for line in lines)


def parse_lock(text: str) -> VersionLock:
    """Read a lock; every defect (a malformed line, a duplicate id, a missing or wrong
    checksum line) is kept rather than raised, so ``check`` reports them all."""

    entries: dict[str, str] = {}
    lines: list[str] = []
    defects: list[tuple[int | None, str]] = []
    declared: tuple[int, str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not _is_digest(parts[1]):
            defects.append((number, f"line {number} is not `<version id> sha256:<hex>`"))
            continue
        if parts[0] == "sum":
            if declared is not None:
                defects.append((number, f"line {number}: a second checksum line"))
            declared = (number, parts[1])
            continue
        if parts[0] in entries:
            defects.append((number, f"line {number}: {parts[0]} is listed twice"))
        entries[parts[0]] = parts[1]
        lines.append(f"{parts[0]} {parts[1]}")
    if declared is None:
        defects.append((None, "the checksum line (`sum sha256:...`) is missing"))
    elif declared[1] != _sum(sorted(lines)):
        defects.append((declared[0], "its checksum line does not match its entries: "
                        "the file was edited by hand"))
    return VersionLock(entries, tuple(defects))


def _is_digest(value: str) -> bool:
    hexpart = value[len(_PREFIX):]
    return (value.startswith(_PREFIX) and len(hexpart) == 64
            and all(c in "0123456789abcdef" for c in hexpart))


def lock_problems(lock: VersionLock, lock_file: str,
                  current: Mapping[str, tuple[str, str]]) -> list[Problem]:
    """What ``byod check`` reports: every defect of the lock (BYOD-E181), every released
    version without a file (BYOD-E182) and every released version whose file's content
    changed (BYOD-E180). ``current`` maps each version id to (file, digest now)."""

    out: list[Problem] = []
    for line, message in lock.defects:
        out.append(Problem(
            lock_file, line, "", f"the lock of released versions is not intact: {message}",
            "restore it from version control; to re-lock every released version as its "
            "file is now: `byod release --rehash all --yes`", LOCK_EDITED))
    for vid, digest in sorted(lock.entries.items()):
        if vid not in current:
            out.append(Problem(
                lock_file, None, "", f"released version {vid} has no version file any more",
                f"restore {vid}.yaml: deployments may be on it", MISSING))
            continue
        file, now = current[vid]
        if now != digest:
            out.append(Problem(
                file, None, "", f"released version {vid} changed since `byod release` locked "
                f"it ({lock_file}: {digest[:19]}..., the file now: {now[:19]}...)",
                f"put the change in a new version (`byod new NAME`) and undo this edit; "
                f"for a deliberate fix to this file: `byod release --rehash {vid} --yes`",
                CHANGED))
    return out

