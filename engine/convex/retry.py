"""The engine's one retry policy for HTTP calls, built on tenacity.

``RetryPolicy`` says how many times a call is tried again and how long to wait between
tries: exponential backoff with full jitter (``backoff_base`` doubling per retry, each
wait drawn between 0 and that ceiling, never above ``backoff_max``), unless the server
said how long to wait — a ``Retry-After`` header (seconds or an HTTP date) on a 429 or 503
answer is honoured, capped at ``max_wait``. An optional ``deadline`` (a ``time.monotonic``
instant) shortens every wait to end before it and stops retrying once it is near.

*Which* failures may be retried is the caller's decision (``retry_on``): the Convex
clients retry only idempotent calls (see ``engine.convex.http``), the alert sender only
answers that are not a refusal. Each attempt returns a value (an outcome object) rather
than raising; when the policy gives up, the last attempt's value is returned and the caller
raises or reports it. The sleep function can be injected (tests pass one that records).
A first attempt that needs no retry returns at once, without building a tenacity loop:
that is nearly every call, and the loop costs more CPU than the request itself.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_result,
    stop_after_attempt,
    wait_random_exponential,
)

__all__ = ["RETRY_AFTER_STATUSES", "RetryPolicy", "parse_retry_after", "retry_after_of"]

T = TypeVar("T")

RETRY_AFTER_STATUSES = frozenset({429, 503})
"""The answers whose ``Retry-After`` header is honoured."""

DEADLINE_MARGIN_S = 0.05
"""No retry starts this close to a deadline; waits end this long before it."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for: a non-negative number of seconds or an
    HTTP date (a date in the past is 0). None when absent or not understood."""

    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def retry_after_of(response: httpx.Response) -> float | None:
    """The ``Retry-After`` of a 429 or 503 answer, in seconds (None for other answers)."""

    if response.status_code not in RETRY_AFTER_STATUSES:
        return None
    return parse_retry_after(response.headers.get("retry-after"))


@dataclass(frozen=True)
class RetryPolicy:
    """How often to try again and how long to wait (see the module docstring).

    ``retries``: tries after the first one; ``backoff_base`` / ``backoff_max``: the
    exponential backoff's first ceiling and its cap; ``max_wait``: the cap on any wait,
    a server's ``Retry-After`` included; ``deadline``: a ``time.monotonic`` instant no
    wait goes past and no retry starts near."""

    retries: int = 2
    backoff_base: float = 0.2
    backoff_max: float = 5.0
    max_wait: float = 30.0
    deadline: float | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "retries", max(0, int(self.retries)))
        set_(self, "backoff_base", max(0.0, float(self.backoff_base)))
        set_(self, "backoff_max", max(self.backoff_base, float(self.backoff_max)))
        set_(self, "max_wait", max(0.0, float(self.max_wait)))

    def backoff(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (1, 2, ...) when no server asked for
        one: full-jitter exponential, capped like every other wait of this policy. For
        loops that retry inside a larger step (the runner's data pages)."""

        ceiling = min(self.backoff_max, self.backoff_base * (2 ** max(0, attempt - 1)))
        return min(random.uniform(0.0, ceiling), self.max_wait)

    # -- the pieces tenacity is built from ------------------------------------------------
    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no deadline)."""

        return None if self.deadline is None else self.deadline - time.monotonic()

    def _stop(self, state: RetryCallState) -> bool:
        if stop_after_attempt(self.retries + 1)(state):
            return True
        left = self.remaining()
        return left is not None and left <= DEADLINE_MARGIN_S

    def wait_for(self, state: RetryCallState,
                 retry_after: Callable[[Any], float | None] | None = None) -> float:
        """Seconds to wait before the next try: the server's ``Retry-After`` when the last
        outcome carries one, else full-jitter exponential backoff; capped by ``max_wait``
        and the deadline."""

        asked = None
        if retry_after is not None and state.outcome is not None and not state.outcome.failed:
            asked = retry_after(state.outcome.result())
        if asked is not None:
            delay = float(asked)
        else:
            backoff = wait_random_exponential(multiplier=self.backoff_base,
                                              max=self.backoff_max)
            delay = float(backoff(state)) if self.backoff_base else 0.0
        delay = min(delay, self.max_wait)
        left = self.remaining()
        if left is not None:
            delay = min(delay, max(0.0, left - DEADLINE_MARGIN_S))
        return max(0.0, delay)

    def _options(self, retry_on: Callable[[T], bool],
                 retry_after: Callable[[T], float | None] | None,
                 before_sleep: Callable[[RetryCallState], None] | None) -> dict[str, Any]:
        return {
            "stop": self._stop,
            "wait": lambda state: self.wait_for(state, retry_after),
            "retry": retry_if_result(retry_on),
            "before_sleep": before_sleep,
            # out of tries: the last outcome is the answer (the caller raises its error)
            "retry_error_callback": lambda state: state.outcome.result(),
            "reraise": True,  # an exception an attempt raises is never retried
        }

    # -- running a call under the policy --------------------------------------------------
    def call(self, attempt: Callable[[], T], *, retry_on: Callable[[T], bool],
             retry_after: Callable[[T], float | None] | None = None,
             before_sleep: Callable[[RetryCallState], None] | None = None,
             sleep: Callable[[float], None] | None = None) -> T:
        """Run ``attempt`` until ``retry_on`` rejects its value or the policy gives up;
        the last value either way."""

        first = attempt()
        if not retry_on(first) or self.retries == 0:
            return first  # the common case costs one call, not a tenacity loop
        pending = [first]

        def replay() -> T:  # tenacity's first attempt is the one already made
            return pending.pop() if pending else attempt()

        retrying = Retrying(sleep=sleep or time.sleep,
                            **self._options(retry_on, retry_after, before_sleep))
        result: T = retrying(replay)
        return result

    async def acall(self, attempt: Callable[[], Awaitable[T]], *,
                    retry_on: Callable[[T], bool],
                    retry_after: Callable[[T], float | None] | None = None,
                    before_sleep: Callable[[RetryCallState], None] | None = None,
                    sleep: Callable[[float], Awaitable[None]] | None = None) -> T:
        """The awaitable twin of ``call`` (``sleep`` defaults to ``asyncio.sleep``)."""

        first = await attempt()
        if not retry_on(first) or self.retries == 0:
            return first
        pending = [first]

        async def replay() -> T:
            return pending.pop() if pending else await attempt()

        if sleep is None:
            import asyncio

            sleep = asyncio.sleep
        retrying = AsyncRetrying(sleep=sleep,
                                 **self._options(retry_on, retry_after, before_sleep))
        result: T = await retrying(replay)
        return result
