"""The core contract every gossamer protocol follows (shared/DESIGN.md, "The core contract").

A core is a synchronous state machine. It never reads a clock, sleeps, opens a socket
or touches global randomness; the driver (an ``aio.py`` module, or ``sim/``) feeds it
inputs and carries out what it asks for:

    core.handle(now, event)   # one input, at monotonic time ``now`` (float seconds)
    core.next_deadline()      # earliest ``now`` at which it wants TimerExpired, or None
    core.take_effects()       # drain the outbox, in order

Rules the drivers rely on:

1. ``now`` never goes backwards across calls to one core (asserted).
2. After every ``handle`` the driver calls ``take_effects`` and carries the effects out
   in the order given; durable effects precede the sends that depend on them.
3. After every ``handle`` the driver re-reads ``next_deadline``; when that time comes it
   calls ``handle(now, TimerExpired())``. A spurious early or late TimerExpired is
   harmless: the core runs whatever is due at ``now`` and nothing else.
4. Malformed network input never raises out of ``handle``; it is dropped and counted.
   Misuse by the caller (a bad argument, an event of the wrong type) raises.

Randomness comes in through the constructor as a ``random.Random`` and an
``Entropy`` callable (``n -> n random bytes``, for nonces and IDs), so the simulator can
make a whole run reproducible from one seed.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "Core",
    "Effect",
    "Entropy",
    "Event",
    "TimerExpired",
    "TimerWheel",
    "counting",
]

Entropy = Callable[[int], bytes]
"""Returns n bytes of randomness: ``os.urandom`` in production, seeded in the simulator."""


class Event:
    """Base of all inputs to a core. Subclasses are frozen dataclasses named as facts."""

    __slots__ = ()


class Effect:
    """Base of all outputs: imperatives (SendPacket) for the driver, facts (MemberFailed)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class TimerExpired(Event):
    """The time returned by ``next_deadline`` has come."""


@runtime_checkable
class Core(Protocol):
    def handle(self, now: float, event: Event) -> None: ...

    def next_deadline(self) -> float | None: ...

    def take_effects(self) -> list[Effect]: ...


@dataclass(order=True, slots=True)
class _Timer:
    deadline: float
    seq: int
    key: Hashable = field(compare=False)
    action: Callable[[float], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class TimerWheel:
    """Named one-shot timers inside a core: a heap ordered by (deadline, insertion order).

    Setting a timer under a key that already has one replaces it, so a core never has to
    remember to cancel before re-arming. Ties run in insertion order, which keeps runs
    deterministic (no dict or set iteration decides who goes first).
    """

    __slots__ = ("_by_key", "_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[_Timer] = []
        self._by_key: dict[Hashable, _Timer] = {}
        self._seq = 0

    def set(self, key: Hashable, deadline: float, action: Callable[[float], None]) -> None:
        old = self._by_key.get(key)
        if old is not None:
            old.cancelled = True
        self._seq += 1
        t = _Timer(deadline, self._seq, key, action)
        self._by_key[key] = t
        heapq.heappush(self._heap, t)
        if len(self._heap) > 64 and len(self._heap) > 4 * len(self._by_key):
            self._compact()

    def cancel(self, key: Hashable) -> None:
        t = self._by_key.pop(key, None)
        if t is not None:
            t.cancelled = True

    def deadline_of(self, key: Hashable) -> float | None:
        t = self._by_key.get(key)
        return None if t is None else t.deadline

    def __contains__(self, key: Hashable) -> bool:
        return key in self._by_key

    def __len__(self) -> int:
        return len(self._by_key)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0].cancelled:
            heapq.heappop(heap)
        return heap[0].deadline if heap else None

    def run_due(self, now: float) -> int:
        """Run every timer due at or before ``now`` (including ones armed while running)."""
        ran = 0
        heap = self._heap
        while heap:
            t = heap[0]
            if t.cancelled:
                heapq.heappop(heap)
                continue
            if t.deadline > now:
                break
            heapq.heappop(heap)
            if self._by_key.get(t.key) is t:
                del self._by_key[t.key]
            t.action(now)
            ran += 1
        return ran

    def _compact(self) -> None:
        self._heap = [t for t in self._heap if not t.cancelled]
        heapq.heapify(self._heap)


def counting(counters: dict[str, int], reason: str, n: int = 1) -> None:
    """Add to a named counter; cores keep ``dropped`` and ``stats`` dicts this way."""
    counters[reason] = counters.get(reason, 0) + n
