"""SWIM as the simulator's subject: gossip pools of real :class:`swim.serf.Serf` cores on
simulated hosts, and a record of what every member believed about every other, when.

A *pool* is one gossip cluster: the LAN pool of a datacenter, or the WAN pool of servers
across datacenters (Consul names WAN members ``<node>.<dc>``). Each node runs one Serf core
in one pool; its seeds are derived from the root seed by name and boot count, so adding a
node or a fault never reshuffles the others.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gossamer.core import Effect
from sim.engine import Sim
from sim.network import Network
from sim.node import SimNode
from swim.broadcast import BroadcastQueue
from swim.codec import Alive
from swim.config import SwimConfig, push_pull_scale
from swim.events import (
    JoinRequested,
    MemberEvent,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberStatus,
    MemberUpdated,
)
from swim.keyring import Keyring
from swim.serf import Serf, SerfConfig

__all__ = ["MembershipLog", "NodeSpec", "SwimWorld", "View"]

GOSSIP_PORT = 7946


@dataclass(frozen=True)
class NodeSpec:
    name: str
    dc: str
    pool: str
    addr: tuple[str, int]


@dataclass(slots=True)
class View:
    """One observer's latest belief about one member."""

    status: MemberStatus
    since: float


@dataclass
class MembershipLog:
    """Every member event every observer emitted, plus the current views.

    ``events`` rows are ``(time, observer, member, status)``; ``views[observer][member]`` is
    the latest. Incarnations are sampled from the cores by the checkers; this log is what
    an operator would have seen in each agent's ``members`` output.
    """

    events: list[tuple[float, str, str, MemberStatus]] = field(default_factory=list)
    views: dict[str, dict[str, View]] = field(default_factory=dict)

    def record(self, t: float, observer: str, member: str, status: MemberStatus) -> None:
        self.events.append((t, observer, member, status))
        self.views.setdefault(observer, {})[member] = View(status, t)

    def forget(self, observer: str) -> None:
        """A crashed observer's memory is gone with it."""
        self.views.pop(observer, None)

    def first(
        self, member: str, status: MemberStatus, after: float = 0.0, by: set[str] | None = None
    ) -> dict[str, float]:
        """When each observer first reported ``member`` in ``status`` at or after ``after``."""
        out: dict[str, float] = {}
        for t, obs, m, st in self.events:
            if (
                m == member
                and st == status
                and t >= after
                and obs not in out
                and (by is None or obs in by)
            ):
                out[obs] = t
        return out


