"""Every ``--json`` output against its published JSON Schema (``engine/cli/schemas``).

The commands run through click's ``CliRunner`` over real data: the shipped version files, a
real registry and vault in a temp dir, and in-memory deployments (``InMemoryFleet`` is the
workspace's connector). ``local up`` needs real local deployments, so its shape is checked
on a summary built by the command's own code from a stand-in fleet object; ``demo`` runs the
whole product on local deployments, so it is checked on a record built from ``DemoResult``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from engine.cli.output import schema_for, schema_names, to_json
from engine.commands.workspace import Workspace
from engine.testing import InMemoryFleet

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = ROOT / "schema_versions"
SCHEMAS = ROOT / "engine" / "cli" / "schemas"

# Every command (path of words) that takes --json, and the schema(s) its output follows.
JSON_COMMANDS: dict[str, tuple[str, ...]] = {
    "check": ("check",),
    "build": ("build",),
    "toolchain install": ("toolchain",),
    "toolchain path": ("toolchain",),
    "diff": ("diff",),
    "plan": ("plan", "plan-fleet"),
    "graph": ("graph",),
    "history": ("history",),
    "show": ("show",),
    "release": ("release",),
    "init": ("init",),
    "deploy": ("deploy",),
    "keys generate": ("keys-generate",),
    "keys rotate": ("keys-rotate",),
    "connect": ("connect",),
    "test-connection": ("test-connection",),
    "status": ("status", "status-user"),
    "entitle": ("entitle",),
    "health": ("health",),
    "monitor": ("monitor",),
    "disconnect": ("disconnect",),
    "demo": ("demo",),
    "reconcile": ("reconcile",),
    "rollout": ("rollout", "rollout-list"),
    "local up": ("local-up",),
    "local status": ("local-up",),
    "local down": ("local-up", "local-down"),
    "config show": ("config-show",),
    "leases list": ("leases",),  # `byod leases --json` (the group itself) prints the same
    "leases break": ("leases-break",),
    "registry check": ("registry-check",),
    "registry upgrade": ("registry-upgrade",),
    "registry copy": ("registry-copy",),
    "serve user-link": ("user-link",),
    "tokens create": ("token-create",),
    "tokens list": ("tokens",),
    "tokens revoke": ("token-revoke",),
}


def validate(name: str, data: Any) -> None:
    jsonschema.Draft202012Validator(
        schema_for(name), format_checker=jsonschema.FormatChecker()).validate(data)


def parse(output: str) -> Any:
    return json.loads(output)


# -- the schemas themselves ------------------------------------------------------------------

@pytest.mark.parametrize("name", schema_names())
def test_every_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    schema = schema_for(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["x-byod-command"] == name and schema["x-byod-version"] == 1
    assert (SCHEMAS / f"{name}.v1.json").is_file()


def _commands(group: Any, prefix: str = "") -> dict[str, Any]:
    import click

    out: dict[str, Any] = {}
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            out.update(_commands(command, path + " "))
        elif command is not None:
            out[path] = command
    return out


def test_every_json_printing_command_has_a_schema() -> None:
    taking_json = {path for path, command in _commands(cli).items()
                   if any("--json" in p.opts for p in command.params)}
    assert taking_json == set(JSON_COMMANDS), "a --json command without a listed schema"
    used = {name for names in JSON_COMMANDS.values() for name in names} | {"error"}
    assert used == set(schema_names()), "a schema no command uses, or one missing"


def test_schema_for_unknown_name() -> None:
    with pytest.raises(KeyError, match="no v1 output schema"):
        schema_for("no-such-command")


def test_times_are_iso_or_null_and_checked() -> None:
    data = to_json({"started_at": 1_790_000_000.5, "finished_at": 0, "history": [{"at": None}]})
    assert data["started_at"].endswith("Z") and data["finished_at"] is None
    validate("health", {**data, "duration_s": 0.5, "ok": True, "counts": {}, "results": [],
                        "transitions": [], "alerts": []})
    with pytest.raises(jsonschema.ValidationError):
        validate("health", {**data, "started_at": "yesterday", "duration_s": 0.5, "ok": True,
                            "counts": {}, "results": [], "transitions": [], "alerts": []})
    with pytest.raises(jsonschema.ValidationError):  # an epoch number is not the v1 shape
        validate("reconcile", {"started_at": 1.0, "finished_at": None, "applied": False,
                               "ok": True, "counts": {}, "fixed": 0, "remaining": 0,
                               "results": []})


# -- offline commands --------------------------------------------------------------------------

@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    from engine.vault import generate_key

    (tmp_path / "byod.toml").write_text("")  # an empty config file: the defaults
    return {"BYOD_ENCRYPTION_KEY": generate_key(),
            "BYOD_REGISTRY": str(tmp_path / "reg" / "registry.sqlite3"),
            "BYOD_VERSIONS_DIR": str(VERSIONS),
            "BYOD_CONFIG": str(tmp_path / "byod.toml"),
            "BYOD_AVAILABILITY": "everyone"}


def byod(env: dict[str, str], *args: str, code: int | None = 0,
         stdin: str | None = None) -> str:
    result = CliRunner().invoke(cli, list(args), env=env, input=stdin,
                                catch_exceptions=False)
    if code is not None:
        assert result.exit_code == code, result.output
    return result.stdout


def test_check(env: dict[str, str]) -> None:
    data = parse(byod(env, "check", "--json", "--versions", str(VERSIONS)))
    validate("check", data)
    assert data["ok"] and data["versions"]


def test_build(env: dict[str, str], tmp_path: Path) -> None:
    data = parse(byod(env, "build", "head", "--out", str(tmp_path / "b"), "--archive", "zip",
                      "--json"))
    validate("build", data)
    assert data["bundles"][0]["archive"].endswith(".zip")


def test_toolchain_path(env: dict[str, str]) -> None:
    validate("toolchain", parse(byod(env, "toolchain", "path", "--json")))


def test_diff_plan_and_graph(env: dict[str, str], tmp_path: Path) -> None:
    data = parse(byod(env, "diff", "1", "head", "--json", code=None))
    validate("diff", data)
    assert data["changes"]
    plan = parse(byod(env, "plan", "--from", "1", "--to", "head", "--json"))
    validate("plan", plan)
    assert plan["steps"]
    fleet_file = tmp_path / "fleet.json"
    fleet_file.write_text(json.dumps([{"deployment": "a", "version": "1"},
                                      {"deployment": "b", "version": "2"}]))
    fleet = parse(byod(env, "plan", "--fleet", str(fleet_file), "--json", code=None))
    validate("plan-fleet", fleet)
    assert fleet["deployments"] == 2
    graph = parse(byod(env, "graph", "--json", "--no-registry"))
    validate("graph", graph)
    assert graph["heads"]


def test_keys_generate(env: dict[str, str]) -> None:
    validate("keys-generate", parse(byod(env, "keys", "generate", "--json")))


def test_config_show(env: dict[str, str]) -> None:
    data = parse(byod(env, "config", "show", "--json"))
    validate("config-show", data)
    assert data["settings"]


def test_errors_print_the_error_shape(env: dict[str, str]) -> None:
    data = parse(byod(env, "plan", "--from", "no-such-version", "--json", code=1))
    validate("error", data)
    assert data["error"] == "UnknownVersion" and "no-such-version" in data["message"]
    data = parse(byod(env, "status", "--user", "nobody", "--json", code=1))
    validate("error", data)


def test_rollout_list_and_empty_status(env: dict[str, str]) -> None:
    validate("rollout-list", parse(byod(env, "rollout", "--list", "--json")))
    validate("status", parse(byod(env, "status", "--json")))


def test_registry_check_and_upgrade(env: dict[str, str]) -> None:
    from engine.registry.open import open_store

    open_store(env["BYOD_REGISTRY"]).close()  # a registry at this engine's schema
    validate("registry-check", parse(byod(env, "registry", "check", "--json")))
    for args in (("--check",), ()):
        data = parse(byod(env, "registry", "upgrade", *args, "--json"))
        validate("registry-upgrade", data)
        assert data["up_to_date"] and not data["upgraded"]


# -- over in-memory deployments ----------------------------------------------------------------

@pytest.fixture
def fleet(tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    """An in-memory fleet on the shipped versions whose registry the CLI uses; two users on
    version 1, one of them with a lease and audit history."""

    with InMemoryFleet(tmp_path / "fleet", versions=VERSIONS) as f:
        env.update(f.registry.env())
        monkeypatch.setattr(Workspace, "connector", property(lambda _self: f))
        f.connect_user("alice", 1)
        f.connect_user("bob", 1)
        yield f


def test_registry_copy(env: dict[str, str], fleet: InMemoryFleet, tmp_path: Path) -> None:
    data = parse(byod(env, "registry", "copy", "--to", str(tmp_path / "copy.sqlite3"),
                      "--json"))
    validate("registry-copy", data)
    assert data["ok"] and {t["table"] for t in data["tables"] if t["source_rows"]} >= {
        "users", "audit"}


def test_user_verbs(env: dict[str, str], fleet: InMemoryFleet) -> None:
    dep = fleet.add_deployment("carol-dep")
    user = parse(byod(env, "connect", "--user", "carol", "--url", dep.url, "--key-stdin",
                      "--version", "1", "--json", stdin=dep.key + "\n"))
    validate("connect", user)
    assert user["connection_status"] == "connected" and user["created_at"].endswith("Z")

    result = parse(byod(env, "test-connection", "--user", "carol", "--json"))
    validate("test-connection", result)
    assert result["ok"]

    status = parse(byod(env, "status", "--json"))
    validate("status", status)
    assert {u["user_id"] for u in status["users"]} == {"alice", "bob", "carol"}

    detail = parse(byod(env, "status", "--user", "carol", "--json"))
    validate("status-user", detail)
    assert detail["history"] and detail["history"][0]["at"].endswith("Z")

    validate("entitle", parse(byod(env, "entitle", "--user", "carol", "--json")))
    validate("keys-rotate", parse(byod(env, "keys", "rotate", "--json")))


def test_health_monitor_reconcile(env: dict[str, str], fleet: InMemoryFleet) -> None:
    fleet.users["bob"].fault = "down"
    health = parse(byod(env, "health", "--all", "--json", code=1))
    validate("health", health)
    assert health["transitions"] and health["started_at"].endswith("Z")

    lines = byod(env, "monitor", "--interval", "1", "--once", "--json").splitlines()
    assert len(lines) == 1  # one compact line per run
    validate("monitor", parse(lines[0]))

    fleet.users["bob"].fault = "none"
    fleet.store.set_deployment("alice", status="deployed", version="0002_tags",
                               fingerprint="0" * 64)
    report = parse(byod(env, "reconcile", "--json", code=None))
    validate("reconcile", report)
    assert any(r["findings"] for r in report["results"])


def test_disconnect(env: dict[str, str], fleet: InMemoryFleet) -> None:
    data = parse(byod(env, "disconnect", "--user", "bob", "--data", "keep", "--json"))
    validate("disconnect", data)
    assert data["mode"] == "keep"


def test_deploy(env: dict[str, str], fleet: InMemoryFleet) -> None:
    dep = fleet.add_deployment("spare")
    data = parse(byod(env, "deploy", "head", "--url", dep.url, "--key-stdin", "--json",
                      stdin=dep.key + "\n"))
    validate("deploy", data)
    assert data["verified"] and data["version"] == fleet.version("head").id


def test_rollout(env: dict[str, str], fleet: InMemoryFleet, tmp_path: Path) -> None:
    dry = parse(byod(env, "rollout", "--to", "head", "--dry-run", "--json"))
    validate("rollout", dry)
    report = parse(byod(env, "rollout", "--to", "head", "--deployer", "cli", "--report-dir",
                        str(tmp_path / "reports"), "--json", code=None))
    validate("rollout", report)
    assert report["finished_at"].endswith("Z")
    rows = parse(byod(env, "rollout", "--list", "--json"))
    validate("rollout-list", rows)
    assert [r["rollout_id"] for r in rows] == [report["rollout_id"]]
    assert rows[0]["updated_at"].endswith("Z")


# -- local deployments: recorded shapes --------------------------------------------------------

def test_local_status_and_down_without_a_fleet(env: dict[str, str], tmp_path: Path) -> None:
    validate("local-up", parse(byod(env, "local", "status", "--dir", str(tmp_path / "l"),
                                    "--json")))
    validate("local-down", parse(byod(env, "local", "down", "--dir", str(tmp_path / "l"),
                                      "--json")))


def test_local_up_shape_from_its_summary(tmp_path: Path) -> None:
    """``local up`` starts real processes; its output is ``_summary`` of the started fleet,
    here built by that same function over a stand-in fleet."""

    from engine.cli import local

    class StandIn:
        data_dir = tmp_path
        pid = 4242
        deployments: tuple[Any, ...] = ()

        def status(self) -> list[dict[str, Any]]:
            return [{"name": "d1", "url": "http://127.0.0.1:3211", "fault": {"mode": "none"},
                     "pushes": 0}]

    data = to_json(local._summary(StandIn(), "running"))  # type: ignore[arg-type]
    validate("local-up", data)


def test_demo_shape_from_its_result(tmp_path: Path) -> None:
    """``demo`` runs the product on local deployments; its output is ``DemoResult``."""

    from engine.demo.run import DemoResult

    result = DemoResult(directory=tmp_path, users=["u1"], ok=True, duration_s=1.25,
                        rollout={"status": "completed"}, health={"ok": True},
                        disconnect={"mode": "migrate"}, seeded={"u1": {"tasks": 3}},
                        fleet=[{"name": "d1"}], reports={"json": "r.json"})
    validate("demo", to_json(result.to_dict()))
