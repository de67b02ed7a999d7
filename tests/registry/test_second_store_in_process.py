"""Opening a second store on a registry this process already has open must not cost the first
one its SQLite locks. (POSIX advisory locks belong to the process: closing *any* descriptor of
the file drops them all, so another process closing last would checkpoint and remove the WAL
under the first connection — "disk I/O error", and its later writes lost.)"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from engine.registry.sqlite import SqliteStore

_OTHER_PROCESS = """
import sys
from engine.registry.sqlite import SqliteStore
with SqliteStore(sys.argv[1]) as store:
    store.upsert_credentials("from-child", url_ct="u", key_ct="k")
"""


def test_a_second_store_keeps_the_first_ones_locks(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    first = SqliteStore(path)
    try:
        first.upsert_credentials("before", url_ct="u", key_ct="k")
        SqliteStore(path).close()  # e.g. a second Workspace in the same process
        subprocess.run([sys.executable, "-c", _OTHER_PROCESS, str(path)], check=True,
                       timeout=60)
        first.upsert_credentials("after", url_ct="u", key_ct="k")
        with sqlite3.connect(path) as fresh:
            users = sorted(r[0] for r in fresh.execute("SELECT user_id FROM users"))
        assert users == ["after", "before", "from-child"]
    finally:
        first.close()
    with SqliteStore(path) as again:
        assert sorted(u.user_id for u in again.list_users()) == ["after", "before", "from-child"]
