"""``engine.redact`` pinned exactly: the minimum secret length, longest-first replacement,
a key's tail without its prefix, the key shapes, query-string secrets and authorization
headers (mutation testing, scripts/mutation.py, found each of these unpinned)."""

from __future__ import annotations

import pytest

from engine.redact import REDACTED, looks_like_deploy_key, redact

R = REDACTED


def test_the_marker():
    assert REDACTED == "[REDACTED]"


@pytest.mark.parametrize("text", ["", None])
def test_nothing_in_nothing_out(text):
    assert redact(text, ["whatever-secret"]) == text


def test_secrets_of_eight_characters_or_more_are_replaced_shorter_ones_are_not():
    assert redact("a 12345678 b", ["12345678"]) == f"a {R} b"
    assert redact("a 1234567 b", ["1234567"]) == "a 1234567 b"
    assert redact("a 12345678 b", [None, "", "12345678"]) == f"a {R} b"


def test_the_longest_secret_goes_first():
    text = "x abcdefghijkl y"
    assert redact(text, ["abcdefgh", "abcdefghijkl"]) == f"x {R} y"
    assert redact(text, ["abcdefghijkl", "abcdefgh"]) == f"x {R} y"


def test_a_keys_tail_is_replaced_without_its_prefix():
    secret = "prod:name|tailtail12"
    assert redact("backend said tailtail12", [secret]) == f"backend said {R}"
    assert redact("full prod:name|tailtail12 here", [secret]) == f"full {R} here"
    # a tail shorter than eight characters is left alone (it would garble words)
    assert redact("word abcdefg end", ["longname|abcdefg"]) == "word abcdefg end"
    assert redact("word abcdefgh end", ["longname|abcdefgh"]) == f"word {R} end"
    # the tail is only looked for when there is a "|"
    assert redact("12345678", ["x12345678"]) == "12345678"


@pytest.mark.parametrize("key", [
    "prod:happy-otter-123|" + "a" * 16,
    "dev:joyful-cat-1|" + "AbC+/=_-" * 2,
    "preview:branch:name|" + "0" * 40,
    "project:team:proj|" + "f" * 16,
    "local-001|" + "9" * 64,
])
def test_shapes_of_convex_keys_are_replaced_in_any_text(key: str):
    assert redact(f"deploy ( {key} ).", []) == f"deploy ( {R} )."
    assert looks_like_deploy_key(f"  {key}\n")


@pytest.mark.parametrize("text", [
    "name|" + "a" * 15,         # too short a secret part
    "|" + "a" * 20,             # no name
    "-name|" + "a" * 20,        # a name starts with a letter or digit
    "name|" + "a" * 15 + "!",
])
def test_near_misses_are_not_keys(text: str):
    assert not looks_like_deploy_key(text)


def test_a_key_inside_other_text_is_not_a_key_on_its_own():
    assert not looks_like_deploy_key("x prod:a|" + "a" * 20)
    assert not looks_like_deploy_key("prod:a|" + "a" * 20 + " x")


@pytest.mark.parametrize("text,expected", [
    ("GET /api?adminKey=s3cr3t&x=1", f"GET /api?adminKey={R}&x=1"),
    ("admin_key=s3cr3t rest", f"admin_key={R} rest"),
    ("?KEY=abc\"tail", f"?KEY={R}\"tail"),
    ("token=abc'x", f"token={R}'x"),
    ("Token=a&token=b", f"Token={R}&token={R}"),
    ("monkey=banana", f"monkey={R}"),  # ends in "key=": redacted too
    ("keys=abc", "keys=abc"),
])
def test_secrets_in_query_strings(text: str, expected: str):
    assert redact(text, []) == expected


@pytest.mark.parametrize("text,expected", [
    ("Authorization: Convex abc.def", f"Authorization: Convex {R}"),
    ('authorization "Bearer xyz" next', f'authorization "Bearer {R}" next'),
    ("AUTHORIZATION:BEARER   tok'", f"AUTHORIZATION:BEARER   {R}'"),
    ("Authorization: Basic abc", "Authorization: Basic abc"),
])
def test_authorization_headers(text: str, expected: str):
    assert redact(text, []) == expected


def test_longest_first_is_by_length_not_by_spelling():
    text = "x abcdefghijklmnop-zzzzzzzz y"
    assert redact(text, ["zzzzzzzz", "abcdefghijklmnop-zzzzzzzz"]) == f"x {R} y"


def test_the_tail_is_everything_after_the_first_bar():
    secret = "name|abcdefgh|ijklmnop!"
    assert redact("x abcdefgh|ijklmnop! y", [secret]) == f"x {R} y"
