"""``byod keys generate|rotate``, ``byod connect``, ``byod test-connection``, ``byod status``,
``byod entitle``: the vault, the registry and the connect flow from the command line.

Deploy keys are read from stdin only (``--key-stdin``), never from argv, where they would
land in shell history and process listings. Nothing here prints a URL, a deploy key or a
ciphertext; ``keys generate`` prints the one secret it exists to produce.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from engine.cli.output import dump, info, iso
from engine.commands import users
from engine.commands.workspace import Workspace
from engine.errors import InvalidCredentials
from engine.ports.registry import UserConfig
from engine.vault import ENV_KEY, ENV_OLD_KEYS, generate_key, key_id

__all__ = ["commands"]

_json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _when(ts: float | None) -> str:
    return iso(ts)


def _read_key() -> str:
    from engine.cli.secrets_input import read_key_stdin  # noqa: PLC0415 - `--help` stays light

    key = read_key_stdin()
    if not key:
        raise InvalidCredentials("no deploy key on stdin (pipe it in: "
                                 "`printf '%s' \"$KEY\" | byod connect ... --key-stdin`)")
    return key


# -- keys ----------------------------------------------------------------------------------------

@click.group("keys")
def keys() -> None:
    """Generate and rotate the credential encryption key."""


@keys.command("generate")
@_json_option
def keys_generate(as_json: bool) -> None:
    """Print a new random 32-byte key (64 hex chars) for BYOD_ENCRYPTION_KEY."""

    key = generate_key()
    kid = key_id(bytes.fromhex(key))
    if as_json:
        dump({"key": key, "key_id": kid, "env": ENV_KEY})
        return
    click.echo(key)
    info(f"# key id {kid}. Keep it secret and backed up; set it with:\n"
         f"#   export {ENV_KEY}=<the key above>\n"
         f"# when rotating, move the previous key to {ENV_OLD_KEYS} and run "
         "`byod keys rotate`")


@keys.command("rotate")
@_json_option
def keys_rotate(as_json: bool) -> None:
    """Re-encrypt every stored credential under the current key (resumable)."""

    with Workspace.open() as ws:
        report = users.rotate_keys(ws)
    if as_json:
        dump(report.to_dict())
    else:
        click.echo(f"rotation to key id {report.key_id}: {len(report.rotated)} rotated, "
                   f"{len(report.already_current)} already current, "
                   f"{len(report.no_credentials)} without credentials, "
                   f"{len(report.failed)} failed")
        for uid, reason in sorted(report.failed.items()):
            click.echo(f"  {uid}: {reason}", err=True)
        if report.ok:
            click.echo(f"every credential now uses key id {report.key_id}; old keys can be "
                       f"removed from {ENV_OLD_KEYS}")
    if not report.ok:
        raise click.exceptions.Exit(1)


# -- connect -------------------------------------------------------------------------------------

def _progress(as_json: bool):
    def on_stage(user_id: str, stage: str) -> None:
        if not as_json:
            info(f"{user_id}: {stage}")
    return on_stage


def _describe(user: UserConfig) -> str:
    fp = (user.schema_fingerprint or "")[:12]
    line = f"user {user.user_id}: {user.connection_status}"
    if user.schema_version:
        line += f" on {user.schema_version} (fingerprint {fp})"
    if user.deployment_progress and user.deployment_progress not in ("done",):
        line += f" — {user.deployment_progress}"
    return line


def _local_credentials(data_dir: Path, name: str) -> tuple[str, str]:
    """URL and admin key of one deployment of a running local fleet (never printed)."""

    from engine.local.launcher import LocalFleet

    fleet = LocalFleet.attach(data_dir)
    names = [d.name for d in fleet.deployments]
    if name not in names:
        raise click.BadParameter(f"no local deployment {name!r}; running: {', '.join(names)}",
                                 param_hint="--local")
    deployment = fleet.deployment(name)
    return deployment.url, deployment.admin_key


@click.command("connect")
@click.option("--user", "user_id", required=True, help="The app's user id.")
@click.option("--url", default=None, help="The deployment URL (https://…).")
@click.option("--key-stdin", is_flag=True, help="Read the deploy key from stdin.")
@click.option("--allow-insecure-local", is_flag=True,
              help="Allow plain http to a loopback deployment (local testing only).")
@click.option("--retry", is_flag=True, help="Retry from the credentials saved earlier.")
@click.option("--local", "local_name", default=None, metavar="NAME",
              help="Connect to the local deployment NAME of `byod local up` (its URL and key "
                   "are read from the fleet's files; implies --allow-insecure-local).")
@click.option("--local-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path(".byod/local"), show_default=True,
              help="Data directory of the local fleet, with --local.")
@click.option("--version", "version_ref", default="head", show_default=True,
              help="The version to deploy when connecting (an id, a number or `head`).")
@click.option("--copy-from-main", is_flag=True,
              help="Copy the user's existing content from the main deployment "
                   "(BYOD_MAIN_URL, BYOD_MAIN_ADMIN_KEY) before marking them connected; "
                   "--retry resumes an interrupted copy by itself.")
@_json_option
def connect(user_id: str, url: str | None, key_stdin: bool, allow_insecure_local: bool,
            retry: bool, local_name: str | None, local_dir: Path, version_ref: str,
            copy_from_main: bool, as_json: bool) -> None:
    """Connect a user's own Convex deployment: validate, test, save, deploy head, record."""

    if retry:
        if url or key_stdin or local_name:
            raise click.UsageError("--retry uses the saved credentials; drop --url/--key-stdin")
    elif local_name:
        if url or key_stdin:
            raise click.UsageError("--local takes the URL and key from the local fleet; "
                                   "drop --url/--key-stdin")
    elif not url or not key_stdin:
        raise click.UsageError("give --url and --key-stdin (the key is read from stdin, "
                               "never from the command line), --local NAME, or --retry")
    with Workspace.open() as ws:
        if retry:
            user = users.retry_connect(ws, user_id, on_stage=_progress(as_json),
                                       copy_from_main=True if copy_from_main else None)
        else:
            if local_name:
                url, key = _local_credentials(local_dir, local_name)
                allow_insecure_local = True
            else:
                key = _read_key()
            user = users.connect(ws, user_id, url or "", key, version=version_ref,
                                 allow_insecure_local=allow_insecure_local,
                                 on_stage=_progress(as_json), copy_from_main=copy_from_main)
    if as_json:
        dump(user.public_dict())
    else:
        click.echo(_describe(user))


