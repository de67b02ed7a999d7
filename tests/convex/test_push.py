"""The push-replay adapter: a push request captured once with the real CLI, replayed to
deployments over HTTP. Unit tests against a scripted transport (protocol order, error
classification, no secret anywhere), then local deployments with the real toolchain
(every shipped version, a violated schema, faults, the payload cache on disk, and a push
deploy indistinguishable from a CLI deploy of the same bundle)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import brotli
import httpx
import pytest

from engine.bundle.compiler import Bundle, compile_version
from engine.config import EngineConfig
from engine.convex.capture import PayloadCache, PushPayload
from engine.convex.connector import adapter_for
from engine.convex.deploy_cli import CliDeployAdapter
from engine.convex.http import AsyncConvexHttpClient, ConvexHttpClient
from engine.convex.push import AsyncPushDeployAdapter, PushDeployAdapter
from engine.errors import (
    DeployFailed,
    DeploymentRequestRejected,
    DeploymentServerError,
    DeploymentTimeout,
    DeploymentUnauthorized,
    DeploymentUnreachable,
    SchemaValidationFailed,
)
from engine.plan.graph import VersionGraph
from engine.ports.deployment import DeploymentTarget
from engine.schema.loader import load_version_file

from .conftest import (
    ADMIN_KEY,
    assert_logs_clean,
    assert_no_secret,
    fleet_keys,
    local_target,
)

CONFIG = EngineConfig()
LOCAL_URL = "http://127.0.0.1:3999"


# -- unit: a scripted deployment ------------------------------------------------------------

def _payload(fingerprint: str = "f" * 64) -> PushPayload:
    return PushPayload(version_id="0001_x", kind="version", fingerprint=fingerprint,
                       convex_version="1.48.0", request={
                           "dryRun": False, "functions": "convex/",
                           "appDefinition": {"schema": None, "changedModules": [
                               {"path": "a.js", "source": "export {}", "environment": "isolate"}],
                               "unchangedModuleHashes": [], "udfServerVersion": "1.48.0"}})


class _Bundle:
    version_id, kind, fingerprint = "0001_x", "version", "f" * 64


START = {"schemaChange": {"schemaIds": {"": "p1"}}, "analysis": {}}


class Scripted:
    """Answers each push route from a table; records (path, decoded body, headers)."""

    def __init__(self, answers: dict[str, Callable[[], httpx.Response] | list[Any]]):
        self.answers = answers
        self.calls: list[tuple[str, Any, httpx.Headers]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        raw = request.content
        if request.headers.get("content-encoding") == "br":
            raw = brotli.decompress(raw)
        body = json.loads(raw) if raw else None
        self.calls.append((request.url.path, body, request.headers))
        answer = self.answers.get(request.url.path, {})
        if callable(answer):
            return answer()
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        return httpx.Response(200, json=answer)


def _target(url: str = LOCAL_URL) -> DeploymentTarget:
    return DeploymentTarget(label="user_7", url=url, admin_key=ADMIN_KEY,
                            allow_insecure_local=url.startswith("http:"))


def _adapter(script: Scripted, url: str = LOCAL_URL, **kw: Any) -> PushDeployAdapter:
    http = ConvexHttpClient(_target(url), transport=httpx.MockTransport(script), retries=0)
    return PushDeployAdapter(_target(url), payloads={"f" * 64: _payload()}, http_client=http,
                             **kw)


def test_protocol_order_key_only_in_bodies_and_headers() -> None:
    script = Scripted({"/api/deploy2/start_push": START,
                       "/api/deploy2/wait_for_schema": [
                           {"type": "inProgress", "components": {}}, {"type": "complete"}]})
    adapter = _adapter(script)
    result = adapter.deploy(_Bundle())
    assert [c[0] for c in script.calls] == [
        "/api/deploy2/start_push", "/api/deploy2/wait_for_schema",
        "/api/deploy2/wait_for_schema", "/api/deploy2/finish_push"]
    adapter.close()  # the completion report: after the work, off the critical path
    assert [c[0] for c in script.calls][-1] == "/api/deploy2/report_push_completed"
    start_body = script.calls[0][1]
    assert start_body["adminKey"] == ADMIN_KEY
    assert start_body["appDefinition"] == _payload().request["appDefinition"]
    assert script.calls[3][1]["startPush"] == START
    assert all(c[2]["authorization"] == f"Convex {ADMIN_KEY}" for c in script.calls)
    assert (result.version_id, result.fingerprint) == ("0001_x", "f" * 64)
    assert ADMIN_KEY not in result.output


def test_brotli_over_the_network_plain_on_loopback() -> None:
    for url, encoded in ((LOCAL_URL, False), ("https://happy-otter-123.convex.cloud", True)):
        script = Scripted({"/api/deploy2/start_push": START,
                           "/api/deploy2/wait_for_schema": {"type": "complete"}})
        _adapter(script, url).deploy(_Bundle())
        start_headers = script.calls[0][2]
        assert (start_headers.get("content-encoding") == "br") is encoded
        assert script.calls[0][1]["adminKey"] == ADMIN_KEY


def _status(code: int, body: dict[str, Any]) -> Callable[[], httpx.Response]:
    return lambda: httpx.Response(code, json=body)


def _raise(exc: Exception) -> Callable[[], httpx.Response]:
    def answer() -> httpx.Response:
        raise exc
    return answer


FAILED = {"type": "failed", "componentPath": "", "tableName": "notes",
          "error": 'Document with ID "12;notes" in table "notes" does not match the schema: '
                   f'bad {ADMIN_KEY}'}


@pytest.mark.parametrize("answers, expected", [
    ({"/api/deploy2/start_push": _status(401, {"code": "BadAdminKey",
                                               "message": "The provided admin key was invalid"})},
     DeploymentUnauthorized),
    ({"/api/deploy2/start_push": _status(500, {"code": "InternalServerError"})},
     DeploymentServerError),
    ({"/api/deploy2/start_push": _raise(httpx.ReadTimeout("slow"))}, DeploymentTimeout),
    ({"/api/deploy2/start_push": _raise(httpx.ConnectError(f"refused {LOCAL_URL}"))},
     DeploymentUnreachable),
    ({"/api/deploy2/start_push": _status(400, {"code": "InvalidModules", "message": "x"})},
     DeploymentRequestRejected),
    ({"/api/deploy2/start_push": START, "/api/deploy2/wait_for_schema": FAILED},
     SchemaValidationFailed),
    ({"/api/deploy2/start_push": START, "/api/deploy2/wait_for_schema": {"type": "complete"},
      "/api/deploy2/finish_push": _status(400, {
          "code": "SchemaValidationFailed",
          "message": 'Document with ID "3;notes" in table "notes" does not match the schema'})},
     SchemaValidationFailed),
    ({"/api/deploy2/start_push": START,
      "/api/deploy2/wait_for_schema": {"type": "raceDetected"}}, DeployFailed),
    ({"/api/deploy2/start_push": {"nothing": 1}}, DeploymentServerError),
])
def test_failures_are_typed_and_clean(answers: dict[str, Any], expected: type,
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    script = Scripted(answers)
    with pytest.raises(expected) as info:
        _adapter(script).deploy(_Bundle())
    error = info.value
    assert "user_7" in str(error)
    assert_no_secret(error, LOCAL_URL)
    assert_logs_clean(caplog.records, LOCAL_URL)
    if isinstance(error, SchemaValidationFailed):
        assert error.table == "notes" and error.documents
    if "/api/deploy2/finish_push" not in answers:  # a failed push is never finished
        assert "/api/deploy2/finish_push" not in [c[0] for c in script.calls]


def test_schema_check_that_never_completes_times_out() -> None:
    script = Scripted({"/api/deploy2/start_push": START,
                       "/api/deploy2/wait_for_schema": {"type": "inProgress", "components": {}}})
    started = time.monotonic()
    with pytest.raises(DeploymentTimeout):
        _adapter(script, timeout=0.3).deploy(_Bundle())
    assert time.monotonic() - started < 5


def test_missing_or_mismatched_payload_is_refused_before_any_request() -> None:
    script = Scripted({})
    http = ConvexHttpClient(_target(), transport=httpx.MockTransport(script))
    adapter = PushDeployAdapter(_target(), payloads={}, http_client=http)
    with pytest.raises(DeployFailed, match="no captured push request"):
        adapter.deploy(_Bundle())
    other = PushDeployAdapter(_target(), payloads={"f" * 64: _payload("e" * 64)},
                              http_client=http)
    with pytest.raises(DeployFailed, match="is for 0001_x"):
        other.deploy(_Bundle())
    assert script.calls == []


def test_same_fingerprint_other_version_is_refused() -> None:
    """Widened bundles of different paths can share a fingerprint yet answer different
    versions; a payload captured for one must never be pushed for the other."""

    script = Scripted({})
    http = ConvexHttpClient(_target(), transport=httpx.MockTransport(script))
    adapter = PushDeployAdapter(_target(), payloads={"f" * 64: _payload()}, http_client=http)

    class Other(_Bundle):
        version_id = "0002_y"

    with pytest.raises(DeployFailed, match="is for 0001_x"):
        adapter.deploy(Other())
    assert script.calls == []


def test_cache_keys_on_the_whole_content(tmp_path: Path) -> None:
    from engine.bundle.compiler import compile_bundle
    from engine.schema.models import FieldDef, Schema, StringV, Table

    schema = Schema(tables={"t": Table(name="t", fields={"a": FieldDef(type=StringV())})})
    one = compile_bundle(schema, version_id="0001_a__0003_c__widen", kind="widen",
                         config=EngineConfig())
    two = compile_bundle(schema, version_id="0002_b__0003_c__widen", kind="widen",
                         config=EngineConfig())
    assert one.fingerprint == two.fingerprint
    cache = PayloadCache(tmp_path)
    cache._convex_version = "1.48.0"
    assert cache.key(one) != cache.key(two)


def test_payload_never_holds_a_key() -> None:
    with pytest.raises(ValueError):
        PushPayload(version_id="v", kind="version", fingerprint="f", convex_version="1",
                    request={"adminKey": "k", "appDefinition": {"changedModules": []}})
    payload = _payload()
    assert "adminKey" not in json.dumps(payload.to_json())
    body = json.loads(payload.body_for('we"ird|key'))
    assert body["adminKey"] == 'we"ird|key' and body["functions"] == "convex/"
    assert PushPayload.from_json(json.loads(json.dumps(payload.to_json()))) == payload


def test_async_adapter_same_protocol() -> None:
    script = Scripted({"/api/deploy2/start_push": START,
                       "/api/deploy2/wait_for_schema": {"type": "complete"}})
    revoked = Scripted({"/api/deploy2/start_push": _status(401, {"code": "BadAdminKey"})})

    async def main() -> None:
        for s in (script, revoked):
            http = AsyncConvexHttpClient(_target(), transport=httpx.MockTransport(s), retries=0)
            async with AsyncPushDeployAdapter(_target(), payloads={"f" * 64: _payload()},
                                              http_client=http) as adapter:
                if s is script:
                    assert (await adapter.deploy(_Bundle())).version_id == "0001_x"
                else:
                    with pytest.raises(DeploymentUnauthorized) as info:
                        await adapter.deploy(_Bundle())
                    assert_no_secret(info.value, LOCAL_URL)
            await http.aclose()

    asyncio.run(main())
    assert [c[0] for c in script.calls][-1] == "/api/deploy2/report_push_completed"


def test_the_async_completion_report_is_never_awaited_by_deploy() -> None:
    script = Scripted({"/api/deploy2/start_push": START,
                       "/api/deploy2/wait_for_schema": {"type": "complete"}})

    async def main() -> None:
        http = AsyncConvexHttpClient(_target(), transport=httpx.MockTransport(script), retries=0)
        adapter = AsyncPushDeployAdapter(_target(), payloads={"f" * 64: _payload()},
                                         http_client=http)
        await adapter.deploy(_Bundle())
        assert [c[0] for c in script.calls][-1] == "/api/deploy2/finish_push"
        await adapter.settle_reports()
        assert [c[0] for c in script.calls][-1] == "/api/deploy2/report_push_completed"
        await adapter.aclose()
        await http.aclose()

    asyncio.run(main())


OTHER_KEY = "prod:happy-otter-456|01" + "9c2e7d5a3b" * 6


def test_the_start_body_is_compressed_once_per_bundle(monkeypatch) -> None:
    made = []
    real = brotli.Compressor

    def counting(*args: Any, **kw: Any) -> Any:
        made.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(brotli, "Compressor", counting)
    payload = _payload()
    url = "https://happy-otter-123.convex.cloud"
    bodies = []
    for key in (ADMIN_KEY, OTHER_KEY):
        target = DeploymentTarget(label="u", url=url, admin_key=key)
        script = Scripted({"/api/deploy2/start_push": START,
                           "/api/deploy2/wait_for_schema": {"type": "complete"}})
        http = ConvexHttpClient(target, transport=httpx.MockTransport(script), retries=0)
        PushDeployAdapter(target, payloads={"f" * 64: payload}, http_client=http).deploy(
            _Bundle())
        bodies.append(script.calls[0][1])
        assert script.calls[0][2]["content-encoding"] == "br"
    # the captured request compressed once for both deployments (the other compressions
    # are each deployment's own small finish_push body)
    assert len(made) == 1 + len(bodies)
    assert [b["adminKey"] for b in bodies] == [ADMIN_KEY, OTHER_KEY]
    assert all({k: v for k, v in b.items() if k != "adminKey"} == payload.request
               for b in bodies)


# -- integration: local deployments, the real CLI -------------------------------------------

@pytest.fixture(scope="module")
def fleet(toolchain: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from engine.local import LocalFleet

    running = LocalFleet.start(5, tmp_path_factory.mktemp("push-fleet"),
                               toolchain=toolchain.root)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def bundles(graph: VersionGraph) -> list[Bundle]:
    return [compile_version(graph.get(v), CONFIG) for v in graph.topological_order()]


@pytest.fixture(scope="module")
def cache(toolchain: Any, bundles: list[Bundle],
          tmp_path_factory: pytest.TempPathFactory) -> PayloadCache:
    found = PayloadCache(tmp_path_factory.mktemp("payloads"), toolchain=toolchain, timeout=240)
    found.prepare(bundles)
    assert found.captured == len({b.fingerprint for b in bundles})
    return found


@pytest.mark.local
@pytest.mark.toolchain
@pytest.mark.slow
def test_every_version_in_order_sync_and_async(fleet: Any, bundles: list[Bundle],
                                               cache: PayloadCache,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    dep = fleet.deployments[0]
    with PushDeployAdapter(local_target(dep), payloads=cache) as adapter:
        for bundle in bundles:
            result = adapter.deploy(bundle)
            info = adapter.read_version()
            assert (info.version, info.fingerprint, info.kind) == (
                bundle.version_id, bundle.fingerprint, "version")
            assert (result.version_id, result.fingerprint) == (info.version, info.fingerprint)
    assert fleet.state(dep.name)["pushes"] == len(bundles)

    other = fleet.deployments[1]

    async def main() -> None:
        async with AsyncPushDeployAdapter(local_target(other), payloads=cache,
                                          compress=True) as adapter:
            for bundle in bundles:
                await adapter.deploy(bundle)
                info = await adapter.read_version()
                assert (info.version, info.fingerprint) == (bundle.version_id,
                                                            bundle.fingerprint)

    asyncio.run(main())
    for record in caplog.records:
        text = record.getMessage()
        assert not any(k in text for k in fleet_keys(fleet)) and dep.url not in text
    assert cache.captured == len({b.fingerprint for b in bundles})  # nothing recaptured


@pytest.mark.local
@pytest.mark.toolchain
@pytest.mark.slow
def test_violated_schema_fails_and_keeps_the_old_state(fleet: Any, graph: VersionGraph,
                                                       cache: PayloadCache,
                                                       tmp_path: Path) -> None:
    head = graph.resolve("head")
    assert head.source is not None
    text = Path(head.source.path).read_text()
    assert "      title?: string" in text
    text = text.replace("      title?: string", "      title: string", 1)
    text = "\n".join(f"parents: [{head.id}]" if line.startswith("parents:") else line
                     for line in text.splitlines()) + "\n"
    (tmp_path / "0099_strict_titles.yaml").write_text(text)
    strict = compile_version(load_version_file(tmp_path / "0099_strict_titles.yaml"), CONFIG)
    head_bundle = compile_version(head, CONFIG)

    dep = fleet.deployments[2]
    with PushDeployAdapter(local_target(dep), payloads=cache) as adapter:
        adapter.deploy(head_bundle)
        now = time.time() * 1000
        ids = adapter.mutation("byod:importPage", {"table": "conversations", "documents": [
            {"userId": f"u{i}", "createdAt": now, "updatedAt": now} for i in range(3)]})
        before_docs, before_state = fleet.documents(dep.name), fleet.state(dep.name)
        with pytest.raises(SchemaValidationFailed) as info:
            adapter.deploy(strict)  # captured on the miss, then pushed
        error = info.value
        assert error.table == "conversations"
        assert error.documents and set(error.documents) <= set(ids)
        info_after = adapter.read_version()
    assert (info_after.version, info_after.fingerprint) == (head.id, head_bundle.fingerprint)
    assert fleet.documents(dep.name) == before_docs
    assert fleet.state(dep.name).get("schema") == before_state.get("schema")
    assert_no_secret(error, dep.admin_key, dep.admin_key.split("|", 1)[1], dep.url)


@pytest.mark.local
@pytest.mark.toolchain
@pytest.mark.slow
@pytest.mark.parametrize("mode, expected", [("revoked", DeploymentUnauthorized),
                                            ("error500", DeploymentServerError),
                                            ("timeout", DeploymentTimeout)])
def test_faults_give_typed_errors(fleet: Any, bundles: list[Bundle], cache: PayloadCache,
                                  mode: str, expected: type,
                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    dep = fleet.deployments[3]
    fleet.set_fault(dep.name, mode)
    try:
        http = ConvexHttpClient(local_target(dep), timeout=1.5, retries=0)
        with PushDeployAdapter(local_target(dep), payloads=cache, http_client=http,
                               timeout=3.0) as adapter:
            started = time.monotonic()
            with pytest.raises(expected) as info:
                adapter.deploy(bundles[0])
            assert time.monotonic() - started < 10
        http.close()
    finally:
        fleet.set_fault(dep.name, "none")
    assert dep.name in str(info.value)
    assert_no_secret(info.value, dep.admin_key, dep.admin_key.split("|", 1)[1], dep.url)
    assert_logs_clean(caplog.records, dep.admin_key, dep.admin_key.split("|", 1)[1], dep.url)


@pytest.mark.local
@pytest.mark.toolchain
@pytest.mark.slow
def test_payloads_on_disk_hold_no_key_and_are_reused(fleet: Any, bundles: list[Bundle],
                                                     cache: PayloadCache,
                                                     toolchain: Any) -> None:
    assert cache.directory is not None
    files = sorted(cache.directory.glob("*.json"))
    assert len(files) >= len({b.fingerprint for b in bundles})
    for path in files:
        text = path.read_text()
        assert '"adminKey"' not in text and "byod-push-capture|" not in text
        assert not any(k in text for k in fleet_keys(fleet))
        assert json.loads(text)["request"]["appDefinition"]["changedModules"]
    again = PayloadCache(cache.directory, toolchain=toolchain)
    assert [p.fingerprint for p in again.prepare(bundles)] == list(
        dict.fromkeys(b.fingerprint for b in bundles))
    assert (again.captured, again.loaded) == (0, len({b.fingerprint for b in bundles}))
    factory_made = adapter_for(local_target(fleet.deployments[4]), CONFIG, kind="push",
                               payloads=again)
    assert isinstance(factory_made, PushDeployAdapter)
    factory_made.close()


@pytest.mark.local
@pytest.mark.toolchain
@pytest.mark.slow
def test_push_deploy_is_indistinguishable_from_a_cli_deploy(
        fleet: Any, bundles: list[Bundle], cache: PayloadCache, toolchain: Any) -> None:
    bundle = bundles[-1]
    by_cli, by_push = fleet.deployments[4], fleet.deployments[1]
    with CliDeployAdapter(local_target(by_cli), toolchain=toolchain, timeout=240) as cli:
        cli.deploy(bundle)
    with PushDeployAdapter(local_target(by_push), payloads=cache) as push:
        push.deploy(bundle)
    a, b = fleet.state(by_cli.name), fleet.state(by_push.name)
    assert a["schema"] == b["schema"]
    code_keys = [k for k in a if "hash" in k.lower()]
    assert code_keys and all(a[k] == b[k] for k in code_keys)  # the same modules run
    answers = []
    for dep in (by_cli, by_push):
        with ConvexHttpClient(local_target(dep)) as http:
            info = http.read_version()
            counts = {t: http.query("byod:countPage", {"table": t, "cursor": None,
                                                       "numItems": 100})["isDone"]
                      for t in bundle.tables}
            answers.append((info.version, info.fingerprint, info.kind, counts))
    assert answers[0] == answers[1]
