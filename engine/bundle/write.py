"""Writing compiled bundles to disk: a directory, or a ``.tar.gz`` / ``.zip`` archive.

Every output is byte-for-byte deterministic: LF text, sorted entries, fixed timestamps,
owners and modes, so two builds of the same version can be compared with ``cmp``.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Literal

from engine.bundle.compiler import MANIFEST_FILE, Bundle
from engine.errors import CompileError

__all__ = ["ArchiveFormat", "archive_format_of", "write_archive", "write_bundle"]

ArchiveFormat = Literal["tar.gz", "zip"]

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
_FILE_MODE = 0o644
_DIR_MODE = 0o755


def _checked_paths(bundle: Bundle) -> list[str]:
    paths = sorted(bundle.files)
    for path in paths:
        pure = PurePosixPath(path)
        if pure.is_absolute() or ".." in pure.parts or not pure.parts:
            raise CompileError(f"bundle {bundle.version_id}: unsafe file path {path!r}")
    return paths


def _previous_files(out_dir: Path) -> list[str]:
    """Files a bundle written earlier into ``out_dir`` left there (from its manifest)."""

    manifest_path = out_dir / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = list(manifest.get("files", {}))
    except (OSError, ValueError, AttributeError) as exc:
        raise CompileError(
            f"{manifest_path}: unreadable bundle manifest; remove the directory first"
        ) from exc
    return [*files, MANIFEST_FILE]


def write_bundle(bundle: Bundle, out_dir: Path) -> Path:
    """Write ``bundle`` into ``out_dir``.

    An existing directory is reused only if it holds an earlier bundle (its manifest): the
    files that bundle wrote are replaced, anything else (``node_modules``, the CLI's
    ``convex/_generated``) is kept. Any other non-empty directory is refused.
    """

    out_dir = Path(out_dir)
    paths = _checked_paths(bundle)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise CompileError(f"{out_dir}: exists and is not a directory")
        if (out_dir / MANIFEST_FILE).exists():
            for old in _previous_files(out_dir):
                target = out_dir / old
                if ".." not in PurePosixPath(old).parts and target.is_file():
                    target.unlink()
        elif any(out_dir.iterdir()):
            raise CompileError(
                f"{out_dir}: directory is not empty and holds no byod bundle; "
                "choose an empty or new directory"
            )
    try:
        for path in paths:
            target = out_dir / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(bundle.files[path].encode("utf-8"))
    except OSError as exc:
        raise CompileError(f"{out_dir}: cannot write bundle: {exc.strerror}") from exc
    return out_dir


def archive_format_of(path: Path) -> ArchiveFormat:
    name = Path(path).name.lower()
    if name.endswith((".tar.gz", ".tgz")):
        return "tar.gz"
    if name.endswith(".zip"):
        return "zip"
    raise CompileError(f"{path}: archive name must end in .tar.gz, .tgz or .zip")


def _directories(paths: list[str]) -> list[str]:
    dirs: set[str] = set()
    for path in paths:
        parent = PurePosixPath(path).parent
        while str(parent) != ".":
            dirs.add(str(parent))
            parent = parent.parent
    return sorted(dirs)


def _tar_gz(bundle: Bundle, root: str, paths: list[str]) -> bytes:
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            entries: list[tuple[str, bytes | None]] = [(d, None) for d in ["", *_directories(paths)]]
            entries += [(p, bundle.files[p].encode("utf-8")) for p in paths]
            for name, data in sorted(entries, key=lambda e: e[0]):
                info = tarfile.TarInfo(f"{root}/{name}".rstrip("/"))
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if data is None:
                    info.type = tarfile.DIRTYPE
                    info.mode = _DIR_MODE
                    tar.addfile(info)
                else:
                    info.mode = _FILE_MODE
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _zip(bundle: Bundle, root: str, paths: list[str]) -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, mode="w") as archive:
        for path in paths:
            info = zipfile.ZipInfo(f"{root}/{path}", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = (0o100000 | _FILE_MODE) << 16
            archive.writestr(info, bundle.files[path].encode("utf-8"), compresslevel=9)
    return raw.getvalue()


def write_archive(bundle: Bundle, path: Path, fmt: ArchiveFormat | None = None) -> Path:
    """Write ``bundle`` as one archive whose entries sit under ``<version id>/``."""

    path = Path(path)
    fmt = fmt or archive_format_of(path)
    paths = _checked_paths(bundle)
    data = (
        _tar_gz(bundle, bundle.version_id, paths)
        if fmt == "tar.gz"
        else _zip(bundle, bundle.version_id, paths)
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise CompileError(f"{path}: cannot write archive: {exc.strerror}") from exc
    return path
