"""What an in-memory deployment knows about the bundles deployed to it.

A compiled ``Bundle`` is text (TypeScript, a manifest) plus a fingerprint; it does not
carry the ``Schema`` it was compiled from nor the ``DataStep`` objects of its
``byodMigrations`` module. An in-memory deployment needs both: the schema to check its
documents on deploy (as Convex does on push) and the data steps to run their pages. The
``BundleCatalog`` maps a bundle's fingerprint to them: whoever compiles a bundle notes it
(``note``), and an optional ``resolver`` works out bundles compiled elsewhere (the fleet's
resolver finds them in its version graph, so a real rollout over an in-memory fleet
deploys bundles the deployments understand).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.plan.datasteps import DataStep
from engine.schema.models import Schema

__all__ = ["BundleCatalog", "KnownBundle", "Resolver"]


@dataclass(frozen=True)
class KnownBundle:
    """The schema a bundle deploys (its tables as the deployment holds them) and the data
    steps its ``byodMigrations`` module carries, by step id."""

    schema: Schema
    data_steps: dict[str, DataStep] = field(default_factory=dict)


Resolver = Callable[[Any], "KnownBundle | None"]
"""Works out a bundle nobody noted (None: unknown)."""


class BundleCatalog:
    """fingerprint → ``KnownBundle``; thread-safe (rollouts deploy from worker threads)."""

    def __init__(self, resolver: Resolver | None = None) -> None:
        self._known: dict[str, KnownBundle] = {}
        self._lock = threading.Lock()
        self.resolver = resolver

    def note(self, bundle: Any, schema: Schema, data_steps: Iterable[DataStep] = ()) -> None:
        """Remember what ``bundle`` deploys: ``schema`` (give the deployed schema, e.g.
        ``engine.bundle.compiler.deployed_schema(version.schema)``, to have the engine's
        own tables checked too) and the data steps it carries."""

        known = KnownBundle(schema, {step.id: step for step in data_steps})
        with self._lock:
            self._known[str(bundle.fingerprint)] = known

    def lookup(self, bundle: Any) -> KnownBundle | None:
        """What ``bundle`` deploys, or None when neither noted nor resolvable."""

        fingerprint = str(getattr(bundle, "fingerprint", ""))
        with self._lock:
            known = self._known.get(fingerprint)
        if known is not None or self.resolver is None:
            return known
        known = self.resolver(bundle)
        if known is not None:
            with self._lock:
                known = self._known.setdefault(fingerprint, known)
        return known

    def schema_of(self, bundle: Any) -> Schema | None:
        known = self.lookup(bundle)
        return known.schema if known is not None else None

    def steps_of(self, bundle: Any) -> dict[str, DataStep]:
        known = self.lookup(bundle)
        return dict(known.data_steps) if known is not None else {}

    def __contains__(self, fingerprint: object) -> bool:
        with self._lock:
            return fingerprint in self._known
