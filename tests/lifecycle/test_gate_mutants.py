"""The premium gate's whole truth table (availability x the user's row x the app's
entitlement callable x the registry's flag), so no change of a single condition in
``engine.lifecycle.gate`` goes unnoticed (scripts/mutation.py)."""

from __future__ import annotations

import itertools

import pytest

from engine.config import EngineConfig
from engine.errors import NotEntitled
from engine.lifecycle.gate import check_entitled, grandfathered, is_entitled
from engine.ports.registry import UserConfig


class Store:
    def __init__(self, user: UserConfig | None):
        self.user = user

    def find_user(self, user_id: str) -> UserConfig | None:
        assert user_id == "u"
        return self.user


ROWS: dict[str, UserConfig | None] = {
    "absent": None,
    "pending, no version": UserConfig("u", "pending"),
    "error, no version (first connect failed)": UserConfig("u", "error"),
    "connected, no version": UserConfig("u", "connected"),
    "connected on v1": UserConfig("u", "connected", schema_version="v1"),
    "error on v1": UserConfig("u", "error", schema_version="v1"),
    "pending on v1": UserConfig("u", "pending", schema_version="v1"),
    "disconnected on v1": UserConfig("u", "disconnected", schema_version="v1"),
}
SET_UP = {"connected on v1", "error on v1"}


def _with_flag(row: UserConfig | None, entitled: bool) -> UserConfig | None:
    if row is None:
        return None
    return UserConfig(row.user_id, row.connection_status, schema_version=row.schema_version,
                      entitled=entitled)


@pytest.mark.parametrize("name", list(ROWS))
def test_grandfathered_is_a_deployed_user_still_set_up(name: str):
    assert grandfathered(ROWS[name]) is (name in SET_UP)


@pytest.mark.parametrize("name,flag,callable_says", list(itertools.product(
    ROWS, [False, True], [None, False, True])))
def test_truth_table(name: str, flag: bool, callable_says: bool | None):
    row = _with_flag(ROWS[name], flag)
    calls: list[str] = []

    def entitlement(user_id: str) -> int:
        calls.append(user_id)
        return int(bool(callable_says))  # truthy, not a bool: the gate makes it one

    app = None if callable_says is None else entitlement
    store = Store(row)
    everyone = EngineConfig(availability="everyone")
    premium = EngineConfig(availability="premium")

    assert is_entitled("u", config=everyone, store=store, entitlement=app) is True
    check_entitled("u", config=everyone, store=store, entitlement=app)

    if name in SET_UP:
        expected = True
    elif app is not None:
        expected = bool(callable_says)
    else:
        expected = row is not None and flag
    got = is_entitled("u", config=premium, store=store, entitlement=app)
    assert got is expected
    assert calls == (["u"] if app is not None and name not in SET_UP else [])
    if expected:
        check_entitled("u", config=premium, store=store, entitlement=app)
    else:
        with pytest.raises(NotEntitled) as info:
            check_entitled("u", config=premium, store=store, entitlement=app)
        assert "'u'" in str(info.value) or "u" in str(info.value)
