"""The vault: AES-256-GCM envelopes bound to (user, field), key ids, rotation, key checks."""

from __future__ import annotations

import base64

import pytest

from engine.errors import DecryptError, KeyConfigError
from engine.registry.sqlite import SqliteStore
from engine.vault import (
    ENV_KEY,
    ENV_OLD_KEYS,
    FIELD_DEPLOY_KEY,
    FIELD_URL,
    Vault,
    envelope_key_id,
    generate_key,
)

URL = "https://qualified-jaguar-123.convex.cloud"
KEY = "prod:qualified-jaguar-123|eyJ2aWV3IjoicHJvZCJ9c2VjcmV0c2VjcmV0c2VjcmV0"


def _b64d(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _b64e(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


@pytest.fixture()
def key_hex() -> str:
    return generate_key()


@pytest.fixture()
def vault(key_hex: str) -> Vault:
    return Vault.from_env({ENV_KEY: key_hex})


def test_round_trip_and_envelope_shape(vault: Vault) -> None:
    env = vault.encrypt("user_1", FIELD_DEPLOY_KEY, KEY)
    version, kid, nonce, ct = env.split(".")
    assert version == "v1" and kid == vault.key_id and len(kid) == 8
    assert len(_b64d(nonce)) == 12
    assert len(_b64d(ct)) == len(KEY.encode()) + 16  # ciphertext + GCM tag
    assert KEY not in env and "jaguar" not in env
    assert vault.decrypt("user_1", FIELD_DEPLOY_KEY, env) == KEY
    assert envelope_key_id(env) == vault.key_id


def test_unicode_and_empty_plaintexts_round_trip(vault: Vault) -> None:
    for text in ("", "ü|√∂ß", "x" * 5000):
        assert vault.decrypt("u", FIELD_URL, vault.encrypt("u", FIELD_URL, text)) == text


def test_wrong_key_fails_naming_user_and_field_not_data(vault: Vault) -> None:
    env = vault.encrypt("user_1", FIELD_URL, URL)
    other = Vault.from_env({ENV_KEY: generate_key()})
    with pytest.raises(DecryptError) as err:
        other.decrypt("user_1", FIELD_URL, env)
    msg = str(err.value)
    assert "user_1" in msg and FIELD_URL in msg and vault.key_id in msg
    assert URL not in msg and env.split(".")[3] not in msg


def test_same_key_id_but_different_key_bytes_fails() -> None:
    # An envelope whose key id was rewritten to the reader's own id must still not open.
    a, b = Vault.from_hex(generate_key()), Vault.from_hex(generate_key())
    env = a.encrypt("u", FIELD_URL, URL).split(".")
    env[1] = b.key_id
    with pytest.raises(DecryptError, match="authentication failed"):
        b.decrypt("u", FIELD_URL, ".".join(env))


@pytest.mark.parametrize("part", [2, 3])
def test_tampering_any_byte_fails(vault: Vault, part: int) -> None:
    env = vault.encrypt("u", FIELD_DEPLOY_KEY, KEY)
    parts = env.split(".")
    raw = bytearray(_b64d(parts[part]))
    # flip one bit at the start, the middle, and the end (the tag lives at the end of part 3)
    for index in (0, len(raw) // 2, len(raw) - 1):
        bad = bytearray(raw)
        bad[index] ^= 0x01
        tampered = ".".join(parts[:part] + [_b64e(bytes(bad))] + parts[part + 1:])
        with pytest.raises(DecryptError):
            vault.decrypt("u", FIELD_DEPLOY_KEY, tampered)


def test_truncated_tag_and_garbage_fail(vault: Vault) -> None:
    env = vault.encrypt("u", FIELD_DEPLOY_KEY, KEY)
    v, kid, nonce, ct = env.split(".")
    for bad in (f"{v}.{kid}.{nonce}.{_b64e(_b64d(ct)[:-1])}",  # tag cut short
                f"{v}.{kid}.{nonce}.{_b64e(b'short')}",
                f"{v}.{kid}.{_b64e(b'123')}.{ct}",           # wrong nonce length
                f"{v}.{kid}.{nonce}.%%%",
                f"v2.{kid}.{nonce}.{ct}", "", "not an envelope", KEY):
        with pytest.raises(DecryptError) as err:
            vault.decrypt("u", FIELD_DEPLOY_KEY, bad)
        assert "jaguar" not in str(err.value)


def test_moved_to_another_user_or_field_fails(vault: Vault) -> None:
    env = vault.encrypt("alice", FIELD_DEPLOY_KEY, KEY)
    with pytest.raises(DecryptError, match="'bob'"):
        vault.decrypt("bob", FIELD_DEPLOY_KEY, env)
    with pytest.raises(DecryptError, match=FIELD_URL):
        vault.decrypt("alice", FIELD_URL, env)
    # ambiguous concatenations of user and field do not collide
    env2 = vault.encrypt("a", "bc", URL)
    with pytest.raises(DecryptError):
        vault.decrypt("ab", "c", env2)


def test_nonces_never_repeat(vault: Vault) -> None:
    nonces = {vault.encrypt("u", FIELD_URL, URL).split(".")[2] for _ in range(20_000)}
    assert len(nonces) == 20_000
    envs = {vault.encrypt("u", FIELD_URL, URL) for _ in range(100)}
    assert len(envs) == 100  # same plaintext, different ciphertexts


@pytest.mark.parametrize("value, reason", [
    (None, "not set"),
    ("", "not set"),
    ("   ", "not set"),
    ("abcd", "has 4 characters"),
    ("a" * 63, "has 63 characters"),
    ("a" * 65, "has 65 characters"),
    ("g" * 64, "only hex digits"),
    ("correct horse battery staple correct horse battery staple abcdef", "only hex"),
    ("00" * 32, "too weak"),
    ("ab" * 32, "too weak"),
    ("0123456789abcdef" * 4, "too weak"),
])
def test_weak_or_malformed_keys_refused_without_echo(value: str | None, reason: str) -> None:
    env = {} if value is None else {ENV_KEY: value}
    with pytest.raises(KeyConfigError, match=reason) as err:
        Vault.from_env(env)
    assert ENV_KEY in str(err.value)
    if value and value.strip():
        assert value not in str(err.value)


def test_malformed_old_key_named_by_position(key_hex: str) -> None:
    bad = "zz" * 32
    with pytest.raises(KeyConfigError, match=f"{ENV_OLD_KEYS} entry 2") as err:
        Vault.from_env({ENV_KEY: key_hex, ENV_OLD_KEYS: f"{generate_key()},{bad}"})
    assert bad not in str(err.value)


def test_repr_hides_keys(key_hex: str) -> None:
    v = Vault.from_env({ENV_KEY: key_hex, ENV_OLD_KEYS: generate_key()})
    assert key_hex not in repr(v) and v.key_id in repr(v)


def test_generate_key_is_valid_and_unique() -> None:
    keys = {generate_key() for _ in range(50)}
    assert len(keys) == 50
    for k in keys:
        Vault.from_hex(k)


def test_unknown_key_id_explains_how_to_fix(vault: Vault) -> None:
    env = vault.encrypt("u", FIELD_URL, URL)
    with pytest.raises(DecryptError, match=ENV_OLD_KEYS):
        Vault.from_hex(generate_key()).decrypt("u", FIELD_URL, env)


def test_target_for_decrypts_into_a_target(tmp_path, vault: Vault) -> None:
    store = SqliteStore(tmp_path / "r.sqlite3")
    url_ct, key_ct = vault.encrypt_credentials("u1", URL, KEY)
    user = store.upsert_credentials("u1", url_ct=url_ct, key_ct=key_ct)
    target = vault.target_for(user)
    assert (target.label, target.url, target.admin_key) == ("u1", URL, KEY)
    assert not target.allow_insecure_local
    assert KEY not in repr(target) and URL not in repr(target)
    empty = store.set_entitled("u2", True)
    with pytest.raises(DecryptError, match="no saved deployment credentials"):
        vault.target_for(empty)


def _fill(store: SqliteStore, vault: Vault, n: int) -> dict[str, tuple[str, str]]:
    creds = {}
    for i in range(n):
        uid = f"user_{i}"
        url, key = f"https://d{i}.convex.cloud", f"prod:d{i}|{generate_key()}"
        creds[uid] = (url, key)
        u, k = vault.encrypt_credentials(uid, url, key)
        store.upsert_credentials(uid, url_ct=u, key_ct=k)
    return creds


def test_rotation_reencrypts_everything_and_old_key_can_be_dropped(tmp_path) -> None:
    old_hex, new_hex = generate_key(), generate_key()
    store = SqliteStore(tmp_path / "r.sqlite3")
    old = Vault.from_hex(old_hex)
    creds = _fill(store, old, 12)
    store.set_entitled("no_creds", True)
    before = {u.user_id: (u.url_ct, u.key_ct) for u in store.list_users()}

    rotating = Vault.from_env({ENV_KEY: new_hex, ENV_OLD_KEYS: old_hex})
    report = rotating.rotate(store)
    assert report.ok and sorted(report.rotated) == sorted(creds)
    assert report.no_credentials == ["no_creds"] and report.total == 13

    new_only = Vault.from_hex(new_hex)
    for user in store.list_users():
        if user.user_id in creds:
            assert envelope_key_id(user.url_ct) == new_only.key_id
            t = new_only.target_for(user)
            assert (t.url, t.admin_key) == creds[user.user_id]
            # the old ciphertexts do not open without the old key
            url_ct, _ = before[user.user_id]
            with pytest.raises(DecryptError):
                new_only.decrypt(user.user_id, FIELD_URL, url_ct)
            # and the new ones do not open with only the old key
            with pytest.raises(DecryptError):
                old.target_for(user)

    # resumable: a second run changes nothing
    again = rotating.rotate(store)
    assert again.rotated == [] and sorted(again.already_current) == sorted(creds)
    assert any(e.event == "keys_rotated" for e in store.audit_log(""))


def test_rotation_resumes_after_partial_run(tmp_path) -> None:
    old_hex, new_hex = generate_key(), generate_key()
    store = SqliteStore(tmp_path / "r.sqlite3")
    creds = _fill(store, Vault.from_hex(old_hex), 5)
    rotating = Vault.from_env({ENV_KEY: new_hex, ENV_OLD_KEYS: old_hex})
    # simulate an interrupted run: only user_0 and user_1 were rotated
    for uid in ("user_0", "user_1"):
        user = store.get_user(uid)
        u, k = rotating.encrypt_credentials(uid, *creds[uid])
        assert store.replace_ciphertexts(uid, url_ct=u, key_ct=k,
                                         expect_url_ct=user.url_ct, expect_key_ct=user.key_ct)
    report = rotating.rotate(store)
    assert sorted(report.already_current) == ["user_0", "user_1"]
    assert sorted(report.rotated) == ["user_2", "user_3", "user_4"]


def test_rotation_without_old_key_reports_failures_and_changes_nothing(tmp_path) -> None:
    store = SqliteStore(tmp_path / "r.sqlite3")
    creds = _fill(store, Vault.from_hex(generate_key()), 2)
    before = [(u.url_ct, u.key_ct) for u in store.list_users()]
    report = Vault.from_hex(generate_key()).rotate(store)
    assert not report.ok and sorted(report.failed) == sorted(creds)
    assert all(ENV_OLD_KEYS in reason for reason in report.failed.values())
    assert [(u.url_ct, u.key_ct) for u in store.list_users()] == before


def test_rotation_compare_and_swap_rereads_a_row_changed_meanwhile(tmp_path) -> None:
    old_hex, new_hex = generate_key(), generate_key()
    store = SqliteStore(tmp_path / "r.sqlite3")
    old = Vault.from_hex(old_hex)
    _fill(store, old, 1)
    rotating = Vault.from_env({ENV_KEY: new_hex, ENV_OLD_KEYS: old_hex})
    fresh_url = "https://reconnected.convex.cloud"

    class Racing:
        """Wraps the store: a re-connect lands between rotation's read and its swap."""

        def __init__(self) -> None:
            self.raced = False

        def __getattr__(self, name):
            return getattr(store, name)

        def replace_ciphertexts(self, user_id, **kw):
            if not self.raced:
                self.raced = True
                u, k = old.encrypt_credentials(user_id, fresh_url, "prod:x|" + "cd" * 20)
                store.upsert_credentials(user_id, url_ct=u, key_ct=k)
            return store.replace_ciphertexts(user_id, **kw)

    report = rotating.rotate(Racing())  # type: ignore[arg-type]
    assert report.rotated == ["user_0"]
    target = Vault.from_hex(new_hex).target_for(store.get_user("user_0"))
    assert target.url == fresh_url  # the re-connect's credentials survived, re-encrypted
