"""The compiler on literal schemas: contents, fingerprint rules, manifest, data steps."""

from __future__ import annotations

import hashlib
import json

import pytest

from engine.bundle.compiler import (
    ENGINE_FUNCTIONS,
    UNHASHED_FILES,
    compile_bundle,
    compile_version,
    deployed_schema,
)
from engine.config import AuthConfig, EngineConfig
from engine.errors import CompileError
from engine.schema.engine_tables import ENGINE_TABLES
from engine.schema.models import FieldDef, Float64V, Location, Schema, StringV, Table

from .schemas import rich_schema, version

CONFIG = EngineConfig()

EXPECTED_FILES = {
    "README.md",
    "byod-manifest.json",
    "convex/auth.config.ts",
    "convex/byod.ts",
    "convex/byodVersion.ts",
    "convex/schema.ts",
    "convex/tsconfig.json",
    "package.json",
    "tsconfig.json",
}


def test_deployed_schema_is_user_tables_then_engine_tables() -> None:
    deployed = deployed_schema(rich_schema())
    assert list(deployed.tables) == ["conversations", "messages", *ENGINE_TABLES]
    assert all(t.location == Location.USER for t in deployed.tables.values())
    exported = deployed.to_convex_json()
    assert "accounts" not in {t["tableName"] for t in exported["tables"]}
    assert exported["schemaValidation"] is True


def test_engine_table_name_clash_is_refused() -> None:
    schema = Schema(tables={"byodSteps": Table(name="byodSteps", fields={})})
    with pytest.raises(CompileError, match="byodSteps.*reserved"):
        compile_bundle(schema, version_id="v1", config=CONFIG)


def test_main_table_named_like_an_engine_table_is_fine() -> None:
    schema = Schema(tables={"byodSteps": Table(name="byodSteps", location=Location.MAIN)})
    bundle = compile_bundle(schema, version_id="v1", config=CONFIG)
    assert bundle.tables == list(ENGINE_TABLES)


def test_bundle_files_and_order() -> None:
    bundle = compile_version(version(), CONFIG)
    assert set(bundle.files) == EXPECTED_FILES
    assert list(bundle.files) == sorted(bundle.files)
    for path, text in bundle.files.items():
        assert text.endswith("\n") and not text.endswith("\n\n"), path
        assert "\r" not in text, path
        assert all(line == line.rstrip() for line in text.split("\n")), path


def test_schema_ts_renders_the_model() -> None:
    text = compile_version(version(), CONFIG).files["convex/schema.ts"]
    assert 'import { defineSchema, defineTable } from "convex/server";' in text
    assert 'import { v } from "convex/values";' in text
    assert "accounts" not in text  # main-located
    assert 'conversationId: v.id("conversations"),' in text
    assert "v.literal(7n)" in text and "v.literal(2.5)" in text and "v.literal(true)" in text
    assert '"with space": v.optional(v.string()),' in text
    assert '.index("by_kind", { fields: ["meta.kind", "conversationId"], staged: true })' in text
    assert 'vectorField: "embedding"' in text and "staged: true" in text
    assert "{ schemaValidation: true }" in text
    off = compile_bundle(rich_schema(schema_validation=False), version_id="x", config=CONFIG)
    assert "{ schemaValidation: false }" in off.files["convex/schema.ts"]


def test_package_json_pins_convex_exactly() -> None:
    bundle = compile_bundle(
        rich_schema(), version_id="v", config=EngineConfig(convex_version="1.47.2")
    )
    package = json.loads(bundle.files["package.json"])
    assert package["dependencies"] == {"convex": "1.47.2"}
    with pytest.raises(CompileError, match="exact version"):
        compile_bundle(rich_schema(), version_id="v", config=EngineConfig(convex_version="^1.48.0"))


def test_auth_config_uses_the_configured_provider() -> None:
    config = EngineConfig(
        auth=AuthConfig(issuer_domain="https://clerk.app.test", application_id="app-1")
    )
    text = compile_bundle(rich_schema(), version_id="v", config=config).files[
        "convex/auth.config.ts"
    ]
    assert 'domain: "https://clerk.app.test",' in text
    assert 'applicationID: "app-1",' in text


def test_byod_module_uses_generic_builders_and_every_engine_function() -> None:
    text = compile_version(version(), CONFIG).files["convex/byod.ts"]
    assert "_generated" not in text
    for builder in ("queryGeneric", "internalQueryGeneric", "internalMutationGeneric"):
        assert builder in text
    for path, kind in ENGINE_FUNCTIONS.items():
        name = path.split(":")[1]
        builder = {
            "query": "queryGeneric",
            "internalQuery": "internalQueryGeneric",
            "internalMutation": "internalMutationGeneric",
        }[kind]
        assert f"export const {name} = {builder}(" in text, path
    # the tables compiled into the bundle, and only those
    allowed = text.split("const TABLES: readonly string[] = [")[1].split("];")[0]
    assert [s.strip().strip(",").strip('"') for s in allowed.strip().splitlines()] == [
        "conversations",
        "messages",
        "byodVersions",
        "byodSteps",
    ]


