"""The registry: the ``RegistryStore`` protocol and its roles (``engine.ports.registry``) and
their embedded SQLite implementation (``sqlite``). ``open_store`` is the one way the rest of
the engine gets one."""

from engine.ports.registry import JournalEntry, Lease, RegistryStore, UserConfig
from engine.registry.sqlite import SqliteStore, open_store

__all__ = ["JournalEntry", "Lease", "RegistryStore", "SqliteStore", "UserConfig", "open_store"]
