"""Package faces that resolve their names on first use.

``engine``, ``engine.commands`` and ``engine.testing`` each list names and the module that
holds them; importing the face stays cheap (the CLI, the pytest plugin and the pure core
import only what they use), and a name is imported once, on first access."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_face"]


def lazy_face(package: str, exports: Mapping[str, str], namespace: dict[str, Any]
              ) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """(``__all__``, ``__getattr__``, ``__dir__``) for ``package``. ``exports`` maps a
    public name to ``"module"`` (same name there) or ``"module:attribute"``; a resolved
    value is cached in ``namespace`` (the package's globals)."""

    names = sorted(exports)

    def getattr_(name: str) -> Any:
        try:
            target = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module_name, _, attr = target.partition(":")
        value = getattr(importlib.import_module(module_name), attr or name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return names

    return names, getattr_, dir_
