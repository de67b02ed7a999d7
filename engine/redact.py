"""Keeping secrets out of text: every string that leaves the engine for a log, an error, a
report or captured subprocess output passes through ``redact`` with the secrets in scope."""

from __future__ import annotations

import re
from typing import Iterable

__all__ = ["redact", "REDACTED", "looks_like_deploy_key"]

REDACTED = "[REDACTED]"
_MIN_SECRET = 8

# Convex keys: "<prefix:>name|secret" where secret is long hex/base64.
_KEY_PATTERN = re.compile(
    r"(?:(?:prod|dev|preview|project):)?[A-Za-z0-9][A-Za-z0-9:_-]*\|[A-Za-z0-9+/=_-]{16,}"
)
_QUERY_SECRET = re.compile(r"(?i)((?:adminKey|admin_key|key|token)=)[^&\s\"']+")
_AUTH_HEADER = re.compile(r"(?i)(authorization:?\s*\"?(?:convex|bearer)\s+)[^\s\"']+")
_KEEP_NAME = r"\g<1>" + REDACTED  # the name (group 1) stays, the value goes


def looks_like_deploy_key(text: str) -> bool:
    return bool(_KEY_PATTERN.fullmatch(text.strip()))


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Replace every known secret, and anything shaped like a Convex key, with a marker."""

    if not text:
        return text
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        # Fragments shorter than _MIN_SECRET are no real secret (keys that short are
        # refused) and replacing them would garble ordinary words of a message.
        if len(secret) >= _MIN_SECRET:
            text = text.replace(secret, REDACTED)
        if "|" in secret:  # the backend strips "prod:" style prefixes; catch the rest
            tail = secret.split("|", 1)[1]
            if len(tail) >= _MIN_SECRET:
                text = text.replace(tail, REDACTED)
    # each pattern needs a character most texts lack: look for it before scanning
    if "|" in text:
        text = _KEY_PATTERN.sub(REDACTED, text)
    if "=" in text:
        text = _QUERY_SECRET.sub(_KEEP_NAME, text)
    return _AUTH_HEADER.sub(_KEEP_NAME, text)
