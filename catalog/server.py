"""The server half of the catalog: the state store as Raft's state machine, the write
path, blocking and consistent reads, and the leader's session TTL timers and tombstone
reaping.

Every server holds a replica of the store. :class:`CatalogServer` is the state machine the
Raft server applies committed commands to (:meth:`apply`, on every server, in log order);
applying fires the watch hub, so blocking queries wake on followers as on the leader.
:meth:`write` stamps a command with the proposer's wall-clock ``Now`` and, on the leader,
proposes it and returns its result once committed and applied; on another server it
hands the command to ``forward_apply`` (the agent sends it to the leader over server
RPC). Without a Raft server attached (the in-process endpoint tests) the server applies
commands itself, as a cluster of one would.

Reads follow Consul's blocking-query loop (agent/consul/rpc.go ``blockingQuery``): with
``?index=N`` the read is answered as soon as its index moves past N, or when the wait
(default 5 min, at most 10 min, plus up to wait/16 of random jitter so that many clients
do not come back at once) runs out, whichever is first. A change wakes only the reads
whose watch keys it touched (:mod:`catalog.watch`). A ``consistent`` read first confirms
leadership and waits until everything committed before it is applied (Raft's ReadIndex).

Leader duties, as Consul's establishLeadership: once the leader has applied an entry of
its own term (so its store holds every committed write), it starts the session TTL timers
for every session in the store and the tombstone reaper; it stops them when it loses
leadership. A session with a TTL is destroyed, through an ordinary ``session-destroy``
command, when it has not been renewed for twice its TTL (``SessionTTLMultiplier``).
:class:`SessionTimers` is the sans-IO bookkeeping.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgpack

from catalog import commands as C
from catalog.store import CommandRejected, Read, StateStore
from catalog.watch import WatchHub
from gossamer.duration import parse_duration

__all__ = [
    "DEFAULT_WAIT_S",
    "MAX_WAIT_S",
    "SESSION_TTL_MULTIPLIER",
    "CatalogServer",
    "SessionTimers",
]

log = logging.getLogger("gossamer.catalog")

DEFAULT_WAIT_S = 300.0
"""Consul's default blocking wait (structs.DefaultQueryTime)."""
MAX_WAIT_S = 600.0
"""Consul's cap on ?wait (structs.MaxQueryTime)."""
JITTER_FRACTION = 16
SESSION_TTL_MULTIPLIER = 2
"""A TTL session lives for twice its TTL without a renewal (structs.SessionTTLMultiplier)."""
TOMBSTONE_TTL_S = 15 * 60.0
"""Consul's tombstone_ttl: how long a deleted KV key keeps its tombstone, so a blocking
listing sees its index move past the delete; then the leader reaps it."""
TOMBSTONE_SWEEP_S = 60.0


class SessionTimers:
    """Deadlines of TTL sessions, sans-IO: ``reset``, ``cancel``, ``next_deadline``,
    ``expired(now)``. Stale heap entries are skipped lazily."""

    def __init__(self) -> None:
        self._deadline: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._deadline)

    def reset(self, session_id: str, ttl_s: float, now: float) -> None:
        d = now + ttl_s * SESSION_TTL_MULTIPLIER
        self._deadline[session_id] = d
        heapq.heappush(self._heap, (d, session_id))

    def cancel(self, session_id: str) -> None:
        self._deadline.pop(session_id, None)

    def next_deadline(self) -> float | None:
        while self._heap:
            d, sid = self._heap[0]
            if self._deadline.get(sid) == d:
                return d
            heapq.heappop(self._heap)
        return None

    def expired(self, now: float) -> list[str]:
        out: list[str] = []
        while True:
            d = self.next_deadline()
            if d is None or d > now:
                return out
            _, sid = heapq.heappop(self._heap)
            del self._deadline[sid]
            out.append(sid)


