"""Convex's own error texts and codes for what a data-step page can run into, as one table.

The runner decides by these whether a failed page should be retried smaller (a
transaction limit or a function timeout), restarted from the beginning (an invalid
cursor) or retried later (the deployment's write throughput limit). Each row names the
Convex error code (``ErrorMetadata.short_msg``), the literal message prefixes the backend
writes (and the wordings of the Convex test runtime the local deployments run on), and the
backend source file the text comes from (``get-convex/convex-backend``):

* ``crates/database/src/reads.rs`` — TooManyDocumentsRead, TooManyBytesRead, TooManyReads;
* ``crates/database/src/writes.rs`` — TooManyWrites, TooManyBytesWritten;
* ``crates/database/src/snapshot_manager.rs`` — TooManyWrites (writes per second);
* ``crates/database/src/query/mod.rs`` — QueryScannedTooMuchDataError, InvalidCursor
  (a cursor from another query; ``errorData.paginationError`` is ``"InvalidCursor"``);
* ``crates/keybroker/src/broker.rs`` — InvalidCursor (unparsable cursor, another instance);
* ``crates/isolate/src/termination.rs`` — UserTimeout ("Function execution timed out");
* ``crates/isolate/src/timeout.rs`` — SystemTimeoutError.

Matching is by case-insensitive substring, first row wins (so the write-rate row precedes
the per-transaction writes row that shares its code). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["CONVEX_ERRORS", "Category", "ConvexErrorRule", "classify", "classify_error"]

# limit: the page did too much in one transaction (retry smaller);
# timeout: the page ran past the function time limit (retry smaller);
# cursor: the cursor is not valid for this query (restart the step);
# rate: the deployment's write throughput limit (wait, then retry the same page).
Category = Literal["limit", "timeout", "cursor", "rate"]


@dataclass(frozen=True)
class ConvexErrorRule:
    """One row: Convex's code and message prefixes, the test runtime's wording of the same
    condition, and where in the backend source the Convex text is written."""

    kind: str
    category: Category
    code: str
    convex_texts: tuple[str, ...]
    source: str
    runtime_texts: tuple[str, ...] = ()

    def matches(self, text: str) -> bool:
        low = text.lower()
        return any(t.lower() in low for t in (*self.convex_texts, *self.runtime_texts))


CONVEX_ERRORS: tuple[ConvexErrorRule, ...] = (
    ConvexErrorRule(
        "write_rate", "rate", "TooManyWrites",
        ("Too many writes per second",),
        "crates/database/src/snapshot_manager.rs"),
    ConvexErrorRule(
        "documents_read", "limit", "TooManyDocumentsRead",
        ("Too many documents read in a single function execution",),
        "crates/database/src/reads.rs",
        ("Scanned too many documents in a single function execution",)),
    ConvexErrorRule(
        "bytes_read", "limit", "TooManyBytesRead",
        ("Too many bytes read in a single function execution",),
        "crates/database/src/reads.rs",
        ("Read too much data in a single function execution",)),
    ConvexErrorRule(
        "reads", "limit", "TooManyReads",
        ("Too many reads in a single function execution",),
        "crates/database/src/reads.rs",
        ("Too many index ranges read in a single function execution",)),
    ConvexErrorRule(
        "writes", "limit", "TooManyWrites",
        ("Too many writes in a single function execution",),
        "crates/database/src/writes.rs",
        ("Wrote too many documents in a single function execution",)),
    ConvexErrorRule(
        "bytes_written", "limit", "TooManyBytesWritten",
        ("Too many bytes written in a single function execution",),
        "crates/database/src/writes.rs",
        ("Wrote too much data in a single function execution",)),
    ConvexErrorRule(
        "scanned", "limit", "QueryScannedTooMuchDataError",
        ("Query scanned too much data",),
        "crates/database/src/query/mod.rs"),
    ConvexErrorRule(
        "timeout", "timeout", "UserTimeout",
        ("Function execution timed out",),
        "crates/isolate/src/termination.rs"),
    ConvexErrorRule(
        "system_timeout", "timeout", "SystemTimeoutError",
        ("Your request timed out performing too many system operations",),
        "crates/isolate/src/timeout.rs"),
    ConvexErrorRule(
        "invalid_cursor", "cursor", "InvalidCursor",
        ("Tried to run a query starting from a cursor, but it looks like this cursor is "
         "from a different query", "Failed to parse cursor", "Key is invalid for instance"),
        "crates/database/src/query/mod.rs, crates/keybroker/src/broker.rs",
        # the test runtime parses a cursor with JSON.parse: an unparsable one surfaces as
        # JSON's syntax error (a false match costs one idempotent restart of the step)
        ("invalid cursor", "is not valid JSON", "Unexpected end of JSON input")),
)

_BY_CODE = {r.code: r for r in reversed(CONVEX_ERRORS)}  # first row wins on a shared code


def classify(text: str, data: Any = None) -> ConvexErrorRule | None:
    """The row a failed call's message (and ``errorData``) belongs to, or None. A message
    decides first; then a bare code in the text (``"InvalidCursor: …"``, ``"TooManyReads"``);
    then ``errorData.paginationError`` (Convex's invalid-cursor error carries it)."""

    for rule in CONVEX_ERRORS:
        if rule.matches(text):
            return rule
    for rule in CONVEX_ERRORS:
        if _has_word(text, rule.code):
            return _BY_CODE[rule.code]
    if isinstance(data, dict):
        code = data.get("paginationError") or data.get("code")
        if isinstance(code, str) and code in _BY_CODE:
            return _BY_CODE[code]
    return None


def classify_error(exc: BaseException) -> ConvexErrorRule | None:
    """``classify`` for an exception (its text and a ``FunctionError``'s ``data``)."""

    return classify(str(exc), getattr(exc, "data", None))


def _has_word(text: str, word: str) -> bool:
    """``word`` appears in ``text`` delimited by non-identifier characters."""

    start = text.find(word)
    while start >= 0:
        end = start + len(word)
        before = text[start - 1] if start else " "
        after = text[end] if end < len(text) else " "
        if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
            return True
        start = text.find(word, end)
    return False
