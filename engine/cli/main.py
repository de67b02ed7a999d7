"""``byod``: a thin click wrapper over ``engine.commands``-style functions, one per verb.

The verbs live in the other modules of this package (each also lists its click commands in
``commands``). They are found through ``COMMANDS``, a static table of command name ->
(module, attribute, one-line help), and a module is imported only when one of its commands
is invoked or its own ``--help`` is asked: ``byod --help`` prints the table's help lines
and imports neither the engine nor its heavy dependencies. The table must match the
modules; ``tests/cli`` checks that it does.

Only ``ByodError`` is caught here; it is printed (already free of secrets) and turned into
its documented exit code: 0 ok, 1 a domain error or failed check, 2 a usage error (click's
own).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any, NamedTuple

import click

__all__ = ["COMMANDS", "CommandEntry", "cli", "main"]


class CommandEntry(NamedTuple):
    """Where a command lives (``engine.cli.<module>.<attribute>``) and its short help: the
    first sentence of its docstring, exactly as ``byod --help`` shows it."""

    module: str
    attribute: str
    help: str


COMMANDS: dict[str, CommandEntry] = {
    "check": CommandEntry(
        "check", "check", "Validate every schema version file and the version graph."),
    "build": CommandEntry(
        "build", "build",
        "Compile VERSION (an id, a number or `head`) into a deployable bundle directory."),
    "toolchain": CommandEntry(
        "build", "toolchain",
        "The pinned npm toolchain (convex, typescript, esbuild, convex-test)."),
    "diff": CommandEntry(
        "planning", "diff_cmd",
        "Classified changes from version A to version B (user-deployed tables)."),
    "plan": CommandEntry(
        "planning", "plan_cmd",
        "The steps that bring a deployment (or a fleet) from one version to another."),
    "graph": CommandEntry(
        "planning", "graph_cmd", "The version graph (Mermaid or DOT), heads marked."),
    "init": CommandEntry(
        "init_cmd", "init_cmd",
        "Start a project from the Convex app APP_DIR: version 1 from its schema.ts."),
    "new": CommandEntry(
        "version_files", "new_cmd",
        "Start version NAME: the next number, the head as parent, the head's schema, no hints."),
    "history": CommandEntry(
        "version_files", "history_cmd",
        "Every version, oldest first, with what changed from its parents."),
    "show": CommandEntry(
        "version_files", "show_cmd",
        "One VERSION (an id, a number or `head`): graph, tables, hints, bundle, functions."),
    "release": CommandEntry(
        "release", "release_cmd",
        "Mark VERSIONS (default: the head) and their ancestors released; rewrite the lock."),
    "local": CommandEntry(
        "local", "local", "Local Convex-compatible deployments (for tests and the demo)."),
    "deploy": CommandEntry(
        "deploy_cmd", "deploy",
        "Deploy VERSION (an id, a number or `head`) to one deployment with the Convex CLI."),
    "keys": CommandEntry(
        "fleet", "keys", "Generate and rotate the credential encryption key."),
    "connect": CommandEntry(
        "fleet", "connect",
        "Connect a user's own Convex deployment: validate, test, save, deploy head, record."),
    "test-connection": CommandEntry(
        "fleet", "test_connection",
        "Check a user's deployment with the saved credentials; connected \u2194 error."),
    "status": CommandEntry(
        "fleet", "status", "Users' connection and deployment state (never credentials)."),
    "entitle": CommandEntry(
        "fleet", "entitle",
        "Grant (or revoke) a user's entitlement to connect when availability is premium."),
    "rollout": CommandEntry(
        "rollout", "rollout_cmd",
        "Roll every connected deployment out to a version: canary, waves, failure budget."),
    "worker": CommandEntry(
        "worker_cmd", "worker_cmd",
        "Claim and work deployments of rollouts open for workers, beside other workers."),
    "health": CommandEntry(
        "ops", "health_cmd",
        "Check deployments; move them connected <-> error; alert on transitions."),
    "monitor": CommandEntry(
        "ops", "monitor_cmd",
        "Run the health check every INTERVAL seconds (alerts go to the webhook and by email)."),
    "disconnect": CommandEntry(
        "ops", "disconnect_cmd",
        "Disconnect a user's deployment (migrate reads BYOD_MAIN_URL / BYOD_MAIN_ADMIN_KEY)."),
    "demo": CommandEntry(
        "ops", "demo_cmd",
        "Run the whole product on local deployments: connect, seed, roll out, check health, "
        "disconnect with migrate, write the report (--serve: then serve it until Ctrl-C)."),
    "config": CommandEntry(
        "config_cmd", "config",
        "Show the effective configuration and where each value comes from."),
    "leases": CommandEntry(
        "leases", "leases",
        "Who holds which lease (a user's deployment, or rollout:ID) and until when."),
    "registry": CommandEntry(
        "registry_cmd", "registry",
        "The registry itself: `check` verifies it, `upgrade` migrates its schema, `copy` moves it."),
    "serve": CommandEntry(
        "serve_cmd", "serve",
        "Run the service: settings API, blocker, data plane, pages, dashboard, metrics."),
    "tokens": CommandEntry(
        "serve_cmd", "tokens", "API tokens for the app's backend (scopes: settings, data, admin)."),
    "reconcile": CommandEntry(
        "reconcile", "reconcile_cmd",
        "Compare the registry with every deployment's own record (version, fingerprint, "
        "deployment status, journal); with --apply, rebuild it from them."),
}


def load_command(name: str, entry: CommandEntry) -> click.Command:
    """Import ``entry``'s module and return its command (which must be called ``name``)."""

    module = importlib.import_module(f"{__package__}.{entry.module}")
    command = getattr(module, entry.attribute, None)
    if not isinstance(command, click.Command) or command.name != name:
        raise RuntimeError(f"engine.cli.main.COMMANDS[{name!r}] names "
                           f"{module.__name__}.{entry.attribute}, which is not the click "
                           f"command {name!r}: update the table")
    return command


