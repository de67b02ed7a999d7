"""Where the engine's non-Python assets are: the code templates, the pinned npm toolchain's
manifest, the example schema versions and the example app functions.

In the repository they live at the top level (``templates/``, ``toolchain/``,
``schema_versions/``, ``functions/`` with its pinned snapshots in ``functions.pinned/``),
beside the ``engine`` package. A wheel cannot install files outside
its packages, so it carries copies under ``engine/_assets/``. Each lookup prefers the
packaged copy and falls back to the checkout, so an installed wheel and an editable install
of a checkout both find theirs.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from engine.errors import ConfigError

__all__ = ["example_functions_dir", "example_versions_dir", "is_packaged", "templates_dir",
           "toolchain_manifest_dir"]

_PACKAGED = "_assets"


def _packaged_root() -> Path | None:
    """``engine/_assets`` when the package is installed from a wheel and on disk (not in a
    zip archive, whose members cannot be handed to jinja, npm or the version loader)."""

    root = resources.files("engine") / _PACKAGED
    return root if isinstance(root, Path) and root.is_dir() else None


def _checkout_root() -> Path:
    """The directory holding the ``engine`` package: a checkout's root."""

    return Path(__file__).resolve().parent.parent


def _locate(name: str, what: str) -> Path:
    packaged = _packaged_root()
    if packaged is not None and (packaged / name).is_dir():
        return packaged / name
    checkout = _checkout_root() / name
    if checkout.is_dir():
        return checkout
    raise ConfigError(
        f"cannot find the engine's {what} ({name}/): it is neither packaged with the engine "
        f"nor beside it in a checkout at {_checkout_root()}; reinstall byod-engine"
    )


def templates_dir() -> Path:
    """The Jinja templates for bundles, migrations and reports (``templates/``)."""

    return _locate("templates", "templates")


def toolchain_manifest_dir() -> Path:
    """The directory with the pinned toolchain's ``package.json`` and ``package-lock.json``.

    In a checkout this is ``toolchain/`` itself, where ``npm ci`` installs; a packaged copy
    holds only the two files and may be read-only (see ``engine.convex.toolchain``)."""

    return _locate("toolchain", "npm toolchain manifest")


def example_versions_dir() -> Path:
    """The example schema versions the demo runs on (``schema_versions/``)."""

    return _locate("schema_versions", "example schema versions")


def example_functions_dir() -> Path:
    """The reference app's functions for the example versions (``functions/``; the
    snapshots some versions pin sit beside it in ``functions.pinned/``)."""

    return _locate("functions", "example app functions")


def is_packaged(path: Path) -> bool:
    """Whether ``path`` is inside the copy of the assets packaged with the engine."""

    packaged = _packaged_root()
    return packaged is not None and Path(path).resolve().is_relative_to(packaged.resolve())
