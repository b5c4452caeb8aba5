"""Lifeguard's local health awareness (ML/awareness.go; Lifeguard paper §IV-A).

A member that is itself slow (CPU-starved, dropping packets) should not accuse others.
It keeps a health score in ``[0, max - 1]``: a failed probe with missing nacks, or having
to refute a suspicion about itself, raises it; each successful probe lowers it. The probe
interval (and with it the time the member waits for indirect acks) is multiplied by
``score + 1``, so an unhealthy member probes less and waits longer before suspecting.
"""

from __future__ import annotations

__all__ = ["Awareness"]


class Awareness:
    __slots__ = ("enabled", "max", "score")

    def __init__(self, max_multiplier: int, enabled: bool = True) -> None:
        assert max_multiplier >= 1
        self.max = max_multiplier
        self.score = 0
        self.enabled = enabled

    def apply_delta(self, delta: int) -> int:
        if self.enabled:
            self.score = min(max(self.score + delta, 0), self.max - 1)
        return self.score

    def scale(self, timeout_s: float) -> float:
        return timeout_s * (self.score + 1)
