"""A simulated host running one core: the core contract on virtual time, plus faults.

The node is the simulator's driver for a core, the way an ``aio.py`` module is in
production: it feeds events with ``now``, carries out the effects in order, and arms one
wake-up for ``next_deadline()``.

Faults:

* **crash** — the process dies: its core (all in-memory state) is dropped, packets to it
  are lost, streams to it are refused; what the core persisted lives on in ``disk`` and
  is handed to the factory on **restart**.
* **host down** (a datacenter going dark) — like a crash, but dialers time out instead of
  being refused.
* **stall** — the process handles nothing for a while (a GC pause, a starved VM): inbound
  packets queue in a bounded socket buffer and timers do not fire; at the end it catches
  up on everything at once, late. This is the case Lifeguard is about.
* **slow** — the process runs, but reads its input late (CPU starvation, the Lifeguard
  paper's "slow message processing"): for a while every inbound packet and stream event
  waits ``delay_s`` in a bounded socket buffer before the core handles it, in arrival
  order; timers fire on time and sends leave at once. Input that arrives after the slow
  period while earlier input still waits queues behind it (a buffer drains in order).
* **clock drift** — the node's clock runs at ``1 + drift`` times real speed from an
  offset; the core only ever sees its own clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from heapq import heappush
from typing import TYPE_CHECKING, Any

from gossamer.core import Effect, Event, TimerExpired
from swim.events import (
    Address,
    CloseStream,
    OpenStream,
    SendPacket,
    SendStreamResponse,
)

if TYPE_CHECKING:
    from sim.engine import Sim
    from sim.network import Network

__all__ = ["SimNode"]

_TIMER = TimerExpired()
"""TimerExpired carries nothing, so one instance serves every wake-up."""

SOCKET_BUFFER_PACKETS = 1024
"""Inbound packets a stalled (or slow) node queues before the kernel starts dropping them."""

Factory = Callable[["SimNode", float], Any]
"""(node, local start time) -> a started core. ``node.disk`` holds what it persisted."""
Observer = Callable[["SimNode", Effect], None]

_INF = float("inf")


class SimNode:
    """One simulated host and the process on it (see the module docstring).

    Hot-path notes: a node allocates nothing per event beyond the core's own work and one
    ``(gen, deadline)`` tuple per wake-up it arms; a wake-up that finds its deadline moved
    later (the timer was cancelled or re-armed) re-arms without calling the core, which
    would have had nothing to run.
    """

    __slots__ = (
        "_armed",
        "_gen",
        "_last_local",
        "_open_streams",
        "_skewed",
        "_slow_cb",
        "_slow_q",
        "_slow_token",
        "_slowing",
        "_wake_cb",
        "addr",
        "backlog",
        "boots",
        "bytes_sent",
        "core",
        "dc",
        "disk",
        "drift",
        "dropped_while_slow",
        "dropped_while_stalled",
        "factory",
        "host",
        "host_up",
        "name",
        "net",
        "observer",
        "offset",
        "packets_sent",
        "sim",
        "slow_delay_s",
        "slow_until",
        "stalled",
        "up",
    )

    def __init__(
        self,
        sim: Sim,
        net: Network,
        *,
        name: str,
        addr: Address,
        dc: str,
        factory: Factory,
        host: str | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.sim = sim
        self.net = net
        self.name = name
        self.addr = addr
        self.dc = dc
        self.host = host or name
        self.factory = factory
        self.observer = observer
        self.core: Any = None
        self.up = False
        self.host_up = True
        self.stalled = False
        self.backlog: list[Event] = []
        self.drift = 0.0
        self.offset = 0.0
        self.disk: dict[str, Any] = {}
        self.boots = 0
        self.dropped_while_stalled = 0
        self.slow_until = -_INF
        """While ``sim.now`` is before this, inbound input waits ``slow_delay_s``."""
        self.slow_delay_s = 0.0
        self.dropped_while_slow = 0
        self._slow_q: deque[tuple[float, Event]] = deque()
        """(due, event) in arrival order; due times never decrease."""
        self._slowing = False
        """Slow, or still draining what waited: input must queue behind the rest."""
        self._slow_token = 0
        """Names the one scheduled drain that may run (older ones were superseded)."""
        self._slow_cb = self._slow_wake
        self._gen = 0
        self._last_local = 0.0
        self._armed: float | None = None
        self._open_streams: set[int] = set()
        self._skewed = False
        """drift or offset is non-zero (else the local clock is the simulator's)."""
        self._wake_cb = self._wake
        self.packets_sent = 0
        self.bytes_sent = 0
        """UDP sent by this host (the network's per-node statistics)."""
        net.attach(self)

    # ------------------------------------------------------------------ clock

    def local_now(self) -> float:
        """The node's clock. Monotonic even across float rounding of the drift conversion
        (cores assert that time never goes backwards)."""
        t = self.sim.now
        if self._skewed:
            t = self.offset + t * (1.0 + self.drift)
        if t < self._last_local:
            return self._last_local
        self._last_local = t
        return t

    def _global(self, local: float) -> float:
        if not self._skewed:
            return local
        return (local - self.offset) / (1.0 + self.drift)

    def set_drift(self, rate: float) -> None:
        """From now on the clock runs ``1 + rate`` times real speed (continuously)."""
        if rate <= -1.0:
            raise ValueError("drift must keep the clock moving forwards")
        local = self.local_now()
        self.drift = rate
        self.offset = local - self.sim.now * (1.0 + rate)
        self._skewed = self.drift != 0.0 or self.offset != 0.0
        self._rearm()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        assert not self.up
        self.boots += 1
        self.host_up = True
        self.up = True
        self.stalled = False
        self.backlog.clear()
        self._clear_slow()
        core = self.factory(self, self.local_now())
        if getattr(core, "lazy_timers", None) is False:
            # Let the core skip idle gossip rounds (replayed at their own deadlines on its
            # next input, so a run differs from an eager one only for stalled or drifting
            # nodes, which see a few more random draws or last-bit timing differences).
            core.lazy_timers = True
        self.core = core
        self._drain()

    def crash(self) -> None:
        """The process dies; memory is gone, ``disk`` stays."""
        if not self.up:
            return
        self.up = False
        self.core = None
        self.stalled = False
        self.backlog.clear()
        self._clear_slow()
        self._gen += 1
        self._armed = None
        self._open_streams.clear()
        self.net.drop_streams_of(self)

    def power_off(self) -> None:
        """The host goes dark: a crash that dialers see as timeouts, not refusals."""
        self.crash()
        self.host_up = False

    def restart(self) -> None:
        if self.up:
            self.crash()
        self.start()

    def stall(self, duration_s: float) -> None:
        if not self.up or self.stalled:
            return
        self.stalled = True
        self._gen += 1
        self._armed = None
        self.sim.after(duration_s, self._resume, self.boots)

    def _resume(self, boots: int) -> None:
        if not self.up or not self.stalled or boots != self.boots:
            return
        self.stalled = False
        backlog, self.backlog = self.backlog, []
        if self._slowing:
            # A slow process that was also stalled: what the stall held queues behind
            # what was already waiting, and is read as late as the rest.
            for ev in backlog:
                self._slow_enqueue(ev)
            self._slow_drain()
            if self.up and not self.stalled:
                self._handle(_TIMER, self.local_now())
            return
        for ev in backlog:
            if not self.up:
                return
            self._handle(ev, self.local_now())
        if self.up:
            self._handle(_TIMER, self.local_now())

    # ------------------------------------------------------------------ slow

    @property
    def slowed(self) -> bool:
        """Inside a slow period (input is read ``slow_delay_s`` late)."""
        return self.sim.now < self.slow_until

    def slow(self, duration_s: float, delay_s: float) -> None:
        """For ``duration_s``, handle every inbound packet and stream event ``delay_s``
        after it arrives, in arrival order (see the module docstring). Crash and restart
        end it, with whatever still waits."""
        if duration_s <= 0 or delay_s <= 0:
            raise ValueError("slow needs a positive duration and delay")
        if not self.up or self.slowed:
            return
        self.slow_until = self.sim.now + duration_s
        self.slow_delay_s = delay_s
        self._slowing = True
        self.sim.at(self.slow_until, self._slow_end, self.boots)

    def _slow_end(self, boots: int) -> None:
        if boots == self.boots and not self._slow_q and not self.slowed:
            self._slowing = False

    def _clear_slow(self) -> None:
        self.slow_until = -_INF
        self._slow_q.clear()
        self._slowing = False
        self._slow_token += 1

    def _slow_enqueue(self, ev: Event) -> None:
        q = self._slow_q
        if len(q) >= SOCKET_BUFFER_PACKETS:
            self.dropped_while_slow += 1
            return
        now = self.sim.now
        due = now + self.slow_delay_s if now < self.slow_until else now
        if q and q[-1][0] > due:
            due = q[-1][0]  # a buffer is read in order: nothing overtakes what waits
        q.append((due, ev))
        if len(q) == 1 and not self.stalled:
            self._slow_schedule(due)

    def _slow_schedule(self, t: float) -> None:
        self._slow_token += 1
        self.sim.at(t, self._slow_cb, self._slow_token)

    def _slow_wake(self, token: int) -> None:
        if token == self._slow_token:
            self._slow_drain()

    def _slow_drain(self) -> None:
        """Handle what has waited long enough, then schedule the next."""
        self._slow_token += 1  # whatever drain was scheduled, this one does its work
        if not self.up or self.stalled:
            return  # a crash cleared the queue; a stall's resume drains it
        q = self._slow_q
        now = self.sim.now
        while q and q[0][0] <= now:
            ev = q.popleft()[1]
            self._handle(ev, self.local_now())
            if not self.up or self.stalled:
                return
        if q:
            self._slow_schedule(q[0][0])
        elif not self.slowed:
            self._slowing = False

    # ------------------------------------------------------------------ inputs

    def deliver(self, ev: Event) -> None:
        if not self.up:
            return
        if self.stalled:
            if len(self.backlog) >= SOCKET_BUFFER_PACKETS:
                self.dropped_while_stalled += 1
                return
            self.backlog.append(ev)
            return
        if self._slowing:
            self._slow_enqueue(ev)
            return
        # local_now(), inlined: every packet comes through here
        t = self.sim.now
        if self._skewed:
            t = self.offset + t * (1.0 + self.drift)
        if t < self._last_local:
            t = self._last_local
        else:
            self._last_local = t
        core = self.core
        core.handle(t, ev)
        self._drain(core)

    def deliver_stream(self, sid: int, ev: Event) -> None:
        """The end of a stream this node dialled (only its current incarnation hears it)."""
        if sid in self._open_streams:
            self._open_streams.discard(sid)
            self.deliver(ev)

    def _handle(self, ev: Event, now: float) -> None:
        core = self.core
        core.handle(now, ev)
        self._drain(core)

    def _drain(self, core: Any = None) -> None:
        """Carry out the core's effects in order, then re-arm its wake-up."""
        if core is None:
            core = self.core
        effects = core.take_effects()
        if effects:
            send = self.net.send_packet
            for eff in effects:
                t = type(eff)
                if t is SendPacket:
                    send(self, eff.addr, eff.data)
                elif t is OpenStream:
                    self._open_streams.add(eff.stream_id)
                    self.net.open_stream(self, eff)
                elif t is SendStreamResponse:
                    self.net.stream_response(self, eff.stream_id, eff.data)
                elif t is CloseStream:
                    self.net.stream_response(self, eff.stream_id, None)
                elif self.observer is not None:
                    self.observer(self, eff)
                if not self.up:  # an observer may crash us (fault injection on an event)
                    return
        elif not self.up:
            return
        if self.stalled:
            return
        # _arm(core.next_deadline()), inlined for its common case: a deadline earlier than
        # the wake-up already armed (or none armed)
        d = core.next_deadline()
        armed = self._armed
        if d is None or d == _INF or (armed is not None and d >= armed) or self._skewed:
            self._arm(d)
            return
        self._gen = gen = self._gen + 1
        self._armed = d
        sim = self.sim
        if d < sim.now:
            assert sim.now - d < 1e-6, f"scheduling {sim.now - d:.6f} s in the past"
            d = sim.now
        sim._seq += 1
        heappush(sim._q, (d, sim._seq, self._wake_cb, (gen, self._armed)))

    # ------------------------------------------------------------------ timers

    def _rearm(self) -> None:
        if not self.up or self.stalled:
            return
        self._arm(self.core.next_deadline())

    def _arm(self, d: float | None) -> None:
        """Make sure a wake-up is scheduled for the core's deadline ``d`` (local time)."""
        armed = self._armed
        if d is None or d == _INF:
            if armed is not None:
                self._gen += 1
                self._armed = None
            return
        if armed is not None and d >= armed:
            return  # the earlier wake-up will re-check
        self._gen = gen = self._gen + 1
        self._armed = d
        # Sim.at, inlined: this runs after every event a node handles
        sim = self.sim
        t = self._global(d) if self._skewed else d
        if t < sim.now:
            assert sim.now - t < 1e-6, f"scheduling {sim.now - t:.6f} s in the past"
            t = sim.now
        sim._seq += 1
        heappush(sim._q, (t, sim._seq, self._wake_cb, (gen, d)))

    def _wake(self, arg: tuple[int, float]) -> None:
        gen, deadline = arg
        if gen != self._gen or not self.up or self.stalled:
            return
        self._armed = None
        # local_now(), inlined; float rounding of the drift conversion must not leave a
        # due timer undue, so never earlier than the deadline
        now = self.sim.now
        if self._skewed:
            now = self.offset + now * (1.0 + self.drift)
        last = self._last_local
        if now < last:
            now = last
        if now < deadline:
            now = deadline
        self._last_local = now
        core = self.core
        d = core.next_deadline()
        if d is None or d > now:
            # The timer this wake-up was for has been cancelled or moved later: there is
            # nothing to run, so skip the core (a TimerExpired would be a no-op) and re-arm.
            self._arm(d)
            return
        core.handle(now, _TIMER)
        self._drain(core)

    def __repr__(self) -> str:
        state = "stalled" if self.stalled else ("up" if self.up else "down")
        if self.up and self.slowed:
            state += ", slow"
        return f"SimNode({self.name}, {self.addr[0]}:{self.addr[1]}, {self.dc}, {state})"
