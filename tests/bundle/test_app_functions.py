"""The app's own functions in bundles: which modules each bundle carries (the pinning
rule), the generated types beside them, and the names the engine keeps for itself."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bundle.schemas import version  # tests/bundle (pytest puts tests/ on sys.path)
from engine import assets
from engine.bundle.compiler import compile_bundle, compile_version
from engine.bundle.functions import (
    functions_for,
    pinned_dir,
    read_functions,
    widen_name,
)
from engine.config import EngineConfig
from engine.errors import CompileError
from engine.schema.loader import load_versions

MODULE = ('import {{ query }} from "./_generated/server";\n'
          "export const list = query({{ handler: async () => {n} }});\n")


def _functions(root: Path, **modules: str) -> Path:
    for name, text in modules.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_every_user_bundle_carries_the_functions_with_generated_types(tmp_path: Path) -> None:
    fdir = _functions(tmp_path / "functions", **{"notes.ts": MODULE.format(n=1),
                                                 "lib/util.ts": "export const x = 1;\n",
                                                 "notes.test.ts": "x", "_generated/api.d.ts": "x",
                                                 "README.md": "x", ".hidden.ts": "x"})
    config = EngineConfig(functions_dir=fdir)
    bundle = compile_version(version(), config)
    assert bundle.files["convex/notes.ts"] == MODULE.format(n=1)
    assert "convex/lib/util.ts" in bundle.files
    assert not {"convex/notes.test.ts", "convex/README.md", "convex/.hidden.ts"} & set(bundle.files)
    assert bundle.manifest["appModules"] == ["lib/util.ts", "notes.ts"]
    generated = {p for p in bundle.files if p.startswith("convex/_generated/")}
    assert generated == {f"convex/_generated/{n}" for n in
                         ("api.d.ts", "api.js", "dataModel.d.ts", "server.d.ts", "server.js")}
    assert '"lib/util": typeof module_lib_util;' in bundle.files["convex/_generated/api.d.ts"]
    assert 'import schema from "../schema.js";' in bundle.files["convex/_generated/dataModel.d.ts"]
    assert "`convex/notes.ts`" in bundle.files["README.md"]

    widened = compile_bundle(version().schema, version_id=widen_name("v", "w"), kind="widen",
                             config=config)
    assert widened.manifest["appModules"] == ["lib/util.ts", "notes.ts"]
    main = compile_bundle(version().schema, version_id="v", config=config, target="main")
    assert "appModules" not in main.manifest and "convex/notes.ts" not in main.files


def test_no_functions_dir_leaves_bundles_as_they_were() -> None:
    bundle = compile_version(version(), EngineConfig())
    assert "appModules" not in bundle.manifest
    assert not [p for p in bundle.files if "_generated" in p]


def test_a_functions_only_change_changes_the_fingerprint_not_the_version(tmp_path: Path) -> None:
    fdir = _functions(tmp_path / "functions", **{"notes.ts": MODULE.format(n=1)})
    config = EngineConfig(functions_dir=fdir)
    before = compile_version(version(), config)
    _functions(fdir, **{"notes.ts": MODULE.format(n=2)})
    after = compile_version(version(), config)
    assert after.version_id == before.version_id
    assert after.fingerprint != before.fingerprint
    assert compile_version(version(), config).fingerprint == after.fingerprint  # deterministic


def test_a_pinned_version_ships_its_snapshot_and_so_do_migrations_from_it(tmp_path: Path) -> None:
    fdir = _functions(tmp_path / "functions", **{"notes.ts": MODULE.format(n=2)})
    snapshot = pinned_dir(fdir, "0001_a")
    assert snapshot == tmp_path / "functions.pinned" / "0001_a"
    _functions(snapshot, **{"notes.ts": MODULE.format(n=1)})
    _functions(pinned_dir(fdir, "0000_old"), **{"README.md": "no functions"})

    assert functions_for(fdir, "0001_a").modules == (("notes.ts", MODULE.format(n=1)),)
    assert functions_for(fdir, widen_name("0001_a", "0002_b")).modules == \
        (("notes.ts", MODULE.format(n=1)),)  # a widened bundle carries its source's functions
    assert functions_for(fdir, "0002_b").modules == (("notes.ts", MODULE.format(n=2)),)
    assert functions_for(fdir, "0000_old").modules == ()  # a snapshot without modules
    assert functions_for(None, "0001_a") is None
    old = compile_bundle(version().schema, version_id="0000_old",
                         config=EngineConfig(functions_dir=fdir))
    assert "appModules" not in old.manifest


@pytest.mark.parametrize("name", ["byod.ts", "byodHelpers.ts", "schema.ts", "auth.config.ts",
                                  "convex.config.ts"])
def test_a_module_name_the_engine_uses_is_refused_naming_the_file(tmp_path: Path,
                                                                 name: str) -> None:
    fdir = _functions(tmp_path / "functions", **{name: "export const x = 1;\n"})
    with pytest.raises(CompileError) as info:
        compile_version(version(), EngineConfig(functions_dir=fdir))
    assert f"functions/{name}" in str(info.value) and "reserved" in str(info.value)


def test_a_missing_functions_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CompileError, match="functions directory does not exist"):
        compile_version(version(), EngineConfig(functions_dir=tmp_path / "nope"))


def test_the_example_functions_ship_per_the_pins() -> None:
    """The reference app's functions: 0001-0003 predate them (empty pins), 0004 ships its
    snapshot (notes keep `content`), 0005 on the current modules (notes have `body`)."""

    fdir = assets.example_functions_dir()
    config = EngineConfig(functions_dir=fdir)
    versions = {v.id: v for v in load_versions(assets.example_versions_dir())}
    carried = {vid: compile_version(v, config).manifest.get("appModules", [])
               for vid, v in versions.items()}
    content = ["conversations.ts", "messages.ts", "notes.ts", "tasks.ts"]
    assert carried == {**{vid: [] for vid in ("0001_initial", "0002_tags",
                                              "0003_content_package")},
                       **{vid: content for vid in ("0004_task_priorities", "0005_notes_usage",
                                                   "0006_merge", "0007_reference_indexes")}}
    v4 = compile_version(versions["0004_task_priorities"], config).files["convex/notes.ts"]
    head = compile_version(versions["0007_reference_indexes"], config).files["convex/notes.ts"]
    assert "content: v.string()" in v4 and "body: v.string()" in head
    for module in ("notes", "tasks", "conversations", "messages"):
        text = read_functions(fdir).modules
        source = dict(text)[f"{module}.ts"]
        for fn in ("listForUser", "listPage", "create", "update", "remove"):
            assert f"export const {fn} = " in source, (module, fn)


def test_byod_check_reports_functions_problems_offline(tmp_path: Path) -> None:
    from engine.commands import Workspace
    from engine.commands import check as check_verb

    versions = tmp_path / "versions"
    shutil.copytree(assets.example_versions_dir(), versions)
    fdir = _functions(tmp_path / "functions", **{"byodNotes.ts": "export const x = 1;\n"})
    _functions(pinned_dir(fdir, "0099_gone"), **{"notes.ts": "export const x = 1;\n"})
    ws = Workspace.open(EngineConfig(versions_dir=versions, functions_dir=fdir))
    problems = {(p.file, p.severity): p.message for p in check_verb(ws).problems}
    assert "reserved" in problems[(f"{fdir.as_posix()}/byodNotes.ts", "error")]
    assert "not a version" in problems[(pinned_dir(fdir, "0099_gone").as_posix(), "warning")]
    missing = Workspace.open(EngineConfig(versions_dir=versions, functions_dir=tmp_path / "no"))
    [problem] = check_verb(missing).problems
    assert problem.file == (tmp_path / "no").as_posix() and "does not exist" in problem.message


@pytest.mark.toolchain
@pytest.mark.slow
def test_the_example_versions_and_functions_pass_the_deep_check(toolchain) -> None:
    """Every version bundle and widened bundle of the example, with the functions each one
    carries, type-checks (the 0004 snapshot against 0004 → 0006's widened schema too)."""

    from engine.check.deep import deep_check

    config = EngineConfig(functions_dir=assets.example_functions_dir())
    problems = deep_check(load_versions(assets.example_versions_dir()), config, toolchain)
    assert problems == [], [p.render() for p in problems]
