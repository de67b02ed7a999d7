"""URL and deploy-key validation: what is accepted, what is refused, nothing echoed."""

from __future__ import annotations

import pytest

from engine.convex.targets import validate_deploy_key, validate_url
from engine.errors import InvalidCredentials

SECRET = "01c046ab8f2e4d7a9b3c5e6f70819a2b3c4d5e6f708192a3b4c5d6e7f8091a2b"


@pytest.mark.parametrize("url, expected", [
    ("https://qualified-jaguar-123.convex.cloud", "https://qualified-jaguar-123.convex.cloud"),
    ("https://qualified-jaguar-123.convex.cloud/", "https://qualified-jaguar-123.convex.cloud"),
    ("  https://db.example.com:8443  ", "https://db.example.com:8443"),
    ("https://127.0.0.1:3210", "https://127.0.0.1:3210"),
])
def test_accepted_urls(url: str, expected: str) -> None:
    assert validate_url(url) == expected


@pytest.mark.parametrize("url", ["http://127.0.0.1:3210", "http://127.5.6.7:1",
                                 "http://localhost:3210", "http://[::1]:3210"])
def test_http_loopback_only_when_allowed(url: str) -> None:
    assert validate_url(url, allow_insecure_local=True) == url
    with pytest.raises(InvalidCredentials, match="--allow-insecure-local"):
        validate_url(url)


@pytest.mark.parametrize("url, reason", [
    ("", "empty"),
    ("   ", "empty"),
    ("http://secret-dep.convex.cloud", "plain http is not allowed"),
    ("http://10.0.0.5:3210", "plain http is not allowed"),
    ("http://localhost.evil.example", "plain http is not allowed"),
    ("http://128.0.0.1", "plain http is not allowed"),
    ("ftp://secret-dep.convex.cloud", "must start with https"),
    ("secret-dep.convex.cloud", "must start with https"),
    ("https://", "no host"),
    ("https://user:pw@secret-dep.convex.cloud", "credentials"),
    ("https://secret-dep.convex.cloud?adminKey=zzz", "query"),
    ("https://secret-dep.convex.cloud/#frag", "query"),
    ("https://secret-dep.convex.cloud/api", "without a path"),
    ("https://secret-dep.convex.cloud:99999", "not a valid URL"),
    ("https://secret dep.convex.cloud", "spaces"),
])
def test_refused_urls_never_echoed(url: str, reason: str) -> None:
    with pytest.raises(InvalidCredentials, match=reason) as err:
        validate_url(url, allow_insecure_local=True, label="user_7")
    text = str(err.value)
    assert "user_7" in text
    assert "secret-dep" not in text and "zzz" not in text and "pw@" not in text


@pytest.mark.parametrize("key, kind", [
    (f"prod:qualified-jaguar-123|{SECRET}", "prod"),
    ("dev:joyful-jaguar-123|eyJ2MiI6ImFiY2RlZmdoaWprbG1ub3AifQ==", "dev"),
    (f"preview:my-team:my-project|{SECRET}", "preview"),
    (f"project:my-team:my-project|{SECRET}", "project"),
    (f"bold-hyena-681|{SECRET}", "admin"),
    (f"convex-self-hosted|{SECRET}", "admin"),
    (f"  prod:qualified-jaguar-123|{SECRET}\n", "prod"),
])
def test_accepted_key_shapes(key: str, kind: str) -> None:
    assert validate_deploy_key(key).kind == kind


@pytest.mark.parametrize("key, reason", [
    ("", "empty"),
    (SECRET, "no '\\|'"),
    (f"prod:|{SECRET}", "'prod' part is malformed"),
    (f"preview:only-team|{SECRET}", "'preview' part is malformed"),
    (f"staging:dep|{SECRET}", "not a known key type"),
    (f"a:b:c:d|{SECRET}", "not a known key type"),
    (f"|{SECRET}", "not a known key type"),
    ("prod:dep|short", "too short or trivial"),
    ("prod:dep|" + "a" * 40, "too short or trivial"),
    ("prod:dep|" + "ab" * 20, "too short or trivial"),
    (f"prod:dep|{SECRET[:20]} {SECRET[20:]}", "spaces"),
    (f"prod:dep|{SECRET}|x", "characters no Convex key uses"),
    (f"prod:dep|{SECRET[:30]}!{SECRET[30:]}", "characters no Convex key uses"),
    (f"prod:dép|{SECRET}", "non-ASCII"),
])
def test_refused_keys_never_echoed(key: str, reason: str) -> None:
    with pytest.raises(InvalidCredentials, match=reason) as err:
        validate_deploy_key(key, label="user_7")
    text = str(err.value)
    assert "user_7" in text and "expected e.g." in text
    for piece in (SECRET[:12], SECRET[-12:], "a" * 20, "ab" * 10):
        assert piece not in text
