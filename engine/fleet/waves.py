"""A rollout's shape from the operator's words: the failure budget (``--max-failures``)
and the waves (``--waves``), and the split of a fleet into a canary and cumulative waves.
Pure; split from ``engine.fleet.rollout`` so the fleet runner reads on its own."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

from engine.errors import RolloutError

__all__ = ["parse_budget", "parse_waves", "plan_waves"]


def parse_budget(spec: str | int, total: int) -> int:
    """``"3"``/``3`` → 3 failures tolerated; ``"10%"`` → floor(10% of ``total``)."""

    text = str(spec).strip()
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 <= pct <= 100:
                raise ValueError
            return int(math.floor(total * pct / 100.0 + 1e-9))
        value = int(text)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        raise RolloutError(
            f"--max-failures {spec!r}: give a count (e.g. 3) or a percentage (e.g. 10%)"
        ) from None


def parse_waves(specs: Iterable[str] | str) -> tuple[str, ...]:
    """Validate wave specs (``"10%,50%,100%"`` or a sequence); each is a percentage or a
    positive count; the last wave is extended to the whole fleet."""

    items = [s.strip() for s in (specs.split(",") if isinstance(specs, str) else specs)]
    items = [s for s in items if s]
    for item in items:
        body = item[:-1] if item.endswith("%") else item
        try:
            value = float(body)
        except ValueError:
            raise RolloutError(f"--waves: {item!r} is not a percentage or a count") from None
        if value <= 0 or (item.endswith("%") and value > 100):
            raise RolloutError(f"--waves: {item!r} is out of range")
    return tuple(items) or ("100%",)


def plan_waves(order: Sequence[str], *, canary: int, waves: Sequence[str],
               canary_first: Sequence[str] = ()) -> list[tuple[str, list[str]]]:
    """Split ``order`` into [(wave name, user ids)], canary first, cumulative waves."""

    total = len(order)
    remaining = list(order)
    out: list[tuple[str, list[str]]] = []
    if canary > 0 and remaining:
        picked = [u for u in canary_first if u in remaining][:canary]
        picked += [u for u in remaining if u not in picked][: canary - len(picked)]
        out.append(("canary", picked))
        remaining = [u for u in remaining if u not in picked]
    done = total - len(remaining)
    for i, spec in enumerate(waves):
        if not remaining:
            break
        if spec.endswith("%"):
            upto = math.ceil(total * float(spec[:-1]) / 100.0)
        else:
            upto = done + int(float(spec))
        if i == len(waves) - 1:
            upto = total
        take = max(0, min(len(remaining), upto - done))
        if take:
            out.append((spec, remaining[:take]))
            remaining = remaining[take:]
            done += take
    if remaining:
        out.append(("rest", remaining))
    return out
