"""Fixtures for local deployments: a running fleet, and a small Convex project deployed
with the real CLI of the pinned toolchain."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.convex.toolchain import Toolchain
from engine.errors import ToolchainError
from engine.local import LocalDeployment, LocalFleet

CLI_TIMEOUT_S = 120


def _toolchain_root() -> Path | None:
    try:
        root = Toolchain.find().root
    except ToolchainError:
        return None
    if shutil.which("node") is None or not (root / "node_modules" / ".bin" / "convex").exists():
        return None
    return root


TOOLCHAIN = _toolchain_root()
needs_toolchain = pytest.mark.skipif(TOOLCHAIN is None, reason="npm toolchain not installed")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    f = LocalFleet.start(2, tmp_path / "fleet", timeout=60)
    try:
        yield f
    finally:
        f.stop()


SCHEMA_V1 = """
import { defineSchema, defineTable } from "convex/server";
import { v } from "convex/values";
export default defineSchema({
  messages: defineTable({
    body: v.string(),
    author: v.optional(v.string()),
    tags: v.optional(v.record(v.string(), v.number())),
  }).index("by_author", ["author"]),
});
"""

MESSAGES_V1 = """
import { query, mutation, internalMutation, internalQuery, action } from "./_generated/server";
import { api } from "./_generated/api";
import { v, ConvexError } from "convex/values";

export const send = mutation({
  args: { body: v.string(), author: v.optional(v.string()) },
  handler: async (ctx, args) => ctx.db.insert("messages", args),
});
export const list = query({ args: {}, handler: async (ctx) => ctx.db.query("messages").collect() });
export const insertRaw = internalMutation({
  args: { doc: v.any() },
  handler: async (ctx, { doc }) => ctx.db.insert("messages", doc),
});
export const bulk = internalMutation({
  args: { n: v.number() },
  handler: async (ctx, { n }) => {
    for (let i = 0; i < n; i++) await ctx.db.insert("messages", { body: "bulk " + i });
    return n;
  },
});
export const count = internalQuery({
  args: {}, handler: async (ctx) => (await ctx.db.query("messages").collect()).length,
});
export const failAfterWrite = mutation({
  args: {},
  handler: async (ctx) => {
    await ctx.db.insert("messages", { body: "never" });
    throw new ConvexError({ code: "refused", detail: 7 });
  },
});
export const sendViaAction = action({
  args: { body: v.string() },
  handler: async (ctx, { body }): Promise<number> => {
    await ctx.runMutation(api.messages.send, { body });
    const all = await ctx.runQuery(api.messages.list, {});
    return all.length;
  },
});
"""


@dataclass
class Project:
    """A Convex project directory whose node_modules is the toolchain's."""

    root: Path

    def write(self, files: dict[str, str]) -> None:
        for rel, text in files.items():
            path = self.root / "convex" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def remove(self, rel: str) -> None:
        (self.root / "convex" / rel).unlink()

    def deploy(self, dep: LocalDeployment, *, key: str | None = None,
               extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        assert TOOLCHAIN is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEX_")}
        env.update({
            "CI": "1",
            "CONVEX_SELF_HOSTED_URL": dep.url,
            "CONVEX_SELF_HOSTED_ADMIN_KEY": key or dep.admin_key,
        })
        return subprocess.run(
            [str(TOOLCHAIN / "node_modules" / ".bin" / "convex"), "deploy", "--typecheck=disable", *extra],
            cwd=self.root, env=env, check=False, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
        )


@pytest.fixture
def project(tmp_path: Path) -> Project:
    assert TOOLCHAIN is not None
    root = tmp_path / "project"
    (root / "convex").mkdir(parents=True)
    (root / "node_modules").symlink_to(TOOLCHAIN / "node_modules", target_is_directory=True)
    (root / "package.json").write_text(
        '{"name": "local-harness-test", "private": true, "type": "module",'
        ' "dependencies": {"convex": "1.48.0"}}\n'
    )
    p = Project(root)
    p.write({"schema.ts": SCHEMA_V1, "messages.ts": MESSAGES_V1})
    return p


def call(dep: LocalDeployment, kind: str, path: str, args: dict[str, Any] | None = None,
         *, key: str | None = None, timeout: float = 30.0) -> httpx.Response:
    """One function call over the HTTP API, with the admin key."""

    return httpx.post(
        f"{dep.url}/api/{kind}",
        json={"path": path, "args": args or {}, "format": "json"},
        headers={"Authorization": f"Convex {key or dep.admin_key}"},
        timeout=timeout,
    )


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success", body
    return body["value"]
