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
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "Core",
    "Effect",
    "Entropy",
    "Event",
    "NoLeader",
    "TimerExpired",
    "TimerWheel",
    "counting",
]

Entropy = Callable[[int], bytes]
"""Returns n bytes of randomness: ``os.urandom`` in production, seeded in the simulator."""


class NoLeader(Exception):
    """There is no cluster leader to take a request (none elected yet, or leadership was
    lost before the request committed). The HTTP API answers Consul's ``500 No cluster
    leader``; callers may retry once a leader is known."""


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


class _Timer:
    """One armed timer. The heap holds ``(deadline, seq, timer)`` tuples, so ordering is
    decided by C tuple comparison (floats, then ints), never by Python-level ``__lt__``."""

    __slots__ = ("action", "cancelled", "deadline", "key")

    def __init__(self, deadline: float, key: Hashable, action: Callable[[float], None]) -> None:
        self.deadline = deadline
        self.key = key
        self.action = action
        self.cancelled = False


class TimerWheel:
    """Named one-shot timers inside a core: a heap ordered by (deadline, insertion order).

    Setting a timer under a key that already has one replaces it, so a core never has to
    remember to cancel before re-arming. Ties run in insertion order, which keeps runs
    deterministic (no dict or set iteration decides who goes first).

    Cancelled timers stay in the heap until they reach its top or a compaction drops them
    (when more than three quarters of the heap is dead), so re-arming costs one push.

    **Lazy timers** are for periodic work that is often a no-op (SWIM's gossip round with
    nothing queued). They order with the others exactly as usual, but while their owner
    reports itself idle (``next_deadline(idle=True)``) they are left out of the deadline the
    driver sees, so it need not wake the core for them. The next input then calls
    :meth:`run_lazy` first, which runs the lazy timers that came due in the meantime, in
    order, each with its own deadline as ``now`` (when the driver would have woken the core
    for it), stopping at the first due ordinary timer. A lazy timer must therefore do, when
    run late like this, what it would have done on time: the owner only reports idle when
    that holds (the gossip round: nothing to send, so it only re-arms itself).
    """

    __slots__ = ("_by_key", "_heap", "_lazy", "_lazy_idle", "_replay_now", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Timer]] = []
        self._lazy: list[tuple[float, int, _Timer]] = []
        self._by_key: dict[Hashable, _Timer] = {}
        self._seq = 0
        self._lazy_idle = False
        """The last next_deadline left the lazy timers out (the driver was not told)."""
        self._replay_now: float | None = None
        """While run_lazy replays: the time of the input it runs before."""

    def set(
        self,
        key: Hashable,
        deadline: float,
        action: Callable[[float], None],
        lazy: bool = False,
    ) -> None:
        by_key = self._by_key
        old = by_key.get(key)
        if old is not None:
            old.cancelled = True
        self._seq = seq = self._seq + 1
        t = _Timer(deadline, key, action)
        by_key[key] = t
        heapq.heappush(self._lazy if lazy else self._heap, (deadline, seq, t))
        size = len(self._heap) + len(self._lazy)
        if size > 64 and size > 4 * len(by_key):
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

    def next_deadline(self, idle: bool = False) -> float | None:
        """The earliest deadline; with ``idle``, lazy timers are left out (see the class)."""
        self._lazy_idle = idle
        heap = self._heap
        d: float | None = None
        while heap:
            top = heap[0]
            if not top[2].cancelled:
                d = top[0]
                break
            heapq.heappop(heap)
        if idle:
            return d
        lazy = self._lazy
        while lazy:
            top = lazy[0]
            if not top[2].cancelled:
                return top[0] if d is None or top[0] < d else d
            heapq.heappop(lazy)
        return d

    def run_lazy(self, now: float) -> int:
        """Catch up on the lazy timers skipped while idle (see the class); call it before
        handling an input at ``now``. A no-op unless the last deadline read was idle."""
        if not self._lazy_idle:
            return 0
        ran = 0
        lazy = self._lazy
        heap = self._heap
        by_key = self._by_key
        pop = heapq.heappop
        self._replay_now = now
        while lazy:
            entry = lazy[0]
            t = entry[2]
            if t.cancelled:
                pop(lazy)
                continue
            if entry[0] > now:
                break
            while heap and heap[0][2].cancelled:
                pop(heap)
            if heap and heap[0] < entry:
                break  # an ordinary timer is due first: run_due runs the rest, in order
            pop(lazy)
            key = t.key
            if by_key.get(key) is t:
                del by_key[key]
            t.action(entry[0])
            ran += 1
        self._replay_now = None
        return ran

    def lazy_due(self, deadline: float) -> bool:
        """Called by a lazy timer's action: would a lazy timer armed now for ``deadline`` be
        replayed at once by the :meth:`run_lazy` in progress? If so the action may do that
        round's work itself, in a loop, instead of arming a timer for it: nothing else can
        run in between (a timer armed now sorts after every armed one at the same deadline).
        """
        now = self._replay_now
        if now is None or deadline > now:
            return False
        for heap in (self._heap, self._lazy):
            while heap and heap[0][2].cancelled:
                heapq.heappop(heap)
            if heap and heap[0][0] <= deadline:
                return False
        return True

    def run_due(self, now: float) -> int:
        """Run every timer due at or before ``now`` (including ones armed while running)."""
        ran = 0
        heap = self._heap
        lazy = self._lazy
        by_key = self._by_key
        pop = heapq.heappop
        while True:
            if heap:
                entry = heap[0]
                if entry[2].cancelled:
                    pop(heap)
                    continue
                src = heap
                if lazy:
                    other = lazy[0]
                    if other[2].cancelled:
                        pop(lazy)
                        continue
                    if other < entry:
                        entry = other
                        src = lazy
            elif lazy:
                entry = lazy[0]
                if entry[2].cancelled:
                    pop(lazy)
                    continue
                src = lazy
            else:
                break
            if entry[0] > now:
                break
            pop(src)
            t = entry[2]
            key = t.key
            if by_key.get(key) is t:
                del by_key[key]
            t.action(now)
            ran += 1
        return ran

    def _compact(self) -> None:
        # in place: run_due may be iterating these very lists (a timer action re-arming)
        for heap in (self._heap, self._lazy):
            heap[:] = [e for e in heap if not e[2].cancelled]
            heapq.heapify(heap)


def counting(counters: dict[str, int], reason: str, n: int = 1) -> None:
    """Add to a named counter; cores keep ``dropped`` and ``stats`` dicts this way."""
    counters[reason] = counters.get(reason, 0) + n
