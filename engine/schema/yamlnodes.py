"""Reading a PyYAML node tree while collecting problems (the generic half of the loader).

Working on nodes rather than on ``safe_load`` output keeps line numbers for every key and
lets duplicate mapping keys be reported (PyYAML silently keeps the last one).
"""

from __future__ import annotations

import datetime as _dt
import difflib
from pathlib import Path
from typing import Any, Iterable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from engine.errors import Problem

__all__ = ["NodeReader", "closest", "join", "kind"]

_NULL = "tag:yaml.org,2002:null"


def closest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


class NodeReader:
    """Typed access to nodes of one file; every mismatch becomes a ``Problem``."""

    def __init__(self, path: Path):
        self.path = path
        self.file = str(path)
        self.problems: list[Problem] = []
        self.lines: dict[str, int] = {}

    # -- problem helpers -----------------------------------------------------------------
    def problem(self, node: Node | None, location: str, message: str, hint: str = "",
                code: str = "BYOD-E008") -> None:
        line = node.start_mark.line + 1 if node is not None else None
        self.problems.append(Problem(self.file, line, location, message, hint, code))

    def _is_null(self, node: Node) -> bool:
        return isinstance(node, ScalarNode) and node.tag == _NULL

    def mapping(self, node: Node, location: str, what: str, allowed: tuple[str, ...] | None,
                ) -> list[tuple[str, Node, Node]] | None:
        """``(key, key_node, value_node)`` of a mapping; ``None`` (and a problem) otherwise.

        A YAML null counts as an empty mapping, so ``indexes:`` with nothing after it works.
        """

        if self._is_null(node):
            return []
        if not isinstance(node, MappingNode):
            self.problem(node, location, f"{what} must be a mapping (key: value lines), "
                         f"found {kind(node)}", code="BYOD-E004")
            return None
        items: list[tuple[str, Node, Node]] = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.problem(key_node, location, f"keys of {what} must be plain names",
                             code="BYOD-E004")
                continue
            key = key_node.value
            if allowed is not None and key not in allowed:
                hint = closest(key, allowed) or "allowed keys: " + ", ".join(allowed)
                self.problem(key_node, join(location, key), f"unknown key {key!r} in {what}",
                             hint, code="BYOD-E005")
                continue
            items.append((key, key_node, value_node))
        return items

    def sequence(self, node: Node, location: str, what: str) -> list[Node] | None:
        if self._is_null(node):
            return []
        if not isinstance(node, SequenceNode):
            self.problem(node, location, f"{what} must be a list, found {kind(node)}",
                         "write it as [a, b] or one '- item' per line", code="BYOD-E004")
            return None
        return list(node.value)

    def names(self, node: Node, location: str, what: str) -> tuple[str, ...] | None:
        items = self.sequence(node, location, what)
        if items is None:
            return None
        out: list[str] = []
        for i, item in enumerate(items):
            if not isinstance(item, ScalarNode) or self._is_null(item) or item.value == "":
                self.problem(item, f"{location}.{i}", f"{what} must list names, found "
                             f"{kind(item)}", code="BYOD-E004")
                return None
            out.append(item.value)
        return tuple(out)

    def value(self, node: Node) -> Any:
        """A plain Python value (for migration values, mappings and ``where`` clauses)."""

        loader = yaml.SafeLoader("")
        try:
            return _plain(loader.construct_document(node))
        finally:
            loader.dispose()

    def boolean(self, node: Node, location: str) -> bool | None:
        value = self.value(node) if isinstance(node, ScalarNode) else None
        if not isinstance(value, bool):
            self.problem(node, location, f"expected true or false, found {kind(node)}")
            return None
        return value

    # -- structure pass: lines and duplicate keys -----------------------------------------
    def scan(self, node: Node, location: str, seen: set[int]) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, MappingNode):
            keys: dict[str, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode):
                    continue
                key = key_node.value
                name = key[:-1] if key.endswith("?") else key
                loc = join(location, name)
                if key in keys:
                    self.problem(key_node, loc, f"duplicate key {key!r} (first on line "
                                 f"{keys[key]})", "YAML keeps only the last one: remove or "
                                 "rename one of them", code="BYOD-E006")
                else:
                    keys[key] = key_node.start_mark.line + 1
                    self.lines.setdefault(loc, key_node.start_mark.line + 1)
                self.scan(value_node, loc, seen)
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                loc = join(location, str(i))
                self.lines.setdefault(loc, item.start_mark.line + 1)
                self.scan(item, loc, seen)

    def _name(self, node: Node, location: str) -> str | None:
        if isinstance(node, ScalarNode) and not self._is_null(node) and node.value:
            return node.value
        self.problem(node, location, f"expected a field name, found {kind(node)}",
                     code="BYOD-E004")
        return None

def join(location: str, key: str) -> str:
    return f"{location}.{key}" if location else key


def kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if isinstance(node, ScalarNode) and node.tag == _NULL:
        return "nothing"
    return f"{node.value!r}" if isinstance(node, ScalarNode) else "something else"


def _plain(value: Any) -> Any:
    """YAML dates/times become ISO text so hints stay JSON-compatible."""

    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


