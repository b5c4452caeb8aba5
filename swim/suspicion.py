"""Lifeguard's dynamic suspicion timeout (ML/suspicion.go; Lifeguard paper §IV-B).

A member we suspect is declared dead when its suspicion timer fires. The timer starts at
``max`` and shrinks towards ``min`` as *independent* members confirm the suspicion:

    timeout(c) = max - (ln(c + 1) / ln(k + 1)) × (max - min),   floored to ms, >= min

where ``c`` is the number of confirmations so far and ``k`` the number expected. With
``k == 0`` (too few members to expect any) the timer simply runs ``min``. Confirmations
beyond ``k``, or repeated from the same member, change nothing.

This object only does the arithmetic; the owning core arms a timer at :attr:`deadline`.
"""

from __future__ import annotations

import math

__all__ = ["Suspicion", "remaining_suspicion_time"]


def remaining_suspicion_time(n: int, k: int, elapsed_s: float, min_s: float, max_s: float) -> float:
    """ML/suspicion.go remainingSuspicionTime."""
    frac = math.log(n + 1.0) / math.log(k + 1.0)
    raw = max_s - frac * (max_s - min_s)
    timeout = math.floor(1000.0 * raw) / 1000.0
    timeout = max(timeout, min_s)
    return timeout - elapsed_s


class Suspicion:
    __slots__ = ("_confirmations", "deadline", "k", "max_s", "min_s", "n", "start")

    def __init__(self, from_: str, k: int, min_s: float, max_s: float, now: float) -> None:
        assert 0 < min_s <= max_s, (min_s, max_s)
        assert k >= 0
        self.k = k
        self.min_s = min_s
        self.max_s = max_s
        self.n = 0
        self.start = now
        self._confirmations: dict[str, None] = {from_: None}
        self.deadline = now + (max_s if k >= 1 else min_s)

    def confirm(self, from_: str, now: float) -> bool:
        """Count an independent confirmation; True if it was new (worth re-gossiping)."""
        if self.n >= self.k or from_ in self._confirmations:
            return False
        self._confirmations[from_] = None
        self.n += 1
        remaining = remaining_suspicion_time(
            self.n, self.k, now - self.start, self.min_s, self.max_s
        )
        self.deadline = now + max(0.0, remaining)
        return True
