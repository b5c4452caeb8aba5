"""Lifeguard's dynamic suspicion timeout (ML/suspicion.go; Lifeguard paper §IV-B).

A member we suspect is declared dead when its suspicion timer fires. The timer starts at
``max`` and shrinks towards ``min`` as *independent* members confirm the suspicion:

    timeout(c) = max - (ln(c + 1) / ln(k + 1)) × (max - min),   floored to ms, >= min

where ``c`` is the number of confirmations so far and ``k`` the number expected. With
``k == 0`` (too few members to expect any) the timer simply runs ``min``. Confirmations
beyond ``k``, or repeated from the same member, change nothing.

This object only does the arithmetic; the owning core arms a timer at :attr:`deadline`.
Two additions serve the owner's local health awareness (Lifeguard §IV-A), neither of them
in memberlist, which runs its timers on Go's runtime and never sees one fire late:

* :meth:`late_s` says how late a timer firing at ``now`` is, measured from the earliest
  deadline armed and not yet run — a confirmation that arrives after the deadline had
  already passed (the owner was not running) re-arms the timer at ``now``, and must not
  hide that the owner is behind.
* :meth:`hold` re-arms the timer no earlier than a given time (a floor that later
  confirmations cannot undercut), for an owner that finds itself too late to trust its
  own verdict.
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
    __slots__ = ("_confirmations", "_due", "deadline", "floor", "k", "max_s", "min_s", "n", "start")

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
        self.floor = -math.inf
        """Set by :meth:`hold`: the deadline never moves before it."""
        self._due = self.deadline
        """The earliest deadline armed that has not run (see :meth:`late_s`)."""

    def confirm(self, from_: str, now: float) -> bool:
        """Count an independent confirmation; True if it was new (worth re-gossiping)."""
        if self.n >= self.k or from_ in self._confirmations:
            return False
        self._confirmations[from_] = None
        self.n += 1
        remaining = remaining_suspicion_time(
            self.n, self.k, now - self.start, self.min_s, self.max_s
        )
        self.deadline = max(self.floor, now + max(0.0, remaining))
        # A punctual owner only confirms before the armed deadline, and confirmations only
        # shorten the timer, so this is the new deadline; if the armed one had already
        # passed, the owner is behind and the earlier one stays the reference for late_s.
        self._due = min(self._due, self.deadline)
        return True

    def late_s(self, now: float) -> float:
        """How late a timer firing at ``now`` is (negative or zero when on time)."""
        return now - self._due

    def hold(self, until: float) -> None:
        """Re-arm no earlier than ``until``, whatever confirmations arrive meanwhile."""
        self.floor = until
        self.deadline = max(self.deadline, until)
        self._due = self.deadline
