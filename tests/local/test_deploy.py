"""Real `convex deploy` pushes to local deployments: success, redeploys that keep ids and
creation times, and refusals when existing documents violate the new schema."""

from __future__ import annotations

import httpx
import pytest

from engine.local import LocalFleet

from .conftest import MESSAGES_V1, SCHEMA_V1, Project, call, needs_toolchain, ok

pytestmark = [pytest.mark.local, pytest.mark.toolchain, needs_toolchain, pytest.mark.timeout(300)]


def _deployed(project: Project, fleet: LocalFleet, name: str = "local-001") -> None:
    result = project.deploy(fleet.deployment(name))
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_deploy_then_functions_run(project: Project, fleet: LocalFleet) -> None:
    dep, other = fleet.deployments
    result = project.deploy(dep)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Deployed Convex functions" in result.stdout + result.stderr
    assert dep.admin_key not in result.stdout + result.stderr

    first = ok(call(dep, "mutation", "messages:send", {"body": "hello", "author": "ann"}))
    ok(call(dep, "mutation", "messages:send", {"body": "again"}))
    listed = ok(call(dep, "query", "messages:list"))
    assert [m["body"] for m in listed] == ["hello", "again"]
    assert listed[0]["_id"] == first and isinstance(listed[0]["_creationTime"], float | int)
    # Internal functions run for admin callers; actions call mutations and queries.
    assert ok(call(dep, "mutation", "messages:bulk", {"n": 3})) == 3
    assert ok(call(dep, "query", "messages:count")) == 5
    assert ok(call(dep, "action", "messages:sendViaAction", {"body": "act"})) == 6
    # Other entry points: /api/run/<module>/<name> and /api/function pick the kind.
    headers = {"Authorization": f"Convex {dep.admin_key}"}
    run = httpx.post(f"{dep.url}/api/run/messages/count", json={"args": {}}, headers=headers)
    assert run.json() == {"status": "success", "value": 6}
    fn = httpx.post(f"{dep.url}/api/function", headers=headers,
                    json={"path": "messages:list", "args": {}, "format": "convex_encoded_json"})
    assert len(fn.json()["value"]) == 6
    # The wrong kind and unknown functions are function errors, not crashes.
    wrong = call(dep, "query", "messages:send", {"body": "x"}).json()
    assert wrong["status"] == "error" and "defined as Mutation" in wrong["errorMessage"]
    missing = call(dep, "query", "messages:nope").json()
    assert missing["status"] == "error" and "messages:nope" in missing["errorMessage"]
    # Argument validation comes from the pushed code.
    bad = call(dep, "mutation", "messages:send", {"body": 5}).json()
    assert bad["status"] == "error"
    # The other deployment is untouched: no code, no documents.
    assert fleet.documents(other.name) == {}
    assert fleet.state(other.name)["pushes"] == 0


def test_redeploy_keeps_ids_and_creation_times(project: Project, fleet: LocalFleet) -> None:
    dep = fleet.deployments[0]
    _deployed(project, fleet)
    for body in ("a", "b", "c"):
        ok(call(dep, "mutation", "messages:send", {"body": body}))
    before = fleet.documents(dep.name)["messages"]

    widened = SCHEMA_V1.replace(
        "tags: v.optional(v.record(v.string(), v.number())),",
        "tags: v.optional(v.record(v.string(), v.number())),\n    pinned: v.optional(v.boolean()),",
    )
    project.write({
        "schema.ts": widened,
        "messages.ts": MESSAGES_V1 + """
export const pin = mutation({
  args: { id: v.id("messages") },
  handler: async (ctx, { id }) => { await ctx.db.patch(id, { pinned: true }); },
});
""",
    })
    _deployed(project, fleet)
    after = fleet.documents(dep.name)["messages"]
    assert [(d["_id"], d["_creationTime"]) for d in after] == [
        (d["_id"], d["_creationTime"]) for d in before
    ]
    ok(call(dep, "mutation", "messages:pin", {"id": before[0]["_id"]}))
    assert fleet.documents(dep.name)["messages"][0]["pinned"] is True
    assert "pinned" in str(fleet.state(dep.name)["schema"])
    # New documents never reuse ids.
    new_id = ok(call(dep, "mutation", "messages:send", {"body": "d"}))
    assert new_id not in {d["_id"] for d in before}


def _assert_unchanged(fleet: LocalFleet, name: str, docs: dict, schema: dict) -> None:
    assert fleet.documents(name) == docs
    assert fleet.state(name)["schema"] == schema


@pytest.mark.parametrize(
    "case",
    ["narrowed_field", "record_values", "dropped_table"],
)
def test_schema_violated_by_existing_documents_is_refused(
    project: Project, fleet: LocalFleet, case: str
) -> None:
    dep = fleet.deployments[0]
    _deployed(project, fleet)
    ok(call(dep, "mutation", "messages:send", {"body": "fine"}))
    bad_id = ok(call(dep, "mutation", "messages:insertRaw",
                     {"doc": {"body": "tagged", "tags": {"x": 1.5}}}))
    docs = fleet.documents(dep.name)
    schema = fleet.state(dep.name)["schema"]

    if case == "narrowed_field":
        # Every document lacks `author` now required: the first one fails.
        project.write({"schema.ts": SCHEMA_V1.replace("author: v.optional(v.string())", "author: v.string()")})
        expected_id = docs["messages"][0]["_id"]
    elif case == "record_values":
        project.write({"schema.ts": SCHEMA_V1.replace("v.record(v.string(), v.number())",
                                                      "v.record(v.string(), v.string())")})
        expected_id = bad_id
    else:
        project.write({
            "schema.ts": SCHEMA_V1.replace("messages: defineTable", "notes: defineTable")
                                  .replace('.index("by_author", ["author"])', ""),
            "messages.ts": "export {};\n",
        })
        expected_id = docs["messages"][0]["_id"]

    result = project.deploy(dep)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Schema validation failed" in output
    assert '"messages"' in output and expected_id in output
    assert dep.admin_key not in output
    _assert_unchanged(fleet, dep.name, docs, schema)
    # The old code still runs against the old schema.
    assert len(ok(call(dep, "query", "messages:list"))) == 2


def test_unchanged_redeploy_and_dry_run(project: Project, fleet: LocalFleet) -> None:
    dep = fleet.deployments[0]
    _deployed(project, fleet)
    _deployed(project, fleet)  # the first push's code generation changes the bundles once
    ok(call(dep, "mutation", "messages:send", {"body": "x"}))
    state = fleet.state(dep.name)
    _deployed(project, fleet)  # same code: every module reported unchanged
    again = fleet.state(dep.name)
    assert again["pushes"] == state["pushes"] + 1 and again["setHash"] == state["setHash"]
    assert len(ok(call(dep, "query", "messages:list"))) == 1

    project.write({"schema.ts": SCHEMA_V1.replace("author: v.optional(v.string())", "author: v.string()")})
    dry = project.deploy(dep, extra=("--dry-run",))
    assert dry.returncode != 0 and "Schema validation failed" in dry.stdout + dry.stderr
    project.write({"schema.ts": SCHEMA_V1.replace("body: v.string(),", "body: v.string(),\n    n: v.optional(v.number()),")})
    dry = project.deploy(dep, extra=("--dry-run",))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert fleet.state(dep.name)["setHash"] == state["setHash"]  # nothing activated
