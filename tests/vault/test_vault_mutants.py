"""The vault's exact contract, pinned where mutation testing (scripts/mutation.py) showed
the other tests would accept a changed vault: the envelope's wire format and associated
data, the key id, every error message, the old keys' numbering, and rotation's bookkeeping
(conflict retries, half-current rows, rows removed meanwhile, the audit row, the report)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.errors import DecryptError, KeyConfigError
from engine.ports.registry import UserConfig
from engine.vault import (
    ENV_KEY,
    ENV_OLD_KEYS,
    FIELD_DEPLOY_KEY,
    FIELD_URL,
    RotationReport,
    Vault,
    envelope_key_id,
    generate_key,
    key_id,
)

KEY = bytes(range(32))
KEY_HEX = KEY.hex()


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- keys ---------------------------------------------------------------------------------

def test_key_id_is_a_domain_separated_sha256_prefix():
    assert key_id(KEY) == hashlib.sha256(b"byod-vault-key-id\x00" + KEY).hexdigest()[:8]
    assert key_id(KEY) == "08236cd9"


def test_generated_keys_are_64_hex_characters():
    key = generate_key()
    assert len(key) == 64 and int(key, 16) >= 0


@pytest.mark.parametrize("prefix", ["0x", "0X"])
def test_a_0x_prefix_is_dropped_whatever_its_case(prefix: str):
    plain = Vault.from_hex(KEY_HEX)
    prefixed = Vault.from_hex(prefix + KEY_HEX)
    assert prefixed.key_id == plain.key_id == key_id(KEY)


def test_wrong_length_message_is_exact():
    with pytest.raises(KeyConfigError) as info:
        Vault.from_hex("abc")
    assert str(info.value) == (
        f"{ENV_KEY} must be exactly 64 hex characters (32 bytes); the value given has 3 "
        "characters (generate one with `byod keys generate`)")


def test_every_hex_digit_of_both_cases_is_accepted():
    # all 22 hex characters at once, and enough distinct bytes to be no pattern
    text = ("0123456789abcdefABCDEF" + KEY_HEX)[:64]
    assert set(text) == set("0123456789abcdefABCDEF")
    Vault.from_hex(text)


def test_non_hex_message_is_exact():
    with pytest.raises(KeyConfigError) as info:
        Vault.from_hex("g" * 64)
    assert str(info.value) == (
        f"{ENV_KEY} must contain only hex digits 0-9a-f; the value given has other "
        "characters (a passphrase or base64 is not accepted)")


def test_twelve_distinct_bytes_are_enough_eleven_are_a_pattern():
    twelve = bytes(i % 12 for i in range(32))
    Vault.from_hex(twelve.hex())
    eleven = bytes(i % 11 for i in range(32))
    with pytest.raises(KeyConfigError) as info:
        Vault.from_hex(eleven.hex())
    assert str(info.value) == (
        f"{ENV_KEY} is too weak: it repeats a short pattern instead of being random "
        "bytes (generate one with `byod keys generate`)")


def test_raw_keys_of_the_wrong_size_are_refused_with_their_role():
    with pytest.raises(KeyConfigError) as info:
        Vault(b"short")
    assert str(info.value) == "the encryption key must be 32 bytes"
    with pytest.raises(KeyConfigError) as info:
        Vault(KEY, (b"short",))
    assert str(info.value) == "every old encryption key must be 32 bytes"


def test_old_keys_are_numbered_from_one_and_really_used():
    other = generate_key()
    with pytest.raises(KeyConfigError, match=rf"^{ENV_OLD_KEYS} entry 2 must be exactly"):
        Vault.from_hex(KEY_HEX, (other, "abc"))
    envelope = Vault.from_hex(other).encrypt("u", FIELD_URL, "https://a.convex.cloud")
    assert Vault.from_hex(KEY_HEX, (other,)).decrypt("u", FIELD_URL, envelope) == \
        "https://a.convex.cloud"


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch):
    old = generate_key()
    monkeypatch.setenv(ENV_KEY, KEY_HEX)
    monkeypatch.setenv(ENV_OLD_KEYS, f" ,{old}, ")
    vault = Vault.from_env()
    assert vault.key_id == key_id(KEY) and vault.old_key_ids == (key_id(bytes.fromhex(old)),)
    monkeypatch.delenv(ENV_OLD_KEYS)
    assert Vault.from_env().old_key_ids == ()


# -- envelopes ----------------------------------------------------------------------------

def test_envelope_format_and_associated_data_are_the_documented_ones():
    vault = Vault(KEY)
    envelope = vault.encrypt("alice", FIELD_DEPLOY_KEY, "prod:x|secret")
    assert "=" not in envelope  # unpadded urlsafe base64
    version, kid, nonce_b64, ct_b64 = envelope.split(".")
    assert (version, kid) == ("v1", key_id(KEY))
    nonce = _b64d(nonce_b64)
    assert len(nonce) == 12
    aad = json.dumps(["byod-vault", "v1", "alice", FIELD_DEPLOY_KEY]).encode()
    assert AESGCM(KEY).decrypt(nonce, _b64d(ct_b64), aad) == b"prod:x|secret"


def test_an_envelope_made_outside_decrypts():
    nonce = os.urandom(12)
    aad = json.dumps(["byod-vault", "v1", "bob", FIELD_URL]).encode()
    ct = AESGCM(KEY).encrypt(nonce, "https://ü.example".encode(), aad)
    b64 = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")  # noqa: E731
    envelope = ".".join(("v1", key_id(KEY), b64(nonce), b64(ct)))
    assert Vault(KEY).decrypt("bob", FIELD_URL, envelope) == "https://ü.example"


def test_envelope_key_id_needs_both_the_shape_and_the_version():
    assert envelope_key_id("v1.abcd1234.n.c") == "abcd1234"
    assert envelope_key_id("v1.abcd1234") is None
    assert envelope_key_id("v2.abcd1234.n.c") is None


def test_decrypt_messages_are_exact():
    vault = Vault(KEY)
    where = f"{FIELD_URL} of user 'u'"
    with pytest.raises(DecryptError) as info:
        vault.decrypt("u", FIELD_URL, "nonsense")
    assert str(info.value) == f"cannot decrypt the {where}: not a v1 vault envelope"
    with pytest.raises(DecryptError) as info:
        vault.decrypt("u", FIELD_URL, None)  # type: ignore[arg-type]
    assert "not a v1 vault envelope" in str(info.value)
    kid = key_id(KEY)
    for corrupted in (f"v1.{kid}.AAAAA.AAAA", f"v1.{kid}.@@@.AAAA", f"v1.{kid}.AAAA.{'A' * 40}",
                      f"v1.{kid}.{'A' * 16}.AAAA"):
        with pytest.raises(DecryptError) as info:
            vault.decrypt("u", FIELD_URL, corrupted)
        assert str(info.value) == f"cannot decrypt the {where}: the envelope is corrupted"
    good = vault.encrypt("u", FIELD_URL, "https://x.convex.cloud")
    with pytest.raises(DecryptError) as info:
        vault.decrypt("v", FIELD_URL, good)
    assert str(info.value) == (
        f"cannot decrypt the {FIELD_URL} of user 'v' with key id {kid}: authentication "
        "failed (tampered, truncated, or copied from another user or field)")


# -- targets ------------------------------------------------------------------------------

def _user(vault: Vault, uid: str, url: str | None = "https://a.convex.cloud",
          key: str | None = "prod:a|" + "ab" * 20) -> UserConfig:
    return UserConfig(user_id=uid,
                      url_ct=vault.encrypt(uid, FIELD_URL, url) if url else "",
                      key_ct=vault.encrypt(uid, FIELD_DEPLOY_KEY, key) if key else "")


def test_target_for_needs_both_credentials_and_marks_plain_http():
    vault = Vault(KEY)
    for partial in (_user(vault, "u", key=None), _user(vault, "u", url=None)):
        with pytest.raises(DecryptError) as info:
            vault.target_for(partial)
        assert str(info.value) == "user 'u' has no saved deployment credentials"
    assert vault.target_for(_user(vault, "u")).allow_insecure_local is False
    local = vault.target_for(_user(vault, "u", url="HTTP://127.0.0.1:3210"))
    assert local.allow_insecure_local is True and local.url == "HTTP://127.0.0.1:3210"


# -- rotation -----------------------------------------------------------------------------

class FakeStore:
    """Just what ``Vault.rotate`` uses, with compare-and-swap failures on demand."""

    def __init__(self, users: list[UserConfig], *, conflicts: int = 0,
                 vanish: set[str] | None = None):
        self.users = {u.user_id: u for u in users}
        self.conflicts, self.vanish = conflicts, vanish or set()
        self.replace_calls = 0
        self.audits: list[tuple[str, str, Any]] = []

    def list_users(self) -> list[UserConfig]:
        return list(self.users.values())

    def find_user(self, uid: str) -> UserConfig | None:
        return None if uid in self.vanish else self.users[uid]

    def replace_ciphertexts(self, uid: str, *, url_ct: str, key_ct: str, expect_url_ct: str,
                            expect_key_ct: str) -> bool:
        self.replace_calls += 1
        if self.conflicts or uid in self.vanish:
            self.conflicts = max(0, self.conflicts - 1)
            return False
        self.users[uid] = UserConfig(user_id=uid, url_ct=url_ct, key_ct=key_ct)
        return True

    def audit(self, user_id: str, event: str, detail: Any = None) -> None:
        self.audits.append((user_id, event, detail))


def test_rotation_retries_a_conflict_exactly_max_plus_one_times():
    old, new = Vault(KEY), Vault.from_hex(generate_key(), (KEY_HEX,))
    store = FakeStore([_user(old, "u")], conflicts=100)
    report = new.rotate(store)  # type: ignore[arg-type]
    assert store.replace_calls == 4
    assert report.failed == {"u": "the row kept changing during rotation; run it again"}
    store = FakeStore([_user(old, "u")], conflicts=3)
    report = new.rotate(store)  # type: ignore[arg-type]
    assert report.rotated == ["u"] and store.replace_calls == 4


def test_rotation_report_audit_and_bookkeeping():
    old = Vault(KEY)
    new = Vault.from_hex(generate_key(), (KEY_HEX,))
    half = _user(old, "half")
    half = UserConfig(user_id="half", url_ct=new.encrypt("half", FIELD_URL, "https://h.convex.cloud"),
                      key_ct=half.key_ct)  # only the URL is on the new key yet
    users = [_user(old, "gone"), UserConfig(user_id="empty"), half,
             _user(old, "url-only", key=None), _user(new, "current"), _user(old, "plain")]
    store = FakeStore(users, vanish={"gone"})
    report = new.rotate(store)  # type: ignore[arg-type]
    assert report.key_id == new.key_id
    assert report.total == 6
    assert report.no_credentials == ["gone", "empty"]
    assert report.rotated == ["half", "plain"]
    assert report.already_current == ["current"]
    assert list(report.failed) == ["url-only"]
    assert "not a v1 vault envelope" in report.failed["url-only"]
    assert store.audits == [("", "keys_rotated", {"key_id": new.key_id, "rotated": 2,
                                                  "failed": 1})]
    for uid in ("half", "plain"):
        assert new.is_current(store.users[uid].url_ct) and new.is_current(store.users[uid].key_ct)
    assert report.to_dict() == {
        "key_id": new.key_id, "total": 6, "rotated": ["half", "plain"],
        "already_current": ["current"], "no_credentials": ["gone", "empty"],
        "failed": dict(report.failed), "ok": False}


def test_rotation_writes_no_audit_row_when_nothing_rotated():
    vault = Vault(KEY)
    store = FakeStore([_user(vault, "u")])
    report = vault.rotate(store)  # type: ignore[arg-type]
    assert report.already_current == ["u"] and report.ok and store.audits == []


def test_a_re_encryption_that_does_not_read_back_leaves_the_row(monkeypatch: pytest.MonkeyPatch):
    old = Vault(KEY)
    new = Vault.from_hex(generate_key(), (KEY_HEX,))
    real = Vault.encrypt
    monkeypatch.setattr(Vault, "encrypt",
                        lambda self, uid, f, text: real(self, uid, f, text + "!"))
    store = FakeStore([_user(old, "u")])
    report = new.rotate(store)  # type: ignore[arg-type]
    assert report.failed == {"u": f"verification of the re-encrypted {FIELD_URL} of user 'u' "
                                  "failed; the row was left unchanged"}
    assert store.replace_calls == 0


def test_report_to_dict_of_an_ok_rotation():
    report = RotationReport(key_id="k", total=1, rotated=["a"])
    assert report.to_dict() == {"key_id": "k", "total": 1, "rotated": ["a"],
                                "already_current": [], "no_credentials": [], "failed": {},
                                "ok": True}
