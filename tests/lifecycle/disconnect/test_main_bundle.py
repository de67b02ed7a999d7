"""The main deployment's bundle (every table + the migrate-back functions) type-checks and
its schema, loaded by the real convex library, equals the engine's model of it."""

from __future__ import annotations

import pytest
from local_ops import ROOT, needs_toolchain

from engine.bundle.compiler import (
    MAIN_FUNCTIONS,
    compile_bundle,
    compile_version,
)
from engine.check import deep as deepcheck
from engine.config import EngineConfig
from engine.plan.graph import VersionGraph
from engine.schema.loader import load_versions
from engine.schema.main_tables import MAIN_ENGINE_TABLE_NAMES  # byodImports, byodReg*

CONFIG = EngineConfig()


def _head():  # type: ignore[no-untyped-def]
    return VersionGraph(load_versions(ROOT / "schema_versions", CONFIG)).resolve("head")


def test_main_bundle_holds_every_table_and_the_main_functions() -> None:
    head = _head()
    bundle = compile_bundle(head.schema, version_id=head.id, config=CONFIG, target="main")
    assert set(head.schema.tables) | {"byodVersions", "byodSteps"} | MAIN_ENGINE_TABLE_NAMES \
        == set(bundle.tables)
    assert "convex/byodMain.ts" in bundle.files
    for name in MAIN_FUNCTIONS:
        assert f"export const {name.split(':')[1]} =" in bundle.files["convex/byodMain.ts"]
    user = compile_version(head, CONFIG)
    assert "convex/byodMain.ts" not in user.files and "byodImports" not in user.tables
    assert user.fingerprint != bundle.fingerprint
    again = compile_bundle(head.schema, version_id=head.id, config=CONFIG, target="main")
    assert again.files == bundle.files  # deterministic


@pytest.mark.toolchain
@needs_toolchain
def test_main_bundle_type_checks_and_exports_its_model() -> None:
    head = _head()
    bundle = compile_bundle(head.schema, version_id=head.id, config=CONFIG, target="main")
    problems = deepcheck.check_bundles([deepcheck.CheckItem(
        label=f"{head.id} (main)", file="main bundle", schema=head.schema, bundle=bundle,
        target="main")])
    assert problems == []
