"""``byod serve`` (the service, on uvicorn), ``byod serve user-link USER`` (a sign-in link
to a user's settings page) and ``byod tokens create|list|revoke`` (the app backend's API
tokens): thin wrappers over ``engine.commands.service``.

The service needs ``BYOD_SERVE_SECRET`` (it signs page links and sessions); a token is
printed once, at creation, and only its hash is kept.
"""

from __future__ import annotations

import click

from engine.cli.output import dump
from engine.commands import service as verbs
from engine.commands.workspace import Workspace

__all__ = ["commands", "serve", "tokens"]

_json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group("serve", invoke_without_command=True)
@click.option("--host", default=None, help="Address to listen on (default: serve.host).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Port to listen on (default: serve.port).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the service: settings API, blocker, data plane, pages, dashboard, metrics."""

    if ctx.invoked_subcommand is not None:
        return
    with Workspace.open() as ws:
        verbs.serve(ws, host=host, port=port)


@serve.command("user-link")
@click.argument("user_id", metavar="USER")
@_json_option
def user_link_cmd(user_id: str, as_json: bool) -> None:
    """A sign-in link to USER's settings page (short-lived; hand it to that user only)."""

    with Workspace.open() as ws:
        url = verbs.user_link(ws, user_id)
        ttl = ws.config.serve.user_token_ttl_s
    if as_json:
        dump({"user_id": user_id, "url": url, "expires_in": ttl})
        return
    click.echo(url)


@click.group("tokens")
def tokens() -> None:
    """API tokens for the app's backend (scopes: settings, data, admin)."""


@tokens.command("create")
@click.option("--name", required=True, help="What the token is for (e.g. app-backend).")
@click.option("--scope", "scopes", required=True,
              help="Comma-separated scopes: settings, data, admin.")
@_json_option
def create_cmd(name: str, scopes: str, as_json: bool) -> None:
    """Create a token and print it once (only its hash is kept)."""

    with Workspace.open() as ws:
        record, token = verbs.create_token(ws, name, scopes)
    if as_json:
        dump({**record.to_dict(), "token": token})
        return
    click.echo(token)
    click.echo(f"created token {record.token_id} ({record.name}; scopes "
               f"{', '.join(record.scopes)}): store it now, it is not shown again", err=True)


@tokens.command("list")
@_json_option
def list_cmd(as_json: bool) -> None:
    """Every token: id, name, scopes, created, last used, revoked (never the token)."""

    with Workspace.open() as ws:
        rows = [t.to_dict() for t in verbs.list_tokens(ws)]
    if as_json:
        dump(rows)
        return
    if not rows:
        click.echo("no API tokens")
        return
    from engine.cli import tables  # loaded when a table is drawn, not for --help
    from engine.cli.output import iso

    tables.render_table(
        ("id", "name", "scopes", "created", "last used", "revoked"),
        [(r["token_id"], r["name"], ",".join(r["scopes"]), iso(r["created_at"]),
          iso(r["last_used_at"]), iso(r["revoked_at"])) for r in rows])


@tokens.command("revoke")
@click.argument("token_id", metavar="ID")
@_json_option
def revoke_cmd(token_id: str, as_json: bool) -> None:
    """Revoke token ID: calls with it are refused from now on."""

    with Workspace.open() as ws:
        record = verbs.revoke_token(ws, token_id)
    if as_json:
        dump(record.to_dict())
        return
    click.echo(f"revoked token {record.token_id} ({record.name})")


commands: list[click.Command] = [serve, tokens]
