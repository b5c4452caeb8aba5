"""Raft as the simulator's subject: a datacenter's servers running real
:class:`federation.raft.RaftCore` cores, with the catalog's real state store as their state
machine, on simulated hosts whose messages are real encoded bytes (federation/wire.py),
with simulated KV clients whose history is checked for linearizability, and swarm runs
in which the seed picks the cluster, the faults and the workload (issue 5).

What it checks (issue 5's checkers):

* **election safety** — at most one leader per term, on every effect;
* **state machine safety** — no two servers apply different commands at one index, on
  every apply;
* **log matching** and **leader completeness** — on the persisted logs, by
  :meth:`RaftWorld.check_logs` (the functions :func:`log_matching_violations` and
  :func:`leader_completeness_violations` are shared with tests/test_raft.py);
* **no acknowledged write lost** — every write a leader acknowledged (applied with its
  request ID) is on every server of the configuration once the cluster has healed
  (:meth:`RaftWorld.check_acknowledged`), and those servers hold the same data
  (:meth:`RaftWorld.check_converged`);
* **linearizability** of the KV clients' history (:mod:`sim.linearizability`, rules K1-K6
  of :class:`RaftWorld`): required of writes with consistent reads, reported for writes
  with default-mode reads, which a deposed leader may serve stale (Consul's documented
  trade-off); :meth:`RaftWorld.stale_reads` names such reads directly.

Swarm runs (:class:`SwarmPlan`, :class:`Chaos`, :func:`run_swarm`; the style of
FoundationDB's simulation and TigerBeetle's VOPR): one seed gives the whole plan, a
safety phase of faults under client load, then healing and a liveness phase in which
clients must get answers again, then the checks. ``python -m sim.raftworld 1-200 -v``
runs seeds from the command line.

What a server persisted (term, vote, log, snapshot) lives in a :class:`MemoryDisk` in
``node.disk`` and survives crashes: a restarted server restores its snapshot into an empty
store and replays the log after it as it learns the commit index.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack

from catalog import commands as C
from catalog.store import StateStore
from federation.raft import (
    AddNonVoter,
    Applied,
    CompactLog,
    ConfigurationChange,
    ConfigurationChangeRequested,
    Entry,
    LeaderElected,
    LeadershipTransferRequested,
    MessageReceived,
    Persisted,
    PersistEntries,
    PersistSnapshot,
    PersistState,
    PromoteVoter,
    ProposalDropped,
    Proposed,
    RaftConfig,
    RaftCore,
    ReadIndexReady,
    ReadIndexRequested,
    RemoveServer,
    RequestRefused,
    Role,
    SendMessage,
    Snapshot,
)
from federation.wire import WireError, decode_message, encode_message
from gossamer.core import Effect, Event
from sim.engine import Seeds, Sim
from sim.linearizability import History, Op, Result, check
from sim.network import Group, Latency, LinkModel, Network, Partition
from sim.node import SimNode
from swim.events import Address, PacketReceived, SendPacket

__all__ = [
    "FAULTS",
    "Chaos",
    "KVClient",
    "KVReadRequested",
    "MemoryDisk",
    "NotLeader",
    "RaftHost",
    "RaftWorld",
    "ReadServed",
    "StoreMachine",
    "SwarmPlan",
    "SwarmRun",
    "Workload",
    "leader_completeness_violations",
    "leader_ready",
    "log_matching_violations",
    "run_swarm",
]

RAFT_PORT = 8300
INF = float("inf")


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


# ------------------------------------------------------------------ client requests


@dataclass(frozen=True, slots=True)
class KVReadRequested(Event):
    """A client's KV get, handled by the server's driver around the core: ``consistent``
    confirms leadership by ReadIndex first (rule K3), else Consul's default mode (K4)."""

    request_id: int
    key: str
    consistent: bool


@dataclass(frozen=True, slots=True)
class NotLeader(Effect):
    """The server took no part in request ``request_id``: it does not lead (for a default
    read: is not a ready leader), so nothing was appended. ``leader`` is who it believes
    leads. Consul's RPC layer forwards the request then; a simulated client retries."""

    request_id: int
    leader: str | None


@dataclass(frozen=True, slots=True)
class ReadServed(Effect):
    """A get answered from the server's store: the KV entry (``Value``, ``ModifyIndex``,
    ...), or None when the key is absent."""

    request_id: int
    key: str
    entry: dict[str, Any] | None
    server: str
    term: int
    """The server that read its store, and its term then."""


def leader_ready(core: RaftCore) -> bool:
    """federation/aio.py's ``leader_ready``: this server leads and has applied everything
    up to an entry of its own term, the barrier Consul's leader passes before it serves
    default-mode reads. It does not confirm that the server still leads."""
    return (
        core.role is Role.LEADER
        and core.commit_index > 0
        and core.term_at(core.commit_index) == core.term
        and core.last_applied >= core.commit_index
    )


