"""A tiny deterministic network for gossip-core tests: cores exchange their real encoded bytes
with a fixed latency on virtual time. No sockets, no sleeps. (The full simulator is sim/.)

Faults it can inject, all deterministic:

* ``down``: the node is crashed; nothing reaches it, nothing leaves it, streams are refused.
* ``udp_blocked``: all UDP to and from the node is lost (TCP still works).
* ``block(src, dst, udp=, tcp=)``: one-way per-link loss; ``partition(a, b)`` both ways.
* ``drop(src, dst, data)``: an arbitrary predicate on every UDP datagram.
* ``stall(addr)``: the process is paused (GC, SIGSTOP): its inbound packets and stream events
  queue up and its timers do not run until ``resume(addr)`` delivers the backlog in order.

Every UDP datagram is recorded in ``sent`` (time, src, dst, bytes, delivered?) so tests can
decode what actually went over the wire with :func:`messages_in`; every effect of every core
is logged in order in ``log`` so two runs can be compared with :meth:`Net.digest`.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gossamer.core import Effect, Event, TimerExpired
from swim import codec
from swim.config import SwimConfig
from swim.events import (
    Address,
    CloseStream,
    JoinRequested,
    OpenStream,
    PacketReceived,
    SendPacket,
    SendStreamResponse,
    StreamFailed,
    StreamRequestReceived,
    StreamResponseReceived,
)
from swim.keyring import Keyring
from swim.memberlist import Memberlist
from swim.serf import Serf, SerfConfig

__all__ = [
    "Datagram",
    "FakePeer",
    "Net",
    "addr_of",
    "alive_packet",
    "make_serf",
    "memberlist_cluster",
    "messages_in",
    "serf_cluster",
]


@dataclass(order=True)
class _Ev:
    t: float
    seq: int
    fn: Callable[[], None] = field(compare=False)


@dataclass(frozen=True, slots=True)
class Datagram:
    t: float
    src: Address
    dst: Address
    data: bytes
    delivered: bool


def messages_in(data: bytes, keyring: Keyring | None = None) -> list[codec.Message | bytes]:
    """Decode one UDP payload into memberlist messages (user messages stay raw bytes)."""
    opened = codec.open_packet(data, keyring)
    out: list[codec.Message | bytes] = []
    for raw in opened.messages:
        if raw[0] == codec.MsgType.USER:
            out.append(raw)
            continue
        try:
            out.append(codec.decode_message(raw))
        except codec.DecodeError:
            out.append(raw)
    return out


class Net:
    def __init__(self, latency_s: float = 0.001) -> None:
        self.now = 0.0
        self.latency = latency_s
        self.cores: dict[Address, Any] = {}
        self.q: list[_Ev] = []
        self.seq = 0
        self.down: set[Address] = set()
        self.udp_blocked: set[Address] = set()
        self.blocked_udp: set[tuple[Address, Address]] = set()
        self.blocked_tcp: set[tuple[Address, Address]] = set()
        self.drop: Callable[[Address, Address, bytes], bool] = lambda s, d, b: False
        self.stalled: dict[Address, list[Event]] = {}
        self.effects: dict[Address, list[Effect]] = {}
        self.log: list[tuple[float, Address, Effect]] = []
        self.sent: list[Datagram] = []
        self.packets = 0
        self._streams: dict[tuple[Address, int], tuple[Address, int]] = {}
        self._next_inbound = 1000
        self._generation: dict[Address, int] = {}
        self.watchers: list[Callable[[Address], None]] = []
        """Called with the address after every input a core handled (invariant checkers)."""

    # ------------------------------------------------------------------ topology

    def add(self, addr: Address, core: Any) -> None:
        """Attach a started core (or replace a crashed one: a restart at the same address)."""
        self.cores[addr] = core
        self.effects.setdefault(addr, [])
        self.down.discard(addr)
        self.stalled.pop(addr, None)
        self._generation[addr] = self._generation.get(addr, 0) + 1
        self._arm(addr)

    def crash(self, addr: Address) -> None:
        self.down.add(addr)

    def block(self, src: Address, dst: Address, *, udp: bool = True, tcp: bool = False) -> None:
        """One-way loss from ``src`` to ``dst``."""
        if udp:
            self.blocked_udp.add((src, dst))
        if tcp:
            self.blocked_tcp.add((src, dst))

    def partition(self, a: list[Address], b: list[Address], *, tcp: bool = True) -> None:
        for x in a:
            for y in b:
                self.block(x, y, tcp=tcp)
                self.block(y, x, tcp=tcp)

    def heal(self) -> None:
        self.blocked_udp.clear()
        self.blocked_tcp.clear()
        self.udp_blocked.clear()

    def stall(self, addr: Address) -> None:
        self.stalled.setdefault(addr, [])

    def resume(self, addr: Address) -> None:
        backlog = self.stalled.pop(addr, [])
        for ev in backlog:
            self.deliver(addr, ev)
        if addr in self.cores:
            self.deliver(addr, TimerExpired())

    # ------------------------------------------------------------------ running

    def at(self, t: float, fn: Callable[[], None]) -> None:
        self.seq += 1
        heapq.heappush(self.q, _Ev(t, self.seq, fn))

    def deliver(self, addr: Address, ev: Event) -> None:
        core = self.cores.get(addr)
        if core is None or addr in self.down:
            return
        if addr in self.stalled:
            if not isinstance(ev, TimerExpired):
                self.stalled[addr].append(ev)
            return
        core.handle(self.now, ev)
        self._drain(addr)
        for w in self.watchers:
            w(addr)

    def call(self, addr: Address, fn: Callable[[Any], None]) -> None:
        """Run a direct API call on a core (e.g. ``Memberlist.join``) at the current time and
        carry out its effects, as a driver would."""
        self.cores[addr].handle(self.now, TimerExpired())
        fn(self.cores[addr])
        self._drain(addr)

    def _drain(self, addr: Address) -> None:
        core = self.cores[addr]
        for eff in core.take_effects():
            self.effects[addr].append(eff)
            self.log.append((self.now, addr, eff))
            self._route(addr, eff)
        self._arm(addr)

    def _arm(self, addr: Address) -> None:
        d = self.cores[addr].next_deadline()
        if d is not None and d != float("inf"):
            gen = self._generation[addr]
            self.at(max(d, self.now), lambda: self._fire(addr, gen))

    def _fire(self, addr: Address, gen: int) -> None:
        core = self.cores.get(addr)
        if core is None or addr in self.down or self._generation[addr] != gen:
            return
        nd = core.next_deadline()
        if nd is not None and nd <= self.now:
            self.deliver(addr, TimerExpired())

    def _later(self, dst: Address, ev: Event) -> None:
        self.at(self.now + self.latency, lambda: self.deliver(dst, ev))

    def _route(self, src: Address, eff: Effect) -> None:
        if isinstance(eff, SendPacket):
            self.packets += 1
            dst = eff.addr
            lost = (
                dst in self.down
                or src in self.down
                or dst in self.udp_blocked
                or src in self.udp_blocked
                or (src, dst) in self.blocked_udp
                or self.drop(src, dst, eff.data)
            )
            self.sent.append(Datagram(self.now, src, dst, eff.data, not lost))
            if not lost:
                self._later(dst, PacketReceived(eff.data, src))
        elif isinstance(eff, OpenStream):
            # the frame must be complete and parseable, as a driver checks
            n = codec.stream_frame_length(eff.data)
            assert n == len(eff.data), (n, len(eff.data))
            dst = eff.addr
            if dst in self.down or dst not in self.cores:
                self._later(src, StreamFailed(eff.stream_id, "connection refused"))
                return
            if (src, dst) in self.blocked_tcp or (dst, src) in self.blocked_tcp:
                self.at(
                    self.now + eff.timeout_s,
                    lambda: self.deliver(src, StreamFailed(eff.stream_id, "i/o timeout")),
                )
                return
            self._next_inbound += 1
            inbound = self._next_inbound
            self._streams[(dst, inbound)] = (src, eff.stream_id)
            self._later(dst, StreamRequestReceived(inbound, eff.data, src))
            # the driver gives up on an unanswered stream at its deadline
            self.at(self.now + eff.timeout_s, lambda: self._stream_timeout(dst, inbound))
        elif isinstance(eff, SendStreamResponse | CloseStream):
            back = self._streams.pop((src, eff.stream_id), None)
            if back is not None:
                origin, sid = back
                if isinstance(eff, SendStreamResponse):
                    self._later(origin, StreamResponseReceived(sid, eff.data))
                else:
                    self._later(origin, StreamFailed(sid, "EOF"))

    def _stream_timeout(self, dst: Address, inbound: int) -> None:
        back = self._streams.pop((dst, inbound), None)
        if back is not None:
            self.deliver(back[0], StreamFailed(back[1], "i/o timeout"))

    def run_until(self, t: float) -> None:
        while self.q and self.q[0].t <= t:
            ev = heapq.heappop(self.q)
            self.now = max(self.now, ev.t)
            ev.fn()
        self.now = max(self.now, t)

    def run_for(self, dt: float) -> None:
        self.run_until(self.now + dt)

    def run_while(self, cond: Callable[[], bool], limit_s: float, step_s: float = 0.05) -> bool:
        """Advance in small steps while ``cond()`` holds, for at most ``limit_s``.
        Returns True if the condition stopped holding."""
        end = self.now + limit_s
        while self.now < end:
            if not cond():
                return True
            self.run_for(step_s)
        return not cond()

    # ------------------------------------------------------------------ observation

    def of_type(self, addr: Address, kind: type | tuple[type, ...]) -> list[Any]:
        return [e for e in self.effects[addr] if isinstance(e, kind)]

    def digest(self) -> str:
        """A hash of every effect of every core, in the order they happened."""
        h = hashlib.sha256()
        for t, addr, eff in self.log:
            h.update(f"{t:.9f} {addr} {eff!r}\n".encode())
        return h.hexdigest()


# --------------------------------------------------------------------------- a scripted peer


class FakePeer:
    """A minimal memberlist speaker for scripted tests: it acks pings addressed to it (like a
    live node whose only job is to be reachable) and records every message it receives;
    it never gossips, refutes or relays. ``ack`` can be turned off to play dead."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ack = True
        self.received: list[tuple[float, Address, codec.Message | bytes]] = []
        self._out: list[Effect] = []

    def handle(self, now: float, event: Event) -> None:
        if not isinstance(event, PacketReceived):
            return
        for m in messages_in(event.data):
            self.received.append((now, event.addr, m))
            if isinstance(m, codec.Ping) and self.ack and m.node in ("", self.name):
                to = event.addr
                if m.source_addr and m.source_port:
                    to = (".".join(str(b) for b in m.source_addr), m.source_port)
                self._out.append(SendPacket(to, codec.Ack(m.seq_no, None).encode()))

    def next_deadline(self) -> float | None:
        return None

    def take_effects(self) -> list[Effect]:
        out, self._out = self._out, []
        return out


