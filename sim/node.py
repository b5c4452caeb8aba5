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
* **clock drift** — the node's clock runs at ``1 + drift`` times real speed from an
  offset; the core only ever sees its own clock.
"""

from __future__ import annotations

from collections.abc import Callable
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

SOCKET_BUFFER_PACKETS = 1024
"""Inbound packets a stalled node queues before the kernel starts dropping them."""

Factory = Callable[["SimNode", float], Any]
"""(node, local start time) -> a started core. ``node.disk`` holds what it persisted."""
Observer = Callable[["SimNode", Effect], None]


class SimNode:
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
        self._gen = 0
        self._last_local = 0.0
        self._armed: float | None = None
        self._open_streams: set[int] = set()
        net.attach(self)

    # ------------------------------------------------------------------ clock

    def local_now(self) -> float:
        """The node's clock. Monotonic even across float rounding of the drift conversion
        (cores assert that time never goes backwards)."""
        t = self.offset + self.sim.now * (1.0 + self.drift)
        if t < self._last_local:
            return self._last_local
        self._last_local = t
        return t

    def _global(self, local: float) -> float:
        return (local - self.offset) / (1.0 + self.drift)

    def set_drift(self, rate: float) -> None:
        """From now on the clock runs ``1 + rate`` times real speed (continuously)."""
        if rate <= -1.0:
            raise ValueError("drift must keep the clock moving forwards")
        local = self.local_now()
        self.drift = rate
        self.offset = local - self.sim.now * (1.0 + rate)
        self._rearm()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        assert not self.up
        self.boots += 1
        self.host_up = True
        self.up = True
        self.stalled = False
        self.backlog.clear()
        self.core = self.factory(self, self.local_now())
        self._drain()

    def crash(self) -> None:
        """The process dies; memory is gone, ``disk`` stays."""
        if not self.up:
            return
        self.up = False
        self.core = None
        self.stalled = False
        self.backlog.clear()
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
        for ev in backlog:
            if not self.up:
                return
            self._handle(ev, self.local_now())
        if self.up:
            self._handle(TimerExpired(), self.local_now())

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
        self._handle(ev, self.local_now())

    def deliver_stream(self, sid: int, ev: Event) -> None:
        """The end of a stream this node dialled (only its current incarnation hears it)."""
        if sid in self._open_streams:
            self._open_streams.discard(sid)
            self.deliver(ev)

    def _handle(self, ev: Event, now: float) -> None:
        self.core.handle(now, ev)
        self._drain()

    def _drain(self) -> None:
        core = self.core
        for eff in core.take_effects():
            t = type(eff)
            if t is SendPacket:
                self.net.send_packet(self, eff.addr, eff.data)
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
        self._rearm()

    # ------------------------------------------------------------------ timers

    def _rearm(self) -> None:
        if not self.up or self.stalled:
            return
        d = self.core.next_deadline()
        if d is None or d == float("inf"):
            if self._armed is not None:
                self._gen += 1
                self._armed = None
            return
        if self._armed is not None and d >= self._armed:
            return  # the earlier wake-up will re-check
        self._gen += 1
        self._armed = d
        self.sim.at(self._global(d), self._wake, (self._gen, d))

    def _wake(self, arg: tuple[int, float]) -> None:
        gen, deadline = arg
        if gen != self._gen or not self.up or self.stalled:
            return
        self._armed = None
        # float rounding of the drift conversion must not leave a due timer undue
        now = self.local_now()
        if now < deadline:
            now = self._last_local = deadline
        self._handle(TimerExpired(), now)

    def __repr__(self) -> str:
        state = "stalled" if self.stalled else ("up" if self.up else "down")
        return f"SimNode({self.name}, {self.addr[0]}:{self.addr[1]}, {self.dc}, {state})"
