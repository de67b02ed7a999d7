"""`byod --help` stays light: the CLI finds its commands through a static table and imports
a command's module only when that command runs (or its own --help is asked).

Each check runs in a fresh interpreter and looks at ``sys.modules`` afterwards; no timing
is asserted (on a shared machine that would only be noise).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What the engine's commands use, and what `byod --help` must not pay for.
# What the group itself loads: the command table; a command also loads its verbosity flags
EMPTY = ["engine.cli.main"]
RUNNING = ["engine.cli.main", "engine.cli.output"]
HEAVY = ("pydantic", "networkx", "jinja2", "httpx", "cryptography", "yaml", "rich")

# Runs the real entry point (`main()`, as the `byod` script does) with the arguments after
# -c, then prints the loaded modules to stderr once the interpreter exits.
_RUN_MAIN = (
    "import atexit, json, sys\n"
    "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
    "from engine.cli.main import main\n"
    "main()\n"
)


def run_byod(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    out = subprocess.run([sys.executable, "-c", _RUN_MAIN, *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    modules = json.loads(out.stderr.strip().splitlines()[-1])
    return out, set(modules)


def loaded(modules: set[str], package: str) -> bool:
    return package in modules or any(m.startswith(package + ".") for m in modules)


def test_importing_the_cli_and_rendering_help_imports_nothing_heavy() -> None:
    code = (
        "import json, sys\n"
        "import engine.cli.main\n"
        "from click.testing import CliRunner\n"
        "result = CliRunner().invoke(engine.cli.main.cli, ['--help'], prog_name='byod')\n"
        "assert result.exit_code == 0, result.output\n"
        "names = list(engine.cli.main.cli.commands)\n"
        "print(json.dumps({'modules': sorted(sys.modules), 'names': names,\n"
        "                  'help': result.output}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    modules = set(data["modules"])
    assert [name for name in HEAVY if loaded(modules, name)] == []
    assert sorted(m for m in modules if m.startswith("engine.cli.")) == EMPTY
    assert "Commands:" in data["help"] and len(data["names"]) > 10


def test_byod_help_through_the_entry_point_imports_nothing_heavy() -> None:
    out, modules = run_byod("--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Usage: byod ")
    assert [name for name in HEAVY if loaded(modules, name)] == []
    assert sorted(m for m in modules if m.startswith("engine.cli.")) == EMPTY


def test_byod_version_imports_nothing_heavy() -> None:
    out, modules = run_byod("--version")
    assert out.returncode == 0, out.stderr
    assert "version" in out.stdout
    assert [name for name in HEAVY if loaded(modules, name)] == []


@pytest.mark.parametrize("command,module", [("check", "check"), ("keys", "fleet"),
                                            ("rollout", "rollout")])
def test_a_command_s_help_imports_only_its_own_module(command: str, module: str) -> None:
    out, modules = run_byod(command, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"Usage: byod {command} ")
    cli_modules = sorted(m for m in modules if m.startswith("engine.cli."))
    assert cli_modules == sorted({*RUNNING, f"engine.cli.{module}"})


def test_byod_check_does_not_import_the_network_crypto_or_template_stack() -> None:
    out, modules = run_byod("check", "--versions", str(ROOT / "schema_versions"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "check ok:" in out.stdout
    unused = ("httpx", "jinja2", "cryptography", "rich")
    assert [name for name in unused if loaded(modules, name)] == []
    assert sorted(m for m in modules if m.startswith("engine.cli.")) == sorted(
        [*RUNNING, "engine.cli.check"])
