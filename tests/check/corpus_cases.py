"""The corpus of edge-case schemas (tests/check/corpus), derived rule by rule from the
Convex backend source. Each ``.yaml`` case is a version file whose header says which
source line its rule comes from and the expected verdicts:

    # check: ok | BYOD-Wnnn ... | BYOD-Ennn ...   (every code byod check reports)
    # push: ok | <Convex error code>             (what a push to a deployment answers)

A ``.json`` case holds a schema export the version format cannot express (optional
record values, a non-object document, ...), with ``push`` and the byod ``code``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).parent / "corpus"
_HEADER = re.compile(r"^# (?P<key>rule|source|check|push): (?P<value>.*)$", re.M)


@dataclass(frozen=True)
class Case:
    path: Path
    source: str
    check: tuple[str, ...] | None  # None: not a version file (json case)
    push: str                      # "ok" or a Convex error code
    code: str | None = None        # json cases: the byod rule
    existing_tables: int = 0
    export: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return self.path.stem


def _yaml_case(path: Path) -> Case:
    head = {m["key"]: m["value"].strip() for m in _HEADER.finditer(path.read_text())}
    check = () if head["check"] == "ok" else tuple(head["check"].split())
    return Case(path, head["source"], check, head["push"])


def _json_case(path: Path) -> Case:
    data = json.loads(path.read_text())
    return Case(path, data["source"], None, data["push"], data["code"],
                int(data.get("existing_tables") or 0), data["schema"])


def load_cases() -> list[Case]:
    cases = [_yaml_case(p) for p in sorted(CORPUS.glob("*.yaml"))]
    return cases + [_json_case(p) for p in sorted(CORPUS.glob("*.json"))]