class RaftHost:
    """The driver glue a SimNode needs: a RaftCore behind the packet interface. Persist
    effects go to ``node.disk`` at once (before the sends after them, as the core
    requires); sends become encoded packets; the rest is passed on for observers.

    It also plays the part of the agent's RPC layer for clients (rules K2-K4): a write or
    consistent read that reaches a server that does not lead is answered
    :class:`NotLeader` without touching the core, as Consul forwards it; reads are served
    from ``store``."""

    def __init__(
        self,
        core: RaftCore,
        node: SimNode,
        addrs: dict[str, Address],
        counts: dict[str, int],
        store: StateStore | None = None,
    ) -> None:
        self.core = core
        self.node = node
        self.addrs = addrs
        self.counts = counts
        """the world's tallies of snapshots taken and installed"""
        self.store = store
        self.now = core.now
        """The time of the last event handled (the core sees only some of them)."""
        self._installed = 0
        self.dropped = 0
        self._extra: list[Effect] = []
        """Answers the driver produced itself, after the core's effects."""
        self._reads: dict[int, str] = {}
        """Consistent reads waiting for their read index: request ID -> key."""
        self._ready: list[tuple[int, str, int]] = []
        """(request ID, key, read index) of consistent reads waiting to be applied."""

    def handle(self, now: float, event: Event) -> None:
        core = self.core
        self.now = now
        if isinstance(event, PacketReceived):
            try:
                message = decode_message(bytes(event.data))
            except WireError:
                self.dropped += 1
                return
            core.handle(now, MessageReceived(message))
        elif isinstance(event, KVReadRequested):
            if event.consistent and core.role is Role.LEADER:
                self._reads[event.request_id] = event.key
                core.handle(now, ReadIndexRequested(event.request_id))
            elif not event.consistent and leader_ready(core):
                self._extra.append(self._serve(event.request_id, event.key))
            else:
                self._extra.append(NotLeader(event.request_id, core.leader))
        elif isinstance(event, Proposed) and core.role is not Role.LEADER:
            self._extra.append(NotLeader(event.request_id, core.leader))
        else:
            core.handle(now, event)

    def _serve(self, request_id: int, key: str) -> ReadServed:
        assert self.store is not None, "a host without a store serves no reads"
        entry = self.store.kv_get(key).value
        return ReadServed(request_id, key, entry, self.core.id, self.core.term)

    def next_deadline(self) -> float | None:
        # A stalled process misses its timers, so its core's deadline may lie in the past
        # when it resumes; SimNode asserts it never schedules in the past, and a driver
        # fires an overdue timer now.
        d = self.core.next_deadline()
        return d if d is None or d >= self.now else self.now

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
            elif isinstance(eff, ReadIndexReady) and eff.request_id in self._reads:
                self._ready.append((eff.request_id, self._reads.pop(eff.request_id), eff.index))
            else:
                if isinstance(eff, ProposalDropped):
                    self._reads.pop(eff.request_id, None)
                out.append(eff)
        if self._ready:
            # rule R: served once the state machine has caught up with the read index
            applied = self.core.last_applied
            out.extend(self._serve(rid, key) for rid, key, index in self._ready if index <= applied)
            self._ready = [r for r in self._ready if r[2] > applied]
        if self._extra:
            out.extend(self._extra)
            self._extra = []
        self.counts["installed"] += installed - self._installed
        self._installed = installed
        return out


# ------------------------------------------------------------------ KV clients


@dataclass(frozen=True)
class Workload:
    """What the simulated KV clients do (rules K1-K6)."""

    clients: int = 3
    readers: int = 0
    """Of the clients, how many only get (the first ones). Sticking to the server that
    last answered them, they are the ones a deposed leader can mislead (rule K4)."""
    keys: int = 4
    """Keys ``k0`` .. ``k{keys-1}``: few, so that ops on one key overlap."""
    weights: tuple[float, float, float, float] = (0.45, 0.25, 0.2, 0.1)
    """Relative frequency of get, put, cas, delete."""
    consistent: float = 0.5
    """Fraction of gets in consistent mode; the others use default mode."""
    think_s: float = 0.05
    """Mean pause between a client's ops (uniform in [0, 2 × think_s])."""
    timeout_s: float = 2.0
    """A client gives up on an op this long after it was called (rule K5)."""
    retry_s: float = 0.05
    """Pause before a request nothing took part in is sent again (rule K2)."""
    refresh: float = 0.0
    """Probability that a client other than a reader asks the simulator who leads before
    an op, rather than trusting the server that last answered (rule K2)."""
    latency_s: float = 0.002
    """Mean one-way delay between a client and a server (uniform in [0, 2 × latency_s])."""
    loss: float = 0.0
    """Probability that a request or an answer between a client and a server is lost."""

    def validate(self) -> None:
        if self.clients < 1 or self.keys < 1 or not 0 <= self.readers <= self.clients:
            raise ValueError("a workload needs clients and keys (readers among the clients)")
        if len(self.weights) != 4 or min(self.weights) < 0 or sum(self.weights) <= 0:
            raise ValueError("weights: four non-negative numbers, not all zero")
        probabilities = (self.consistent, self.refresh, self.loss)
        if not all(0.0 <= p <= 1.0 for p in probabilities) or self.loss == 1.0:
            raise ValueError("consistent, refresh and loss are probabilities (loss below 1)")
        if min(self.think_s, self.latency_s) < 0 or min(self.timeout_s, self.retry_s) <= 0:
            raise ValueError("durations must be positive (think and latency may be 0)")


_OP_KINDS = ("get", "put", "cas", "delete")


@dataclass
class _Call:
    """A client's op in flight."""

    op_id: int
    kind: str
    key: str
    command: dict[str, Any] | None
    """What a write proposes (the same in every attempt); None for a get."""
    consistent: bool
    rid: int = 0
    """The request ID of the current attempt; answers to other attempts are ignored."""


@dataclass
class KVClient:
    """One simulated client: one op at a time, to the server it believes leads."""

    name: str
    rng: random.Random
    reader: bool = False
    """Only gets (Workload.readers)."""
    target: str | None = None
    call: _Call | None = None
    seen: dict[str, int] = field(default_factory=dict)
    """key -> the ModifyIndex this client last read (0: absent), what its cas expects."""
    issued: int = 0


CLIENT_STATS = (
    "ops",
    "writes_ok",
    "cas_refused",
    "reads_ok",
    "unanswered",
    "timeouts",
    "dropped",
    "redirects",
)


