"""The simulated network: datacenters and hosts, per-link delay models, loss, duplication,
reordering, stream bandwidth, and partitions — carrying the cores' real encoded bytes.

Rules:

1. A packet from ``src`` to ``dst`` is dropped if a partition blocks that direction, if
   either host is down, or with the link's loss probability; otherwise it arrives after a
   delay drawn from the link's latency model (plus, with the reorder probability, an extra
   delay, so later packets overtake it), and with the duplicate probability a second copy
   arrives after an independent delay.
2. Which link model applies: same host < same DC < the DC pair's entry < the cross-DC
   default. Pairs are unordered (``("dc1","dc2")`` covers both directions).
3. A stream (one request frame, at most one response) takes the one-way delay plus
   ``size / bandwidth`` each way. It fails with ``connection refused`` after a round trip
   when the host is up but no process listens, and with ``i/o timeout`` at its deadline when
   a partition or a dead host swallows it — as TCP would.
4. Randomness: one ``random.Random`` for the whole network, drawn in event order, so a run
   is reproducible from the seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from heapq import heappush
from typing import TYPE_CHECKING, Any

from swim.events import (
    Address,
    OpenStream,
    PacketReceived,
    StreamFailed,
    StreamRequestReceived,
    StreamResponseReceived,
)

if TYPE_CHECKING:
    from sim.engine import Sim
    from sim.node import SimNode

__all__ = ["Group", "Latency", "LinkModel", "Network", "Partition"]


@dataclass(frozen=True)
class Latency:
    """One-way delay in seconds: ``constant`` (a), ``uniform`` (a..b), ``normal`` (mean a,
    stddev b, cut at 0), ``lognormal`` (median a, sigma b)."""

    kind: str = "constant"
    a: float = 0.0005
    b: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("constant", "uniform", "normal", "lognormal"):
            raise ValueError(f"unknown latency distribution {self.kind!r}")
        if self.a < 0 or self.b < 0:
            raise ValueError("latency parameters must not be negative")
        if self.kind == "uniform" and self.b < self.a:
            raise ValueError("uniform latency needs a <= b")
        if self.kind == "lognormal" and self.a <= 0:
            raise ValueError("lognormal latency needs a positive median")

    def sample(self, rng: random.Random) -> float:
        k = self.kind
        if k == "constant":
            return self.a
        if k == "uniform":
            return rng.uniform(self.a, self.b)
        if k == "normal":
            return max(0.0, rng.gauss(self.a, self.b))
        return self.a * math.exp(rng.gauss(0.0, self.b))

    @property
    def mean(self) -> float:
        k = self.kind
        if k == "constant":
            return self.a
        if k == "uniform":
            return (self.a + self.b) / 2
        if k == "normal":
            return self.a
        return self.a * math.exp(self.b * self.b / 2)


@dataclass(frozen=True)
class LinkModel:
    latency: Latency = Latency()
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    """Probability that a packet is held back by ``reorder_delay_s`` (later ones overtake it)."""
    reorder_delay_s: float = 0.005
    bandwidth_bps: float = 0.0
    """Stream bandwidth in bytes per second; 0 = unlimited."""

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability")
        if self.bandwidth_bps < 0 or self.reorder_delay_s < 0:
            raise ValueError("bandwidth and reorder delay must not be negative")


@dataclass(frozen=True)
class Group:
    """A set of nodes: listed addresses, whole datacenters, everyone, or the complement."""

    addrs: frozenset[Address] = frozenset()
    dcs: frozenset[str] = frozenset()
    everyone: bool = False
    negate: bool = False

    def contains(self, addr: Address, dc: str) -> bool:
        inside = self.everyone or addr in self.addrs or dc in self.dcs
        return inside != self.negate


@dataclass(frozen=True)
class Partition:
    """Traffic from ``a`` to ``b`` (and back, unless ``one_way``) is dropped."""

    a: Group
    b: Group
    one_way: bool = False
    udp: bool = True
    tcp: bool = True

    def blocks(self, src: Address, sdc: str, dst: Address, ddc: str) -> bool:
        if self.a.contains(src, sdc) and self.b.contains(dst, ddc):
            return True
        return not self.one_way and self.a.contains(dst, ddc) and self.b.contains(src, sdc)


@dataclass
class _Stream:
    src: SimNode
    src_sid: int
    dst: SimNode
    deadline: float
    done: bool = False


@dataclass
class NetStats:
    packets_sent: int = 0
    packets_delivered: int = 0
    packets_dropped: int = 0
    bytes_sent: int = 0
    streams: int = 0
    stream_bytes: int = 0

    def __post_init__(self) -> None:
        self._nodes: dict[Address, SimNode] = {}

    # Per-node counts live on the nodes (two attribute increments per packet instead of two
    # dict updates); these views build the name-keyed dicts on demand.

    @property
    def per_node_packets(self) -> dict[str, int]:
        """UDP packets sent, by node name (nodes that sent any, in attach order)."""
        return {n.name: n.packets_sent for n in self._nodes.values() if n.packets_sent}

    @property
    def per_node_bytes(self) -> dict[str, int]:
        """UDP bytes sent, by node name (nodes that sent any, in attach order)."""
        return {n.name: n.bytes_sent for n in self._nodes.values() if n.packets_sent}


class Network:
    def __init__(
        self,
        sim: Sim,
        rng: random.Random,
        *,
        same_host: LinkModel | None = None,
        same_dc: LinkModel | None = None,
        cross_dc: LinkModel | None = None,
        dc_pairs: dict[tuple[str, str], LinkModel] | None = None,
    ) -> None:
        self.sim = sim
        self.rng = rng
        self.same_host = same_host or LinkModel(Latency("constant", 0.00005))
        self.same_dc = same_dc or LinkModel(Latency("constant", 0.0005))
        self.cross_dc = cross_dc or LinkModel(Latency("constant", 0.040))
        self.dc_pairs: dict[tuple[str, str], LinkModel] = {}
        for (x, y), m in (dc_pairs or {}).items():
            self.dc_pairs[(x, y)] = m
            self.dc_pairs[(y, x)] = m
        self.nodes: dict[Address, SimNode] = {}
        self.partitions: dict[int, Partition] = {}
        self._next_partition = 0
        self._streams: dict[tuple[Address, int], _Stream] = {}
        self._next_inbound = 0
        self.stats = NetStats()
        self.stats._nodes = self.nodes
        self._arrive_cb = self._arrive
        self.on_packet: Callable[[float, SimNode, SimNode, bytes], None] | None = None
        """Observer of every delivered packet (traces, dissemination figures)."""

    # ------------------------------------------------------------------ topology

    def attach(self, node: SimNode) -> None:
        if node.addr in self.nodes:
            raise ValueError(f"address {node.addr} is taken")
        self.nodes[node.addr] = node

    def model(self, src: SimNode, dst: SimNode) -> LinkModel:
        if src.host == dst.host:
            return self.same_host
        if src.dc == dst.dc:
            return self.same_dc
        return self.dc_pairs.get((src.dc, dst.dc), self.cross_dc)

    # ------------------------------------------------------------------ partitions

    def partition(self, p: Partition) -> int:
        self._next_partition += 1
        self.partitions[self._next_partition] = p
        return self._next_partition

    def heal(self, token: int) -> None:
        self.partitions.pop(token, None)

    def heal_all(self) -> None:
        self.partitions.clear()

    def blocked(self, src: SimNode, dst: SimNode, tcp: bool) -> bool:
        for p in self.partitions.values():
            if (p.tcp if tcp else p.udp) and p.blocks(src.addr, src.dc, dst.addr, dst.dc):
                return True
        return False

    # ------------------------------------------------------------------ packets

    def send_packet(self, src: SimNode, dst_addr: Address, data: bytes) -> None:
        # the hottest function of a run: model() and Sim.at are inlined
        st = self.stats
        size = len(data)
        st.packets_sent += 1
        st.bytes_sent += size
        src.packets_sent += 1
        src.bytes_sent += size
        dst = self.nodes.get(dst_addr)
        if dst is None or not dst.host_up or (self.partitions and self.blocked(src, dst, False)):
            st.packets_dropped += 1
            return
        if src.host == dst.host:
            m = self.same_host
        elif src.dc == dst.dc:
            m = self.same_dc
        else:
            m = self.dc_pairs.get((src.dc, dst.dc), self.cross_dc)
        rng = self.rng
        if m.loss and rng.random() < m.loss:
            st.packets_dropped += 1
            return
        lat = m.latency
        delay = lat.a if lat.kind == "constant" else lat.sample(rng)
        if m.reorder and rng.random() < m.reorder:
            delay += m.reorder_delay_s
        sim = self.sim
        sim._seq += 1
        heappush(sim._q, (sim.now + delay, sim._seq, self._arrive_cb, (src, dst, data)))
        if m.duplicate and rng.random() < m.duplicate:
            self.sim.at(self.sim.now + m.latency.sample(rng), self._arrive, (src, dst, data))

    def _arrive(self, arg: tuple[SimNode, SimNode, bytes]) -> None:
        src, dst, data = arg
        if not dst.host_up:
            self.stats.packets_dropped += 1
            return
        self.stats.packets_delivered += 1
        if self.on_packet is not None:
            self.on_packet(self.sim.now, src, dst, data)
        dst.deliver(PacketReceived(data, src.addr))

    # ------------------------------------------------------------------ streams

    def _transfer(self, m: LinkModel, size: int) -> float:
        t = m.latency.sample(self.rng)
        if m.bandwidth_bps:
            t += size / m.bandwidth_bps
        return t

    def open_stream(self, src: SimNode, eff: OpenStream) -> None:
        self.stats.streams += 1
        self.stats.stream_bytes += len(eff.data)
        deadline = self.sim.now + eff.timeout_s
        dst = self.nodes.get(eff.addr)
        if dst is None or not dst.host_up or self.blocked(src, dst, True):
            # SYNs vanish: the dialer gives up at its deadline
            self.sim.at(deadline, self._fail, (src, eff.stream_id, "i/o timeout"))
            return
        m = self.model(src, dst)
        if not dst.up:
            rtt = 2 * m.latency.sample(self.rng)
            reason = f"dial tcp {eff.addr[0]}:{eff.addr[1]}: connect: connection refused"
            self.sim.at(min(deadline, self.sim.now + rtt), self._fail, (src, eff.stream_id, reason))
            return
        self._next_inbound += 1
        inbound = self._next_inbound
        s = _Stream(src, eff.stream_id, dst, deadline)
        self._streams[(dst.addr, inbound)] = s
        arrive = self.sim.now + self._transfer(m, len(eff.data))
        if arrive >= deadline:
            self.sim.at(deadline, self._timeout, (dst.addr, inbound))
            return
        self.sim.at(arrive, self._request, (dst, inbound, eff.data, src.addr))
        self.sim.at(deadline, self._timeout, (dst.addr, inbound))

    def _request(self, arg: tuple[SimNode, int, bytes, Address]) -> None:
        dst, inbound, data, src_addr = arg
        s = self._streams.get((dst.addr, inbound))
        if s is None or s.done:
            return
        if not dst.up:
            self._finish(dst.addr, inbound, "connection reset by peer")
            return
        dst.deliver(StreamRequestReceived(inbound, data, src_addr))

    def stream_response(self, dst: SimNode, inbound: int, data: bytes | None) -> None:
        """The listening side answered (data) or closed (None)."""
        s = self._streams.get((dst.addr, inbound))
        if s is None or s.done:
            return
        if data is None:
            self._finish(dst.addr, inbound, "EOF")
            return
        self.stats.stream_bytes += len(data)
        if self.blocked(dst, s.src, True) or not s.src.host_up:
            return  # lost; the dialer times out at its deadline
        t = self.sim.now + self._transfer(self.model(dst, s.src), len(data))
        if t >= s.deadline:
            return
        self.sim.at(t, self._response, (dst.addr, inbound, data))

    def _response(self, arg: tuple[Address, int, bytes]) -> None:
        key = (arg[0], arg[1])
        s = self._streams.pop(key, None)
        if s is None or s.done:
            return
        s.done = True
        s.src.deliver_stream(s.src_sid, StreamResponseReceived(s.src_sid, arg[2]))

    def _finish(self, addr: Address, inbound: int, reason: str) -> None:
        s = self._streams.pop((addr, inbound), None)
        if s is None or s.done:
            return
        s.done = True
        s.src.deliver_stream(s.src_sid, StreamFailed(s.src_sid, reason))

    def _timeout(self, arg: tuple[Address, int]) -> None:
        self._finish(arg[0], arg[1], "i/o timeout")

    def _fail(self, arg: tuple[SimNode, int, str]) -> None:
        src, sid, reason = arg
        src.deliver_stream(sid, StreamFailed(sid, reason))

    def drop_streams_of(self, node: SimNode) -> None:
        """A process died: streams it was serving are reset for their dialers."""
        for key, s in list(self._streams.items()):
            if s.dst is node and not s.done:
                self._finish(key[0], key[1], "connection reset by peer")

    def describe(self) -> dict[str, Any]:
        return {
            "same_host": self.same_host,
            "same_dc": self.same_dc,
            "cross_dc": self.cross_dc,
            "dc_pairs": {f"{a}-{b}": m for (a, b), m in self.dc_pairs.items() if a < b},
        }
