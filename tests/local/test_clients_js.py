"""The JS `ConvexHttpClient` of the pinned `convex` package against a local deployment:
anonymous, admin and user (setAuth) calls; queries, mutations, actions, pagination,
`ConvexError` round trips, int64, bytes, whole-number floats and ids."""

from __future__ import annotations

import json
import subprocess

import pytest

from .conftest import needs_toolchain
from .fidelity_app import App, app, node_script

__all__ = ["app"]

pytestmark = [pytest.mark.local, pytest.mark.toolchain, needs_toolchain, pytest.mark.timeout(240)]

CLIENT = """
import { ConvexHttpClient } from "convex/browser";
import { anyApi } from "convex/server";
import { ConvexError } from "convex/values";

const [url, adminKey, token] = process.argv.slice(2);
const api = anyApi;
const out = {};
const client = new ConvexHttpClient(url);

// anonymous
const blob = new Uint8Array([0, 1, 254, 255]).buffer;
const id = await client.mutation(api.app.addUser, { name: "js", score: 3, big: 2n ** 40n, blob });
const user = await client.query(api.app.getUser, { id });
out.user = { id: user._id === id, score: user.score, big: String(user.big), bigType: typeof user.big,
             blob: [...new Uint8Array(user.blob)], creation: typeof user._creationTime };
out.normalized = await client.query(api.app.normalize, { table: "users", id });
out.post = typeof (await client.mutation(api.app.addPost, { author: id, title: "p" }));
for (let i = 0; i < 4; i++) await client.mutation(api.app.addUser, { name: "p" + i, score: i });
let cursor = null, pages = 0, seen = 0;
for (;;) {
  const page = await client.query(api.app.listUsers, { paginationOpts: { numItems: 2, cursor } });
  pages += 1; seen += page.page.length;
  if (page.isDone) break;
  cursor = page.continueCursor;
}
out.pagination = { pages, seen };
out.count = await client.action(api.app.countUsers, {});
try {
  await client.mutation(api.app.refuse, {});
  out.convexError = "no error";
} catch (err) {
  out.convexError = { isConvexError: err instanceof ConvexError, data: err.data };
}
try {
  await client.query(api.app.secret, {});
  out.internalAnonymous = "ran";
} catch (err) {
  out.internalAnonymous = err.message;
}
try {
  await client.mutation(api.app.addUser, { name: 1, score: 1 });
} catch (err) {
  out.argumentError = err.message;
}
out.whoAnonymous = await client.query(api.app.whoami, {});

// user
client.setAuth(token);
out.whoUser = (await client.query(api.app.whoami, {}))?.subject ?? null;

// admin, and admin acting as a user
client.setAdminAuth(adminKey);
out.internalAdmin = await client.query(api.app.secret, {});
client.setAdminAuth(adminKey, { subject: "acted", issuer: "https://issuer.example" });
out.actingAs = (await client.query(api.app.whoami, {}))?.subject ?? null;
process.stdout.write(JSON.stringify(out));
"""


def test_convex_http_client(app: App) -> None:
    script = node_script(app.project.root, "client_test.mjs", CLIENT)
    token = app.idp.token("js-user")
    result = subprocess.run(["node", str(script), app.dep.url, app.dep.admin_key, token],
                            cwd=app.project.root, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["user"] == {"id": True, "score": 3, "big": str(2**40), "bigType": "bigint",
                           "blob": [0, 1, 254, 255], "creation": "number"}
    assert isinstance(out["normalized"], str) and len(out["normalized"]) == 32
    assert out["post"] == "string"
    assert out["pagination"]["seen"] == out["count"] >= 5 and out["pagination"]["pages"] >= 3
    assert out["convexError"] == {"isConvexError": True, "data": {"code": "refused", "count": 3}}
    assert "Could not find public function for 'app:secret'" in out["internalAnonymous"]
    assert "ArgumentValidationError: Value does not match validator." in out["argumentError"]
    assert out["whoAnonymous"] is None
    assert out["whoUser"] == "js-user"
    assert out["internalAdmin"] == "secret"
    assert out["actingAs"] == "acted"