class SwimWorld:
    """Builds the nodes, starts them, joins them into their pools, and keeps the log."""

    def __init__(
        self,
        sim: Sim,
        net: Network,
        specs: list[NodeSpec],
        *,
        swim: SwimConfig,
        serf: SerfConfig | None = None,
        keyring_keys: list[bytes] | None = None,
        tags: Callable[[NodeSpec], dict[str, str]] | None = None,
    ) -> None:
        self.sim = sim
        self.net = net
        self.specs = {s.name: s for s in specs}
        # one SwimConfig for the whole world
        self.serf_config = dataclasses.replace(serf or SerfConfig(), swim=swim)
        self.keyring_keys = keyring_keys
        self.tags = tags or (lambda s: {"role": "node", "dc": s.dc})
        self.log = MembershipLog()
        self.on_member_event: list[Callable[[float, SimNode, MemberEvent], None]] = []
        self.on_effect: list[Callable[[float, SimNode, Effect], None]] = []
        """Observers of every other effect a core emits (user events, query answers...)."""
        self.started_at: dict[str, float] = {}
        """When each node first booted (its join-window moment)."""
        self.nodes: dict[str, SimNode] = {}
        self.pools: dict[str, list[str]] = {}
        for s in specs:
            node = SimNode(
                sim,
                net,
                name=s.name,
                addr=s.addr,
                dc=s.dc,
                factory=self._factory,
                observer=self._observe,
            )
            self.nodes[s.name] = node
            self.pools.setdefault(s.pool, []).append(s.name)

    # ------------------------------------------------------------------ cores

    def _factory(self, node: SimNode, now: float) -> Serf:
        spec = self.specs[node.name]
        seeds = self.sim.seeds
        keyring = None
        if self.keyring_keys:
            # the keyring file survives crashes: whatever a rotation left on "disk"
            keys = node.disk.get("keyring", self.keyring_keys)
            keyring = Keyring(keys)
        core = Serf(
            name=node.name,
            addr=spec.addr[0],
            port=spec.addr[1],
            config=self.serf_config,
            tags=self.tags(spec),
            rng=seeds.rng("node", node.name, node.boots),
            entropy=seeds.entropy("node", node.name, node.boots),
            keyring=keyring,
        )
        core.start(now)
        return core

    def _observe(self, node: SimNode, eff: Effect) -> None:
        if isinstance(eff, MemberEvent):
            status = _STATUS[type(eff)]
            self.log.record(self.sim.now, node.name, eff.member.name, status)
            for cb in self.on_member_event:
                cb(self.sim.now, node, eff)
        else:
            for cb2 in self.on_effect:
                cb2(self.sim.now, node, eff)

    # ------------------------------------------------------------------ lifecycle

    def start(self, join_window_s: float = 1.0, seeds_per_pool: int = 1) -> None:
        """Start every node at a random moment in the window; each joins its pool's first
        ``seeds_per_pool`` nodes (like ``-retry-join`` pointing at a few servers)."""
        rng = self.sim.seeds.rng("workload", "start")
        for names in self.pools.values():
            targets = [self.nodes[n].addr for n in names[:seeds_per_pool]]
            for i, name in enumerate(names):
                node = self.nodes[name]
                t = 0.0 if i == 0 else rng.uniform(0.0, join_window_s)
                self.sim.at(self.sim.now + t, self._boot, (node, targets))

    def start_converged(self, log_joins: bool = True) -> None:
        """Start every node now, already knowing every member of its pool alive, with
        nothing left to gossip: the state of a pool that has run quietly for longer than
        the retransmit horizon, without simulating how it got there (for N nodes the join
        storm queues N^2 re-broadcasts, minutes of wall time at 1,000 nodes).

        Each core learns the others through its own ``alive_node`` (the path a push/pull
        merge takes), from one shared :class:`Alive` per member, so the N^2 member views
        share their name, address and meta objects; what those merges would queue for
        gossip is dropped, as retransmission would long have retired it. Every random draw
        comes from the cores' own seeded generators (probe-list placement), so this is
        deterministic.
        With ``log_joins=False`` the N^2 join events are dropped instead of logged (memory
        at large N): :attr:`log` then only holds what happens afterwards.
        """
        now = self.sim.now
        stagger = self.sim.seeds.rng("workload", "converged")
        for names in self.pools.values():
            for name in names:
                node = self.nodes[name]
                if not node.up:
                    node.start()
                self.started_at.setdefault(name, now)
            adverts = []
            for name in names:
                core = self.nodes[name].core
                me = core.ml.nodes[name]
                adverts.append(Alive(me.incarnation, name, me.addr, me.port, me.meta, me.vsn))
            for name in names:
                node = self.nodes[name]
                core = node.core
                ml = core.ml
                # what these merges would queue has long been retransmitted and retired in
                # the pool we stand in for: let it go unqueued (N^2 queue insertions)
                queue, ml.broadcasts = ml.broadcasts, _DISCARD
                try:
                    for a in adverts:
                        if a.node != name:
                            ml.alive_node(a)
                finally:
                    ml.broadcasts = queue
                queue.reset()
                core.broadcasts.reset()
                # a long-running pool's push/pulls are spread over the interval scaled to
                # its size; a fresh core staggers its first one over the unscaled interval
                # (it knew only itself), which would make them all fall in one burst
                if ml.config.push_pull_interval_s > 0:
                    every = push_pull_scale(ml.config.push_pull_interval_s, len(names))
                    ml.timers.set("pushpull", now + stagger.random() * every, ml._push_pull_tick)
                if log_joins:
                    node._drain()
                else:
                    for eff in core.take_effects():
                        if not isinstance(eff, MemberJoined):
                            self._observe(node, eff)
                    node._drain()

    def _boot(self, arg: tuple[SimNode, list[tuple[str, int]]]) -> None:
        node, targets = arg
        if not node.up:
            node.start()
        self.started_at.setdefault(node.name, self.sim.now)
        others = tuple((None, a) for a in targets if a != node.addr)
        if others:
            node.deliver(JoinRequested(0, others))

    def restart(self, name: str, rejoin: bool = True) -> None:
        node = self.nodes[name]
        node.restart()
        self.log.forget(name)
        if rejoin:
            pool = self.specs[name].pool
            targets = [
                self.nodes[n].addr for n in self.pools[pool] if n != name and self.nodes[n].up
            ][:3]
            if targets:
                node.deliver(JoinRequested(0, tuple((None, a) for a in targets)))

    def crash(self, name: str) -> None:
        self.nodes[name].crash()
        self.log.forget(name)

    def power_off(self, name: str) -> None:
        self.nodes[name].power_off()
        self.log.forget(name)

    # ------------------------------------------------------------------ views

    def core(self, name: str) -> Serf | None:
        n = self.nodes[name]
        return n.core if n.up else None

    def live(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.up]

    def status_seen(self, observer: str, member: str) -> MemberStatus | None:
        core = self.core(observer)
        if core is None:
            return None
        m = core.members.get(member)
        return None if m is None else m.status

    def converged(self, expect_alive: set[str] | None = None) -> bool:
        """Every live node sees exactly the live members of its pool alive, and every
        dead one not alive."""
        for names in self.pools.values():
            alive = {n for n in names if self.nodes[n].up}
            if expect_alive is not None:
                alive &= expect_alive
            for obs in alive:
                members = self.nodes[obs].core.members
                for n in names:
                    m = members.get(n)
                    is_alive = m is not None and m.status == MemberStatus.ALIVE
                    if is_alive != (n in alive):
                        return False
        return True

    def incarnations(self) -> dict[tuple[str, str], int]:
        """(observer, member) -> incarnation in the observer's memberlist."""
        out: dict[tuple[str, str], int] = {}
        for name, node in self.nodes.items():
            if node.up:
                for m, n in node.core.ml.nodes.items():
                    out[(name, m)] = n.incarnation
        return out


