"""The server half of the catalog on one node: the store's write path, blocking reads and
session TTL timers.

This is the seam the federation issue replaces. Today a server that bootstraps alone
(``-dev`` or ``-server -bootstrap-expect=1``) is its own leader: :meth:`CatalogServer.write`
stamps the command with the wall-clock time, gives it the next index and applies it at
once. Under Raft, ``write`` proposes the same command and returns the result when it is
committed and applied; everything above it (the HTTP API, the agent's anti-entropy) and
below it (the store) stays as it is.

Reads follow Consul's blocking-query loop (agent/consul/rpc.go ``blockingQuery``): with
``?index=N`` the read is answered as soon as its index moves past N, or when the wait
(default 5 min, at most 10 min, plus up to wait/16 of random jitter so that many clients
do not come back at once) runs out, whichever is first. A change wakes only the reads
whose watch keys it touched (:mod:`catalog.watch`).

Session TTLs live on the leader, as in Consul (agent/consul/session_ttl.go): a session
with a TTL is destroyed, through an ordinary ``session-destroy`` command, when it has not
been renewed for twice its TTL (``SessionTTLMultiplier``). :class:`SessionTimers` is the
sans-IO bookkeeping; the driver loop here sleeps until its next deadline.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import logging
import random
import time
from collections.abc import Callable
from typing import Any

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


class CatalogServer:
    """See the module docstring."""

    def __init__(
        self,
        datacenter: str,
        leader_addr: str,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.datacenter = datacenter
        self.leader_addr = leader_addr
        """``ip:port`` of the leader's server RPC, as /v1/status/leader shows it."""
        self.store = StateStore()
        self.hub: WatchHub[asyncio.Future[None]] = WatchHub()
        self.sessions = SessionTimers()
        self._clock = clock
        self._rng = rng or random.Random()
        self._timer_task: asyncio.Task[None] | None = None
        self._reap_task: asyncio.Task[None] | None = None
        self._tombstones: collections.deque[tuple[float, int]] = collections.deque()
        """(time, index) of applied commands that left tombstones, oldest first."""
        self._timer_wake: asyncio.Event | None = None
        self.stats = {"writes": 0, "rejected": 0, "blocking_reads": 0, "wakeups": 0}

    @property
    def known_leader(self) -> bool:
        return True

    def now(self) -> float:
        return self._clock()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._timer_wake = asyncio.Event()
        self._timer_task = asyncio.ensure_future(self._session_loop())
        self._reap_task = asyncio.ensure_future(self._reap_loop())

    async def close(self) -> None:
        for task in (self._timer_task, self._reap_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._timer_task = self._reap_task = None
        for fut in self.hub.fire_all():
            if not fut.done():
                fut.set_result(None)

    # ------------------------------------------------------------------ writes

    async def write(self, command: dict[str, Any]) -> Any:
        """Apply ``command`` as the leader; returns its result or raises
        :class:`CommandRejected`. The command's ``Now`` is stamped here."""
        command["Now"] = self._clock()
        return self._apply(command)

    def _apply(self, command: dict[str, Any]) -> Any:
        store = self.store
        self.stats["writes"] += 1
        try:
            result = store.apply(store.index + 1, command)
        except CommandRejected:
            self.stats["rejected"] += 1
            raise
        finally:
            changed = store.take_changes()
            if ("table", "tombstones") in changed:
                self._tombstones.append((self._clock(), store.index))
            if changed:
                for fut in self.hub.fire(changed):
                    if not fut.done():
                        self.stats["wakeups"] += 1
                        fut.set_result(None)
        self._after_apply(command, result)
        return result

    def _after_apply(self, command: dict[str, Any], result: Any) -> None:
        op = command.get("Op")
        if op == C.OP_SESSION_CREATE:
            ttl = command["Session"].get("TTL") or ""
            if ttl and parse_duration(ttl) > 0:
                self.sessions.reset(result, parse_duration(ttl), self._clock())
                self._poke()
        # sessions destroyed for any reason (destroy, a failed check, a deleted node)
        for sid in self.store.take_destroyed_sessions():
            self.sessions.cancel(sid)

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
                except CommandRejected as e:  # pragma: no cover - destroy never rejects
                    log.error("destroying expired session %s: %s", sid, e)

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
                await self.write(C.tombstone_reap(0.0, index))

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
    ) -> Read:
        """Run ``fn`` on the store; with ``min_index`` > 0, block until its index passes
        ``min_index`` or the wait runs out (Consul's blockingQuery)."""
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
            r = fn(self.store)
        return r
