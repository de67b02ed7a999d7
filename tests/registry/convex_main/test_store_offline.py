"""``ConvexMainStore`` without a deployment (a scripted function runner): how failures of
main become registry errors (redacted, naming the fix), how transitions answered by main
become the engine's exceptions, and what the engine sends (redacted errors and details,
its own clock). Fast: no toolchain."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import (
    DeploymentUnreachable,
    FunctionError,
    InvalidTransition,
    LeaseHeld,
    RegistryError,
    UnknownUser,
)
from engine.ports.registry import CONNECTION_TRANSITIONS, JournalEntry
from engine.registry.convex_main import ConvexMainStore, allowed_from

KEY = "prod:acme-main-1|" + "9f" * 32


class Runner:
    """Answers each function from ``answers`` (a value, or an exception to raise) and
    records the calls."""

    def __init__(self, **answers: Any) -> None:
        self.answers = answers
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.closed = False

    def _run(self, kind: str, path: str, args: dict[str, Any] | None) -> Any:
        self.calls.append((kind, path, dict(args or {})))
        answer = self.answers[path.split(":", 1)[1]]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def query(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return self._run("query", path, args)

    def mutation(self, path: str, args: dict[str, Any] | None = None) -> Any:
        return self._run("mutation", path, args)

    def run(self, kind: str, path: str, args: dict[str, Any] | None = None) -> Any:
        return self._run(kind, path, args)

    def read_version(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        self.closed = True


def test_a_missing_function_names_the_deploy_command() -> None:
    store = ConvexMainStore(Runner(getLease=FunctionError(
        "Could not find function for 'byodRegistry:getLease'", deployment="main")))
    with pytest.raises(RegistryError, match="byod deploy head --target main"):
        store.ping()


def test_a_failure_is_redacted_and_typed_as_a_registry_error() -> None:
    store = ConvexMainStore(Runner(getUser=DeploymentUnreachable(
        f"connection refused while sending {KEY}", deployment="main")))
    with pytest.raises(RegistryError) as caught:
        store.find_user("u1")
    assert KEY not in str(caught.value) and KEY.split("|")[1] not in str(caught.value)
    assert "byodRegistry:getUser" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_main_s_answers_become_the_engine_s_exceptions() -> None:
    store = ConvexMainStore(Runner(
        setConnectionStatus={"invalid": "disconnected"}, setDeployment={"missing": True},
        journalUpdate={"invalid": "completed"}, journalPlan={"missing": "ghost"},
        renewLease={"held": {"deployment": "d", "holder": "other", "expiresAt": 5.0}},
        acquireLease={"held": {"deployment": "d", "holder": "other", "expiresAt": 5.0,
                               "acquiredAt": 1.0, "host": None, "pid": None}},
        saveDeploymentRow="missing"))
    with pytest.raises(InvalidTransition):
        store.set_connection_status("u1", "error")
    with pytest.raises(UnknownUser):
        store.set_deployment("u1", progress="x")
    with pytest.raises(InvalidTransition):
        store.journal_update("u1", "p", "s", status="running")
    with pytest.raises(UnknownUser):
        store.journal_plan([JournalEntry("ghost", "p", "s", 0, "deploy")])
    with pytest.raises(LeaseHeld):
        store.renew_lease("d", "me", 30)
    with pytest.raises(LeaseHeld):  # a holder with no process recorded is never taken over
        store.acquire_lease("d", "me", 30)
    with pytest.raises(RegistryError, match="save the rollout first"):
        store.save_deployment_row("r", "u1", "succeeded", {})


def test_what_is_sent_is_redacted_and_on_the_engine_s_clock() -> None:
    user = {"userId": "u1", "urlCt": "c1", "keyCt": "c2", "connectionStatus": "error",
            "deploymentStatus": "not_started", "entitled": False, "createdAt": 1.0,
            "updatedAt": 2.0}
    runner = Runner(setConnectionStatus={"user": user}, audit=None)
    store = ConvexMainStore(runner, clock=lambda: 1234.5)
    store.set_connection_status("u1", "error", error=f"bad key {KEY}")
    store.audit("u1", "note", {"token": KEY})
    (_, _, status), (_, _, audit) = [c for c in runner.calls]
    assert status["now"] == 1234.5 and audit["now"] == 1234.5
    assert KEY not in status["error"] and KEY not in audit["detail"]
    assert status["allowedFrom"] == allowed_from(CONNECTION_TRANSITIONS, "error")
    assert repr(store) == "ConvexMainStore('convex:main')"
    store.close()
    assert runner.closed


def test_every_function_the_store_calls_is_in_the_main_bundle() -> None:
    """The store resolves each function to its module (``_MODULE_OF``) as the bundle
    declares it (``REGISTRY_FUNCTIONS``)."""

    import re
    from pathlib import Path

    from engine.bundle.compiler import REGISTRY_FUNCTIONS
    from engine.registry import (
        convex_main,
        convex_main_alerts,
        convex_main_rollouts,
        convex_main_tables,
    )

    source = "".join(Path(m.__file__ or "").read_text() for m in (
        convex_main, convex_main_alerts, convex_main_rollouts, convex_main_tables))
    called = set(re.findall(r'self\._(?:query|mutation)\("(\w+)"', source))
    assert called, "no calls found"
    for name in called:
        module = convex_main._MODULE_OF.get(name, "byodRegistry")
        assert f"{module}:{name}" in REGISTRY_FUNCTIONS, name


def test_what_main_does_not_keep_is_a_clear_error_and_not_a_role() -> None:
    from engine.ports import serve as serve_ports
    from engine.ports.registry import AlertStore, RegistryStore
    from engine.registry.convex_main import NotOnMain

    store = ConvexMainStore(Runner())
    assert isinstance(store, RegistryStore) and isinstance(store, AlertStore)
    protocols = [v for v in vars(serve_ports).values()
                 if isinstance(v, type) and getattr(v, "_is_runtime_protocol", False)]
    assert {p.__name__ for p in protocols} >= {"JobStore", "TokenStore"}
    for protocol in protocols:
        assert not isinstance(store, protocol), protocol.__name__
    assert not hasattr(store, "claim_rows")
    with pytest.raises(NotOnMain, match="byod serve"):
        store.list_tokens()
    with pytest.raises(RegistryError, match="byod worker"):
        store.claim_rows("r", "w", 10, 30.0)
    with pytest.raises(AttributeError):
        store.no_such_thing  # noqa: B018
