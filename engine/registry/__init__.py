"""The registry: the ``RegistryStore`` protocol (``store``) and its embedded SQLite
implementation (``sqlite``). ``open_store`` is the one way the rest of the engine gets one."""

from .sqlite import SqliteStore, open_store
from .store import JournalEntry, Lease, RegistryStore, UserConfig

__all__ = ["JournalEntry", "Lease", "RegistryStore", "SqliteStore", "UserConfig", "open_store"]
