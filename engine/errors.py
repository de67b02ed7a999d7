"""The engine's error tree. Domain errors carry data; adapters translate library errors
into these with ``raise ... from exc``; the CLI catches only ``ByodError`` and exits with
its ``exit_code``. No message may contain a secret (deploy key, URL with a key, encryption
key): build messages from sanitized values only (see ``engine.redact``).

::

    ByodError (exit 1; 3 where marked: refused for safety, nothing was changed)
    ├── ConfigError                      engine config file / environment
    ├── VersionError                     schema version files and the graph
    │   ├── VersionFileError             .problems: list[Problem] (file, line, message, hint)
    │   ├── UnknownVersion               .version, .known
    │   ├── MultipleHeads                .heads
    │   ├── CycleDetected                .versions
    │   └── NoPath                       .source, .target
    ├── PlanError                        the planner refuses (.code, details)
    │   ├── UnsafeChange                 .changes needing consent / hints
    │   │   └── DestructivePath          (exit 3) a down path deletes data (.deletes); allow
    │   │                                it explicitly (allow_destructive / --allow-destructive)
    │   └── DriftDetected                .deployment, .expected, .actual
    ├── ToolchainError                   npm toolchain missing or failed
    ├── CompileError                     a bundle cannot be rendered
    ├── VaultError                       encryption key or ciphertext problems
    │   ├── KeyConfigError               missing / weak / malformed BYOD_ENCRYPTION_KEY
    │   │   └── VaultKeyMismatch         a health check where no stored credentials decrypt
    │   │                                (.user_ids, .key_ids, .report)
    │   └── DecryptError                 wrong key, tampered, or moved ciphertext
    ├── RegistryError                    the registry store
    │   ├── InvalidTransition            .current, .requested
    │   ├── UnknownUser                  .user_id, .suggestions
    │   └── LeaseHeld                    (exit 3) .deployment, .holder, .expires_at
    ├── DeploymentError                  talking to one deployment (.deployment)
    │   ├── InvalidCredentials           bad URL or deploy-key format (before any I/O)
    │   ├── DeploymentUnreachable        connection refused / DNS / dropped
    │   ├── DeploymentTimeout            no answer within the timeout
    │   ├── DeploymentUnauthorized       key rejected (revoked / wrong)
    │   ├── DeploymentServerError        5xx from the deployment
    │   ├── FunctionError                a Convex function threw (.function, .message, .data)
    │   ├── SchemaValidationFailed       existing documents violate the new schema
    │   │                                (.table, .documents)
    │   ├── DeployFailed                 other CLI deploy failure (.kind)
    │   │   └── PushCaptureFailed        the CLI could not build a bundle's push request
    │   ├── DeploymentRequestRejected    other 4xx: the deployment refused the request
    │   │                                (.status, .code)
    │   └── AdapterUnsupported           this adapter cannot do that (an archive cannot
    │                                    run functions; the HTTP client cannot deploy)
    ├── RolloutError                     fleet rollout (budget spent, lock held, ...)
    ├── DeploymentBlocked                a user's deployment is in error (.user_id, .reason)
    ├── UnknownTable                     routing: no such table in the user's version
    │                                    (.table, .version, .known)
    ├── NotEntitled                      premium gate refuses (.user_id)
    ├── LocalFleetError                  local deployments could not be started, found,
    │                                    controlled or stopped
    ├── DisconnectError                  disconnect data step failed verification
    │   └── ConfirmationRequired         (exit 3) deleting data needs --yes / confirm=True
    └── CopyFromMainError                connect's copy of a user's content from main
                                         failed or did not verify
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass
from typing import Any, Sequence

SAFETY_EXIT_CODE = 3
"""Exit code of a refusal made for safety: nothing was changed, and an explicit flag (or
waiting for another runner) is what lets it go ahead."""


def close_matches(word: str, choices: Sequence[str]) -> list[str]:
    """The (at most two) ``choices`` close enough to ``word`` to be what was meant: those
    ``word`` begins (a shortened name, ``0004_task``) first, then the closest spellings."""

    prefixed = [c for c in choices if word and c.startswith(word)]
    if prefixed:
        return prefixed[:2]
    return difflib.get_close_matches(word, list(choices), n=2, cutoff=0.75)


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices``, or ``""``."""

    close = close_matches(word, choices)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