def alive_packet(name: str, addr: Address, incarnation: int = 1, meta: bytes = b"") -> bytes:
    """An uncompressed, unencrypted UDP datagram carrying one alive message."""
    return codec.Alive(
        incarnation,
        name,
        bytes(int(x) for x in addr[0].split(".")),
        addr[1],
        meta,
        bytes((1, 5, 2, 0, 0, 0)),
    ).encode()


# --------------------------------------------------------------------------- cluster builders


def addr_of(i: int) -> Address:
    return (f"10.0.0.{i + 1}", 7946)


def memberlist_cluster(
    net: Net, n: int, config: SwimConfig, *, seed: int = 0, join: bool = True, first: int = 0
) -> list[Memberlist]:
    """``n`` plain Memberlist cores named m<i> at addr_of(i); each joins the first one."""
    cores = []
    for i in range(first, first + n):
        rng = random.Random(seed * 1000 + i)
        a = addr_of(i)
        ml = Memberlist(
            name=f"m{i}", addr=a[0], port=a[1], config=config, rng=rng, entropy=rng.randbytes
        )
        ml.start(net.now)
        net.add(a, ml)
        cores.append(ml)
    if join:
        seed_addr = addr_of(first)
        for i in range(first + 1, first + n):
            net.call(addr_of(i), lambda c: c.join([(None, seed_addr)], lambda k, e: None))
    return cores


