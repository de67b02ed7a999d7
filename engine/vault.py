"""The credential vault: AES-256-GCM envelopes for deployment URLs and deploy keys.

Why this shape:

* a fresh random 96-bit nonce per encryption (GCM's security rests on never reusing one);
* associated data binds each ciphertext to ``(user_id, field)``, so a ciphertext copied onto
  another user's row, or from the URL column into the key column, fails to decrypt instead
  of silently handing one user's deployment to another;
* every envelope names the key that made it (a key id), so several keys can be configured at
  once during a rotation and ``rotate`` can resume by skipping rows already on the current key.

Envelope format (a compact, versioned ASCII string)::

    v1.<kid: 8 hex>.<nonce: urlsafe b64>.<ciphertext+tag: urlsafe b64>

Keys come from the environment: ``BYOD_ENCRYPTION_KEY`` (64 hex chars = 32 bytes) and, while
rotating, ``BYOD_ENCRYPTION_KEYS_OLD`` (comma-separated). No message ever contains a key, a
plaintext or a ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.errors import DecryptError, KeyConfigError
from engine.ports.deployment import DeploymentTarget

if TYPE_CHECKING:
    from engine.ports.registry import RegistryStore, UserConfig

__all__ = [
    "ENV_KEY",
    "ENV_OLD_KEYS",
    "FIELD_DEPLOY_KEY",
    "FIELD_URL",
    "RotationReport",
    "Vault",
    "envelope_key_id",
    "generate_key",
    "key_id",
]

ENV_KEY = "BYOD_ENCRYPTION_KEY"
ENV_OLD_KEYS = "BYOD_ENCRYPTION_KEYS_OLD"
FIELD_URL = "deployment_url"
FIELD_DEPLOY_KEY = "deploy_key"

_VERSION = "v1"
_NONCE_BYTES = 12
_KEY_BYTES = 32
_TAG_BYTES = 16
_MIN_DISTINCT_BYTES = 12  # a random 32-byte key has ~30; fewer means a pattern, not a key
_HEX = frozenset("0123456789abcdefABCDEF")


def generate_key() -> str:
    """A new 32-byte key from the OS CSPRNG, as the 64 hex chars BYOD_ENCRYPTION_KEY wants."""

    return secrets.token_hex(_KEY_BYTES)


def key_id(key: bytes) -> str:
    """A short public name for a key: 8 hex chars of a domain-separated SHA-256."""

    return hashlib.sha256(b"byod-vault-key-id\x00" + key).hexdigest()[:8]


def _parse_key(text: str | None, source: str) -> bytes:
    """Check one configured key. Messages describe the problem, never the value."""

    if text is None or not text.strip():
        raise KeyConfigError(
            f"{source} is not set: generate a key with `byod keys generate` and export it"
        )
    value = text.strip()
    if value.lower().startswith("0x"):
        value = value[2:]
    if len(value) != 2 * _KEY_BYTES:
        raise KeyConfigError(
            f"{source} must be exactly {2 * _KEY_BYTES} hex characters (32 bytes); "
            f"the value given has {len(value)} characters "
            "(generate one with `byod keys generate`)"
        )
    if not set(value) <= _HEX:
        raise KeyConfigError(
            f"{source} must contain only hex digits 0-9a-f; the value given has other "
            "characters (a passphrase or base64 is not accepted)"
        )
    key = bytes.fromhex(value)
    if len(set(key)) < _MIN_DISTINCT_BYTES:
        raise KeyConfigError(
            f"{source} is too weak: it repeats a short pattern instead of being random "
            "bytes (generate one with `byod keys generate`)"
        )
    return key


def _aad(user_id: str, field_name: str) -> bytes:
    # JSON keeps the two parts unambiguous whatever characters they contain.
    return json.dumps(["byod-vault", _VERSION, user_id, field_name]).encode()


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def envelope_key_id(envelope: str) -> str | None:
    """The key id an envelope names, or None when it is not a v1 envelope."""

    parts = envelope.split(".")
    if len(parts) == 4 and parts[0] == _VERSION:
        return parts[1]
    return None


@dataclass
class RotationReport:
    """What ``Vault.rotate`` did. Lists user ids only (never credentials)."""

    key_id: str
    total: int = 0
    rotated: list[str] = field(default_factory=list)
    already_current: list[str] = field(default_factory=list)
    no_credentials: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # user id -> sanitized reason

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, object]:
        return {
            "key_id": self.key_id,
            "total": self.total,
            "rotated": list(self.rotated),
            "already_current": list(self.already_current),
            "no_credentials": list(self.no_credentials),
            "failed": dict(self.failed),
            "ok": self.ok,
        }


class Vault:
    """Encrypts and decrypts credential fields with the current key; decrypts with any
    configured old key too, so rotation never strands a row."""

    def __init__(self, key: bytes, old_keys: tuple[bytes, ...] = ()):
        if len(key) != _KEY_BYTES:
            raise KeyConfigError(f"the encryption key must be {_KEY_BYTES} bytes")
        self._current = key_id(key)
        self._keys: dict[str, AESGCM] = {self._current: AESGCM(key)}
        for old in old_keys:
            if len(old) != _KEY_BYTES:
                raise KeyConfigError(f"every old encryption key must be {_KEY_BYTES} bytes")
            self._keys.setdefault(key_id(old), AESGCM(old))

    def __repr__(self) -> str:
        return f"Vault(key_id={self._current!r}, old_key_ids={self.old_key_ids!r})"

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_hex(cls, key_hex: str, old_hex: tuple[str, ...] = ()) -> "Vault":
        key = _parse_key(key_hex, ENV_KEY)
        olds = tuple(
            _parse_key(k, f"{ENV_OLD_KEYS} entry {i}") for i, k in enumerate(old_hex, 1)
        )
        return cls(key, olds)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Vault":
        """Read ``BYOD_ENCRYPTION_KEY`` (+ ``BYOD_ENCRYPTION_KEYS_OLD``); KeyConfigError
        saying exactly what is wrong (length, characters, weakness) for anything else."""

        env = os.environ if env is None else env
        key = _parse_key(env.get(ENV_KEY), ENV_KEY)
        raw_old = env.get(ENV_OLD_KEYS, "") or ""
        olds = tuple(
            _parse_key(part, f"{ENV_OLD_KEYS} entry {i}")
            for i, part in enumerate((p for p in raw_old.split(",") if p.strip()), 1)
        )
        return cls(key, olds)

    # -- properties ---------------------------------------------------------------------
    @property
    def key_id(self) -> str:
        return self._current

    @property
    def old_key_ids(self) -> tuple[str, ...]:
        return tuple(k for k in self._keys if k != self._current)

    def is_current(self, envelope: str) -> bool:
        return envelope_key_id(envelope) == self._current

    # -- the two operations -------------------------------------------------------------
    def encrypt(self, user_id: str, field_name: str, plaintext: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        ct = self._keys[self._current].encrypt(
            nonce, plaintext.encode("utf-8"), _aad(user_id, field_name)
        )
        return ".".join((_VERSION, self._current, _b64e(nonce), _b64e(ct)))

    def decrypt(self, user_id: str, field_name: str, envelope: str) -> str:
        where = f"{field_name} of user {user_id!r}"
        parts = envelope.split(".") if isinstance(envelope, str) else []
        if len(parts) != 4 or parts[0] != _VERSION:
            raise DecryptError(f"cannot decrypt the {where}: not a {_VERSION} vault envelope")
        _, kid, nonce_b64, ct_b64 = parts
        aead = self._keys.get(kid)
        if aead is None:
            raise DecryptError(
                f"cannot decrypt the {where}: it was encrypted with key id {kid}, which is "
                f"not configured (current key id {self._current}; put the old key in "
                f"{ENV_OLD_KEYS} to read it)"
            )
        try:
            nonce, ct = _b64d(nonce_b64), _b64d(ct_b64)
        except (binascii.Error, ValueError):
            raise DecryptError(f"cannot decrypt the {where}: the envelope is corrupted") from None
        if len(nonce) != _NONCE_BYTES or len(ct) < _TAG_BYTES:
            raise DecryptError(f"cannot decrypt the {where}: the envelope is corrupted")
        try:
            data = aead.decrypt(nonce, ct, _aad(user_id, field_name))
        except InvalidTag:
            raise DecryptError(
                f"cannot decrypt the {where} with key id {kid}: authentication failed "
                "(tampered, truncated, or copied from another user or field)"
            ) from None
        return data.decode("utf-8")

    # -- the bridge to adapters -----------------------------------------------------------
    def target_for(self, user: "UserConfig") -> DeploymentTarget:
        """The only way credentials leave the registry decrypted: straight into a target."""

        if not user.url_ct or not user.key_ct:
            raise DecryptError(f"user {user.user_id!r} has no saved deployment credentials")
        url = self.decrypt(user.user_id, FIELD_URL, user.url_ct)
        key = self.decrypt(user.user_id, FIELD_DEPLOY_KEY, user.key_ct)
        return DeploymentTarget(
            label=user.user_id, url=url, admin_key=key,
            allow_insecure_local=url.lower().startswith("http://"),
        )

    def encrypt_credentials(self, user_id: str, url: str, deploy_key: str) -> tuple[str, str]:
        return (self.encrypt(user_id, FIELD_URL, url),
                self.encrypt(user_id, FIELD_DEPLOY_KEY, deploy_key))

    # -- rotation -------------------------------------------------------------------------
    def rotate(self, store: "RegistryStore", *, max_conflict_retries: int = 3) -> RotationReport:
        """Re-encrypt every stored credential under the current key.

        Resumable: rows already on the current key id are skipped, so an interrupted run is
        simply run again. Each new envelope is decrypted and compared with the plaintext
        before a compare-and-swap replace, so a row that changed meanwhile (a re-connect) is
        re-read instead of overwritten.
        """

        report = RotationReport(key_id=self._current)
        for user in store.list_users():
            report.total += 1
            uid = user.user_id
            if not user.url_ct and not user.key_ct:
                report.no_credentials.append(uid)
                continue
            for _attempt in range(max_conflict_retries + 1):
                if self.is_current(user.url_ct) and self.is_current(user.key_ct):
                    report.already_current.append(uid)
                    break
                try:
                    new_url, new_key = self._reencrypt(user)
                except DecryptError as exc:
                    report.failed[uid] = str(exc)
                    break
                if store.replace_ciphertexts(uid, url_ct=new_url, key_ct=new_key,
                                             expect_url_ct=user.url_ct,
                                             expect_key_ct=user.key_ct):
                    report.rotated.append(uid)
                    break
                fresh = store.find_user(uid)
                if fresh is None:  # removed meanwhile: nothing left to protect
                    report.no_credentials.append(uid)
                    break
                user = fresh
            else:
                report.failed[uid] = "the row kept changing during rotation; run it again"
        if report.rotated:
            store.audit("", "keys_rotated", {"key_id": self._current,
                                             "rotated": len(report.rotated),
                                             "failed": len(report.failed)})
        return report

    def _reencrypt(self, user: "UserConfig") -> tuple[str, str]:
        out: list[str] = []
        for field_name, envelope in ((FIELD_URL, user.url_ct), (FIELD_DEPLOY_KEY, user.key_ct)):
            plain = self.decrypt(user.user_id, field_name, envelope)
            fresh = self.encrypt(user.user_id, field_name, plain)
            if self.decrypt(user.user_id, field_name, fresh) != plain:  # verify before replace
                raise DecryptError(
                    f"verification of the re-encrypted {field_name} of user "
                    f"{user.user_id!r} failed; the row was left unchanged"
                )
            out.append(fresh)
        return out[0], out[1]
