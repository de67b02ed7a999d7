"""``release``: mark versions released and rewrite the lock of released versions
(``versions.lock`` in the version directory), and the lock's part of ``check``.

A released version may be on deployments, so its file must not change: ``check`` fails
naming the file, and the way on is a new version (``new``). A deliberate fix to a released
file (a typo in a description, a hint that can never run again) is re-locked with
``rehash`` and ``confirm=True``; the result lists each old and new digest for the record.
The pure rules are ``engine.schema.lock``; this module reads and writes the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from engine.commands.workspace import Workspace
from engine.errors import Problem, VersionError

if TYPE_CHECKING:
    from engine.schema.lock import VersionLock
    from engine.schema.models import SchemaVersion

__all__ = ["lock_path", "release", "released_problems"]

ALL = "all"


def lock_path(versions_dir: Path) -> Path:
    """Where the lock of the versions in ``versions_dir`` lives."""

    from engine.schema.lock import LOCK_NAME

    return Path(versions_dir) / LOCK_NAME


def _current(versions: Iterable["SchemaVersion"]) -> dict[str, tuple[str, str]]:
    """Each version's (file, digest of its file's canonical content now)."""

    from engine.schema.lock import content_digest

    out: dict[str, tuple[str, str]] = {}
    for v in versions:
        if v.source is not None:
            path = Path(v.source.path)
            out[v.id] = (v.source.path, content_digest(path.read_text(encoding="utf-8")))
    return out


def _read_lock(path: Path) -> "VersionLock | None":
    from engine.schema.lock import parse_lock

    if not path.is_file():
        return None
    try:
        return parse_lock(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise VersionError(f"{path}: cannot read the lock of released versions: {exc}") from None


def released_problems(versions_dir: Path, versions: Sequence["SchemaVersion"]) -> list[Problem]:
    """``check``'s part: the lock's defects and every released version whose file changed
    or is gone. No lock, no released version: nothing to report."""

    from engine.schema.lock import lock_problems

    path = lock_path(versions_dir)
    try:
        lock = _read_lock(path)
    except VersionError as exc:
        from engine.schema.lock import LOCK_EDITED

        return [Problem(str(path), None, "", str(exc), "restore it from version control",
                        LOCK_EDITED)]
    if lock is None:
        return []
    return lock_problems(lock, path.as_posix(), _current(versions))


def release(ws: Workspace, versions: Sequence[str] = (), *, rehash: Sequence[str] = (),
            confirm: bool = False) -> dict[str, Any]:
    """Release ``versions`` (default: the head(s)) and all their ancestors: add each to the
    lock with its file's digest, and rewrite the lock. ``rehash`` (ids, numbers or
    ``all``) re-locks released versions whose files changed on purpose and needs
    ``confirm``. Refuses while the versions fail ``check`` (other than the lock's own
    problems), while a released file changed that is not rehashed, or while the lock is
    not intact and nothing is rehashed."""

    from engine.bundle.functions import check_functions
    from engine.check.rules import check_versions
    from engine.schema.lock import render_lock

    if rehash and not confirm:
        raise VersionError("--rehash rewrites the record of what was released and hides "
                           "the edit from `byod check`; add --yes to do it on purpose")
    graph = ws.graph  # a version file that does not load stops here, with its problems
    loaded = list(graph.versions.values())
    problems = [*check_versions(loaded, ws.config),
                *check_functions(ws.config.functions_dir, [v.id for v in loaded])]
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise VersionError("the versions do not pass `byod check`; fix them before a release:\n"
                           + "\n".join(p.render() for p in errors))
    path = lock_path(ws.config.versions_dir)
    lock = _read_lock(path)
    entries = dict(lock.entries) if lock is not None else {}
    current = _current(graph.versions.values())
    gone = sorted(vid for vid in entries if vid not in current)
    if gone:
        raise VersionError(f"{path}: released version(s) {', '.join(gone)} have no version "
                           "file any more; restore them: deployments may be on them")
    if ALL in rehash:
        chosen = set(entries)
    else:
        chosen = {graph.resolve(ref).id for ref in rehash}
        unreleased = sorted(chosen - set(entries))
        if unreleased:
            raise VersionError(f"cannot rehash {', '.join(unreleased)}: not released yet "
                               f"(`byod release {unreleased[0]}` releases it)")
    if lock is not None and not lock.intact and not rehash:
        raise VersionError(f"{path}: the lock of released versions is not intact "
                           f"({lock.defects[0][1]}); restore it from version control, or "
                           "re-lock every released version as it is now: "
                           "`byod release --rehash all --yes`")
    changed = sorted(vid for vid, digest in entries.items() if current[vid][1] != digest)
    refused = [vid for vid in changed if vid not in chosen]
    if refused:
        files = ", ".join(current[vid][0] for vid in refused)
        raise VersionError(f"released version(s) {', '.join(refused)} changed since they "
                           f"were locked ({files}): put the change in a new version "
                           f"(`byod new NAME`), or for a deliberate fix "
                           f"`byod release --rehash {refused[0]} --yes`")
    rehashed = [{"id": vid, "file": current[vid][0], "old": entries[vid], "new": current[vid][1]}
                for vid in changed if vid in chosen]
    for row in rehashed:
        entries[row["id"]] = row["new"]
    targets = [graph.resolve(ref).id for ref in versions] or list(graph.heads())
    added = []
    for vid in sorted({a for t in targets for a in (t, *graph.ancestors(t))},
                      key=lambda v: (graph.get(v).number, v)):
        if vid not in entries and vid in current:
            entries[vid] = current[vid][1]
            added.append(vid)
    text = render_lock(entries)
    old_text = path.read_text(encoding="utf-8") if path.is_file() else None
    written = text != old_text
    if written:
        path.write_text(text, encoding="utf-8")
    return {"lock": path.as_posix(), "released": added, "rehashed": rehashed,
            "versions": sorted(entries), "written": written}
