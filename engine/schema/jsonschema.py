"""The JSON Schema of version files, for editors (``schema_versions/version.schema.json``).

It describes the *file format* (docs/version-format.md), not the pydantic model: type
expressions stay strings here (their grammar is checked by ``byod check``). Regenerate the
committed file with ``python -m engine.schema.jsonschema > schema_versions/version.schema.json``;
a test keeps the two equal.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["render_version_schema", "version_file_schema"]

_IDENT = "^[A-Za-z_][A-Za-z0-9_]{0,63}$"
_FIELD_KEY = "^[A-Za-z_][A-Za-z0-9_]*\\??$"
_PATH = "^[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z_][A-Za-z0-9_]*)*$"


def _names(description: str) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string", "pattern": _PATH},
            "description": description}


# Long on purpose: one JSON Schema literal, kept whole so it reads like the file it renders.
def version_file_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one version file."""

    bool_flag = {"type": "boolean", "default": False,
                 "description": "Staged: backfilled in the background, not queryable yet."}
    defs: dict[str, Any] = {
        "typeExpression": {
            "type": "string",
            "minLength": 1,
            "description": "A type expression: string, number, float64, int64, bigint, "
                           "boolean, bool, null, bytes, any, storage, id(table), \"literal\", "
                           "42, 7n, true, literal(x), T[], array(T), record(K, V), "
                           "A | B, nullable(T), union(A, B), optional(T) (whole field only), "
                           "{a: T, b?: T}, (T).",
        },
        "fields": {
            "type": "object",
            "description": "Field name (a trailing ? makes it optional) -> type expression "
                           "or a mapping of nested fields.",
            "propertyNames": {"pattern": _FIELD_KEY},
            "additionalProperties": {
                "oneOf": [{"$ref": "#/$defs/typeExpression"}, {"$ref": "#/$defs/fields"}],
            },
        },
        "dbIndex": {
            "oneOf": [
                _names("Index fields, in order."),
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["fields"],
                    "properties": {"fields": _names("Index fields, in order."),
                                   "staged": bool_flag},
                },
            ],
        },
        "searchIndex": {
            "type": "object",
            "additionalProperties": False,
            "required": ["field"],
            "properties": {
                "field": {"type": "string", "pattern": _PATH,
                          "description": "The string field to search."},
                "filters": _names("Equality filter fields (at most 16)."),
                "staged": bool_flag,
            },
        },
        "vectorIndex": {
            "type": "object",
            "additionalProperties": False,
            "required": ["field", "dimensions"],
            "properties": {
                "field": {"type": "string", "pattern": _PATH,
                          "description": "The float64[] field holding the vector."},
                "dimensions": {"type": "integer", "minimum": 2, "maximum": 4096},
                "filters": _names("Equality filter fields (at most 16)."),
                "staged": bool_flag,
            },
        },
        "table": {
            "type": "object",
            "additionalProperties": False,
            "required": ["location", "fields"],
            "properties": {
                "location": {"enum": ["user", "main"],
                             "description": "user: each user's own deployment; main: the "
                                            "app's deployment."},
                "fields": {"$ref": "#/$defs/fields"},
                "indexes": {"type": ["object", "null"],
                            "propertyNames": {"pattern": _IDENT},
                            "additionalProperties": {"$ref": "#/$defs/dbIndex"}},
                "search_indexes": {"type": ["object", "null"],
                                   "propertyNames": {"pattern": _IDENT},
                                   "additionalProperties": {"$ref": "#/$defs/searchIndex"}},
                "vector_indexes": {"type": ["object", "null"],
                                   "propertyNames": {"pattern": _IDENT},
                                   "additionalProperties": {"$ref": "#/$defs/vectorIndex"}},
            },
        },
        "migration": {
            "type": "object",
            "additionalProperties": False,
            "required": ["op", "table"],
            "properties": {
                "op": {"enum": ["backfill", "rename", "copy", "map_values", "convert",
                                "drop_field", "delete_rows", "custom"]},
                "table": {"type": "string"},
                "field": {"type": "string"},
                "from": {"type": "string", "description": "rename/copy: the source field."},
                "to": {"type": "string", "description": "rename/copy: the target field."},
                "value": {"description": "backfill: the value to set where missing."},
                "mapping": {"type": "object", "description": "old value -> new value."},
                "default": {"description": "map_values/convert: value for unmapped inputs."},
                "where": {"type": "object", "description": "delete_rows: field equalities."},
                "code": {"type": "string", "description": "TypeScript transform body."},
                "description": {"type": "string"},
            },
        },
        "nameList": {"type": "array", "items": {"type": "string"}},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://byod.invalid/schema_versions/version.schema.json",
        "title": "byod schema version file",
        "description": "One version of the whole schema (docs/version-format.md). The file "
                       "name is NNNN_slug.yaml; its id is the name without .yaml.",
        "type": "object",
        "additionalProperties": False,
        "required": ["parents", "tables"],
        "properties": {
            "id": {"type": "string", "description": "Optional; must equal the file name."},
            "number": {"type": "integer", "description": "Optional; must equal the file "
                                                         "name's number."},
            "description": {"type": "string"},
            "parents": {"type": "array", "items": {"type": ["string", "integer"]},
                        "description": "Parent version ids or numbers; [] for a first "
                                       "version, two or more for a merge."},
            "schemaValidation": {"type": "boolean", "default": True},
            "tables": {"type": "object", "propertyNames": {"pattern": _IDENT},
                       "additionalProperties": {"$ref": "#/$defs/table"}},
            "migrations": {"type": ["array", "null"], "items": {"$ref": "#/$defs/migration"}},
            "consent": {
                "type": ["object", "null"],
                "additionalProperties": False,
                "properties": {
                    "drop_tables": {"$ref": "#/$defs/nameList"},
                    "drop_fields": {"$ref": "#/$defs/nameList"},
                    "delete_rows": {"$ref": "#/$defs/nameList"},
                },
            },
            "lint": {
                "type": ["object", "null"],
                "additionalProperties": False,
                "description": "Lint settings of this version (docs/version-format.md).",
                "properties": {
                    "acknowledge": {
                        "type": ["object", "null"],
                        "description": "Warning code (BYOD-Wnnn) -> why this version keeps "
                                       "that warning. byod check counts it as acknowledged "
                                       "instead of printing it; errors cannot be "
                                       "acknowledged.",
                        "propertyNames": {"pattern": "^BYOD-W[0-9]{3}$"},
                        "additionalProperties": {"type": "string", "minLength": 1},
                    },
                    "ignore": {
                        "type": ["array", "null"],
                        "description": "Warning codes (BYOD-Wnnn) this version does not "
                                       "report at all; errors cannot be ignored.",
                        "items": {"type": "string", "pattern": "^BYOD-W[0-9]{3}$"},
                    },
                },
            },
        },
        "$defs": defs,
    }


def render_version_schema() -> str:
    """The committed file's exact text (stable key order, trailing newline)."""

    return json.dumps(version_file_schema(), indent=2) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(render_version_schema(), end="")
