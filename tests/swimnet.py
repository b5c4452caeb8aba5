"""A tiny deterministic network for core tests: cores exchange their real encoded bytes with
a fixed latency on virtual time. No sockets, no sleeps. (The full simulator lives in sim/.)"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gossamer.core import Effect, Event, TimerExpired
from swim import codec
from swim.events import (
    Address,
    CloseStream,
    OpenStream,
    PacketReceived,
    SendPacket,
    SendStreamResponse,
    StreamFailed,
    StreamRequestReceived,
    StreamResponseReceived,
)


@dataclass(order=True)
class _Ev:
    t: float
    seq: int
    fn: Callable[[], None] = field(compare=False)


class Net:
    def __init__(self, latency_s: float = 0.001, seed: int = 1) -> None:
        self.now = 0.0
        self.latency = latency_s
        self.cores: dict[Address, Any] = {}
        self.q: list[_Ev] = []
        self.seq = 0
        self.down: set[Address] = set()
        self.udp_blocked: set[Address] = set()
        self.drop: Callable[[Address, Address, bytes], bool] = lambda s, d, b: False
        self.effects: dict[Address, list[Effect]] = {}
        self.packets = 0
        self._streams: dict[tuple[Address, int], tuple[Address, int]] = {}
        self._next_inbound = 1000
        self.rng = random.Random(seed)

    def add(self, addr: Address, core: Any) -> None:
        self.cores[addr] = core
        self.effects[addr] = []
        self._arm(addr)

    def at(self, t: float, fn: Callable[[], None]) -> None:
        self.seq += 1
        heapq.heappush(self.q, _Ev(t, self.seq, fn))

    def deliver(self, addr: Address, ev: Event) -> None:
        core = self.cores.get(addr)
        if core is None or addr in self.down:
            return
        core.handle(self.now, ev)
        self._drain(addr)

    def _drain(self, addr: Address) -> None:
        core = self.cores[addr]
        for eff in core.take_effects():
            self.effects[addr].append(eff)
            self._route(addr, eff)
        self._arm(addr)

    def _arm(self, addr: Address) -> None:
        core = self.cores[addr]
        d = core.next_deadline()
        if d is not None:
            self.at(max(d, self.now), lambda a=addr, d=d: self._fire(a, d))

    def _fire(self, addr: Address, d: float) -> None:
        core = self.cores.get(addr)
        if core is None or addr in self.down:
            return
        nd = core.next_deadline()
        if nd is not None and nd <= self.now:
            self.deliver(addr, TimerExpired())

    def _route(self, src: Address, eff: Effect) -> None:
        if isinstance(eff, SendPacket):
            self.packets += 1
            dst = eff.addr
            if dst in self.down or src in self.down or dst in self.udp_blocked:
                return
            if src in self.udp_blocked or self.drop(src, dst, eff.data):
                return
            self.at(
                self.now + self.latency,
                lambda: self.deliver(dst, PacketReceived(eff.data, src)),
            )
        elif isinstance(eff, OpenStream):
            dst = eff.addr
            if dst in self.down or dst not in self.cores:
                self.at(
                    self.now + self.latency,
                    lambda: self.deliver(src, StreamFailed(eff.stream_id, "connection refused")),
                )
                return
            self._next_inbound += 1
            inbound = self._next_inbound
            self._streams[(dst, inbound)] = (src, eff.stream_id)
            # frame must be complete and parseable, as a driver would check
            n = codec.stream_frame_length(eff.data)
            assert n == len(eff.data), (n, len(eff.data))
            self.at(
                self.now + self.latency,
                lambda: self.deliver(dst, StreamRequestReceived(inbound, eff.data, src)),
            )
        elif isinstance(eff, SendStreamResponse):
            back = self._streams.pop((src, eff.stream_id), None)
            if back is not None:
                origin, sid = back
                self.at(
                    self.now + self.latency,
                    lambda: self.deliver(origin, StreamResponseReceived(sid, eff.data)),
                )
        elif isinstance(eff, CloseStream):
            back = self._streams.pop((src, eff.stream_id), None)
            if back is not None:
                origin, sid = back
                self.at(
                    self.now + self.latency,
                    lambda: self.deliver(origin, StreamFailed(sid, "EOF")),
                )

    def run_until(self, t: float) -> None:
        while self.q and self.q[0].t <= t:
            ev = heapq.heappop(self.q)
            self.now = max(self.now, ev.t)
            ev.fn()
        self.now = t

    def run_for(self, dt: float) -> None:
        self.run_until(self.now + dt)
