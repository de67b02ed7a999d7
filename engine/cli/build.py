"""``byod build`` (compile versions into bundles) and ``byod toolchain`` (the pinned npm
toolchain). Thin: every verb is one call into the engine plus output formatting."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from engine.bundle.write import ArchiveFormat
from engine.cli.output import dump
from engine.commands import authoring as verbs
from engine.commands.workspace import Workspace
from engine.convex.toolchain import Toolchain

if TYPE_CHECKING:
    from engine.bundle.compiler import BundleTarget

commands: list[click.Command] = []


def _emit(data: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    if as_json:
        dump(data)
    else:
        for line in lines:
            click.echo(line)


@click.command("build")
@click.argument("version", required=False)
@click.option(
    "--all", "build_all", is_flag=True, help="Build every version (one subdirectory each)."
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Bundle directory (with --all: the parent of one directory per version).",
)
@click.option(
    "--archive",
    type=click.Choice(["tar.gz", "zip"]),
    help="Also write an archive beside each bundle directory (DIR.tar.gz / DIR.zip).",
)
@click.option(
    "--versions",
    "versions_dir",
    type=click.Path(path_type=Path),
    help="Version files directory (default: the configured schema_versions/).",
)
@click.option(
    "--target",
    "bundle_target",
    type=click.Choice(["user", "main"]),
    default="user",
    show_default=True,
    help="user: a user's deployment (user-located tables, the app's functions); main: the "
    "app's main deployment (every table, the functions disconnect --data migrate and "
    "connect --copy-from-main call).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def build(
    version: str | None,
    build_all: bool,
    out: Path,
    archive: ArchiveFormat | None,  # click.Choice above admits only these
    versions_dir: Path | None,
    bundle_target: BundleTarget,  # click.Choice above admits only these
    as_json: bool,
) -> None:
    """Compile VERSION (an id, a number or `head`) into a deployable bundle directory."""

    if build_all == (version is not None):
        raise click.UsageError("give exactly one of VERSION or --all")
    ws = Workspace.open().with_versions_dir(versions_dir)
    results = verbs.build(ws, None if build_all else version, out, archive=archive,
                          bundle_target=bundle_target)
    _emit(
        {"bundles": results},
        as_json,
        [
            f"{r['version']}" + (" (main)" if bundle_target == "main" else "") + f": {r['out']}"
            + (f" + {r['archive']}" if "archive" in r else "")
            + f" (fingerprint {r['fingerprint'][:16]})"
            for r in results
        ],
    )


commands.append(build)


@click.group("toolchain")
def toolchain() -> None:
    """The pinned npm toolchain (convex, typescript, esbuild, convex-test)."""


def _describe(tc: Toolchain) -> dict[str, Any]:
    installed = tc.is_installed()
    return {
        "root": str(tc.root),
        "node_modules": str(tc.node_modules),
        "convex_bin": str(tc.node_modules / ".bin" / "convex"),
        "installed": installed,
        "convex_version": tc.package_version("convex") if installed else None,
    }


@toolchain.command("install")
@click.option("--force", is_flag=True, help="Run npm ci even if the install is current.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def toolchain_install(force: bool, as_json: bool) -> None:
    """Install the toolchain with `npm ci` (skipped when already matching the lock)."""

    tc = Toolchain.find().ensure_installed(force=force)
    info = _describe(tc)
    _emit(
        info,
        as_json,
        [f"toolchain ready: {info['node_modules']} (convex {info['convex_version']})"],
    )


@toolchain.command("path")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def toolchain_path(as_json: bool) -> None:
    """Print where the toolchain's node_modules is (and whether it is installed)."""

    info = _describe(Toolchain.find())
    _emit(
        info,
        as_json,
        [info["node_modules"]]
        if info["installed"]
        else [f"{info['node_modules']} (not installed: run `byod toolchain install`)"],
    )


commands.append(toolchain)

__all__ = ["build", "commands", "toolchain"]