@click.command("test-connection")
@click.option("--user", "user_id", required=True, help="The app's user id.")
@_json_option
def test_connection(user_id: str, as_json: bool) -> None:
    """Check a user's deployment with the saved credentials; connected ↔ error."""

    with Workspace.open() as ws:
        result = users.test_connection(ws, user_id)
    state = result.state or ("healthy" if result.ok else "failed")
    if as_json:
        dump(result.to_dict())
    elif result.ok:
        click.echo(f"user {user_id}: ok ({state}) in {result.latency_ms:.0f} ms, deployment "
                   f"on {result.deployed_version}; status {result.connection_status}")
        if result.note:  # migrating or stale: routable, but a rollout has work to do
            click.echo(f"  note: {result.note}")
    else:
        kinds = ", ".join(dict.fromkeys(k for k in (state, result.error_kind) if k))
        click.echo(f"user {user_id}: failed ({kinds}): {result.error}; "
                   f"status {result.connection_status}")
    if not result.ok:
        raise click.exceptions.Exit(1)


# -- status and the gate -------------------------------------------------------------------------

@click.command("status")
@click.option("--user", "user_id", default=None, help="One user (with recent history).")
@_json_option
def status(user_id: str | None, as_json: bool) -> None:
    """Users' connection and deployment state (never credentials)."""

    with Workspace.open() as ws:
        if user_id is not None:
            data = users.user_status(ws, user_id)
            latest = data.pop("journal_plan")
            if as_json:
                dump(data)
                return
            click.echo(_describe(ws.store.get_user(user_id)))
            _user_details(data, latest)
            return
        fleet = users.fleet_status(ws)
    if as_json:
        dump(fleet)
        return
    counts, rows = fleet["counts"], fleet["users"]
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no users"
    click.echo(f"{len(rows)} user(s): {summary} (availability: {fleet['availability']})")
    if rows:
        from engine.cli import tables  # loaded when a table is drawn, not for --help

        tables.render_table(
            ("user", "connection", "deployment", "version", "last test", "error"),
            [(u["user_id"], u["connection_status"], u["deployment_status"],
              u["schema_version"], _when(u["last_connection_test"]), u["connection_error"])
             for u in rows])


def _user_details(data: dict[str, Any], latest: str | None) -> None:
    """One user's fields, lease, journal of the latest plan and recent audit history, as
    tables (times in ISO 8601 UTC)."""

    from engine.cli import tables  # loaded when a table is drawn, not for --help

    fields: list[tuple[str, Any]] = [
        (name, data[name]) for name in ("deployment_status", "deployment_progress",
                                        "schema_version", "schema_fingerprint",
                                        "connection_error", "entitled")]
    fields += [(name, _when(data[name]))
               for name in ("last_connection_test", "created_at", "updated_at")]
    lease = data["lease"]
    if lease is not None:
        until = _when(lease["expires_at"])
        fields.append(("lease", f"held by {lease['holder']} until {until}"))
    tables.render_table(("field", "value"), fields)
    if data["journal"]:
        steps = []
        for step in data["journal"]:
            extra = f"processed={step['processed']}" if step["processed"] else ""
            extra += f" attempts={step['attempts']}" if step["attempts"] > 1 else ""
            extra += f" error: {step['error']}" if step["error"] else ""
            steps.append((step["seq"], step["status"], step["kind"], step["step_id"],
                          extra.strip()))
        click.echo()
        tables.render_table(("seq", "status", "kind", "step", "detail"), steps,
                            title=f"journal of plan {latest}")
    if data.get("history"):
        click.echo()
        tables.render_table(("at", "event", "detail"),
                            [(_when(h["at"]), h["event"], _detail(h["detail"]))
                             for h in data["history"]], title="recent history")


def _detail(detail: Any) -> str:
    """An audit row's detail on one line: ``key=value`` pairs for a mapping."""

    if isinstance(detail, dict):
        return " ".join(f"{k}={v}" for k, v in sorted(detail.items()) if v not in (None, ""))
    return "" if detail is None else str(detail)


@click.command("entitle")
@click.option("--user", "user_id", required=True, help="The app's user id.")
@click.option("--revoke", is_flag=True, help="Remove the entitlement instead.")
@_json_option
def entitle(user_id: str, revoke: bool, as_json: bool) -> None:
    """Grant (or revoke) a user's entitlement to connect when availability is premium."""

    with Workspace.open() as ws:
        user = users.entitle(ws, user_id, entitled=not revoke)
        config = ws.config
    if as_json:
        dump({"user_id": user_id, "entitled": user.entitled,
               "availability": config.availability})
        return
    click.echo(f"user {user_id}: {'entitled' if user.entitled else 'not entitled'}")
    if config.availability == "everyone":
        info("note: availability is 'everyone', so the gate is open to all users")
    elif revoke and user.schema_version:
        info("note: the user is already set up; their connection keeps working")


commands: list[click.Command] = [keys, connect, test_connection, status, entitle]
