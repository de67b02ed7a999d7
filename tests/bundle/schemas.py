"""Schemas built from literals for the compiler tests (no version files involved)."""

from __future__ import annotations

from engine.schema.models import (
    AnyV,
    ArrayV,
    BooleanV,
    BytesV,
    DbIndex,
    FieldDef,
    Float64V,
    IdV,
    Int64V,
    LiteralV,
    Location,
    NullV,
    ObjectV,
    RecordV,
    Schema,
    SchemaVersion,
    SearchIndex,
    StringV,
    Table,
    UnionV,
    VectorIndex,
)


def f(validator, optional: bool = False) -> FieldDef:
    return FieldDef(type=validator, optional=optional)


def rich_schema(*, body_type=None, schema_validation: bool = True) -> Schema:
    """Every validator kind, nested, with staged and unstaged indexes of all three sorts,
    plus a main-located table that must not reach a user bundle."""

    return Schema(
        schema_validation=schema_validation,
        tables={
            "conversations": Table(
                name="conversations",
                fields={"userId": f(StringV()), "title": f(StringV(), optional=True)},
                indexes=(DbIndex(name="by_user", fields=("userId",)),),
            ),
            "messages": Table(
                name="messages",
                fields={
                    "conversationId": f(IdV(table="conversations")),
                    "body": f(body_type or StringV()),
                    "embedding": f(ArrayV(element=Float64V()), optional=True),
                    "count": f(Int64V()),
                    "flag": f(BooleanV()),
                    "blob": f(BytesV(), optional=True),
                    "extra": f(AnyV(), optional=True),
                    "meta": f(
                        ObjectV(
                            fields={
                                "kind": f(
                                    UnionV(
                                        members=(
                                            LiteralV(value="a"),
                                            LiteralV(value=2),
                                            LiteralV(value=2.5),
                                            LiteralV(value=True),
                                            LiteralV(value=7, bigint=True),
                                            NullV(),
                                        )
                                    )
                                ),
                                "tags": f(
                                    RecordV(keys=StringV(), values=ArrayV(element=StringV()))
                                ),
                                "with space": f(StringV(), optional=True),
                                "deep": f(
                                    ObjectV(fields={"x": f(ObjectV(fields={"y": f(NullV())}))})
                                ),
                            }
                        )
                    ),
                },
                indexes=(
                    DbIndex(name="by_conversation", fields=("conversationId",)),
                    DbIndex(name="by_kind", fields=("meta.kind", "conversationId"), staged=True),
                ),
                search_indexes=(
                    SearchIndex(
                        name="search_body", search_field="body", filter_fields=("conversationId",)
                    ),
                ),
                vector_indexes=(
                    VectorIndex(
                        name="by_embedding",
                        vector_field="embedding",
                        dimensions=1536,
                        filter_fields=("conversationId",),
                        staged=True,
                    ),
                ),
            ),
            "accounts": Table(
                name="accounts",
                location=Location.MAIN,
                fields={"email": f(StringV())},
            ),
        },
    )


def version(
    vid: str = "0001_test", number: int = 1, schema: Schema | None = None, description: str = ""
) -> SchemaVersion:
    return SchemaVersion(
        id=vid, number=number, description=description, schema=schema or rich_schema()
    )