# ------------------------------------------------------------------ the world


class RaftWorld:
    """Servers (rules above) and, once :meth:`add_clients` is called, KV clients:

    K1. A client does one op at a time: get, put (of a value never written before), cas
        (expecting the ModifyIndex it last read of the key, 0 if it read it absent or
        never read it) or delete, on a small key set, and records it in :attr:`history`
        at the virtual times of its call and of the answer's arrival.
    K2. It sends to the server it believes leads: the last one a refusal named, else the
        simulator's view (:meth:`leader`), else any. A server that does not lead answers
        :class:`NotLeader` (or refuses the connection when down): nothing was appended,
        so the same op is sent again, after ``retry_s``; so is a
        :class:`~federation.raft.RequestRefused` (a leadership transfer in progress).
    K3. Consistent get: ReadIndex on the leader, then the store once applied (rule R).
    K4. Default get (Consul's default mode): the leader reads its own store once
        :func:`leader_ready`, without confirming that it still leads. A leader cut off
        from the others serves these until check-quorum deposes it, so they are checked
        apart (:meth:`histories`) and are not expected to be linearizable.
    K5. An op with no answer ``timeout_s`` after its call is given up: a write is
        recorded unanswered (it may still commit), a get as no read; the client asks the
        simulator for the leader again. An answer arriving later is ignored.
    K6. A :class:`~federation.raft.ProposalDropped` (leadership lost after the entry was
        appended: it may still commit under the next leader) leaves a write unanswered,
        and the client moves on to a new op; a dropped read is sent again, as it changed
        nothing.

    Clients are beside every server: server partitions do not cut them off, which is the
    worst case for reads from a deposed leader. Requests and answers between clients and
    servers take ``latency_s`` and may be lost (``loss``).
    """

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
        self._deleted: dict[str, None] = {}
        """Keys some proposal deletes: their ModifyIndex proves nothing about old writes."""
        self.dropped: list[int] = []
        self.next_request = 1
        self.violations: list[str] = []
        self.counts = {"snapshots": 0, "installed": 0}
        self.history = History()
        self.read_modes: dict[int, str] = {}
        """History op ID -> ``"consistent"`` or ``"default"``, for every get."""
        self.op_index: dict[int, int] = {}
        """History op ID -> the log index of an acknowledged write, or the ModifyIndex a
        get read (absent: none)."""
        self.op_server: dict[int, tuple[str, int]] = {}
        """History op ID of a get served -> (server, its term)."""
        self.clients: list[KVClient] = []
        self.workload = Workload()
        self.client_stats = dict.fromkeys(CLIENT_STATS, 0)
        self.last_success: dict[str, float] = {}
        """``"write"``, ``"consistent"``, ``"default"`` -> when a client last got such an
        op answered (acknowledged or served), for liveness checks."""
        self._requests: dict[int, KVClient] = {}
        self._clients_until = 0.0
        self._client_net = sim.seeds.rng("client-net")
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
        return RaftHost(core, node, self.addrs, self.counts, store)

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

    def members(self) -> list[str]:
        """The servers of the leader's committed configuration (every server when there
        is no leader): those that must hold every acknowledged write."""
        lead = self.leader()
        core = self.core(lead) if lead is not None else None
        if core is None:
            return list(self.names)
        conf = core.committed_configuration
        return [n for n in self.names if conf.get(n) is not None]

    def isolate(self, names: Iterable[str]) -> int:
        """Cut ``names`` off from everyone else; returns the partition's token."""
        group = Group(addrs=frozenset(self.addrs[n] for n in names))
        return self.net.partition(Partition(group, Group(addrs=group.addrs, negate=True)))

    def cut_one_way(self, names: Iterable[str], outbound: bool) -> int:
        """Drop what ``names`` send to the others (``outbound``) or what they receive from
        them; returns the partition's token."""
        group = Group(addrs=frozenset(self.addrs[n] for n in names))
        rest = Group(addrs=group.addrs, negate=True)
        a, b = (group, rest) if outbound else (rest, group)
        return self.net.partition(Partition(a, b, one_way=True))

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

    def add_clients(self, workload: Workload, until: float) -> None:
        """Start ``workload.clients`` clients (rules K1-K6); they begin no op at or after
        ``until`` (virtual time), and have finished ``timeout_s`` after it."""
        workload.validate()
        self.workload = workload
        self._clients_until = until
        for i in range(workload.clients):
            client = KVClient(
                f"c{len(self.clients) + 1}", self.sim.seeds.rng("client", i), i < workload.readers
            )
            self.clients.append(client)
            self.sim.after(client.rng.uniform(0.0, 2 * workload.think_s), self._begin, client)

    def stop_clients(self) -> None:
        """No client begins another op; those in flight finish or time out."""
        self._clients_until = min(self._clients_until, self.sim.now)

    def _begin(self, client: KVClient) -> None:
        if self.sim.now >= self._clients_until or client.call is not None:
            return
        w, rng, now = self.workload, client.rng, self.sim.now
        kind = "get" if client.reader else rng.choices(_OP_KINDS, w.weights)[0]
        if not client.reader and w.refresh and rng.random() < w.refresh:
            client.target = None
        key = f"k{rng.randrange(w.keys)}"
        client.issued += 1
        value = f"{client.name}.{client.issued}".encode()  # unique: module linearizability
        command: dict[str, Any] | None = None
        consistent = False
        if kind == "get":
            consistent = rng.random() < w.consistent
            op_id = self.history.invoke(client.name, "get", key, now=now)
            self.read_modes[op_id] = "consistent" if consistent else "default"
        elif kind == "put":
            op_id = self.history.invoke(client.name, "put", key, value, now=now)
            command = C.kv(now, "set", key, value)
        elif kind == "cas":
            expect = client.seen.get(key, 0)
            op_id = self.history.invoke(client.name, "cas", key, value, expect, now=now)
            command = C.kv(now, "cas", key, value, index=expect)
        else:
            op_id = self.history.invoke(client.name, "delete", key, now=now)
            command = C.kv(now, "delete", key)
            self._deleted[key] = None
        self.client_stats["ops"] += 1
        client.call = _Call(op_id, kind, key, command, consistent)
        self.sim.after(w.timeout_s, self._give_up, (client, op_id))
        self._send(client)

    def _send(self, client: KVClient) -> None:
        call = client.call
        assert call is not None
        if client.target is None:
            client.target = self.leader() or client.rng.choice(self.names)
        rid = self.next_request
        self.next_request += 1
        call.rid = rid
        self._requests[rid] = client
        event: Event
        if call.command is None:
            event = KVReadRequested(rid, call.key, call.consistent)
        else:
            self._pending[rid] = call.key
            event = Proposed(rid, call.command)
        self._carry(self._arrive, (client.target, rid, event))

    def _carry(self, fn: Any, arg: Any) -> None:
        """Between a client and a server: delayed, maybe lost."""
        w, rng = self.workload, self._client_net
        if w.loss and rng.random() < w.loss:
            return
        self.sim.after(rng.uniform(0.0, 2 * w.latency_s), fn, arg)

    def _arrive(self, arg: tuple[str, int, Event]) -> None:
        target, rid, event = arg
        node = self.nodes[target]
        if node.up:
            node.deliver(event)
        else:  # connection refused: the request reached no process
            self._answer(rid, NotLeader(rid, None))

    def _answer(self, rid: int, reply: Effect) -> None:
        client = self._requests.pop(rid, None)
        if client is not None:
            self._carry(self._receive, (client, rid, reply))

    def _receive(self, arg: tuple[KVClient, int, Effect]) -> None:
        client, rid, reply = arg
        call = client.call
        if call is None or call.rid != rid:
            return  # the answer to an attempt given up on (rule K5)
        now, stats = self.sim.now, self.client_stats
        if isinstance(reply, Applied):
            if reply.error is not None:
                self.violations.append(f"{client.name}'s {call.kind} refused: {reply.error}")
                self.history.complete(call.op_id, now)  # outcome unknown to the checker
            else:
                ok = reply.result is True if call.kind == "cas" else True
                self.history.complete(call.op_id, now, ok=ok)
                if ok:
                    self.op_index[call.op_id] = reply.index
                stats["writes_ok" if ok else "cas_refused"] += 1
                self.last_success["write"] = now
            self._finish(client)
        elif isinstance(reply, ReadServed):
            entry = reply.entry
            value = entry["Value"] if entry is not None else None
            index = entry["ModifyIndex"] if entry is not None else None
            self.history.complete(call.op_id, now, result=value, index=index)
            self.op_server[call.op_id] = (reply.server, reply.term)
            if index is not None:
                self.op_index[call.op_id] = index
            client.seen[call.key] = index or 0
            stats["reads_ok"] += 1
            self.last_success["consistent" if call.consistent else "default"] = now
            self._finish(client)
        elif isinstance(reply, NotLeader | RequestRefused) or (
            isinstance(reply, ProposalDropped) and call.command is None
        ):
            # rule K2 (K6 for reads): nothing happened, the same op goes again
            stats["redirects"] += 1
            if not isinstance(reply, RequestRefused):
                client.target = reply.leader
            self.sim.after(client.rng.uniform(0.5, 1.5) * self.workload.retry_s, self._retry,
                           (client, call.op_id))  # fmt: skip
        elif isinstance(reply, ProposalDropped):
            # rule K6: it may still commit under the next leader
            self.history.complete(call.op_id, now)
            stats["dropped"] += 1
            stats["unanswered"] += 1
            client.target = reply.leader
            self._finish(client)
        else:
            raise AssertionError(f"unexpected answer {reply!r}")

    def _retry(self, arg: tuple[KVClient, int]) -> None:
        client, op_id = arg
        if client.call is not None and client.call.op_id == op_id:
            self._send(client)

    def _give_up(self, arg: tuple[KVClient, int]) -> None:
        client, op_id = arg
        call = client.call
        if call is None or call.op_id != op_id:
            return
        self.client_stats["timeouts"] += 1
        if call.command is None:
            self.history.complete(op_id, self.sim.now, ok=False)
        else:
            self.history.complete(op_id, self.sim.now)
            self.client_stats["unanswered"] += 1
        client.target = None
        self._finish(client)

    def _finish(self, client: KVClient) -> None:
        client.call = None
        if self.sim.now < self._clients_until:
            self.sim.after(client.rng.uniform(0.0, 2 * self.workload.think_s), self._begin, client)

    def histories(self) -> tuple[list[Op], list[Op]]:
        """The recorded history split for checking: (every write and the consistent gets,
        every write and the default gets)."""
        ops = self.history.ops()
        modes = self.read_modes
        consistent = [op for i, op in enumerate(ops) if modes.get(i) != "default"]
        default = [op for i, op in enumerate(ops) if modes.get(i) != "consistent"]
        return consistent, default

    def stale_reads(self, mode: str) -> list[str]:
        """Gets of ``mode`` that returned a value older than a write acknowledged before
        they were called: the value read was written at log index m, and a write of the
        same key acknowledged earlier sits at an index above m (Raft's log order is the
        writes' linearization order, so no linearization can place the get there). A
        direct witness, independent of :func:`check` and more telling than its
        explanation. Gets that read the key absent are not judged here."""
        ops = self.history.ops()
        writes: dict[str, list[tuple[float, int, int]]] = {}
        for i, op in enumerate(ops):
            if op.kind != "get" and op.ok and op.ret is not None and i in self.op_index:
                writes.setdefault(op.key, []).append((op.ret, self.op_index[i], i))
        latest: dict[str, tuple[list[float], list[tuple[int, int, float]]]] = {}
        for key, w in writes.items():
            w.sort()
            best: list[tuple[int, int, float]] = []
            for ret, index, j in w:  # the highest index acknowledged by each return
                best.append(max(best[-1], (index, j, ret)) if best else (index, j, ret))
            latest[key] = ([ret for ret, _, _ in w], best)
        out: list[str] = []
        for i, op in enumerate(ops):
            if self.read_modes.get(i) != mode or op.ret is None or i not in self.op_index:
                continue
            rets, best = latest.get(op.key, ([], []))
            k = bisect.bisect_left(rets, op.call)  # acknowledged strictly before the call
            read_at = self.op_index[i]
            if k and best[k - 1][0] > read_at:
                index, j, ret = best[k - 1]
                server, term = self.op_server[i]
                w_op = ops[j]
                out.append(
                    f"{op.client} read {op.key}={op.result!r} (ModifyIndex {read_at}) from "
                    f"{server} (term {term}) in [{op.call:.4f}, {op.ret:.4f}], but "
                    f"{w_op.client}'s {w_op.kind} of {op.key} at index {index} was "
                    f"acknowledged at {ret:.4f}"
                )
        return out

    def check_linearizability(self, max_states: int = 2_000_000) -> tuple[Result, Result]:
        """Wing-Gong-Lowe over :meth:`histories`: (consistent-mode verdict, default-mode
        verdict)."""
        consistent, default = self.histories()
        return check(consistent, max_states), check(default, max_states)

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
            if eff.request_id is not None:
                if eff.error is None and eff.result is not False:  # a cas that failed wrote nothing
                    key = self._pending.pop(eff.request_id, None)
                    if key is not None:
                        self.acknowledged[eff.request_id] = (key, eff.index)
                self._answer(eff.request_id, eff)
        elif isinstance(eff, ProposalDropped | NotLeader):
            self._pending.pop(eff.request_id, None)
            self.dropped.append(eff.request_id)
            self._answer(eff.request_id, eff)
        elif isinstance(eff, ReadServed | RequestRefused):
            self._answer(eff.request_id, eff)

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
        up): the server applied its log index (state machine safety makes that the same
        command), and a key no proposal deletes was last written at or after it."""
        last: dict[str, int] = {}
        for key, index in self.acknowledged.values():
            last[key] = max(last.get(key, 0), index)
        top = max(last.values(), default=0)
        for n in self.members():
            store = self.stores.get(n)
            core = self.core(n)
            if store is None or core is None:
                continue
            if core.last_applied < top:
                self.violations.append(
                    f"{n} applied through {core.last_applied}, before acknowledged write {top}"
                )
                continue
            for key, index in sorted(last.items()):
                if key in self._deleted:
                    continue
                ent = store.kv_get(key).value
                if ent is None or ent["ModifyIndex"] < index:
                    self.violations.append(
                        f"acknowledged write to {key} (index {index}) missing on {n}"
                    )
                    break

    def check_converged(self) -> None:
        """Once healed and quiet: every live server applied the same entries and holds the
        same KV data."""
        seen: tuple[str, int, dict[str, Any]] | None = None
        for n in self.members():
            core = self.core(n)
            if core is None:
                continue
            kv = dict(self.stores[n].kv.items())
            if seen is None:
                seen = (n, core.last_applied, kv)
            elif (core.last_applied, kv) != seen[1:]:
                self.violations.append(
                    f"not converged: {n} applied through {core.last_applied}, {seen[0]} "
                    f"through {seen[1]}, their KV data {'same' if kv == seen[2] else 'differ'}"
                )


# ------------------------------------------------------------------ swarm runs

FAULTS = (
    "partition",
    "leader_partition",
    "deposed_leader",
    "one_way",
    "crash",
    "stall",
    "slow",
    "drift",
    "link",
    "transfer",
    "membership",
)
"""Fault kinds a swarm plan weighs (see :class:`Chaos`)."""


@dataclass(frozen=True)
class SwarmPlan:
    """One swarm run, all drawn from its seed (swarm testing: the seed picks the cluster,
    the link model, the fault mix and the workload, not only the schedule)."""

    seed: int
    servers: int
    config: RaftConfig
    link: LinkModel
    workload: Workload
    weights: tuple[tuple[str, int], ...]
    """(fault kind, weight); a weight of 0 leaves the kind out of this run."""
    fault_gap_s: float
    """Mean pause between two faults (uniform in [0.2, 2 × fault_gap_s])."""
    chaos_s: float = 30.0
    """Faults and clients until then; then everything heals and restarts."""
    settle_s: float = 12.0
    """Clients go on this long after healing (liveness), then stop; then a quiet period
    of ``timeout_s`` + 3 s before the end-of-run checks."""

    @classmethod
    def from_seed(cls, seed: int, chaos_s: float = 30.0) -> SwarmPlan:
        rng = Seeds(seed).rng("swarm-plan")
        servers = rng.choice((3, 3, 5))
        fast = rng.random() < 0.3
        config = RaftConfig.low_latency() if fast else RaftConfig()
        if rng.random() < 0.35:
            config = replace(
                config,
                snapshot_threshold=rng.randint(16, 96),
                trailing_logs=rng.randint(0, 16),
                snapshot_chunk_bytes=rng.choice((256, 1024, 4096)),
            )
        a = rng.uniform(0.0002, 0.002)
        latency = rng.choice(
            (Latency("uniform", a, 4 * a), Latency("lognormal", a, 0.5), Latency("constant", a))
        )
        link = LinkModel(
            latency,
            loss=rng.choice((0.0, 0.01, 0.03, 0.08)),
            duplicate=rng.choice((0.0, 0.01, 0.05)),
            reorder=rng.choice((0.0, 0.05, 0.2)),
            reorder_delay_s=rng.choice((0.002, 0.01, 0.05)),
        )
        weights = tuple((k, rng.choice((0, 1, 2, 4))) for k in FAULTS)
        if not any(w for _, w in weights):
            weights = tuple((k, 1) for k in FAULTS)
        clients = rng.randint(2, 6)
        workload = Workload(
            clients=clients,
            readers=rng.randint(0, min(2, clients - 1)),
            refresh=rng.choice((0.0, 0.5, 1.0)),
            keys=rng.randint(3, 5),
            weights=(
                rng.uniform(0.3, 0.6),
                rng.uniform(0.1, 0.3),
                rng.uniform(0.05, 0.3),
                rng.uniform(0.0, 0.1),
            ),
            consistent=rng.choice((0.3, 0.5, 0.7)),
            think_s=rng.choice((0.01, 0.05, 0.15)),
            timeout_s=max(0.4, rng.choice((0.4, 0.8, 1.5, 3.0)) * config.election_timeout_s),
            latency_s=rng.uniform(0.0005, 0.003),
            loss=rng.choice((0.0, 0.0, 0.01)),
        )
        return cls(seed, servers, config, link, workload, weights, rng.uniform(0.6, 2.5), chaos_s)

    def describe(self) -> str:
        c, w, ln = self.config, self.workload, self.link
        mix = ", ".join(f"{k}={n}" for k, n in self.weights if n)
        snaps = (
            f"snapshot every {c.snapshot_threshold} (trailing {c.trailing_logs})"
            if c.snapshot_threshold < RaftConfig().snapshot_threshold
            else "default snapshots"
        )
        return (
            f"seed {self.seed}: {self.servers} servers, election timeout "
            f"{c.election_timeout_s:g}s, {snaps}; link {ln.latency.kind} {ln.latency.a:.4f}s "
            f"loss {ln.loss:g} dup {ln.duplicate:g} reorder {ln.reorder:g}; faults every "
            f"~{self.fault_gap_s:.1f}s: {mix}; {w.clients} clients ({w.readers} readers, "
            f"refresh {w.refresh:g}) on {w.keys} keys, "
            f"{w.consistent:.0%} of gets consistent, timeout {w.timeout_s:g}s"
        )


class Chaos:
    """The fault schedule of a swarm run, drawn as it goes from the ``faults`` stream:

    * ``partition`` — a random minority (or, on 5 servers, two) cut off for 1-6 s;
    * ``leader_partition`` — the leader cut off, alone, for 1-6 s;
    * ``deposed_leader`` — the same, its clock running at 0.4-0.7 times real speed
      meanwhile: check-quorum counts on its clock, so it goes on believing it leads
      well after the others have elected a successor (rule K4's stale reads);
    * ``one_way`` — the leader's outbound or inbound traffic dropped for 1-6 s;
    * ``crash`` — a server (the leader half the time) crashes, restarting 0.5-5 s later
      from what it persisted; a majority goes down only now and then;
    * ``stall`` — a server (the leader half the time) handles nothing for 0.2-3 s;
    * ``slow`` — a server reads its input 0.05-0.5 s late for 1-5 s;
    * ``drift`` — a server's clock runs 0.5-1.5 times real speed for 2-10 s;
    * ``link`` — the datacenter's links lose 10-40% and reorder more, for 1-5 s;
    * ``transfer`` — the leader is asked to hand leadership to the most up-to-date voter;
    * ``membership`` — a follower is removed from the configuration, and 1-5 s later added
      back as a non-voter and promoted (thesis §4.2): one change at a time, driven by
      what the leader's committed configuration shows, every request re-sent after 1 s
      without progress, so lost answers and changing leaders do not stall it. It goes on
      after the safety phase until the server is a voter again.

    Every fault is a scheduled simulator event; :meth:`end` heals and restarts all.
    """

    def __init__(self, world: RaftWorld, plan: SwarmPlan) -> None:
        self.world = world
        self.plan = plan
        self.sim = world.sim
        self.rng = world.sim.seeds.rng("faults")
        self.kinds = [k for k, n in plan.weights if n]
        self.weights = [n for _, n in plan.weights if n]
        self.log: list[tuple[float, str]] = []
        self._link_faults = 0
        self._drifting: dict[str, None] = {}
        self.member_change: tuple[str, str] | None = None
        """(server, phase) of the membership change under way: remove, wait, add, promote."""
        self._member_asked = -INF
        self._readd_at = INF

    def start(self, at: float) -> None:
        self.sim.at(at, self._next)

    def _note(self, text: str) -> None:
        self.log.append((self.sim.now, text))

    def _next(self, _: object) -> None:
        if self.sim.now >= self.plan.chaos_s:
            return
        getattr(self, "_" + self.rng.choices(self.kinds, self.weights)[0])()
        self.sim.after(self.rng.uniform(0.2, 2 * self.plan.fault_gap_s), self._next)

    def _victim(self, leader_bias: float = 0.5) -> str | None:
        w = self.world
        up = [n for n in w.names if w.nodes[n].up]
        lead = w.leader()
        if lead is not None and self.rng.random() < leader_bias:
            return lead
        return self.rng.choice(up) if up else None

    def _heal_later(self, token: int, lo: float = 1.0, hi: float = 6.0) -> None:
        self.sim.after(self.rng.uniform(lo, hi), lambda _: self.world.net.heal(token))

    def _partition(self) -> None:
        w = self.world
        k = self.rng.randint(1, max(1, (len(w.names) - 1) // 2))
        victims = sorted(self.rng.sample(w.names, k))
        self._note(f"partition {victims}")
        self._heal_later(w.isolate(victims))

    def _leader_partition(self) -> None:
        lead = self.world.leader()
        if lead is not None:
            self._note(f"partition the leader {lead}")
            self._heal_later(self.world.isolate([lead]))

    def _deposed_leader(self) -> None:
        lead = self.world.leader()
        if lead is None or lead in self._drifting:
            return
        rate = self.rng.uniform(-0.6, -0.3)
        node = self.world.nodes[lead]
        node.set_drift(rate)
        self._drifting[lead] = None
        self._note(f"partition the leader {lead}, its clock at {1 + rate:.2f}x")
        token = self.world.isolate([lead])

        def heal(_: object) -> None:
            self.world.net.heal(token)
            self._drifting.pop(lead, None)
            node.set_drift(0.0)

        self.sim.after(self.rng.uniform(1.0, 6.0), heal)

    def _one_way(self) -> None:
        lead = self.world.leader()
        if lead is not None:
            outbound = self.rng.random() < 0.5
            self._note(f"one-way: {lead}'s {'outbound' if outbound else 'inbound'} dropped")
            self._heal_later(self.world.cut_one_way([lead], outbound))

    def _crash(self) -> None:
        w = self.world
        up = [n for n in w.names if w.nodes[n].up]
        if len(up) <= len(w.names) // 2 + 1 and self.rng.random() >= 0.3:
            return  # a majority down now and then, not most of the time
        victim = self._victim()
        if victim is None:
            return
        node = w.nodes[victim]
        node.crash()
        self._note(f"crash {victim}")

        def restart(_: object) -> None:
            if not node.up:
                node.start()
                self._note(f"restart {victim}")

        self.sim.after(self.rng.uniform(0.5, 5.0), restart)

    def _stall(self) -> None:
        victim = self._victim()
        if victim is not None and not self.world.nodes[victim].stalled:
            d = self.rng.uniform(0.2, 3.0)
            self._note(f"stall {victim} for {d:.2f}s")
            self.world.nodes[victim].stall(d)

    def _slow(self) -> None:
        victim = self._victim(0.3)
        node = self.world.nodes[victim] if victim is not None else None
        if node is not None and node.up and not node.slowed:
            d, delay = self.rng.uniform(1.0, 5.0), self.rng.uniform(0.05, 0.5)
            self._note(f"slow {victim} for {d:.2f}s, input {delay:.2f}s late")
            node.slow(d, delay)

    def _drift(self) -> None:
        victim = self._victim(0.5)
        if victim is None or victim in self._drifting:
            return
        rate = self.rng.uniform(-0.5, 0.5)
        node = self.world.nodes[victim]
        node.set_drift(rate)
        self._drifting[victim] = None
        self._note(f"drift {victim} {rate:+.2f}")

        def undrift(_: object) -> None:
            self._drifting.pop(victim, None)
            node.set_drift(0.0)

        self.sim.after(self.rng.uniform(2.0, 10.0), undrift)

    def _link(self) -> None:
        if self._link_faults:
            return
        net, base = self.world.net, self.plan.link
        loss = self.rng.uniform(0.1, 0.4)
        net.same_dc = replace(base, loss=loss, reorder=max(base.reorder, 0.3))
        self._link_faults += 1
        self._note(f"links lose {loss:.0%}")

        def restore(_: object) -> None:
            self._link_faults -= 1
            net.same_dc = base

        self.sim.after(self.rng.uniform(1.0, 5.0), restore)

    def _transfer(self) -> None:
        w = self.world
        lead = w.leader()
        if lead is not None:
            rid = w.next_request
            w.next_request += 1
            self._note(f"transfer leadership away from {lead}")
            w.nodes[lead].deliver(LeadershipTransferRequested(rid))

    def _membership(self) -> None:
        w = self.world
        lead = w.leader()
        core = w.core(lead) if lead is not None else None
        if self.member_change is not None or core is None:
            return
        conf = core.committed_configuration
        others = [v for v in conf.voters() if v != lead]
        if len(conf.voters()) < 3 or conf.servers != core.configuration.servers:
            return
        victim = self.rng.choice(others)
        self.member_change = (victim, "remove")
        self._member_asked = -INF
        self._note(f"remove {victim} from the configuration")
        self._member_tick(None)

    def _member_tick(self, _: object) -> None:
        assert self.member_change is not None
        w, now = self.world, self.sim.now
        victim, phase = self.member_change
        lead = w.leader()
        core = w.core(lead) if lead is not None else None
        if core is not None:
            s = core.committed_configuration.get(victim)
            if phase == "remove" and s is None:
                phase, self._readd_at = "wait", now + self.rng.uniform(1.0, 5.0)
            if phase == "wait" and now >= self._readd_at:
                phase, self._member_asked = "add", -INF
                self._note(f"add {victim} back")
            if phase == "add" and s is not None:
                phase, self._member_asked = "promote", -INF
            if phase == "promote" and s is not None and s.voter:
                self._note(f"{victim} is a voter again")
                self.member_change = None
                return
            self.member_change = (victim, phase)
            if phase != "wait" and now - self._member_asked >= 1.0:
                change: ConfigurationChange = (
                    RemoveServer(victim)
                    if phase == "remove"
                    else AddNonVoter(victim)
                    if phase == "add"
                    else PromoteVoter(victim)
                )
                self._member_asked = now
                rid = w.next_request
                w.next_request += 1
                assert lead is not None
                w.nodes[lead].deliver(ConfigurationChangeRequested(rid, change))
        self.sim.after(0.25, self._member_tick)

    def end(self) -> None:
        """The end of the safety phase: heal every partition and link, restart every
        crashed server. Drift, stalls and slow periods run out on their own."""
        w = self.world
        w.net.heal_all()
        w.net.same_dc = self.plan.link
        for n in w.names:
            if not w.nodes[n].up:
                w.nodes[n].start()
        self._note("healed; every server up")


@dataclass
class SwarmRun:
    """The outcome of :func:`run_swarm`."""

    plan: SwarmPlan
    world: RaftWorld
    consistent: Result
    """The verdict on every write and the consistent gets: must be linearizable."""
    default: Result
    """The verdict on every write and the default gets: reported (rule K4)."""
    default_keys: list[str]
    """Keys whose default-mode history is not linearizable."""
    stale_default: list[str]
    """Default-mode gets that read past an acknowledged write (:meth:`RaftWorld.stale_reads`)."""
    problems: list[str]
    """What fails the seed: safety violations, a consistent-mode violation or an
    undetermined verdict, a cluster that never recovered."""
    faults: list[tuple[float, str]]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self, faults_shown: int = 12) -> str:
        w = self.world
        s = w.client_stats
        lines = [
            self.plan.describe(),
            f"  {len(w.leaders)} terms with a leader, {w.counts['snapshots']} snapshots, "
            f"{w.counts['installed']} installed; {len(self.faults)} fault steps",
            f"  clients: {s['ops']} ops, {s['writes_ok']} writes ok, {s['cas_refused']} cas "
            f"refused, {s['reads_ok']} reads, {s['unanswered']} unanswered, {s['timeouts']} "
            f"timeouts, {s['redirects']} redirects",
            f"  consistent: {self.consistent.explanation.splitlines()[0]} "
            f"({self.consistent.states_explored} states)",
            f"  default: {self.default.explanation.splitlines()[0]}"
            + (f" (keys {self.default_keys})" if self.default_keys else "")
            + f"; {len(self.stale_default)} stale reads",
        ]
        if self.stale_default:
            lines.append(f"    e.g. {self.stale_default[0]}")
        lines += [f"  PROBLEM: {p}" for p in self.problems]
        if self.problems:
            lines.append(f"  last faults: {self.faults[-faults_shown:]}")
        return "\n".join(lines)


def run_swarm(plan: SwarmPlan, max_states: int = 2_000_000) -> SwarmRun:
    """Run ``plan``: a safety phase of chaos and clients, then heal, let the clients go on
    (they must get answers again), stop them, wait, and check everything."""
    sim = Sim(plan.seed)
    net = Network(sim, sim.seeds.rng("network"), same_dc=plan.link)
    world = RaftWorld(sim, net, [f"s{i}" for i in range(1, plan.servers + 1)], plan.config)
    world.start()
    healed = plan.chaos_s
    stop = healed + plan.settle_s
    world.add_clients(plan.workload, until=stop)
    chaos = Chaos(world, plan)
    chaos.start(2.0)
    sim.run_until(healed)
    chaos.end()
    sim.run_until(stop)
    world.stop_clients()
    sim.run_until(stop + plan.workload.timeout_s + 3.0)
    world.check_logs()
    world.check_acknowledged()
    world.check_converged()
    problems = list(world.violations)
    if chaos.member_change is not None:
        problems.append(f"membership change {chaos.member_change} never finished")
    if world.leader() is None:
        problems.append("no leader at the end, after healing")
    modes = {"write": True, "consistent": plan.workload.consistent > 0}
    modes["default"] = plan.workload.consistent < 1
    for what, wanted in modes.items():
        t = world.last_success.get(what)
        if wanted and (t is None or t < healed):
            problems.append(f"liveness: no {what} op answered after healing (last at {t})")
    consistent, default = world.check_linearizability(max_states)
    problems += [f"stale consistent read: {text}" for text in world.stale_reads("consistent")]
    if not consistent.ok:
        problems.append(f"consistent-mode history: {consistent.explanation}")
    default_keys: list[str] = []
    if not default.ok and not default.undetermined:
        by_key: dict[str, list[Op]] = {}
        for op in world.histories()[1]:
            by_key.setdefault(op.key, []).append(op)
        default_keys = [k for k in sorted(by_key) if not check(by_key[k], max_states).ok]
    stale = world.stale_reads("default")
    return SwarmRun(plan, world, consistent, default, default_keys, stale, problems, chaos.log)


def _main(argv: Sequence[str] | None = None) -> int:
    """``python -m sim.raftworld 1-200``: run swarm seeds, print each, exit 1 on a failure."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m sim.raftworld", description=_main.__doc__)
    ap.add_argument("seeds", help="N, A-B, or a comma list of either")
    ap.add_argument("--chaos-s", type=float, default=30.0)
    ap.add_argument("-v", "--verbose", action="store_true", help="print every run's summary")
    args = ap.parse_args(argv)
    from sim.run import parse_seeds

    failed: list[int] = []
    anomalous = 0
    for seed in parse_seeds(args.seeds):
        r = run_swarm(SwarmPlan.from_seed(seed, args.chaos_s))
        anomalous += bool(r.default_keys)
        if not r.ok:
            failed.append(seed)
        if args.verbose or not r.ok:
            print(r.summary(), flush=True)
            if not r.consistent.ok:
                print(r.consistent.explanation)
    print(f"{len(parse_seeds(args.seeds))} seeds, failed: {failed or 'none'}, "
          f"default-mode anomalies in {anomalous}")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(_main())
