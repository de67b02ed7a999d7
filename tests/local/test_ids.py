"""Document ids in Convex's encoding (crates/value/src/id_v6.rs, crates/value/src/base32.rs):
`normalizeId` of a real id works, `v.id("t")` is checked through the table number, and ids
name the same table after a restart."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.local import LocalFleet

from .conftest import needs_toolchain
from .fidelity_app import App, app, run

__all__ = ["app"]

pytestmark = [pytest.mark.local, pytest.mark.toolchain, needs_toolchain, pytest.mark.timeout(240)]

HARNESS = Path(__file__).resolve().parents[2] / "engine" / "local" / "harness"
# A storage id from npm-packages/system-udfs/convex/_system/frontend/latestExport.ts.
REAL_CONVEX_ID = "kg27rxfv99gzp01wmph0gvt92d6hnvy6"

CODEC = """
import { pathToFileURL } from "node:url";
const { encodeId, decodeId } = await import(pathToFileURL(process.argv[1] + "/ids.mjs").href);
const real = decodeId(process.argv[2]);
const again = encodeId(real.tableNumber, real.internalId);
const mine = encodeId(10001, new Uint8Array(16).fill(255));
const big = encodeId(2 ** 32 - 1, new Uint8Array(16));
const flipped = process.argv[2].slice(0, -1) + (process.argv[2].endsWith("6") ? "7" : "6");
process.stdout.write(JSON.stringify({
  table: real.tableNumber, again, mine, mineTable: decodeId(mine).tableNumber,
  big: decodeId(big).tableNumber, bigLength: big.length,
  flipped: decodeId(flipped), upper: decodeId(process.argv[2].toUpperCase()),
  short: decodeId("abc"), legacy: decodeId("000000000000000000010000users"),
}));
"""


def test_codec_reads_and_writes_real_convex_ids() -> None:
    result = subprocess.run(["node", "--input-type=module", "-e", CODEC, str(HARNESS), REAL_CONVEX_ID],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["table"] == 540 and data["again"] == REAL_CONVEX_ID
    assert data["mineTable"] == 10001 and len(data["mine"]) == 32
    assert data["big"] == 2**32 - 1 and data["bigLength"] == 37
    assert data["flipped"] is None and data["upper"] is None and data["short"] is None
    assert data["legacy"] is None


def test_ids_are_convex_ids_and_normalize(app: App) -> None:
    uid = run(app.dep, "mutation", "app:addUser", {"name": "ada", "score": 1}).json()["value"]
    assert len(uid) == 32 and set(uid) <= set("0123456789abcdefghjkmnpqrstvwxyz")
    assert run(app.dep, "query", "app:normalize", {"table": "users", "id": uid}).json()["value"] == uid
    assert run(app.dep, "query", "app:normalize", {"table": "posts", "id": uid}).json()["value"] is None
    assert run(app.dep, "query", "app:normalize", {"table": "users", "id": "nonsense"}).json()["value"] is None
    pid = run(app.dep, "mutation", "app:addPost", {"author": uid, "title": "t"}).json()["value"]
    assert pid != uid and pid[:2] != uid[:2]  # another table number
    wrong = run(app.dep, "mutation", "app:addPost", {"author": pid, "title": "t"}).json()
    assert wrong["status"] == "error"
    assert wrong["errorMessage"].startswith(
        f'ArgumentValidationError: Found ID "{pid}" from table `posts`, which does not match the '
        'table name in validator `v.id("users")`.Path: .author')
    got = run(app.dep, "query", "app:getUser", {"id": uid}).json()["value"]
    assert got["_id"] == uid and got["name"] == "ada"


def test_ids_survive_a_restart(app: App, tmp_path: Path) -> None:
    del tmp_path
    uid = run(app.dep, "mutation", "app:addUser", {"name": "kept", "score": 2}).json()["value"]
    pid = run(app.dep, "mutation", "app:addPost", {"author": uid, "title": "kept"}).json()["value"]
    data_dir = app.fleet.data_dir
    app.fleet.stop()
    app.fleet = LocalFleet.start(1, data_dir, timeout=60)
    app.dep = app.fleet.deployments[0]
    assert run(app.dep, "query", "app:getUser", {"id": uid}).json()["value"]["name"] == "kept"
    assert run(app.dep, "query", "app:normalize", {"table": "posts", "id": pid}).json()["value"] == pid
    uid2 = run(app.dep, "mutation", "app:addUser", {"name": "new", "score": 3}).json()["value"]
    assert uid2[:2] == uid[:2]  # the table keeps its number
    posts = app.fleet.documents(app.dep.name, "posts")["posts"]
    assert {p["_id"] for p in posts} >= {pid}
    users = app.fleet.documents(app.dep.name, "users")["users"]
    assert users and all(isinstance(u["score"], float) for u in users)  # exported as 2.0
