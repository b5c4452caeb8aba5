"""Raft as the simulator's subject: a datacenter's servers running real
:class:`federation.raft.RaftCore` cores, with the catalog's real state store as their state
machine, on simulated hosts whose messages are real encoded bytes (federation/wire.py).

What it checks, on every effect (issue 5's checkers):

* **election safety** — at most one leader per term;
* **state machine safety** — no two servers apply different commands at one index;
* **log matching** and **leader completeness** — on the persisted logs, by
  :meth:`RaftWorld.check_logs` (the functions :func:`log_matching_violations` and
  :func:`leader_completeness_violations` are shared with tests/test_raft.py);
* **no acknowledged write lost** — every write a leader acknowledged (applied with its
  request ID) is in every live server's store once the cluster has healed
  (:meth:`RaftWorld.check_acknowledged`).

What a server persisted (term, vote, log, snapshot) lives in a :class:`MemoryDisk` in
``node.disk`` and survives crashes: a restarted server restores its snapshot into an empty
store and replays the log after it as it learns the commit index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from catalog import commands as C
from catalog.store import StateStore
from federation.raft import (
    Applied,
    CompactLog,
    Entry,
    LeaderElected,
    MessageReceived,
    Persisted,
    PersistEntries,
    PersistSnapshot,
    PersistState,
    ProposalDropped,
    Proposed,
    RaftConfig,
    RaftCore,
    Role,
    SendMessage,
    Snapshot,
)
from federation.wire import WireError, decode_message, encode_message
from gossamer.core import Effect, Event
from sim.engine import Sim
from sim.network import Group, Network, Partition
from sim.node import SimNode
from swim.events import Address, PacketReceived, SendPacket

__all__ = [
    "MemoryDisk",
    "RaftHost",
    "RaftWorld",
    "StoreMachine",
    "leader_completeness_violations",
    "log_matching_violations",
]

RAFT_PORT = 8300


def log_matching_violations(logs: Mapping[str, Sequence[Entry]]) -> list[str]:
    """The paper's Log Matching Property (§5.3) over every pair of ``logs`` (server ->
    its persisted entries, contiguous, possibly starting past index 1 once compacted): if
    two logs hold an entry with the same index and term, they are identical up to it
    (compared where both still hold entries)."""
    out: list[str] = []
    names = list(logs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            la, lb = logs[a], logs[b]
            if not la or not lb:
                continue
            lo = max(la[0].index, lb[0].index)
            hi = min(la[-1].index, lb[-1].index)
            oa, ob = la[0].index, lb[0].index
            for k in range(hi, lo - 1, -1):
                if la[k - oa].term == lb[k - ob].term:
                    if la[lo - oa : k - oa + 1] != lb[lo - ob : k - ob + 1]:
                        out.append(f"log matching: {a} and {b} differ at or before {k}")
                    break
    return out


def leader_completeness_violations(
    leader: str, log: Sequence[Entry], committed: Mapping[int, int], snapshot_index: int = 0
) -> list[str]:
    """Leader Completeness (§5.4): every committed entry (``committed``: index -> term of
    what some server applied there) is in the leader's ``log``, or covered by its snapshot
    (index <= ``snapshot_index``)."""
    if log and log[0].index > snapshot_index + 1:
        return [f"leader completeness: {leader}'s log starts past its snapshot"]
    first = log[0].index if log else snapshot_index + 1
    for index, term in sorted(committed.items()):
        if index <= snapshot_index and index < first:
            continue
        k = index - first
        if not 0 <= k < len(log) or log[k].term != term:
            return [f"leader completeness: {leader} lacks committed entry {index}"]
    return []


@dataclass
class MemoryDisk:
    """A Raft server's durable state in memory, for tests and the simulator: it carries
    out the same persist effects as federation/disk.py and asserts its invariants (the log
    contiguous; from index 1 without a snapshot, else from at most its index + 1)."""

    term: int = 0
    voted_for: str | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None

    def persist(self, eff: Effect) -> bool:
        """Carry out ``eff`` if it is a persist effect; returns whether it was one."""
        if isinstance(eff, PersistState):
            self.term, self.voted_for = eff.term, eff.voted_for
        elif isinstance(eff, PersistEntries):
            first = self.entries[0].index if self.entries else eff.from_index
            del self.entries[max(0, eff.from_index - first) :]
            assert not self.entries or self.entries[-1].index + 1 == eff.from_index
            self.entries.extend(eff.entries)
        elif isinstance(eff, PersistSnapshot):
            self.snapshot = Snapshot(eff.index, eff.term, eff.configuration, eff.data)
        elif isinstance(eff, CompactLog):
            self.entries = [e for e in self.entries if e.index > eff.through_index]
        else:
            return False
        indexes = [e.index for e in self.entries]
        assert indexes == list(range(indexes[0], indexes[0] + len(indexes))) if indexes else True
        if indexes:
            limit = self.snapshot.index + 1 if self.snapshot is not None else 1
            assert indexes[0] <= limit, f"log starts at {indexes[0]}, past {limit}"
        return True

    def persisted(self) -> Persisted:
        return Persisted(self.term, self.voted_for, tuple(self.entries), self.snapshot)


class StoreMachine:
    """The catalog's store as Raft's state machine, reporting every command it applies
    to ``seen`` (index -> command, shared by a world's servers) so state machine safety
    is checked on each apply; a disagreement is appended to ``violations``."""

    def __init__(self, store: StateStore, seen: dict[int, Any], violations: list[str]) -> None:
        self.store = store
        self.seen = seen
        self.violations = violations

    def apply(self, index: int, command: Any) -> Any:
        first = self.seen.setdefault(index, command)
        if first != command:
            self.violations.append(
                f"state machine safety: {command!r} applied at {index}, elsewhere {first!r}"
            )
        return self.store.apply(index, command)

    def snapshot(self) -> bytes:
        out: bytes = msgpack.packb(self.store.snapshot(), use_bin_type=True)
        return out

    def restore(self, data: bytes) -> None:
        self.store.restore(msgpack.unpackb(data, raw=False, strict_map_key=False))


class RaftHost:
    """The driver glue a SimNode needs: a RaftCore behind the packet interface. Persist
    effects go to ``node.disk`` at once (before the sends after them, as the core
    requires); sends become encoded packets; the rest is passed on for observers."""

    def __init__(
        self, core: RaftCore, node: SimNode, addrs: dict[str, Address], counts: dict[str, int]
    ) -> None:
        self.core = core
        self.node = node
        self.addrs = addrs
        self.counts = counts
        """the world's tallies of snapshots taken and installed"""
        self._installed = 0
        self.dropped = 0

    def handle(self, now: float, event: Event) -> None:
        if isinstance(event, PacketReceived):
            try:
                message = decode_message(bytes(event.data))
            except WireError:
                self.dropped += 1
                return
            self.core.handle(now, MessageReceived(message))
        else:
            self.core.handle(now, event)

    def next_deadline(self) -> float | None:
        return self.core.next_deadline()

    def take_effects(self) -> list[Effect]:
        out: list[Effect] = []
        disk: MemoryDisk = self.node.disk.setdefault("raft", MemoryDisk())
        installed = self.core.stats["snapshots_installed"]
        for eff in self.core.take_effects():
            if isinstance(eff, PersistSnapshot):
                self.counts["snapshots"] += 1
            if disk.persist(eff):
                continue
            if isinstance(eff, SendMessage):
                out.append(SendPacket(self.addrs[eff.message.dst], encode_message(eff.message)))
            else:
                out.append(eff)
        self.counts["installed"] += installed - self._installed
        self._installed = installed
        return out


class RaftWorld:
    def __init__(
        self, sim: Sim, net: Network, names: Iterable[str], config: RaftConfig | None = None
    ) -> None:
        self.sim = sim
        self.net = net
        self.config = config or RaftConfig()
        self.names = list(names)
        self.addrs = {n: (f"10.0.0.{i + 1}", RAFT_PORT) for i, n in enumerate(self.names)}
        self.nodes: dict[str, SimNode] = {}
        self.stores: dict[str, StateStore] = {}
        self.leaders: dict[int, str] = {}
        self.committed: dict[int, int] = {}
        """index -> term of every entry some server applied"""
        self.commands: dict[int, Any] = {}
        """index -> the command some server applied there"""
        self.acknowledged: dict[int, tuple[str, int]] = {}
        """request ID -> (key, log index) of every write a leader acknowledged"""
        self._pending: dict[int, str] = {}
        self.dropped: list[int] = []
        self.next_request = 1
        self.violations: list[str] = []
        self.counts = {"snapshots": 0, "installed": 0}
        for n in self.names:
            self.nodes[n] = SimNode(
                sim, net, name=n, addr=self.addrs[n], dc="dc1", factory=self._factory,
                observer=self._observe,
            )  # fmt: skip

    # ------------------------------------------------------------------ servers

    def _factory(self, node: SimNode, now: float) -> RaftHost:
        store = StateStore()
        self.stores[node.name] = store
        persisted = node.disk.setdefault("raft", MemoryDisk()).persisted()
        core = RaftCore(
            node.name,
            self.names,
            StoreMachine(store, self.commands, self.violations),
            self.sim.seeds.rng("raft", node.name, node.boots),
            self.config,
            persisted,
            now=now,
        )
        return RaftHost(core, node, self.addrs, self.counts)

    def start(self) -> None:
        for node in self.nodes.values():
            node.start()

    def core(self, name: str) -> RaftCore | None:
        node = self.nodes[name]
        return node.core.core if node.up else None

    def leader(self) -> str | None:
        best: tuple[int, str] | None = None
        for n in self.names:
            c = self.core(n)
            if c is not None and c.role is Role.LEADER and (best is None or c.term > best[0]):
                best = (c.term, n)
        return best[1] if best else None

    def isolate(self, names: Iterable[str]) -> int:
        """Cut ``names`` off from everyone else; returns the partition's token."""
        group = Group(addrs=frozenset(self.addrs[n] for n in names))
        return self.net.partition(Partition(group, Group(addrs=group.addrs, negate=True)))

    # ------------------------------------------------------------------ workload

    def write(self, key: str, value: bytes) -> int | None:
        """Propose a KV set to whoever leads now; returns the request ID, or None when
        there is no leader to ask (a client would retry)."""
        lead = self.leader()
        if lead is None:
            return None
        rid = self.next_request
        self.next_request += 1
        self._pending[rid] = key
        self.nodes[lead].deliver(Proposed(rid, C.kv(self.sim.now, "set", key, value)))
        return rid

    # ------------------------------------------------------------------ checkers

    def _observe(self, node: SimNode, eff: Effect) -> None:
        if isinstance(eff, LeaderElected):
            prev = self.leaders.setdefault(eff.term, eff.leader)
            if prev != eff.leader:
                self.violations.append(f"two leaders in term {eff.term}: {prev}, {eff.leader}")
        elif isinstance(eff, Applied):
            seen = self.committed.setdefault(eff.index, eff.term)
            if seen != eff.term:
                self.violations.append(
                    f"state machine safety: {node.name} applied term {eff.term} at "
                    f"{eff.index}, another server term {seen}"
                )
            if eff.request_id is not None and eff.error is None:
                key = self._pending.pop(eff.request_id, None)
                if key is not None:
                    self.acknowledged[eff.request_id] = (key, eff.index)
        elif isinstance(eff, ProposalDropped):
            self._pending.pop(eff.request_id, None)
            self.dropped.append(eff.request_id)

    def check_logs(self) -> None:
        """Log matching (paper §5.3) and leader completeness (§5.4) on the disks."""
        disks = {n: self.disk(n) for n in self.names}
        self.violations.extend(log_matching_violations({n: d.entries for n, d in disks.items()}))
        lead = self.leader()
        if lead is not None:
            d = disks[lead]
            snap = d.snapshot.index if d.snapshot is not None else 0
            self.violations.extend(
                leader_completeness_violations(lead, d.entries, self.committed, snap)
            )

    def disk(self, name: str) -> MemoryDisk:
        disk: MemoryDisk = self.nodes[name].disk.setdefault("raft", MemoryDisk())
        return disk

    def check_acknowledged(self) -> None:
        """Every acknowledged write is on every live server (after healing and catching
        up): its key was last written at or after the write's log index."""
        last: dict[str, int] = {}
        for key, index in self.acknowledged.values():
            last[key] = max(last.get(key, 0), index)
        for n in self.names:
            store = self.stores.get(n)
            if store is None or not self.nodes[n].up:
                continue
            for key, index in sorted(last.items()):
                ent = store.kv_get(key).value
                if ent is None or ent["ModifyIndex"] < index:
                    self.violations.append(
                        f"acknowledged write to {key} (index {index}) missing on {n}"
                    )
                    break