@dataclass(frozen=True)
class Problem:
    """One problem found in an input file: where it is, what is wrong, how to fix it."""

    file: str
    line: int | None
    location: str
    message: str
    hint: str = ""
    code: str = ""
    severity: str = "error"  # "error" | "warning"

    def render(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        code = f" [{self.code}]" if self.code else ""
        loc = f" {self.location}:" if self.location else ""
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{where}: {self.severity}{code}:{loc} {self.message}{hint}"


class ByodError(Exception):
    """Base of every error the engine raises on purpose."""

    exit_code: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "message": str(self)}


class ConfigError(ByodError):
    pass


class VersionError(ByodError):
    exit_code = 1


class VersionFileError(VersionError):
    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(p.render() for p in self.problems))

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": type(self).__name__,
            "message": f"{len(self.problems)} problem(s) in the version files",
            "problems": [p.__dict__ for p in self.problems],
        }


class UnknownVersion(VersionError):
    def __init__(self, version: str, known: Sequence[str] = ()):
        self.version = version
        self.known = list(known)
        shown = ", ".join(self.known[:20])
        hint = did_you_mean(str(version), self.known)
        super().__init__(f"unknown version {version!r}" + hint
                         + (f"; known: {shown}" if shown else ""))


class MultipleHeads(VersionError):
    def __init__(self, heads: Sequence[str]):
        self.heads = list(heads)
        super().__init__(
            "the version graph has several heads: " + ", ".join(self.heads)
            + "; name one explicitly or add a merge version"
        )


class CycleDetected(VersionError):
    def __init__(self, versions: Sequence[str]):
        self.versions = list(versions)
        super().__init__("the version graph has a cycle: " + " -> ".join(self.versions))


class NoPath(VersionError):
    def __init__(self, source: str, target: str, reason: str = ""):
        self.source = source
        self.target = target
        super().__init__(
            f"no migration path from {source!r} to {target!r}" + (f": {reason}" if reason else "")
        )


class PlanError(ByodError):
    pass


class UnsafeChange(PlanError):
    def __init__(self, message: str, changes: Sequence[Any] = ()):
        self.changes = list(changes)
        super().__init__(message)


class DestructivePath(UnsafeChange):
    """A down path whose steps drop tables or fields: refused unless explicitly allowed,
    because a rollback must never delete data silently. ``deletes`` names what would go."""

    exit_code = SAFETY_EXIT_CODE

    def __init__(self, message: str, deletes: Sequence[str] = (), changes: Sequence[Any] = ()):
        self.deletes = list(deletes)
        super().__init__(message, changes=changes)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "deletes": list(self.deletes)}


class DriftDetected(PlanError):
    def __init__(self, deployment: str, expected: str, actual: str):
        self.deployment = deployment
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"deployment {deployment!r} has drifted: expected {expected}, found {actual}"
        )


class ToolchainError(ByodError):
    pass


class CompileError(ByodError):
    pass


class VaultError(ByodError):
    pass


class KeyConfigError(VaultError):
    pass


class VaultKeyMismatch(KeyConfigError):
    """Every checked deployment's credentials fail to decrypt: the configured key is wrong
    (an operator problem), so nobody's status was changed. ``key_ids`` are the public key
    ids the stored credentials name; ``report`` the health report of the run."""

    def __init__(self, message: str, *, user_ids: Sequence[str] = (),
                 key_ids: Sequence[str] = ()):
        super().__init__(message)
        self.user_ids = list(user_ids)
        self.key_ids = list(key_ids)
        self.report: Any = None


class DecryptError(VaultError):
    pass


class RegistryError(ByodError):
    pass


class InvalidTransition(RegistryError):
    def __init__(self, what: str, current: str, requested: str):
        self.current = current
        self.requested = requested
        super().__init__(f"invalid {what} transition: {current} -> {requested}")


class UnknownUser(RegistryError):
    def __init__(self, user_id: str, known: Sequence[str] = ()):
        self.user_id = user_id
        self.suggestions = close_matches(user_id, known)
        super().__init__(f"no BYOD configuration for user {user_id!r}"
                         + did_you_mean(user_id, known))


