"""The official Python `convex` package's HTTP client against a local deployment: it reads
values in Convex's typed JSON, so whole-number floats must arrive as `1.0` (as Convex writes
them) or it refuses the response; int64, bytes, ids, pagination, actions, auth and
`ConvexError` round trips."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import needs_toolchain
from .fidelity_app import App, app

__all__ = ["app"]


def _installed_client() -> tuple[ModuleType, ModuleType]:
    """The PyPI `convex` package, loaded under another name (tests/convex shadows `convex`)."""
    name = "convex_pypi_client"
    if name not in sys.modules:
        try:
            init = Path(str(importlib.metadata.distribution("convex").locate_file("convex/__init__.py")))
        except importlib.metadata.PackageNotFoundError:
            pytest.skip("the `convex` package (test extra) is not installed", allow_module_level=True)
        spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name], importlib.import_module(f"{name}.http_client")


convex, http_client = _installed_client()

pytestmark = [pytest.mark.local, pytest.mark.toolchain, needs_toolchain, pytest.mark.timeout(240)]


def test_python_http_client(app: App) -> None:
    client = http_client.ConvexHttpClient(app.dep.url)
    uid = client.mutation("app:addUser", {"name": "py", "score": 2, "big": convex.ConvexInt64(2**40),
                                          "blob": b"\x00\x01\xff"})
    user = client.query("app:getUser", {"id": uid})
    assert user["_id"] == uid and user["name"] == "py"
    assert user["score"] == 2.0 and isinstance(user["score"], float)
    assert isinstance(user["_creationTime"], float)
    assert user["big"] == convex.ConvexInt64(2**40) and user["blob"] == b"\x00\x01\xff"
    assert client.query("app:normalize", {"table": "users", "id": uid}) == uid
    assert client.query("app:normalize", {"table": "posts", "id": uid}) is None
    client.mutation("app:addPost", {"author": uid, "title": "from python"})
    for i in range(3):
        client.mutation("app:addUser", {"name": f"p{i}", "score": i})

    seen, cursor, pages = 0, None, 0
    while True:
        page = client.query("app:listUsers", {"paginationOpts": {"numItems": 2, "cursor": cursor}})
        pages += 1
        seen += len(page["page"])
        if page["isDone"]:
            break
        cursor = page["continueCursor"]
    assert pages >= 2 and seen == client.action("app:countUsers") >= 4
    assert client.action("app:echo", {"v": [1, 2.5, {"x": 3}]}) == [1.0, 2.5, {"x": 3.0}]

    with pytest.raises(convex.ConvexError) as refused:
        client.mutation("app:refuse")
    assert refused.value.data == {"code": "refused", "count": 3.0}
    with pytest.raises(http_client.ConvexExecutionError, match="Could not find public function"):
        client.query("app:secret")
    with pytest.raises(http_client.ConvexExecutionError, match="ArgumentValidationError"):
        client.mutation("app:addUser", {"name": "x"})

    assert client.query("app:whoami") is None
    client.set_auth(app.idp.token("py-user"))
    assert client.query("app:whoami")["subject"] == "py-user"
    client.set_admin_auth(app.dep.admin_key)
    assert client.query("app:secret") == "secret"
