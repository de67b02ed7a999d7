"""Convex's error table (``engine.convex.errors``): every literal text the Convex backend
writes for a transaction limit, a function timeout, the write-rate limit and an invalid
cursor — and the Convex test runtime's wording of the same conditions, which the local
deployments answer with — is classified to the right kind; unrelated failures are not.

Convex texts are quoted from ``get-convex/convex-backend`` (file named per case); runtime
texts from ``convex-test``'s ``transactionMetrics.js`` and its cursor parsing."""

from __future__ import annotations

import pytest

from engine.convex.errors import CONVEX_ERRORS, classify, classify_error
from engine.errors import DeploymentRequestRejected, FunctionError

_HELP = ("Consider using smaller limits in your queries, paginating your queries, or using "
         "indexed queries with a selective index range expressions.")

# (text, expected kind, source file of the Convex text or "runtime")
CONVEX_TEXTS = [
    # crates/database/src/reads.rs
    (f"Too many documents read in a single function execution (limit: 32000). {_HELP}",
     "documents_read"),
    (f"Too many bytes read in a single function execution (limit: 16777216 bytes). {_HELP}",
     "bytes_read"),
    (f"Too many reads in a single function execution (limit: 4096). {_HELP}", "reads"),
    # crates/database/src/writes.rs
    ("Too many writes in a single function execution (limit: 16000)", "writes"),
    ("Too many bytes written in a single function execution (limit: 16 MiB)",
     "bytes_written"),
    # crates/database/src/snapshot_manager.rs
    ("Too many writes per second. Your deployment is limited to 4 MiB bytes written per 1s. "
     "Reduce your write rate or upgrade to a larger deployment.", "write_rate"),
    # crates/database/src/query/mod.rs
    ("Query scanned too much data (fetched 17000000 bytes).", "scanned"),
    ("InvalidCursor: Tried to run a query starting from a cursor, but it looks like this "
     "cursor is from a different query.", "invalid_cursor"),
    # crates/keybroker/src/broker.rs
    ("Failed to parse cursor", "invalid_cursor"),
    ('Key is invalid for instance "other-instance-123"', "invalid_cursor"),
    # crates/isolate/src/termination.rs
    ("Function execution timed out (maximum duration: 1s)", "timeout"),
    # crates/isolate/src/timeout.rs
    ("Your request timed out performing too many system operations.", "system_timeout"),
]

_LIMITS = "This is a Convex limit: https://docs.convex.dev/production/state/limits"
RUNTIME_TEXTS = [
    (f"Scanned too many documents in a single function execution (limit: 40). {_LIMITS}",
     "documents_read"),
    (f"Read too much data in a single function execution (limit: 16777216 bytes). {_LIMITS}",
     "bytes_read"),
    (f"Too many index ranges read in a single function execution (limit: 4096). {_LIMITS}",
     "reads"),
    (f"Wrote too many documents in a single function execution (limit: 40). {_LIMITS}",
     "writes"),
    (f"Wrote too much data in a single function execution (limit: 16777216 bytes). {_LIMITS}",
     "bytes_written"),
    ("Unexpected token 'g', \"garbage\" is not valid JSON", "invalid_cursor"),
    ("Unexpected end of JSON input", "invalid_cursor"),
]


def _as_client_sees(text: str) -> str:
    """A function failure as the HTTP client reports it."""

    return str(FunctionError(f"Uncaught Error: {text}", deployment="alice",
                             function="byodMigrations:backfill_notes_body"))


@pytest.mark.parametrize("text,kind", CONVEX_TEXTS + RUNTIME_TEXTS,
                         ids=[k + "-" + t[:24] for t, k in CONVEX_TEXTS + RUNTIME_TEXTS])
def test_each_text_is_classified_to_its_kind(text, kind):
    assert classify(text).kind == kind  # type: ignore[union-attr]
    assert classify(text.upper()).kind == kind  # type: ignore[union-attr]
    assert classify_error(FunctionError(f"Uncaught Error: {text}", deployment="u",
                                        function="m:f")).kind == kind  # type: ignore[union-attr]
    assert classify(_as_client_sees(text)).kind == kind  # type: ignore[union-attr]


def test_every_row_is_exercised_by_a_literal_convex_text():
    kinds = {k for _, k in CONVEX_TEXTS}
    assert kinds == {r.kind for r in CONVEX_ERRORS}
    for rule in CONVEX_ERRORS:
        assert rule.source.startswith("crates/") and rule.code and rule.convex_texts


@pytest.mark.parametrize("kind,category", [
    ("documents_read", "limit"), ("bytes_read", "limit"), ("reads", "limit"),
    ("writes", "limit"), ("bytes_written", "limit"), ("scanned", "limit"),
    ("timeout", "timeout"), ("system_timeout", "timeout"),
    ("invalid_cursor", "cursor"), ("write_rate", "rate")])
def test_categories(kind, category):
    assert next(r for r in CONVEX_ERRORS if r.kind == kind).category == category


def test_write_rate_is_not_taken_for_the_per_transaction_writes_limit():
    """Both carry the code TooManyWrites: the message decides."""

    assert classify("Too many writes per second. Reduce your write rate").kind == "write_rate"
    assert classify("Too many writes in a single function execution (limit: 1)").kind == \
        "writes"


def test_a_bare_code_or_the_error_data_is_enough():
    assert classify("TooManyBytesRead").kind == "bytes_read"  # type: ignore[union-attr]
    assert classify("failed: InvalidCursor").kind == "invalid_cursor"  # type: ignore[union-attr]
    assert classify("Uncaught ConvexError",
                    {"isConvexSystemError": True, "paginationError": "InvalidCursor"}
                    ).kind == "invalid_cursor"  # type: ignore[union-attr]
    err = DeploymentRequestRejected("the deployment refused the request (HTTP 400: "
                                    "SystemTimeoutError: Your request timed out performing "
                                    "too many system operations.)", deployment="u")
    assert classify_error(err).kind == "system_timeout"  # type: ignore[union-attr]
    # a code inside a longer identifier is not that code
    assert classify("MyTooManyReadsCounter overflowed") is None


@pytest.mark.parametrize("text", [
    "byod data step s1 failed on document n1 of table notes: field body: expected string",
    "Validator error: Expected `string`, got `1`",
    "Search query scanned too many documents (fetched 1024).",
    "the deployment rejected the key (HTTP 401)",
    "Uncaught Error: cursor must be a string",
    "",
])
def test_unrelated_failures_are_not_classified(text):
    assert classify(text) is None
