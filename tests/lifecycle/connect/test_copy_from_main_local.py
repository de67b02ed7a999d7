"""Connect with a copy from main on real local deployments: two users' content seeded on
main, one of them connects with ``copy_from_main`` (interrupted once, then retried), and
their deployment ends up with exactly their content, references remapped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from local_ops import needs_toolchain, start

from engine.convex.http import ConvexHttpClient
from engine.demo.run import deploy_main
from engine.demo.seed import seed_user
from engine.errors import CopyFromMainError, DeploymentUnreachable
from engine.lifecycle.connect import connect, retry_connect

pytestmark = [pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow, needs_toolchain,
              pytest.mark.timeout(480)]

V1 = "0001_initial"


def _plain(doc: dict[str, Any]) -> str:
    """A document without ids or references: content only, comparable across deployments."""

    return repr(sorted((k, v) for k, v in doc.items()
                       if k not in ("_id", "_creationTime")
                       and (not k.endswith("Id") or k == "userId")))


def test_connect_copies_the_users_content_from_main(tmp_path: Path) -> None:
    env = start(tmp_path, 1)
    try:
        version = env.graph.resolve(V1)
        deploy_main(env.main, version, env.config)
        main = ConvexHttpClient(env.main)
        seeded = {uid: seed_user(main, uid) for uid in ("u1", "u2")}
        dep = env.users["u1"]

        original = main.query
        calls = {"n": 0}

        def crash_on_fourth_export(path: str, args: dict[str, Any] | None = None) -> Any:
            if path in ("byodMain:exportOwnedPage", "byod:exportPage"):
                calls["n"] += 1
                if calls["n"] == 4:
                    raise DeploymentUnreachable("connection dropped (simulated)",
                                                deployment="main")
            return original(path, args)

        main.query = crash_on_fourth_export  # type: ignore[method-assign]
        with pytest.raises(CopyFromMainError, match="progress is saved"):
            connect("u1", dep.url, dep.admin_key, store=env.store, vault=env.vault,
                    config=env.config, versions=[version], allow_insecure_local=True,
                    copy_from_main=True, main_client=main, copy_page_size=2)
        stopped = env.store.get_user("u1")
        assert stopped.connection_status == "error"
        assert "copying" in (stopped.connection_error or "")
        main.query = original  # type: ignore[method-assign]

        stages: list[str] = []
        user = retry_connect("u1", store=env.store, vault=env.vault, config=env.config,
                             versions=[version], main_client=main,
                             on_stage=lambda u, s: stages.append(s))
        assert "copying" in stages and user.connection_status == "connected"

        main_docs = env.fleet.documents(env.fleet.deployments[0].name)
        user_docs = env.fleet.documents(dep.name)
        for table, count in seeded["u1"].items():
            mine = [d for d in main_docs[table] if d.get("userId") == "u1"]
            assert len(user_docs.get(table, [])) == count == len(mine), table
            assert sorted(map(_plain, user_docs[table])) == sorted(map(_plain, mine)), table
        assert not any(d.get("userId") == "u2" for docs in user_docs.values() for d in docs)
        # main keeps both users' content
        assert sum(1 for d in main_docs["messages"] if d["userId"] == "u2") == \
            seeded["u2"]["messages"]
        # references point at the user's deployment's own documents; threads intact
        convs = {d["_id"] for d in user_docs["conversations"]}
        by_id = {d["_id"]: d for d in user_docs["messages"]}
        threaded = [m for m in user_docs["messages"] if "parentMessageId" in m]
        assert threaded
        for m in user_docs["messages"]:
            assert m["conversationId"] in convs
        for m in threaded:
            assert by_id[m["parentMessageId"]]["conversationId"] == m["conversationId"]
        for b in user_docs["bookmarks"]:
            assert b["messageId"] in by_id and b["conversationId"] in convs
        main.close()
    finally:
        env.fleet.stop()
