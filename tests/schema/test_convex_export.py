"""A Convex schema export back to the engine's models and a version file: every shipped
version survives model -> export JSON -> model -> version file -> loader unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import assets
from engine.errors import VersionError
from engine.schema.convex_export import render_version_file, schema_from_export
from engine.schema.loader import load_version_file, load_versions
from engine.schema.models import Location, Schema

SHIPPED = load_versions(assets.example_versions_dir())


def _all_user(schema: Schema) -> Schema:
    return Schema(tables={n: t.model_copy(update={"location": Location.USER})
                          for n, t in schema.tables.items()},
                  schema_validation=schema.schema_validation)


@pytest.mark.parametrize("version", SHIPPED, ids=lambda v: v.id)
def test_every_shipped_schema_round_trips_through_its_export(version, tmp_path: Path) -> None:
    expected = _all_user(version.schema)
    back = schema_from_export(expected.to_convex_json())
    assert back == expected
    path = tmp_path / "0001_initial.yaml"
    path.write_text(render_version_file(back, description="It's: from an app"))
    loaded = load_version_file(path)
    assert loaded.schema == expected and loaded.parents == ()
    assert loaded.description == "It's: from an app"


def test_staged_indexes_literals_and_main_location(tmp_path: Path) -> None:
    export = {"schemaValidation": False, "tables": [{
        "tableName": "items",
        "documentType": {"type": "object", "value": {
            "n": {"fieldType": {"type": "literal", "value": {"$integer": "BwAAAAAAAAA="}},
                  "optional": False},
            "tags": {"fieldType": {"type": "record", "keys": {"type": "string"},
                                   "values": {"fieldType": {"type": "number"},
                                              "optional": False}}, "optional": True},
            "doc": {"fieldType": {"type": "object", "value": {
                "a": {"fieldType": {"type": "string"}, "optional": True}}}, "optional": False},
        }},
        "indexes": [], "stagedDbIndexes": [{"indexDescriptor": "by_n", "fields": ["n"]}],
        "searchIndexes": [], "stagedSearchIndexes": [],
        "vectorIndexes": [], "stagedVectorIndexes": [],
    }]}
    schema = schema_from_export(export, Location.MAIN)
    items = schema.tables["items"]
    assert items.location == Location.MAIN and items.indexes[0].staged
    assert items.fields["n"].type.value == 7 and items.fields["n"].type.bigint
    path = tmp_path / "0001_initial.yaml"
    path.write_text(render_version_file(schema, description=""))
    assert load_version_file(path).schema == schema
    assert schema.to_convex_json() == export


def test_a_table_without_fields_is_refused_naming_it() -> None:
    with pytest.raises(VersionError, match="table 'logs' has no validator"):
        schema_from_export({"tables": [{"tableName": "logs", "documentType": {"type": "any"},
                                        "indexes": []}]})