class LeaseHeld(RegistryError):
    exit_code = SAFETY_EXIT_CODE

    def __init__(self, deployment: str, holder: str, expires_at: float):
        self.deployment = deployment
        self.holder = holder
        self.expires_at = expires_at
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_at))
        super().__init__(f"deployment {deployment!r} is being worked by {holder!r} "
                         f"(lease until {until})")


class DeploymentError(ByodError):
    """A problem talking to one deployment. ``deployment`` is a safe label, never a URL
    with a key or a key."""

    kind: str = "other"

    def __init__(self, message: str, *, deployment: str = ""):
        self.deployment = deployment
        prefix = f"deployment {deployment}: " if deployment else ""
        super().__init__(prefix + message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": type(self).__name__,
            "kind": self.kind,
            "deployment": self.deployment,
            "message": str(self),
        }


class InvalidCredentials(DeploymentError):
    kind = "invalid_credentials"


class DeploymentUnreachable(DeploymentError):
    kind = "network"


class DeploymentTimeout(DeploymentError):
    kind = "timeout"


class DeploymentUnauthorized(DeploymentError):
    kind = "auth"


class DeploymentServerError(DeploymentError):
    kind = "server"


class FunctionError(DeploymentError):
    kind = "function"

    def __init__(self, message: str, *, deployment: str = "", function: str = "",
                 data: Any = None):
        self.function = function
        self.data = data
        super().__init__(
            (f"{function}: " if function else "") + message, deployment=deployment
        )


class SchemaValidationFailed(DeploymentError):
    kind = "schema_validation"

    def __init__(self, message: str, *, deployment: str = "", table: str = "",
                 documents: Sequence[str] = ()):
        self.table = table
        self.documents = list(documents)
        super().__init__(message, deployment=deployment)


class DeployFailed(DeploymentError):
    kind = "other"


class DeploymentRequestRejected(DeploymentError):
    """The deployment refused the request itself (a 4xx other than 401/403): a bad path,
    a body too large, a malformed argument."""

    kind = "request"

    def __init__(self, message: str, *, deployment: str = "", status: int = 0, code: str = ""):
        self.status = status
        self.code = code
        super().__init__(message, deployment=deployment)


class AdapterUnsupported(DeploymentError):
    """The chosen adapter cannot perform this operation (e.g. a manual-deploy archive
    cannot run functions)."""

    kind = "unsupported"


class RolloutError(ByodError):
    pass


class DeploymentBlocked(ByodError):
    def __init__(self, user_id: str, reason: str):
        self.user_id = user_id
        self.reason = reason
        super().__init__(
            f"user {user_id!r} is blocked: their deployment is in error ({reason}); "
            "run `byod test-connection --user ID` once it is fixed"
        )


class UnknownTable(ByodError):
    """Routing was asked about a table the user's schema version does not have: never
    guessed, because a wrong default would write content to the wrong database."""

    def __init__(self, table: str, version: str, known: Sequence[str] = ()):
        self.table = table
        self.version = version
        self.known = list(known)
        shown = ", ".join(self.known[:30])
        super().__init__(
            f"unknown table {table!r} in schema version {version!r}"
            + (f"; known tables: {shown}" if shown else "")
        )


class NotEntitled(ByodError):
    def __init__(self, user_id: str):
        self.user_id = user_id
        super().__init__(
            f"user {user_id!r} is not entitled to connect their own database: "
            "availability is 'premium'"
        )


class DisconnectError(ByodError):
    pass


class ConfirmationRequired(DisconnectError):
    """Deleting a user's data was asked for without the confirmation it needs."""

    exit_code = SAFETY_EXIT_CODE


class LocalFleetError(ByodError):
    """Local Convex-compatible deployments (``engine.local``) could not be started, found,
    controlled or stopped."""


class PushCaptureFailed(DeployFailed):
    """``convex deploy`` could not produce the push request of a bundle (bundling, type
    checking, a broken toolchain): no deployment was touched."""

    kind = "capture"


class CopyFromMainError(ByodError):
    """Copying a user's existing content from the main deployment to their own one (on
    connect) failed or did not verify; progress is kept so a retry resumes."""
