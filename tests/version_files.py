"""Helpers for the schema tests: write version files into a temporary directory."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable

import pytest

from engine.check.rules import check_versions
from engine.config import EngineConfig
from engine.errors import Problem, VersionFileError
from engine.schema.loader import load_versions

WriteFn = Callable[..., Path]


@pytest.fixture
def write(tmp_path: Path) -> WriteFn:
    """``write("0001_a.yaml", text)`` writes a dedented file into ``tmp_path``."""

    def _write(name: str, text: str, directory: Path | None = None) -> Path:
        target = (directory or tmp_path) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return target

    return _write


@pytest.fixture
def problems_of(tmp_path: Path) -> Callable[..., list[Problem]]:
    """Load the files of ``tmp_path`` and return loader or rule problems."""

    def _run(config: EngineConfig | None = None) -> list[Problem]:
        try:
            versions = load_versions(tmp_path)
        except VersionFileError as exc:
            return exc.problems
        return check_versions(versions, config or EngineConfig(versions_dir=tmp_path))

    return _run
