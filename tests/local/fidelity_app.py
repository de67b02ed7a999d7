"""A Convex app and fixtures shared by the fidelity tests of the local deployments (ids,
limits, auth, real clients): one fleet and one deployed app per test module, plus a test
OpenID Connect identity provider on loopback that signs RS256 user tokens."""

from __future__ import annotations

import base64
import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from engine.local import LocalDeployment, LocalFleet

from .conftest import TOOLCHAIN, Project

APPLICATION_ID = "byod-local-test"

SCHEMA = """
import { defineSchema, defineTable } from "convex/server";
import { v } from "convex/values";
export default defineSchema({
  users: defineTable({
    name: v.string(),
    score: v.float64(),
    big: v.optional(v.int64()),
    blob: v.optional(v.bytes()),
  }),
  posts: defineTable({ author: v.id("users"), title: v.string() }),
  free: defineTable({ v: v.any() }),
});
"""

APP = """
import { query, mutation, action, internalQuery, internalMutation } from "./_generated/server";
import { api } from "./_generated/api";
import { v, ConvexError } from "convex/values";
import { paginationOptsValidator } from "convex/server";

export const addUser = mutation({
  args: { name: v.string(), score: v.float64(), big: v.optional(v.int64()), blob: v.optional(v.bytes()) },
  handler: async (ctx, args) => ctx.db.insert("users", args),
});
export const getUser = query({ args: { id: v.id("users") }, handler: async (ctx, { id }) => ctx.db.get(id) });
export const normalize = query({
  args: { table: v.string(), id: v.string() },
  handler: async (ctx, { table, id }) => ctx.db.normalizeId(table as any, id),
});
export const addPost = mutation({
  args: { author: v.id("users"), title: v.string() },
  handler: async (ctx, args) => ctx.db.insert("posts", args),
});
export const listUsers = query({
  args: { paginationOpts: paginationOptsValidator },
  handler: async (ctx, { paginationOpts }) => ctx.db.query("users").paginate(paginationOpts),
});
export const whoami = query({ args: {}, handler: async (ctx) => ctx.auth.getUserIdentity() });
export const secret = internalQuery({ args: {}, handler: async () => "secret" });
export const refuse = mutation({
  args: {},
  handler: async () => {
    throw new ConvexError({ code: "refused", count: 3 });
  },
});
export const countUsers = action({
  args: {},
  handler: async (ctx): Promise<number> => {
    const page = await ctx.runQuery(api.app.listUsers, { paginationOpts: { numItems: 1000, cursor: null } });
    return page.page.length;
  },
});
export const echo = action({ args: { v: v.any() }, handler: async (_ctx, { v }) => v });
export const insertFree = internalMutation({
  args: { doc: v.any() },
  handler: async (ctx, { doc }) => ctx.db.insert("free", doc),
});
export const patchFree = internalMutation({
  args: { id: v.id("free"), doc: v.any() },
  handler: async (ctx, { id, doc }) => ctx.db.patch(id, doc),
});
export const bigResult = query({ args: {}, handler: async () => "x".repeat(17 * 1024 * 1024) });
"""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


class IdentityProvider:
    """An OpenID Connect provider on 127.0.0.1: discovery document, JWKS, RS256 tokens."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key-1"
        numbers = self.key.public_key().public_numbers()
        self.jwk = {"kty": "RSA", "kid": self.kid, "alg": "RS256", "use": "sig",
                    "n": b64url(_int_bytes(numbers.n)), "e": b64url(_int_bytes(numbers.e))}
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path == "/.well-known/openid-configuration":
                    body: dict[str, Any] = {
                        "issuer": provider.issuer, "jwks_uri": f"{provider.issuer}/jwks",
                        "authorization_endpoint": f"{provider.issuer}/authorize",
                        "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
                        "id_token_signing_alg_values_supported": ["RS256"],
                    }
                elif self.path == "/jwks":
                    body = {"keys": [provider.jwk]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def token(self, subject: str = "user-1", *, audience: str = APPLICATION_ID,
              issuer: str | None = None, expires_in: int = 600, key: Any = None,
              **claims: Any) -> str:
        """A signed ID token (RS256) for `subject`."""
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        payload = {"iss": issuer or self.issuer, "sub": subject, "aud": audience,
                   "iat": now, "exp": now + expires_in, **claims}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
        signature = (key or self.key).sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class App:
    """A running fleet with the app deployed to its first deployment."""

    fleet: LocalFleet
    dep: LocalDeployment
    project: Project
    idp: IdentityProvider


def auth_config(issuer: str) -> str:
    return (
        "export default { providers: [ { domain: "
        f"{json.dumps(issuer)}, applicationID: {json.dumps(APPLICATION_ID)} }} ] }};\n"
    )


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """One fleet of one deployment per test module, with the app and auth config pushed."""
    assert TOOLCHAIN is not None
    base = tmp_path_factory.mktemp("fidelity")
    root = base / "project"
    (root / "convex").mkdir(parents=True)
    (root / "node_modules").symlink_to(TOOLCHAIN / "node_modules", target_is_directory=True)
    (root / "package.json").write_text(
        '{"name": "fidelity-test", "private": true, "type": "module", "dependencies": {"convex": "1.48.0"}}\n'
    )
    idp = IdentityProvider()
    project = Project(root)
    project.write({"schema.ts": SCHEMA, "app.ts": APP, "auth.config.ts": auth_config(idp.issuer)})
    fleet = LocalFleet.start(1, base / "fleet", timeout=60)
    running = App(fleet, fleet.deployments[0], project, idp)
    try:
        result = project.deploy(running.dep)
        assert result.returncode == 0, result.stdout + result.stderr
        yield running
    finally:
        running.fleet.stop()  # a test may have restarted the fleet
        idp.close()
        shutil.rmtree(base, ignore_errors=True)


def node_script(root: Path, name: str, source: str) -> Path:
    """Writes an ES module into the project root, where `convex` resolves from node_modules."""
    path = root / name
    path.write_text(source)
    return path


def run(dep: LocalDeployment, kind: str, path: str, args: dict[str, Any] | None = None, *,
        auth: str | None = "admin", fmt: str = "json") -> Any:
    """One call over the HTTP API; `auth` is "admin", None (anonymous) or a user JWT.
    Returns the response (status and JSON body are the caller's to check)."""
    import httpx

    headers = {}
    if auth == "admin":
        headers["Authorization"] = f"Convex {dep.admin_key}"
    elif auth is not None:
        headers["Authorization"] = f"Bearer {auth}"
    return httpx.post(f"{dep.url}/api/{kind}", json={"path": path, "args": args or {}, "format": fmt},
                      headers=headers, timeout=60)
