"""``byod deploy VERSION --url U --key-stdin``: push one version's bundle to one deployment
with the Convex CLI, check that the deployment now answers that version, and record it on
the deployment. The key is read from stdin only (never argv, never printed)."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit

import click

from engine.cli.output import dump
from engine.commands import authoring as verbs
from engine.commands.workspace import Workspace
from engine.errors import InvalidCredentials
from engine.ports.deployment import DeploymentTarget

__all__ = ["commands", "deploy"]


def _default_label(url: str) -> str:
    try:
        parts = urlsplit(url.strip())
        return parts.netloc.rsplit("@", 1)[-1] or "deployment"
    except ValueError:
        return "deployment"


@click.command("deploy")
@click.argument("version")
@click.option("--url", required=True, help="The deployment's URL (https; http only for "
              "loopback with --allow-insecure-local).")
@click.option("--key-stdin", is_flag=True,
              help="Read the deploy or admin key from stdin (the only way to pass it).")
@click.option("--allow-insecure-local", is_flag=True,
              help="Allow plain http to a loopback deployment (local deployments).")
@click.option("--label", help="Name for the deployment in output (default: its host).")
@click.option("--timeout", type=click.FloatRange(min=1), default=None,
              help="Seconds the deploy may take (default: deploy_timeout_s, 300).")
@click.option("--versions", "versions_dir", type=click.Path(path_type=Path),
              help="Version files directory (default: the configured schema_versions/).")
@click.option("--no-record", is_flag=True,
              help="Do not record the version in the deployment's own byodVersions table.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def deploy(version: str, url: str, key_stdin: bool, allow_insecure_local: bool,
           label: str | None, timeout: float | None, versions_dir: Path | None,
           no_record: bool, as_json: bool) -> None:
    """Deploy VERSION (an id, a number or `head`) to one deployment with the Convex CLI.

    \b
    Example:
      byod deploy 1 --url http://127.0.0.1:3210 --allow-insecure-local --key-stdin < key.txt
    """

    if not key_stdin:
        raise click.UsageError(
            "pass the key on stdin with --key-stdin (keys are never taken from the command line)")
    ws = Workspace.open().with_versions_dir(versions_dir)
    if timeout is not None:
        ws = Workspace.open(ws.config.model_copy(update={"deploy_timeout_s": timeout}))
    name = label or _default_label(url)
    from engine.cli.secrets_input import read_key_stdin  # noqa: PLC0415 - `--help` stays light

    key = read_key_stdin()
    if not key:
        raise InvalidCredentials("no key on stdin", deployment=name)
    target = DeploymentTarget(label=name, url=url, admin_key=key,
                              allow_insecure_local=allow_insecure_local)
    summary = verbs.deploy(ws, version, target, record=not no_record)
    if as_json:
        dump(summary)
        return
    click.echo(f"deployed {summary['version']} to {summary['deployment']} "
               f"in {summary['duration_s']:.1f} s")
    click.echo(f"  fingerprint {summary['fingerprint']}")
    click.echo("  verified: the deployment answers this version"
               + ("; recorded in its byodVersions" if summary["recorded"] else ""))
    sys.stdout.flush()


commands: list[click.Command] = [deploy]