def test_version_file_and_manifest_name_the_bundle() -> None:
    bundle = compile_version(version("0007_x", 7), CONFIG)
    ident = bundle.files["convex/byodVersion.ts"]
    assert 'BYOD_VERSION = "0007_x"' in ident and bundle.fingerprint in ident
    manifest = json.loads(bundle.files["byod-manifest.json"])
    assert manifest == bundle.manifest
    assert manifest["version"] == "0007_x" and manifest["kind"] == "version"
    assert manifest["fingerprint"] == bundle.fingerprint
    assert manifest["convexVersion"] == CONFIG.convex_version
    assert manifest["dataSteps"] == []
    assert set(manifest["files"]) == EXPECTED_FILES - {"byod-manifest.json"}
    for path, digest in manifest["files"].items():
        assert digest == hashlib.sha256(bundle.files[path].encode()).hexdigest()


def test_fingerprint_ignores_identity_but_follows_behaviour() -> None:
    base = compile_version(version("0001_a", 1), CONFIG)
    renamed = compile_version(version("0002_b", 2, description="other words"), CONFIG)
    widen = compile_bundle(rich_schema(), version_id="0001_a", kind="widen", config=CONFIG)
    assert base.fingerprint == renamed.fingerprint == widen.fingerprint
    assert base.files["convex/byodVersion.ts"] != renamed.files["convex/byodVersion.ts"]

    changed_type = compile_version(version(schema=rich_schema(body_type=Float64V())), CONFIG)
    validation_off = compile_version(version(schema=rich_schema(schema_validation=False)), CONFIG)
    extra = rich_schema()
    extra_table = Schema(
        tables={
            **extra.tables,
            "notes": Table(name="notes", fields={"text": FieldDef(type=StringV())}),
        }
    )
    added = compile_bundle(extra_table, version_id="0001_a", config=CONFIG)
    main_only = Schema(
        tables={
            **extra.tables,
            "settings": Table(
                name="settings", location=Location.MAIN, fields={"k": FieldDef(type=StringV())}
            ),
        }
    )
    with_main = compile_bundle(main_only, version_id="0001_a", config=CONFIG)
    other_auth = compile_version(version(), EngineConfig(auth=AuthConfig(application_id="x")))
    prints = {b.fingerprint for b in (changed_type, validation_off, added, other_auth)}
    assert base.fingerprint not in prints and len(prints) == 4
    # main-located tables are not deployed, so they do not change the user bundle
    assert with_main.fingerprint == base.fingerprint


def test_fingerprint_is_over_the_hashed_files() -> None:
    bundle = compile_version(version(), CONFIG)
    assert UNHASHED_FILES == {"convex/byodVersion.ts", "byod-manifest.json", "README.md"}
    # the fingerprint is not inside any hashed file (it cannot depend on itself)
    for path, text in bundle.files.items():
        if path not in UNHASHED_FILES:
            assert bundle.fingerprint not in text, path


@pytest.mark.parametrize("bad", ["", "a/b", "..", "x\ny"])
def test_bad_version_ids_are_refused(bad: str) -> None:
    with pytest.raises(CompileError, match="version id"):
        compile_bundle(rich_schema(), version_id=bad, config=CONFIG)


def test_bad_kind_is_refused() -> None:
    with pytest.raises(CompileError, match="kind"):
        compile_bundle(rich_schema(), version_id="v", kind="narrow", config=CONFIG)  # type: ignore[arg-type]


class _Step:
    def __init__(self, step_id: str):
        self.id = step_id


def test_data_steps_join_the_bundle_manifest_and_fingerprint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import engine.bundle.migrations as datasteps

    seen: list[tuple] = []

    def fake_render(steps):
        seen.append(tuple(s.id for s in steps))
        return "// steps: " + ", ".join(s.id for s in steps) + "\n"

    monkeypatch.setattr(datasteps, "render_data_steps_module", fake_render)
    plain = compile_version(version(), CONFIG)
    one = compile_bundle(
        rich_schema(), version_id="0001_test", data_steps=[_Step("s1")], config=CONFIG
    )
    two = compile_bundle(
        rich_schema(),
        version_id="0001_test",
        data_steps=[_Step("s1"), _Step("s2"), _Step("s1")],
        config=CONFIG,
    )
    assert one.files["convex/byodMigrations.ts"] == "// steps: s1\n"
    assert one.manifest["dataSteps"] == ["s1"] and two.manifest["dataSteps"] == ["s1", "s2"]
    assert len({plain.fingerprint, one.fingerprint, two.fingerprint}) == 3
    assert "convex/byodMigrations.ts" in one.manifest["files"]
    assert "`s1`, `s2`" in two.files["README.md"]
    assert seen[0] == ("s1",)


def test_real_data_steps_render_into_the_bundle() -> None:
    from engine.plan.datasteps import make_step

    step = make_step("conversations", "backfill", {"field": "title", "value": "untitled"})
    plain = compile_version(version(), CONFIG)
    bundle = compile_bundle(rich_schema(), version_id="0001_test", data_steps=[step], config=CONFIG)
    assert bundle.manifest["dataSteps"] == [step.id]
    assert step.id in bundle.files["convex/byodMigrations.ts"]
    assert bundle.fingerprint != plain.fingerprint
    again = compile_bundle(rich_schema(), version_id="other", data_steps=[step], config=CONFIG)
    assert (
        again.fingerprint == bundle.fingerprint
        and again.files["convex/byodMigrations.ts"] == bundle.files["convex/byodMigrations.ts"]
    )
