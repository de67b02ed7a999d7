"""Disconnect on real local deployments: migrate (interrupted, resumed) and delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from local_ops import connect_all, needs_toolchain, start

from engine.convex.http import ConvexHttpClient
from engine.demo.run import deploy_main
from engine.errors import DeploymentBlocked
from engine.lifecycle.disconnect import disconnect
from engine.lifecycle.routing import Router

pytestmark = [pytest.mark.local, pytest.mark.toolchain, pytest.mark.slow, needs_toolchain]

V1 = "0001_initial"


class Crash(Exception):
    pass


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("_id", "_creationTime")}


def test_migrate_resumes_and_delete_empties(tmp_path: Path) -> None:
    env = start(tmp_path, 2)
    try:
        deploy_main(env.main, env.graph.resolve(V1), env.config)
        seeded = connect_all(env, V1, seed=True)
        main = ConvexHttpClient(env.main)
        router = Router(env.store, env.vault, env.config, env.graph, main)
        assert router.route("u1", "messages").destination == "user"

        pages = {"n": 0}

        def crash_on_fifth_page(event: str, detail: dict[str, Any]) -> None:
            if event == "page":
                pages["n"] += 1
                if pages["n"] == 5:
                    raise Crash("simulated crash between pages")

        with pytest.raises(Crash):
            disconnect("u1", "migrate", store=env.store, vault=env.vault, config=env.config,
                       main_client=main, graph=env.graph, router=router, page_size=2,
                       hook=crash_on_fifth_page)
        assert env.store.get_user("u1").connection_status == "error"
        with pytest.raises(DeploymentBlocked):
            router.client_for("u1", "messages")

        report = disconnect("u1", "migrate", store=env.store, vault=env.vault,
                            config=env.config, main_client=main, graph=env.graph,
                            router=router, page_size=2)
        assert report.resumed and report.verified and report.status == "disconnected"
        assert router.client_for("u1", "messages") is main

        user_docs = env.fleet.documents(env.users["u1"].name)
        main_docs = env.fleet.documents(env.fleet.deployments[0].name)
        for table, count in seeded["u1"].items():
            assert len(main_docs.get(table, [])) == count == len(user_docs[table]), table
        # content identical up to ids: compare id-free, reference-free projections
        plain = lambda d: {k: v for k, v in _strip(d).items()
                           if not k.endswith("Id") or k == "userId"}
        assert sorted(map(repr, map(plain, main_docs["notes"]))) == \
            sorted(map(repr, map(plain, user_docs["notes"])))
        # references point at main's own documents, threads are intact
        by_id = {d["_id"]: d for d in main_docs["messages"]}
        convs = {d["_id"] for d in main_docs["conversations"]}
        threaded = [m for m in main_docs["messages"] if "parentMessageId" in m]
        assert threaded
        for m in main_docs["messages"]:
            assert m["conversationId"] in convs
        for m in threaded:
            parent = by_id[m["parentMessageId"]]
            assert parent["conversationId"] == m["conversationId"]
        for b in main_docs["bookmarks"]:
            assert b["messageId"] in by_id and b["conversationId"] in convs
        assert main_docs.get("byodImports", []) == []  # receipts cleaned up

        report = disconnect("u2", "delete", confirm=True, store=env.store, vault=env.vault,
                            config=env.config, graph=env.graph, page_size=3)
        assert report.verified and report.status == "disconnected"
        left = env.fleet.documents(env.users["u2"].name)
        assert all(not left.get(t) for t in seeded["u2"])
        router.close()
        main.close()
    finally:
        env.fleet.stop()
