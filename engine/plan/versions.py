"""One view of versions: schemas by id and the head.

Routing, health and disconnect only ever need "the schema of version X" and "which is the
head"; ``VersionSource`` gives them that from a graph, a list of versions or one schema."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Union

from engine.errors import ByodError, UnknownVersion
from engine.plan.graph import VersionGraph
from engine.schema.models import Schema, SchemaVersion

__all__ = ["VersionSource", "Versions", "as_version_source"]


class VersionSource:
    """Schemas by version id, and the head: the one view of versions routing, health and
    disconnect need. Built from a ``VersionGraph``, versions, or one fixed schema."""

    def __init__(self, versions: Mapping[str, SchemaVersion], head: str | None,
                 fixed: Schema | None = None):
        self._versions = dict(versions)
        self._head = head
        self._fixed = fixed

    def schema(self, version_id: str | None) -> Schema:
        """The schema of ``version_id`` (head when None); ``UnknownVersion`` otherwise."""

        if self._fixed is not None:
            return self._fixed
        vid = version_id or self._head
        if vid is None:
            raise UnknownVersion("head", sorted(self._versions))
        try:
            return self._versions[vid].schema
        except KeyError:
            raise UnknownVersion(vid, sorted(self._versions)) from None

    def version(self, version_id: str) -> SchemaVersion | None:
        return self._versions.get(version_id)

    @property
    def head(self) -> str | None:
        return self._head


Versions = Union[VersionSource, VersionGraph, SchemaVersion, Schema,
                 Mapping[str, SchemaVersion], Iterable[SchemaVersion]]
"""Everything ``as_version_source`` accepts."""


def as_version_source(source: Versions) -> VersionSource:
    """Accept a ``VersionGraph``, a ``SchemaVersion``, a ``Schema``, a mapping id → version,
    a list of versions, or a ready ``VersionSource``."""

    if isinstance(source, VersionSource):
        return source
    if isinstance(source, Schema):
        return VersionSource({}, None, fixed=source)
    if isinstance(source, SchemaVersion):
        return VersionSource({source.id: source}, source.id)
    if isinstance(source, VersionGraph):
        versions = dict(source.versions)
        try:
            head: str | None = source.resolve("head").id
        except ByodError:  # several heads or an empty graph: no implicit head
            head = None
        return VersionSource(versions, head)
    if isinstance(source, Mapping):
        versions = dict(source)
    else:
        versions = {v.id: v for v in source}
    head = max(versions.values(), key=lambda v: (v.number, v.id)).id if versions else None
    return VersionSource(versions, head)
