"""Runs one rollout in its own process, printing every event as one JSON line (flushed),
so crash tests can SIGKILL it at a chosen event and resume it by id.

usage: rollout_child.py REGISTRY VERSIONS_DIR (--to VERSION | --resume ID)
                        [--concurrency N] [--batch N] [--canary N] [--only USER ...]
The encryption key comes from BYOD_ENCRYPTION_KEY, as for the CLI.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.config import EngineConfig
from engine.events import Event
from engine.fleet.rollout import RolloutOptions, rollout
from engine.registry.sqlite import SqliteStore
from engine.schema.loader import load_versions
from engine.vault import Vault


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("registry")
    p.add_argument("versions")
    p.add_argument("--to")
    p.add_argument("--resume")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--canary", type=int, default=0)
    p.add_argument("--only", action="append", default=[])
    a = p.parse_args()
    config = EngineConfig(registry_path=Path(a.registry), versions_dir=Path(a.versions))
    store = SqliteStore(config.registry_path)

    def emit(event: Event) -> None:
        sys.stdout.write(json.dumps(event.to_dict(), default=str) + "\n")
        sys.stdout.flush()

    options = RolloutOptions(canary=a.canary, waves=("100%",), concurrency=a.concurrency,
                             max_failures="100%", max_batch=a.batch, lease_ttl_s=30.0,
                             only=tuple(a.only))
    report = rollout(a.to, store=store, vault=Vault.from_env(), config=config,
                     versions=load_versions(config.versions_dir, config), options=options,
                     resume=a.resume, emit=emit)
    sys.stdout.write(json.dumps({"event": "report", **report.to_dict()}, default=str) + "\n")
    store.close()
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