def make_serf(
    net: Net,
    i: int,
    config: SerfConfig,
    *,
    seed: int = 0,
    tags: dict[str, str] | None = None,
    keyring: Keyring | None = None,
    name: str | None = None,
    addr: Address | None = None,
) -> Serf:
    """A started Serf core named s<i> at addr_of(i), attached to the network."""
    rng = random.Random(seed * 1000 + i)
    a = addr if addr is not None else addr_of(i)
    s = Serf(
        name=name if name is not None else f"s{i}",
        addr=a[0],
        port=a[1],
        config=config,
        tags=tags if tags is not None else {"role": "node"},
        rng=rng,
        entropy=rng.randbytes,
        keyring=keyring,
    )
    s.start(net.now)
    net.add(a, s)
    return s


def serf_cluster(
    net: Net,
    n: int,
    config: SerfConfig,
    *,
    seed: int = 0,
    first: int = 0,
    keyring_keys: list[bytes] | None = None,
    tags: Callable[[int], dict[str, str]] | None = None,
) -> list[Serf]:
    """``n`` Serf cores s<first>..; each asks the first to join (a JoinRequested event)."""
    cores = [
        make_serf(
            net,
            i,
            config,
            seed=seed,
            tags=tags(i) if tags is not None else None,
            keyring=Keyring(keyring_keys) if keyring_keys else None,
        )
        for i in range(first, first + n)
    ]
    for i in range(first + 1, first + n):
        net.deliver(addr_of(i), JoinRequested(i, ((None, addr_of(first)),)))
    return cores
