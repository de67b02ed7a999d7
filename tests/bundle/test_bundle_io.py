"""Writing bundles: deterministic directories and archives, safe reuse of a directory."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import pytest

from engine.bundle.compiler import compile_bundle, compile_version
from engine.bundle.write import archive_format_of, write_archive, write_bundle
from engine.config import EngineConfig
from engine.errors import CompileError

from .schemas import rich_schema, version

CONFIG = EngineConfig()


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_two_builds_give_identical_trees_and_archives(tmp_path: Path) -> None:
    outputs = []
    for run in ("a", "b"):
        bundle = compile_version(version(), CONFIG)
        write_bundle(bundle, tmp_path / run / "dir")
        write_archive(bundle, tmp_path / run / "b.tar.gz")
        write_archive(bundle, tmp_path / run / "b.zip")
        outputs.append(
            (
                _tree(tmp_path / run / "dir"),
                (tmp_path / run / "b.tar.gz").read_bytes(),
                (tmp_path / run / "b.zip").read_bytes(),
            )
        )
    assert outputs[0] == outputs[1]
    tree = outputs[0][0]
    assert tree == {k: v.encode() for k, v in compile_version(version(), CONFIG).files.items()}


def test_archives_hold_the_bundle_under_its_version_id(tmp_path: Path) -> None:
    bundle = compile_version(version("0003_x", 3), CONFIG)
    with tarfile.open(write_archive(bundle, tmp_path / "x.tgz"), "r:gz") as tar:
        members = tar.getmembers()
        files = {m.name: tar.extractfile(m).read().decode() for m in members if m.isfile()}
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members)
        assert [m.name for m in members] == sorted(m.name for m in members)
        assert "0003_x/convex" in [m.name for m in members if m.isdir()]
    assert files == {f"0003_x/{k}": v for k, v in bundle.files.items()}
    with zipfile.ZipFile(write_archive(bundle, tmp_path / "x.zip")) as archive:
        assert {n: archive.read(n).decode() for n in archive.namelist()} == files
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in archive.infolist())


def test_gzip_header_has_no_timestamp_or_name(tmp_path: Path) -> None:
    data = write_archive(compile_version(version(), CONFIG), tmp_path / "b.tar.gz").read_bytes()
    assert data[:3] == b"\x1f\x8b\x08"
    assert data[4:8] == b"\x00\x00\x00\x00"  # mtime
    assert data[3] & 0x08 == 0  # no original file name


def test_archive_format_from_name() -> None:
    assert archive_format_of(Path("a.tar.gz")) == "tar.gz"
    assert archive_format_of(Path("a.TGZ")) == "tar.gz"
    assert archive_format_of(Path("a.zip")) == "zip"
    with pytest.raises(CompileError, match="tar.gz"):
        archive_format_of(Path("a.rar"))


def test_rewriting_a_bundle_directory_replaces_only_bundle_files(tmp_path: Path) -> None:
    out = tmp_path / "b"
    with_steps = compile_version(version(), CONFIG)
    write_bundle(with_steps, out)
    stale = out / "convex" / "stale.ts"
    # pretend an earlier bundle wrote a file the new one does not have
    manifest = (
        (out / "byod-manifest.json")
        .read_text()
        .replace('"files": {', '"files": {\n    "convex/stale.ts": "00",', 1)
    )
    (out / "byod-manifest.json").write_text(manifest)
    stale.write_text("old")
    (out / "convex" / "_generated").mkdir()
    (out / "convex" / "_generated" / "api.d.ts").write_text("kept")
    other = compile_bundle(rich_schema(schema_validation=False), version_id="0002", config=CONFIG)
    write_bundle(other, out)
    assert not stale.exists()
    assert (out / "convex" / "_generated" / "api.d.ts").read_text() == "kept"
    assert (out / "convex" / "schema.ts").read_text() == other.files["convex/schema.ts"]


def test_a_non_bundle_directory_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(CompileError, match="not empty"):
        write_bundle(compile_version(version(), CONFIG), tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "precious"
