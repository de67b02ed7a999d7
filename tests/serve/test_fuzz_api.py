"""The ``/v1`` API fuzzed from its own OpenAPI (schemathesis, in process over ASGI): every
operation, with a token of each scope and one with all of them, gets generated requests
(random user ids, bodies and parameters, and the connected user ``alice`` half the time);
no answer is a 5xx, every status code, content type and JSON body conforms to the
published schema, and no answer carries a deploy key, a deployment URL or the token.

Bounded: a few examples per operation (``FUZZ_EXAMPLES``), no shrinking, no example
database, so the whole module runs well under a minute."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from engine.commands.service import create_token

from .api_kit import Api, give_notes, make_api

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
SCOPES = ("settings", "data", "admin", "settings,data,admin")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
USER = "alice"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The API over an in-memory fleet with main deployed: ``alice`` connected (with the
    example app's functions), ``bob`` blocked."""

    api = make_api(tmp_path_factory.mktemp("fuzz"))
    give_notes(api.fleet.connect_user(USER).deployment)
    api.fleet.connect_user("bob", status="error")
    with api.client:
        yield api
    api.fleet.close()


@pytest.fixture(scope="module")
def schema(served: Api) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", served.app)


def _operations(schema: Any) -> list[Any]:
    ops = [result.ok() for result in schema.get_all_operations()]
    return [op for op in ops if op.path.startswith("/v1/")]


def _secrets(served: Api, token: str) -> list[str]:
    out = [token]
    for dep in served.fleet.deployments.values():
        out += [dep.url, dep.key.split("|", 1)[-1]]
    return out


def test_the_schema_covers_every_v1_route(served: Api, schema: Any) -> None:
    published = {(op.method.upper(), op.path) for op in _operations(schema)}
    routed = {(m, r.path) for r in served.app.routes  # type: ignore[attr-defined]
              if getattr(r, "path", "").startswith("/v1/") for m in getattr(r, "methods", ())
              if getattr(r, "include_in_schema", True)}
    assert routed <= published, routed - published
    assert len(published) >= 15


@pytest.mark.parametrize("scopes", SCOPES)
def test_every_operation_with_each_scope_never_fails_and_conforms(
        served: Api, schema: Any, scopes: str) -> None:
    _, token = create_token(served.ws, f"fuzz-{scopes.replace(',', '-')}", scopes.split(","))
    headers = {"Authorization": f"Bearer {token}"}
    secrets = _secrets(served, token)
    failures: list[str] = []
    statuses: dict[int, int] = {}
    per_op: dict[str, set[int]] = {}
    started = time.monotonic()
    for op in _operations(schema):
        seen = {"n": 0}

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def run(case: Any) -> None:
            seen["n"] += 1
            if case.path_parameters and "user_id" in case.path_parameters and seen["n"] % 2:
                case.path_parameters["user_id"] = USER
            try:
                response = case.call(headers=headers)
            except Exception as exc:  # noqa: BLE001 - the app raised: a 500 in production
                failures.append(f"{op.method.upper()} {op.path} raised {type(exc).__name__}: "
                                f"{str(exc)[:300]}\n  reproduce: "
                                f"{case.as_curl_command(headers=headers)[:600]}")
                return
            text = response.text
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            per_op.setdefault(f"{op.method.upper()} {op.path}", set()).add(response.status_code)
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except Exception as exc:  # noqa: BLE001 - collected, reported together
                failures.append(f"{op.method.upper()} {op.path} -> {response.status_code}: "
                                f"{type(exc).__name__}: {str(exc)[:600]}\n"
                                f"  reproduce: {case.as_curl_command(headers=headers)[:600]}")
            for secret in secrets:
                if secret and secret in text:
                    failures.append(f"{op.method.upper()} {op.path}: the answer carries a "
                                    f"secret ({response.status_code})")

        run()
        served.run_jobs()  # queued connects/disconnects run, so later calls see them
    assert time.monotonic() - started < 60
    # the token got past authorization to the routes it may use (not only 401/403)
    assert any(code not in (401, 403) for code in statuses), (statuses, per_op)
    assert not failures, "\n\n".join(dict.fromkeys(failures))


def test_every_operation_refuses_a_missing_and_a_wrong_token(served: Api,
                                                              schema: Any) -> None:
    client = served.client
    for op in _operations(schema):
        path = op.path.replace("{user_id}", USER).replace("{job_id}", "job-0")
        for headers in ({}, {"Authorization": "Bearer byod_not-a-real-token"}):
            r = client.request(op.method.upper(), path, headers=headers, json={})
            assert r.status_code == 401, (op.method, path, headers, r.status_code, r.text)
            body = r.json()
            assert body["error"]["code"] and body["error"]["message"], body
            assert "byod_not-a-real-token" not in json.dumps(body)


