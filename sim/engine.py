"""The discrete-event loop: virtual time, one queue, no threads, no asyncio.

Rules:

1. Events run in (time, insertion order): two events at the same instant run in the order
   they were scheduled, so a run depends only on the seed and the code.
2. Time never goes backwards; an event scheduled in the past runs "now" (asserted off by
   no more than rounding).
3. An event is a callable and one argument; scheduling returns nothing and cancelling is
   done by the callee (generation counters), which keeps the hot path to one heap push and
   one heap pop per event.
4. Randomness comes from :class:`Seeds`: one root seed split into named child seeds
   (``seeds.child("network")``, ``seeds.child("node", "n17")``), derived with BLAKE2b so
   adding a node or a fault does not reshuffle the others' streams, and so the result is
   the same in every process whatever ``PYTHONHASHSEED`` says.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from typing import Any

__all__ = ["Seeds", "Sim"]


class Seeds:
    """A root seed and its named descendants."""

    __slots__ = ("root",)

    def __init__(self, root: int) -> None:
        if not 0 <= root < 2**64:
            raise ValueError("seed must be in [0, 2**64)")
        self.root = root

    def child(self, *labels: object) -> int:
        h = hashlib.blake2b(digest_size=8)
        h.update(self.root.to_bytes(8, "big"))
        for label in labels:
            h.update(b"\x1f" + str(label).encode())
        return int.from_bytes(h.digest(), "big")

    def rng(self, *labels: object) -> random.Random:
        return random.Random(self.child(*labels))

    def entropy(self, *labels: object) -> Callable[[int], bytes]:
        """A deterministic stand-in for ``os.urandom`` (nonces, IDs)."""
        return self.rng("entropy", *labels).randbytes


class Sim:
    """The event loop. ``now`` is virtual seconds since the start of the run."""

    __slots__ = ("_q", "_seq", "events_run", "now", "seeds")

    def __init__(self, seed: int) -> None:
        self.now = 0.0
        self.seeds = Seeds(seed)
        self._q: list[tuple[float, int, Callable[[Any], None], Any]] = []
        self._seq = 0
        self.events_run = 0

    def at(self, t: float, fn: Callable[[Any], None], arg: Any = None) -> None:
        """Run ``fn(arg)`` at virtual time ``t`` (now, if ``t`` is in the past)."""
        if t < self.now:
            assert self.now - t < 1e-6, f"scheduling {self.now - t:.6f} s in the past"
            t = self.now
        self._seq += 1
        heapq.heappush(self._q, (t, self._seq, fn, arg))

    def after(self, dt: float, fn: Callable[[Any], None], arg: Any = None) -> None:
        self.at(self.now + dt, fn, arg)

    def next_time(self) -> float | None:
        return self._q[0][0] if self._q else None

    def run_until(self, t_end: float) -> int:
        """Run every event at or before ``t_end``; leave ``now == t_end``. Returns how many."""
        q = self._q
        pop = heapq.heappop
        n = 0
        while q and q[0][0] <= t_end:
            t, _, fn, arg = pop(q)
            self.now = t
            fn(arg)
            n += 1
        self.events_run += n
        if t_end > self.now:
            self.now = t_end
        return n

    def run(self, max_events: int | None = None) -> int:
        """Run until the queue is empty (or ``max_events``)."""
        q = self._q
        pop = heapq.heappop
        n = 0
        while q and (max_events is None or n < max_events):
            t, _, fn, arg = pop(q)
            self.now = t
            fn(arg)
            n += 1
        self.events_run += n
        return n

    def pending(self) -> int:
        return len(self._q)