class Replicator(Protocol):
    """What the catalog needs from its Raft server (federation.aio.RaftServer)."""

    leader: str | None

    @property
    def is_leader(self) -> bool: ...
    @property
    def leader_address(self) -> str | None: ...
    def leader_ready(self) -> bool: ...
    def last_contact_s(self) -> float | None: ...
    def peer_addresses(self) -> list[str]: ...
    async def propose(self, command: Any, timeout_s: float = 10.0) -> Any: ...
    async def read_barrier(self, timeout_s: float) -> None: ...


class CatalogAccess(Protocol):
    """What an agent's anti-entropy needs from the servers: the catalog's view of a node,
    and a way to write. A server implements it itself; the agent adapts server RPC to it
    on clients and followers."""

    async def node_state(self, node: str) -> tuple[Any, Any]: ...
    async def write(self, command: dict[str, Any], timeout_s: float = 10.0) -> Any: ...


ForwardApply = Callable[[dict[str, Any]], Awaitable[Any]]


class CatalogServer:
    """See the module docstring."""

    def __init__(
        self,
        datacenter: str,
        leader_addr: str = "",
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.datacenter = datacenter
        self._standalone_addr = leader_addr
        self.store = StateStore()
        self.hub: WatchHub[asyncio.Future[None]] = WatchHub()
        self.sessions = SessionTimers()
        self.raft: Replicator | None = None
        self.forward_apply: ForwardApply | None = None
        """Sends a command to the leader (set by the agent); used when this server does
        not lead."""
        self.on_leadership: Callable[[bool], None] | None = None
        """Told True once this server has established leadership, False when it lost it
        (the agent starts and stops its leader loops: membership reconcile)."""
        self._clock = clock
        self._rng = rng or random.Random()
        self._timer_task: asyncio.Task[None] | None = None
        self._reap_task: asyncio.Task[None] | None = None
        self._leader_task: asyncio.Task[None] | None = None
        self._tombstones: collections.deque[tuple[float, int]] = collections.deque()
        """(time, index) of applied commands that left tombstones, oldest first."""
        self._timer_wake: asyncio.Event | None = None
        self._leading = True
        """Leadership established; a server with no Raft attached leads alone."""
        self._started = False
        self.stats = {"writes": 0, "rejected": 0, "blocking_reads": 0, "wakeups": 0}

    def attach(self, raft: Replicator, forward_apply: ForwardApply) -> None:
        """Replicate through ``raft``; commands on a follower go to ``forward_apply``."""
        self.raft = raft
        self.forward_apply = forward_apply
        self._leading = False

    @property
    def known_leader(self) -> bool:
        return self.raft is None or self.raft.leader is not None

    @property
    def leader_addr(self) -> str:
        """``ip:port`` of the leader's server RPC, as /v1/status/leader shows it ('' when
        there is none)."""
        if self.raft is None:
            return self._standalone_addr
        return self.raft.leader_address or ""

    @property
    def is_leader(self) -> bool:
        return self.raft is None or self.raft.is_leader

    @property
    def leading(self) -> bool:
        """Leadership is established: the leader's duties are running."""
        return self._leading

    def last_contact_ms(self) -> int:
        """X-Consul-LastContact: milliseconds since this server heard from the leader."""
        if self.raft is None:
            return 0
        s = self.raft.last_contact_s()
        return 0 if s is None else int(s * 1000)

    def now(self) -> float:
        return self._clock()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._timer_wake = asyncio.Event()
        self._started = True
        if self.raft is None:
            self._start_duties()

    async def close(self) -> None:
        self._started = False
        for task in (self._leader_task,):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._leader_task = None
        await self._revoke()
        for fut in self.hub.fire_all():
            if not fut.done():
                fut.set_result(None)

    def leader_changed(self, leader: str | None) -> None:
        """The Raft server's leader changed (its ``on_leader`` callback)."""
        if not self._started or self.raft is None:
            return
        if self.raft.is_leader:
            if self._leader_task is None or self._leader_task.done():
                self._leader_task = asyncio.ensure_future(self._become_leader())
        elif self._leading:
            self._leader_task = asyncio.ensure_future(self._revoke())

    async def _become_leader(self) -> None:
        """Wait for the leader barrier (an entry of this term applied), then take on the
        leader's duties; give up if leadership goes first."""
        assert self.raft is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + 60.0
        while self.raft.is_leader and not self.raft.leader_ready() and loop.time() < end:
            await asyncio.sleep(0.01)
        if self.raft.is_leader and self.raft.leader_ready() and not self._leading:
            self._establish()

    def _establish(self) -> None:
        """Consul's establishLeadership: session timers for every session in the store
        (each gets a full TTL from now), the reaper, and the agent's leader loops."""
        self._leading = True
        now = self._clock()
        for sid, sess in self.store.sessions.items():
            ttl = sess.get("TTL") or ""
            if ttl and parse_duration(ttl) > 0:
                self.sessions.reset(sid, parse_duration(ttl), now)
        # tombstones applied before we led: reap them a full TTL from now
        if self.store.index:
            self._tombstones.append((now, self.store.index))
        self._start_duties()
        log.info("catalog: leadership established at index %d", self.store.index)
        if self.on_leadership is not None:
            self.on_leadership(True)

    def _start_duties(self) -> None:
        self._timer_task = asyncio.ensure_future(self._session_loop())
        self._reap_task = asyncio.ensure_future(self._reap_loop())

    async def _revoke(self) -> None:
        was = self._leading
        self._leading = False
        for task in (self._timer_task, self._reap_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._timer_task = self._reap_task = None
        self.sessions = SessionTimers()
        self._tombstones.clear()
        if was:
            log.info("catalog: leadership lost")
            if self.on_leadership is not None:
                self.on_leadership(False)

    # ------------------------------------------------------------------ the state machine

    def apply(self, index: int, command: Any) -> Any:
        """Raft's state machine: apply a committed command at its log index (every server,
        in order). Raises :class:`CommandRejected` with the store unchanged."""
        store = self.store
        self.stats["writes"] += 1
        result: Any = None
        try:
            result = store.apply(index, command)
        except CommandRejected:
            self.stats["rejected"] += 1
            raise
        finally:
            changed = store.take_changes()
            if ("table", "tombstones") in changed and self._leading:
                self._tombstones.append((self._clock(), store.index))
            if changed:
                for fut in self.hub.fire(changed):
                    if not fut.done():
                        self.stats["wakeups"] += 1
                        fut.set_result(None)
            destroyed = store.take_destroyed_sessions()
            for sid in destroyed:
                self.sessions.cancel(sid)
        if self._leading and command.get("Op") == C.OP_SESSION_CREATE:
            ttl = command["Session"].get("TTL") or ""
            if ttl and parse_duration(ttl) > 0:
                self.sessions.reset(result, parse_duration(ttl), self._clock())
                self._poke()
        return result

    def snapshot(self) -> bytes:
        return bytes(msgpack.packb(self.store.snapshot(), use_bin_type=True))

    def restore(self, data: bytes) -> None:
        self.store.restore(msgpack.unpackb(data, raw=False, strict_map_key=False))
        self.store.take_changes()
        self.store.take_destroyed_sessions()
        for fut in self.hub.fire_all():
            if not fut.done():
                fut.set_result(None)

    # ------------------------------------------------------------------ writes

    async def write(self, command: dict[str, Any], timeout_s: float = 10.0) -> Any:
        """Replicate ``command``; returns its result or raises :class:`CommandRejected`
        (or the replicator's NotLeader when there is no leader to take it). The
        command's ``Now`` is stamped here."""
        command["Now"] = self._clock()
        if self.raft is None:
            return self.apply(self.store.index + 1, command)
        if self.raft.is_leader:
            return await self.raft.propose(command, timeout_s)
        assert self.forward_apply is not None
        return await self.forward_apply(command)

    async def consistent(self, timeout_s: float = 7.0) -> None:
        """Block until this leader has confirmed it still leads and applied everything
        committed before now (Consul's consistentRead / Raft's ReadIndex)."""
        if self.raft is not None:
            await self.raft.read_barrier(timeout_s)

    async def node_state(self, node: str) -> tuple[Any, Any]:
        """The catalog's services and checks of ``node`` (anti-entropy's full sync), read
        here: the agent routes the call to the leader first."""
        return self.store.node_services(node).value, self.store.node_checks(node).value

    def peer_addresses(self) -> list[str]:
        """The RPC addresses of the servers in the Raft configuration."""
        if self.raft is None:
            return [self._standalone_addr]
        return self.raft.peer_addresses()

    def renew_session(self, session_id: str) -> dict[str, Any] | None:
        """Consul's Session.Renew: the session, its TTL timer reset; None when unknown."""
        sess = self.store.sessions.get(session_id)
        if sess is None:
            return None
        if sess.get("TTL") and parse_duration(sess["TTL"]) > 0:
            self.sessions.reset(session_id, parse_duration(sess["TTL"]), self._clock())
            self._poke()
        return sess

    def _poke(self) -> None:
        if self._timer_wake is not None:
            self._timer_wake.set()

    async def _session_loop(self) -> None:
        assert self._timer_wake is not None
        while True:
            deadline = self.sessions.next_deadline()
            self._timer_wake.clear()
            if deadline is None:
                await self._timer_wake.wait()
                continue
            delay = deadline - self._clock()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._timer_wake.wait(), min(delay, 3600.0))
                continue
            for sid in self.sessions.expired(self._clock()):
                log.info("session %s expired (TTL), destroying it", sid)
                try:
                    await self.write(C.session_destroy(0.0, sid))
                except Exception as e:  # lost leadership, a timeout: the next leader
                    log.error("destroying expired session %s: %s", sid, e)  # re-arms it

    def reap_due(self) -> int:
        """The highest index whose tombstones are older than TOMBSTONE_TTL_S, or 0."""
        limit = self._clock() - TOMBSTONE_TTL_S
        index = 0
        while self._tombstones and self._tombstones[0][0] <= limit:
            index = self._tombstones.popleft()[1]
        return index

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(TOMBSTONE_SWEEP_S)
            index = self.reap_due()
            if index:
                try:
                    await self.write(C.tombstone_reap(0.0, index))
                except Exception as e:  # retried at the next sweep, or by the next leader
                    log.warning("reaping tombstones up to %d: %s", index, e)
                    self._tombstones.appendleft((self._clock() - TOMBSTONE_TTL_S, index))

    # ------------------------------------------------------------------ reads

    def wait_timeout(self, wait_s: float | None) -> float:
        """Consul's query timeout: the wait (default 5 min, capped at 10) plus jitter."""
        w = DEFAULT_WAIT_S if not wait_s or wait_s <= 0 else min(wait_s, MAX_WAIT_S)
        return w + self._rng.uniform(0, w / JITTER_FRACTION)

    async def read(
        self,
        fn: Callable[[StateStore], Read],
        min_index: int = 0,
        wait_s: float | None = None,
        consistent: bool = False,
    ) -> Read:
        """Run ``fn`` on the store; with ``min_index`` > 0, block until its index passes
        ``min_index`` or the wait runs out (Consul's blockingQuery). ``consistent`` first
        confirms leadership (:meth:`consistent`), before each run of ``fn``."""
        if consistent:
            await self.consistent()
        r = fn(self.store)
        if min_index <= 0 or r.index > min_index:
            return r
        self.stats["blocking_reads"] += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_timeout(wait_s)
        while r.index <= min_index:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            fut: asyncio.Future[None] = loop.create_future()
            keys = r.watch
            self.hub.add(fut, keys)
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                pass
            finally:
                self.hub.discard(fut, keys)
            if consistent:
                await self.consistent()
            r = fn(self.store)
        return r
