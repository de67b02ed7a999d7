"""The package's public API resolves, is sorted, and importing it stays lazy."""

from __future__ import annotations

import subprocess
import sys

import engine


def test_every_public_name_resolves() -> None:
    assert engine.__all__ == sorted(engine.__all__)
    for name in engine.__all__:
        assert getattr(engine, name) is not None, name


def test_import_is_lazy() -> None:
    code = "import sys, engine; print(sorted(m for m in sys.modules if m.startswith('engine.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]"


def test_no_export_shadows_a_submodule() -> None:
    import pkgutil

    submodules = {m.name for m in pkgutil.iter_modules(engine.__path__)}
    assert not submodules & set(engine.__all__)
