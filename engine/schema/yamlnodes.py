"""Reading a PyYAML node tree while collecting problems (the generic half of the loader).

Working on nodes rather than on ``safe_load`` output keeps line numbers for every key and
lets duplicate mapping keys be reported (PyYAML silently keeps the last one).

``compose`` builds the tree with libyaml (PyYAML's C composer, several times faster) when
PyYAML was built with it, and with PyYAML's pure-Python composer otherwise. Both give the
same ``yaml.nodes`` classes with the same ``start_mark.line`` for every node the loader
reports on, except around a few constructs where libyaml's scanner is more lenient than
PyYAML's or places an empty node on another line: tabs, tags, byte-order marks, the
Unicode line breaks, explicit ``?`` keys, comments glued to a block scalar header, empty
documents, and ``?`` or empty plain scalars inside flow collections (``{a?: string}`` is
an error for PyYAML, the key ``a?`` for libyaml). A file with one of those, and any file
libyaml rejects, is composed again by the pure-Python composer, so the accepted files, the
lines and the error messages are exactly PyYAML's.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import difflib
import re
from itertools import chain
from pathlib import Path
from typing import Any, Iterable

import yaml
from yaml.nodes import CollectionNode, MappingNode, Node, ScalarNode, SequenceNode

from engine.errors import Problem

try:
    from yaml import CSafeLoader as _CSafeLoader
except ImportError:  # PyYAML built without libyaml
    _CSafeLoader = None  # type: ignore[assignment, misc]

__all__ = ["LIBYAML", "NodeReader", "closest", "compose", "join", "kind"]

_NULL = "tag:yaml.org,2002:null"

#: Compose with libyaml when it is available. Set it to ``False`` to use PyYAML's
#: pure-Python composer only (benchmarks and differential tests do).
LIBYAML: bool = _CSafeLoader is not None

# Where libyaml and the pure-Python scanner may read a text differently. Anywhere: the
# line breaks NEL, LS and PS and byte-order marks. Outside quoted and block scalars: tabs,
# tags, a `?` standing alone (an explicit key), a block scalar header followed by a tab
# or a comment without a space (`|#`).
_ANYWHERE = ("\x85", "\u2028", "\u2029", "\ufeff")
_OUTSIDE_SCALARS = re.compile(
    r"\t|(?:\A|(?<=[ \r\n\[{,]))(?:!|\?(?=[ \t\r\n,\]}]|\Z))|[|>][-+0-9]*(?:#| *\t)")
# A quick superset of _OUTSIDE_SCALARS: most files have none of these.
_SUSPECT_PAIRS = ("\t",) + tuple(c + x for c in " \r\n[{," for x in "!?")
_BLOCK_HEADER = re.compile(r"[|>][-+0-9]*(?:#| *\t)")


def compose(text: str) -> Node | None:
    """The node tree of the single YAML document ``text`` (``None`` when it has none);
    raises ``yaml.YAMLError`` as ``yaml.compose`` does, with PyYAML's own messages."""

    if LIBYAML and _CSafeLoader is not None and not any(c in text for c in _ANYWHERE):
        try:
            root = yaml.compose(text, Loader=_CSafeLoader)
        except yaml.YAMLError:
            pass  # the pure-Python composer words the error (or accepts the text)
        else:
            if root is None or _agrees(root, text):
                return root
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _agrees(root: Node, text: str) -> bool:
    """Whether the pure-Python composer would build the same tree from ``text`` as libyaml
    built (``root``): the document is not empty, no plain scalar inside a flow collection
    holds a ``?`` (PyYAML ends the scalar there) or is empty (PyYAML may put it on another
    line), and nothing of ``_OUTSIDE_SCALARS`` stands outside quoted and block scalars.
    Plain scalars get PyYAML's ``style`` (``None``, where libyaml says ``''``) on the way."""

    spans: list[tuple[int, int]] = []  # quoted and block scalars, by character index
    scalars: list[ScalarNode] = []
    collections: list[CollectionNode] = []
    if isinstance(root, ScalarNode):
        if not root.style and not root.value:
            return False
        scalars.append(root)
    elif isinstance(root, CollectionNode):
        collections.append(root)
    seen: set[int] = set()
    while scalars or collections:
        for scalar in scalars:
            if scalar.style:
                spans.append((scalar.start_mark.index, scalar.end_mark.index))
            else:
                scalar.style = None
        scalars = []
        if not collections:
            break
        node = collections.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        # a flow collection holds only flow collections and scalars
        flow = bool(node.flow_style)
        children = node.value if isinstance(node, SequenceNode) else chain.from_iterable(
            node.value)
        for child in children:
            if isinstance(child, ScalarNode):
                if flow and not child.style and (not child.value or "?" in child.value):
                    return False
                scalars.append(child)
            elif isinstance(child, CollectionNode):
                collections.append(child)
    if not (text.startswith(("!", "?")) or any(p in text for p in _SUSPECT_PAIRS)
            or _BLOCK_HEADER.search(text)):
        return True
    spans.sort()
    starts = [start for start, _ in spans]
    for match in _OUTSIDE_SCALARS.finditer(text):
        at = match.start()
        i = bisect.bisect_left(starts, at) - 1  # the last scalar starting before `at`
        if i < 0 or not at < spans[i][1]:
            return False
    return True


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