class _DiscardQueue(BroadcastQueue):
    """A broadcast queue that drops what it is given (``start_converged``)."""

    def queue(
        self,
        msg: bytes,
        name: str | None = None,
        on_finished: Callable[[], None] | None = None,
    ) -> None:
        if on_finished is not None:
            on_finished()  # retired at once, as a replaced or pruned message is


_DISCARD = _DiscardQueue(1)


_STATUS: dict[type, MemberStatus] = {
    MemberJoined: MemberStatus.ALIVE,
    MemberUpdated: MemberStatus.ALIVE,
    MemberFailed: MemberStatus.FAILED,
    MemberLeft: MemberStatus.LEFT,
    MemberReaped: MemberStatus.NONE,
}


class TraceDigest:
    """A running SHA-256 over every delivered packet (time, endpoints, bytes) and every
    member event: two runs are identical exactly when their digests are."""

    def __init__(self, world: SwimWorld, out: Any = None) -> None:
        self.h = hashlib.sha256()
        self.out = out
        world.net.on_packet = self._packet
        world.on_member_event.append(self._event)

    def _packet(self, t: float, src: SimNode, dst: SimNode, data: bytes) -> None:
        self.h.update(struct.pack(">dI", t, zlib.crc32(data)))
        self.h.update(src.name.encode())
        self.h.update(dst.name.encode())
        if self.out is not None:
            self.out.write(f"{t:.6f} pkt {src.name} {dst.name} {len(data)} {data[:1].hex()}\n")

    def _event(self, t: float, node: SimNode, eff: MemberEvent) -> None:
        line = f"{t:.6f} {type(eff).__name__} {node.name} {eff.member.name}"
        self.h.update(line.encode())
        if self.out is not None:
            self.out.write(line + "\n")

    def hexdigest(self) -> str:
        return self.h.hexdigest()
