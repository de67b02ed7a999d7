"""The registry: the ``RegistryStore`` protocol and its roles (``engine.ports.registry``),
written once as SQL mixins (``sql_*``) for the embedded SQLite store (``sqlite``) and the
PostgreSQL one (``postgres``). ``open_store`` (``open``) is the one way the rest of the
engine gets one."""

from engine.ports.registry import JournalEntry, Lease, RegistryStore, UserConfig
from engine.registry.open import open_store
from engine.registry.sqlite import SqliteStore

__all__ = ["JournalEntry", "Lease", "RegistryStore", "SqliteStore", "UserConfig", "open_store"]
