"""A sliding-window rate limit per key (a user, an API token), kept in the process.

Credential tests reach out to arbitrary URLs with arbitrary keys, so they are limited per
user and per token; a refused call learns how many seconds to wait (``Retry-After``). The
window lives in this process: replicas each keep their own (a bound per replica)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """At most ``limit`` hits per ``window_s`` seconds per key."""

    def __init__(self, limit: int, window_s: float, *,
                 clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int | None = None) -> int | None:
        """Count one hit for ``key`` (at most ``limit``, default the limiter's); None when
        allowed, else the seconds to wait."""

        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= (self.limit if limit is None else limit):
                return max(1, math.ceil(hits[0] + self.window_s - now))
            hits.append(now)
            if len(self._hits) > 10_000:  # forget idle keys
                for stale in [k for k, v in self._hits.items() if not v]:
                    del self._hits[stale]
            return None
