"""The manual-deploy archive adapter and the per-deployment adapter factory."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.convex.archive import ArchiveAdapter
from engine.convex.connector import adapter_for
from engine.convex.deploy_cli import CliDeployAdapter
from engine.convex.http import ConvexHttpClient
from engine.convex.toolchain import Toolchain
from engine.errors import AdapterUnsupported
from engine.ports.deployment import DeployAdapter, DeploymentTarget

from .test_cli_adapter import make_bundle


@pytest.mark.parametrize("fmt", ["tar.gz", "zip", "dir"])
def test_archive_writes_the_bundle(tmp_path: Path, fmt: str) -> None:
    adapter = ArchiveAdapter(tmp_path / "out", fmt, label="user_5")  # type: ignore[arg-type]
    assert isinstance(adapter, DeployAdapter)
    bundle = make_bundle("0002_tags")
    result = adapter.deploy(bundle)
    where = Path(result.location)
    assert where.exists() and str(where) in result.output
    assert (result.label, result.version_id, result.fingerprint) == (
        "user_5", "0002_tags", bundle.fingerprint)
    if fmt == "dir":
        names = {str(p.relative_to(where)) for p in where.rglob("*") if p.is_file()}
    elif fmt == "zip":
        names = {n.split("/", 1)[1] for n in zipfile.ZipFile(where).namelist()}
    else:
        with tarfile.open(where) as tar:
            names = {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}
    assert names == set(bundle.files)


def test_archive_cannot_be_driven(tmp_path: Path) -> None:
    adapter = ArchiveAdapter(tmp_path, label="user_5")
    for call in (lambda: adapter.read_version(), lambda: adapter.query("byod:version"),
                 lambda: adapter.mutation("a:b"), lambda: adapter.run("action", "a:c")):
        with pytest.raises(AdapterUnsupported, match="user_5.*by hand"):
            call()
    with pytest.raises(ValueError, match="format"):
        ArchiveAdapter(tmp_path, "rar")  # type: ignore[arg-type]


def test_factory_chooses_per_deployment(tmp_path: Path) -> None:
    config = EngineConfig(deploy_timeout_s=120, http_timeout_s=7)
    target = DeploymentTarget(label="user_1", url="https://happy-otter-123.convex.cloud",
                              admin_key="prod:happy-otter-123|" + "0123456789abcdef" * 3)
    toolchain = Toolchain(root=tmp_path)
    cli = adapter_for(target, config, toolchain=toolchain)
    assert isinstance(cli, CliDeployAdapter) and cli.timeout == 120
    assert cli.http.timeout == 7
    http = adapter_for(target, config, kind="http")
    assert isinstance(http, ConvexHttpClient) and http.timeout == 7
    with pytest.raises(AdapterUnsupported):
        http.deploy(make_bundle())
    archive = adapter_for(target, config, kind="archive", archive_dir=tmp_path, archive_format="zip")
    assert isinstance(archive, ArchiveAdapter) and archive.label == "user_1"
    assert archive.path_for("0001") == tmp_path / "0001.zip"
    for adapter in (cli, http, archive):
        assert isinstance(adapter, DeployAdapter)
    with pytest.raises(ValueError, match="adapter kind"):
        adapter_for(target, config, kind="ftp")  # type: ignore[arg-type]
