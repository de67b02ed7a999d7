"""What a diff is made of: the lint-code table and the ``Change`` record.

Shared by the comparison rules (``compare``) and the diff itself (``diff``), so neither
imports the other. Pure data."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from engine.plan.datasteps import DataStep

__all__ = ["CODES", "Change", "Classification"]

Classification = Literal["safe", "data_step", "destructive", "impossible"]

# code -> (kind, classification, one-line explanation). Documented in docs/lint-codes.md.
CODES: dict[str, tuple[str, Classification, str]] = {
    "BYOD-D101": ("table_added", "safe", "A new table; nothing to migrate."),
    "BYOD-D102": ("table_removed", "destructive",
                  "A table leaves the schema; its documents are deleted first. Needs "
                  "consent.drop_tables."),
    "BYOD-D103": ("table_location_changed", "impossible",
                  "A table moves between the user and main deployments; data cannot be "
                  "moved by a per-deployment migration."),
    "BYOD-D104": ("schema_validation_disabled", "safe", "schemaValidation turned off."),
    "BYOD-D105": ("schema_validation_enabled", "data_step",
                  "schemaValidation turned on; stored documents are checked on push and "
                  "may need repair (custom hints)."),
    "BYOD-D201": ("field_added_optional", "safe", "A new optional field."),
    "BYOD-D202": ("field_added_required", "data_step",
                  "A new required field; existing documents need a value (backfill, copy "
                  "or custom hint)."),
    "BYOD-D203": ("field_removed", "destructive",
                  "A field is removed from every document. Needs consent.drop_fields."),
    "BYOD-D204": ("field_renamed", "data_step", "A field is renamed (rename hint)."),
    "BYOD-D205": ("field_made_required", "data_step",
                  "An optional field becomes required; documents without it need a value "
                  "(backfill or custom hint)."),
    "BYOD-D206": ("field_made_optional", "safe", "A required field becomes optional."),
    "BYOD-D207": ("type_widened", "safe",
                  "The new type accepts every value of the old one."),
    "BYOD-D208": ("type_changed", "data_step",
                  "The new type rejects some old values; needs a convert (mapping or code) "
                  "or custom hint."),
    "BYOD-D209": ("literals_widened", "safe", "A literal union gains members."),
    "BYOD-D210": ("literals_narrowed", "data_step",
                  "A literal union loses members; stored values need a map_values hint "
                  "covering each removed value (or a default)."),
    "BYOD-D301": ("index_added", "safe",
                  "A new index; Convex backfills it during the push (slow on large "
                  "tables: consider staged: true)."),
    "BYOD-D302": ("index_removed", "safe", "An index is removed."),
    "BYOD-D303": ("index_changed", "safe", "An index's fields or staged flag change."),
    "BYOD-D311": ("search_index_added", "safe", "A new search index."),
    "BYOD-D312": ("search_index_removed", "safe", "A search index is removed."),
    "BYOD-D313": ("search_index_changed", "safe", "A search index changes."),
    "BYOD-D321": ("vector_index_added", "safe", "A new vector index."),
    "BYOD-D322": ("vector_index_removed", "safe", "A vector index is removed."),
    "BYOD-D323": ("vector_index_changed", "safe",
                  "A vector index changes (dimensions, field or filters)."),
    "BYOD-D401": ("rows_deleted", "destructive",
                  "A delete_rows hint deletes matching documents. Needs consent.delete_rows."),
    "BYOD-D402": ("custom_transform", "data_step", "A custom per-document transform."),
    "BYOD-D403": ("data_only_step", "data_step",
                  "A hint that changes data without changing the schema."),
}



@dataclass(frozen=True)
class Change:
    """One difference between two schemas (or one data-only hint), classified.

    ``before``/``after`` hold the model objects involved (FieldDef, Table, index, ...);
    ``steps`` the data steps that make existing documents fit; ``hint`` what to add to the
    version file when the change blocks a plan.
    """

    code: str
    kind: str
    table: str
    field: str | None
    classification: Classification
    message: str
    generated: bool = False
    consented: bool = False
    steps: tuple[DataStep, ...] = ()
    hint: str = ""
    before: Any = None
    after: Any = None
    # ``dataclasses.field``: the bare name is this class's ``field`` attribute
    inverse_change: "Change | None" = dataclasses.field(default=None, compare=False, repr=False)
    irreversible_reason: str = ""

    @property
    def blocking(self) -> bool:
        """True when a plan may not include this change as it stands."""

        if self.classification == "impossible":
            return True
        if self.classification == "data_step":
            return not self.generated
        if self.classification == "destructive":
            return not self.consented
        return False

    @property
    def subject(self) -> str:
        return f"{self.table}.{self.field}" if self.field else self.table

    def inverse(self) -> "Change | None":
        """The change that undoes this one, or None (see ``irreversible_reason``)."""

        return self.inverse_change

    def status(self) -> str:
        if self.classification == "data_step":
            return "generated" if self.generated else "missing hint"
        if self.classification == "destructive":
            return "consented" if self.consented else "needs consent"
        return self.classification

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "kind": self.kind,
            "table": self.table,
            "field": self.field,
            "classification": self.classification,
            "status": self.status(),
            "blocking": self.blocking,
            "message": self.message,
            "reversible": self.inverse_change is not None,
            "steps": [s.id for s in self.steps],
            # the same keys for every change (null where they do not apply), so machine
            # readers of `byod diff --json` never meet a key that comes and goes
            "generated": self.generated if self.classification == "data_step" else None,
            "consented": self.consented if self.classification == "destructive" else None,
            "hint": self.hint or None,
            "irreversible_reason": (self.irreversible_reason or None
                                    if self.inverse_change is None else None),
        }
        return out
