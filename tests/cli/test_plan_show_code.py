"""``byod plan --show-code``: the TypeScript each widened deploy of a plan carries, printed
for review, and the same bundles a rollout deploys."""

from __future__ import annotations

import json

import jsonschema
from click.testing import CliRunner

from engine import assets
from engine.bundle.compiler import compile_bundle
from engine.cli.main import cli
from engine.cli.output import schema_for
from engine.commands import Workspace, plan, plan_code

VERSIONS = str(assets.example_versions_dir())


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [*args, "--versions", VERSIONS], catch_exceptions=False)
    return result.exit_code, result.output


def test_show_code_prints_each_widened_bundles_schema_and_data_step_mutations() -> None:
    code, out = run("plan", "--from", "1", "--to", "head", "--show-code")
    assert code == 0, out
    plan_text, listing = out.split("\n// ==== ", 1)
    assert plan_text.startswith("plan: 0001_initial -> 0007_reference_indexes")
    assert listing.startswith("step 1: deploy_widened:0001_initial..0007_reference_indexes\n")
    assert "// ---- convex/schema.ts\n" in listing
    module = listing.split("// ---- convex/byodMigrations.ts\n", 1)[1]
    functions = [line.split()[1] for line in plan_text.splitlines()
                 if line.strip().startswith("function byodMigrations:")]
    assert len(functions) == 7
    for function in functions:
        assert f"//   {function}: " in listing
        assert f"export const {function.split(':')[1]} = " in module
    # the hints' own code (0006's custom step, 0005's convert) is in the module, typed
    assert 'doc.mimeType.startsWith("image/") ? "image"' in module
    assert "not a YYYY-MM-DD date" in module
    # the widened schema accepts both ends: conversations.model is still there, optional
    assert "model: v.optional(v.string())" in listing.split("// ---- convex/byodMigrations")[0]


def test_show_code_is_exactly_what_a_rollout_deploys() -> None:
    ws = Workspace.open().with_versions_dir(assets.example_versions_dir())
    p = plan(ws, "1", "head")
    [entry] = plan_code(ws, p)
    step = p.steps[0]
    bundle = compile_bundle(step.schema, version_id=step.version, kind="widen",
                            data_steps=list(step.data_steps), config=ws.config)
    assert entry["fingerprint"] == bundle.fingerprint
    assert entry["files"] == {path: bundle.files[path] for path in
                              ("convex/schema.ts", "convex/byodMigrations.ts")}
    assert [d["function"] for d in entry["data_steps"]] == [
        d.function_path for d in step.data_steps]


def test_show_code_json_and_plans_without_data_steps() -> None:
    code, out = run("plan", "--from", "1", "--to", "head", "--show-code", "--json")
    assert code == 0, out
    data = json.loads(out)
    jsonschema.validate(data, schema_for("plan"))
    [entry] = data["code"]
    assert entry["step"] == 1 and len(entry["data_steps"]) == 7
    assert "internalMutation" in entry["files"]["convex/byodMigrations.ts"]
    code, out = run("plan", "--from", "1", "--to", "head", "--json")
    assert "code" not in json.loads(out)
    code, out = run("plan", "--from", "6", "--to", "7", "--show-code")
    assert code == 0 and "this plan runs no data steps" in out and "// ====" not in out
    code, out = run("plan", "--from", "6", "--to", "7", "--show-code", "--json")
    assert json.loads(out)["code"] == []


def test_show_code_needs_one_plan() -> None:
    code, out = run("plan", "--fleet", "fleet.json", "--show-code")
    assert code == 2 and "--show-code prints one plan's code" in out