class _LazyCommands(MutableMapping[str, click.Command]):
    """The group's ``commands``: names, length and membership come from the table; reading
    a command (``[name]``, ``get``, ``items``, ``values``) imports its module once."""

    def __init__(self, table: dict[str, CommandEntry]):
        self._table = table
        self._names: dict[str, None] = dict.fromkeys(table)  # ordered set
        self._loaded: dict[str, click.Command] = {}

    def peek(self, name: str) -> click.Command | None:
        """The command if it is already imported (or was added directly), else ``None``."""

        return self._loaded.get(name)

    def __getitem__(self, name: str) -> click.Command:
        command = self._loaded.get(name)
        if command is None:
            entry = self._table.get(name) if name in self._names else None
            if entry is None:
                raise KeyError(name)
            command = self._loaded[name] = load_command(name, entry)
        return command

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._names[name] = None
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._names[name]
        self._loaded.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)


class _Group(click.Group):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.lazy_commands = _LazyCommands(COMMANDS)
        kwargs["commands"] = self.lazy_commands
        super().__init__(*args, **kwargs)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["byod.json"] = "--json" in args
        return super().parse_args(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's own listing, with the table's help for commands not imported yet."""

        rows: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            command = self.lazy_commands.peek(name)
            if command is None and name in COMMANDS:
                command = click.Command(name, help=COMMANDS[name].help)
            elif command is None:
                command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, command.get_short_help_str(limit))
                                    for name, command in rows])

    def invoke(self, ctx: click.Context) -> Any:
        from engine.errors import ByodError  # noqa: PLC0415 - keeps `byod --help` light

        try:
            return super().invoke(ctx)
        except ByodError as exc:
            as_json = ctx.meta.get("byod.json", False)
            if as_json:
                from engine.cli.output import dump  # noqa: PLC0415

                dump(exc.to_dict())
            else:
                click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="byod-engine", prog_name="byod")
@click.option("-q", "--quiet", is_flag=True, help="Only results and errors; no progress or notes.")
@click.option("-v", "--verbose", is_flag=True, help="Also print the engine's log lines.")
@click.option("--no-color", is_flag=True, help="No colour (also: the NO_COLOR variable).")
def cli(quiet: bool, verbose: bool, no_color: bool) -> None:
    """byod: schema versions and fleet migrations for bring-your-own Convex deployments."""

    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose exclude each other")
    from engine.cli.output import configure  # noqa: PLC0415 - keeps `byod --help` light

    configure(quiet=quiet, verbose=verbose, no_color=no_color)


def main() -> None:
    cli(prog_name="byod")
