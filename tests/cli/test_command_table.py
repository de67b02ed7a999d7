"""The static command table of ``engine.cli.main`` matches the command modules: every
entry names a click command of that name, every command a module exports is in the table,
and `byod --help` (rendered from the table, without importing the modules) is exactly what
click renders from the real commands."""

from __future__ import annotations

import importlib
import re

import click
import pytest
from click.testing import CliRunner

from engine.cli.main import COMMANDS, _Group, cli, load_command


def _module(name: str):
    return importlib.import_module(f"engine.cli.{name}")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_entry_resolves_to_the_click_command_of_that_name(name: str) -> None:
    entry = COMMANDS[name]
    command = getattr(_module(entry.module), entry.attribute)
    assert isinstance(command, click.Command)
    assert command.name == name
    assert load_command(name, entry) is command
    assert cli.commands[name] is command and cli.get_command(click.Context(cli), name) is command


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_entry_help_is_the_command_s_short_help(name: str) -> None:
    entry = COMMANDS[name]
    command = load_command(name, entry)
    stand_in = click.Command(name, help=entry.help)
    for limit in range(10, 200):
        assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit), limit
    assert not command.hidden


def test_every_exported_command_is_in_the_table() -> None:
    for module_name in sorted({entry.module for entry in COMMANDS.values()}):
        module = _module(module_name)
        for command in module.commands:
            entry = COMMANDS.get(command.name)
            assert entry is not None, f"{module_name}.{command.name} is not in COMMANDS"
            assert entry.module == module_name
            assert getattr(module, entry.attribute) is command


def _help(group: click.Group, width: int) -> str:
    result = CliRunner().invoke(group, ["--help"], prog_name="byod", terminal_width=width)
    assert result.exit_code == 0, result.output
    return result.output


def _fresh_lazy_group() -> click.Group:
    """A new lazy group like ``cli`` with nothing imported yet (``cli`` itself may have
    loaded commands for earlier tests)."""

    return _Group(name=cli.name, callback=cli.callback, params=cli.params, help=cli.help,
                  context_settings=cli.context_settings)


def _eager_group() -> click.Group:
    commands = {name: load_command(name, entry) for name, entry in COMMANDS.items()}
    return click.Group(name=cli.name, callback=cli.callback, params=cli.params,
                       help=cli.help, context_settings=cli.context_settings,
                       commands=commands)


@pytest.mark.parametrize("width", [40, 60, 80, 100, 120, 200])
def test_help_from_the_table_is_what_click_renders_from_the_commands(width: int) -> None:
    lazy = _fresh_lazy_group()
    assert _help(lazy, width) == _help(_eager_group(), width)
    assert _help(cli, width) == _help(_eager_group(), width)


def test_help_lists_every_command_in_order() -> None:
    output = _help(_fresh_lazy_group(), 300)
    section = output.split("Commands:\n", 1)[1]
    listed = re.findall(r"^  (\S+)\s", section, flags=re.MULTILINE)
    assert listed == sorted(COMMANDS)
    for name, entry in COMMANDS.items():
        assert re.search(rf"^  {re.escape(name)}\s+{re.escape(entry.help)}$", section,
                         flags=re.MULTILINE), name


def test_the_lazy_mapping_behaves_like_click_s_dict() -> None:
    group = _fresh_lazy_group()
    assert list(group.commands) == list(COMMANDS)
    assert len(group.commands) == len(COMMANDS) and "check" in group.commands
    assert "nosuch" not in group.commands and group.commands.get("nosuch") is None
    extra = click.Command("extra", help="An added command.")
    group.add_command(extra)
    assert group.commands["extra"] is extra and group.list_commands(
        click.Context(group)) == sorted([*COMMANDS, "extra"])
    assert re.search(r"^  extra\s+An added command\.$", _help(group, 120), flags=re.MULTILINE)
    del group.commands["extra"]
    assert "extra" not in group.commands
    check = group.commands["check"]
    assert group.commands["check"] is check  # imported once


def test_an_unknown_command_still_gets_a_suggestion() -> None:
    result = CliRunner().invoke(_fresh_lazy_group(), ["chek"], prog_name="byod")
    assert result.exit_code == 2
    assert "No such command 'chek'" in result.output and "check" in result.output


def test_a_stale_entry_is_reported() -> None:
    with pytest.raises(RuntimeError, match="update the table"):
        load_command("check", COMMANDS["build"])
