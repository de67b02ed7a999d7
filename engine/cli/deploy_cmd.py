"""``byod deploy VERSION --url U --key-stdin``: push one version's bundle to one deployment
with the Convex CLI, check that the deployment now answers that version, and record it on
the deployment. The key is read from stdin only (never argv, never printed).

``byod deploy [VERSION] --target main`` puts the version's *main* bundle on the app's main
deployment (by default the one ``BYOD_MAIN_URL`` / ``BYOD_MAIN_ADMIN_KEY`` name): what
``disconnect --data migrate`` and ``connect --copy-from-main`` need there."""

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
@click.argument("version", required=False)
@click.option("--target", "bundle_target", type=click.Choice(["user", "main"]), default="user",
              show_default=True,
              help="user: a user's bundle to the deployment --url names; main: the main "
                   "bundle (every table, the functions disconnect --data migrate and "
                   "connect --copy-from-main call) to the main deployment, by default the "
                   "one BYOD_MAIN_URL and BYOD_MAIN_ADMIN_KEY name.")
@click.option("--url", help="The deployment's URL (https; http only for loopback with "
              "--allow-insecure-local). Required for --target user.")
@click.option("--key-stdin", is_flag=True,
              help="Read the deploy or admin key from stdin (the only way to pass it).")
@click.option("--allow-insecure-local", is_flag=True,
              help="Allow plain http to a loopback deployment (local deployments).")
@click.option("--label", help="Name for the deployment in output (default: its host; "
              "`main` for --target main).")
@click.option("--timeout", type=click.FloatRange(min=1), default=None,
              help="Seconds the deploy may take (default: deploy_timeout_s, 300).")
@click.option("--versions", "versions_dir", type=click.Path(path_type=Path),
              help="Version files directory (default: the configured schema_versions/).")
@click.option("--no-record", is_flag=True,
              help="Do not record the version in the deployment's own byodVersions table.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def deploy(version: str | None, bundle_target: str, url: str | None, key_stdin: bool,
           allow_insecure_local: bool, label: str | None, timeout: float | None,
           versions_dir: Path | None, no_record: bool, as_json: bool) -> None:
    """Deploy VERSION (an id, a number or `head`) to one deployment with the Convex CLI.

    \b
    Examples:
      byod deploy 1 --url http://127.0.0.1:3210 --allow-insecure-local --key-stdin < key.txt
      byod deploy head --target main      # main from BYOD_MAIN_URL / BYOD_MAIN_ADMIN_KEY
    """

    main = bundle_target == "main"
    if version is None:
        if not main:
            raise click.UsageError("missing argument VERSION (an id, a number or `head`)")
        version = "head"
    if url is None and not main:
        raise click.UsageError("missing option --url (the deployment to deploy to)")
    if url is not None and not key_stdin:
        raise click.UsageError(
            "pass the key on stdin with --key-stdin (keys are never taken from the command line)")
    if url is None and key_stdin:
        raise click.UsageError("--key-stdin goes with --url; without --url the main "
                               "deployment's key comes from BYOD_MAIN_ADMIN_KEY")
    ws = Workspace.open().with_versions_dir(versions_dir)
    if timeout is not None:
        ws = Workspace.open(ws.config.model_copy(update={"deploy_timeout_s": timeout}))
    if url is None:
        from engine.convex.targets import main_target_from_env  # noqa: PLC0415

        target = main_target_from_env()
        if label:
            target = DeploymentTarget(label=label, url=target.url, admin_key=target.admin_key,
                                      allow_insecure_local=target.allow_insecure_local)
    else:
        name = label or ("main" if main else _default_label(url))
        from engine.cli.secrets_input import read_key_stdin  # noqa: PLC0415 - `--help` stays light

        key = read_key_stdin()
        if not key:
            raise InvalidCredentials("no key on stdin", deployment=name)
        target = DeploymentTarget(label=name, url=url, admin_key=key,
                                  allow_insecure_local=allow_insecure_local)
    summary = verbs.deploy(ws, version, target, record=not no_record,
                           bundle_target="main" if main else "user")
    if as_json:
        dump(summary)
        return
    what = "the main bundle of " if main else ""
    click.echo(f"deployed {what}{summary['version']} to {summary['deployment']} "
               f"in {summary['duration_s']:.1f} s")
    click.echo(f"  fingerprint {summary['fingerprint']}")
    click.echo("  verified: the deployment answers this version"
               + ("; recorded in its byodVersions" if summary["recorded"] else ""))
    sys.stdout.flush()


commands: list[click.Command] = [deploy]
