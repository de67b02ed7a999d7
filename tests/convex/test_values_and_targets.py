"""Convex JSON encoding round trips, and target checks that fail before any I/O."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.convex.targets import check_target, is_loopback_host, key_kind
from engine.convex.values import Int64, from_convex_json, to_convex_json
from engine.errors import InvalidCredentials
from engine.ports.deployment import DeploymentTarget

from .conftest import ADMIN_KEY, SECRET_PART

convex_values = st.recursive(
    st.none() | st.booleans() | st.text() | st.floats(allow_nan=False)
    | st.integers(-(2**63), 2**63 - 1).map(Int64) | st.binary(),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), inner, max_size=4),
    max_leaves=20,
)


@given(convex_values)
def test_round_trip(value: object) -> None:
    assert from_convex_json(to_convex_json(value)) == value


def test_known_encodings() -> None:
    assert to_convex_json(Int64(1)) == {"$integer": "AQAAAAAAAAA="}
    assert to_convex_json(Int64(-1)) == {"$integer": "//////////8="}
    assert to_convex_json(b"\x01\x02") == {"$bytes": "AQI="}
    assert to_convex_json(5) == 5 and to_convex_json(True) is True
    assert to_convex_json((1, "a")) == [1, "a"]
    assert set(to_convex_json(float("inf"))) == {"$float"}
    assert math.isnan(from_convex_json(to_convex_json(float("nan"))))
    neg_zero = from_convex_json(to_convex_json(-0.0))
    assert neg_zero == 0.0 and math.copysign(1.0, neg_zero) < 0
    assert from_convex_json({"$integer": "AQAAAAAAAAA=", "other": 1}) == {
        "$integer": "AQAAAAAAAAA=", "other": 1}  # not a tagged value: two keys


def test_int64_is_an_int_and_range_checked() -> None:
    assert Int64(3) + 1 == 4 and isinstance(Int64(3), int)
    with pytest.raises(ValueError):
        Int64(2**63)


@pytest.mark.parametrize("bad", [{1: "x"}, {"$x": 1}, object(), {"a": {1, 2}}])
def test_unencodable_values(bad: object) -> None:
    with pytest.raises(ValueError):
        to_convex_json(bad)


@pytest.mark.parametrize("bad", [{"$integer": 5}, {"$bytes": "!!"}, {"$integer": "AQI="}])
def test_malformed_tagged_values(bad: object) -> None:
    with pytest.raises(ValueError):
        from_convex_json(bad)


def _target(url: str, key: str = ADMIN_KEY, insecure: bool = False) -> DeploymentTarget:
    return DeploymentTarget(label="user_7", url=url, admin_key=key, allow_insecure_local=insecure)


@pytest.mark.parametrize("url,insecure", [
    ("https://happy-otter-123.convex.cloud", False),
    ("https://happy-otter-123.convex.cloud/", False),
    ("http://127.0.0.1:3210", True),
    ("http://localhost:3210", True),
    ("http://[::1]:3210", True),
])
def test_good_targets(url: str, insecure: bool) -> None:
    check_target(_target(url, insecure=insecure))


@pytest.mark.parametrize("url,insecure,needle", [
    ("http://127.0.0.1:3210", False, "needs --allow-insecure-local"),
    ("http://example.com", True, "plain http is not allowed"),
    ("ftp://example.com", False, "must start with https://"),
    ("https://", False, "has no host name"),
    (f"https://x.convex.cloud/?adminKey={SECRET_PART}", False, "must not have a query"),
    (f"https://admin:{SECRET_PART}@x.convex.cloud", False, "must not contain credentials"),
    ("https://x.convex.cloud/api", False, "root URL"),
    ("https://x.convex.cloud:99999", False, "not a valid URL"),
])
def test_bad_urls(url: str, insecure: bool, needle: str) -> None:
    with pytest.raises(InvalidCredentials) as info:
        check_target(_target(url, insecure=insecure))
    assert needle in str(info.value) and "user_7" in str(info.value)
    assert SECRET_PART not in str(info.value) and url not in str(info.value)


@pytest.mark.parametrize("key", ["", "no-bar-here", "name|with space", "name|new\nline",
                                 "name|abababababababababab"])
def test_bad_keys(key: str) -> None:
    with pytest.raises(InvalidCredentials, match="the deploy key"):
        check_target(_target("https://x.convex.cloud", key=key))


@pytest.mark.parametrize("url", ["http://app.localhost:3210", "http://127.0.0.1:3210",
                                 "https://x.convex.cloud", "http://10.0.0.1:3210",
                                 "https://x.convex.cloud/api"])
def test_connect_and_adapters_share_one_validator(url: str) -> None:
    """The URL connect accepts is exactly the one every adapter accepts (they once
    disagreed on ``*.localhost``)."""

    from engine.convex.targets import validate_url

    def verdict(call) -> str:
        try:
            call()
            return "ok"
        except InvalidCredentials as exc:
            return str(exc)

    assert verdict(lambda: validate_url(url, True, label="user_7")) == \
        verdict(lambda: check_target(_target(url, insecure=True)))


def test_key_kinds_and_loopback() -> None:
    assert key_kind("prod:happy-otter-123|eyJ2abc") == "cloud"
    assert key_kind("preview:team:proj|eyJ2abc") == "cloud"
    assert key_kind(ADMIN_KEY) == "self_hosted"
    assert is_loopback_host("127.0.0.2") and is_loopback_host("localhost")
    assert not is_loopback_host("10.0.0.1") and not is_loopback_host("example.com")
