"""The asyncio driver of a Raft server: the core on the loop's clock, its durable state in
SQLite, and its messages over gRPC (grpc.aio), as shared/DESIGN.md prescribes for
server RPC.

How it carries out the core's effects (federation/raft.py, "persist before send"):
persist effects are collected and made durable in one SQLite transaction
(:class:`federation.disk.RaftDisk`) before the first send that follows them; sends go to a
bounded queue per peer, drained by one task per peer making unary ``Deliver`` calls with
the encoded message (federation/wire.py). A full queue or a failed call drops the
message: Raft retries through its heartbeats, and an unreachable peer must never block
the leader. Applied entries resolve the futures of :meth:`RaftServer.propose`.

Wire: one gRPC method, ``/gossamer.raft.Raft/Deliver``, request = the encoded message,
response = empty. The receiver decodes with the fuzzed decoder and drops (counting) what
does not decode or is not addressed to it.

Not yet: TLS between servers, streaming appends, snapshots; server agents and client
forwarding build on this (issue 5).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import grpc

from federation.disk import RaftDisk
from federation.raft import (
    Applied,
    LeaderElected,
    Message,
    MessageReceived,
    PersistEntries,
    PersistState,
    ProposalDropped,
    Proposed,
    RaftConfig,
    RaftCore,
    SendMessage,
    StateMachine,
)
from federation.wire import WireError, decode_message, encode_message
from gossamer.core import Event, TimerExpired

__all__ = ["DELIVER_METHOD", "NotLeader", "RaftServer"]

log = logging.getLogger("gossamer.raft")

DELIVER_METHOD = "/gossamer.raft.Raft/Deliver"
SEND_QUEUE_MAX = 1024
"""Messages queued per peer before new ones are dropped (Raft retries)."""
CALL_TIMEOUT_S = 2.0


class NotLeader(Exception):
    """This server does not lead (or lost leadership before the entry committed);
    ``leader`` is who does, when known."""

    def __init__(self, leader: str | None) -> None:
        super().__init__(f"not the leader (leader: {leader or 'unknown'})")
        self.leader = leader


def _identity(b: bytes) -> bytes:
    return b


class RaftServer:
    def __init__(
        self,
        server_id: str,
        peers: dict[str, str],
        bind: str,
        disk_path: str,
        state_machine: StateMachine,
        config: RaftConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """``peers`` maps every voter's ID (this one included) to its ``host:port``."""
        self.id = server_id
        self.peers = dict(peers)
        self.bind = bind
        self.disk = RaftDisk(disk_path)
        self.sm = state_machine
        self.config = config or RaftConfig()
        self.rng = rng or random.Random()
        self.core: RaftCore | None = None
        self.leader: str | None = None
        self.stats = {"sent": 0, "send_dropped": 0, "received": 0, "bad_messages": 0}
        self._server: grpc.aio.Server | None = None
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._queues: dict[str, asyncio.Queue[bytes]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wake: asyncio.Event | None = None
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._next_request = 0
        self._leader_changed: asyncio.Event | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.core = RaftCore(
            self.id,
            list(self.peers),
            self.sm,
            self.rng,
            self.config,
            self.disk.load(),
            now=loop.time(),
        )
        self._wake = asyncio.Event()
        self._leader_changed = asyncio.Event()
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "gossamer.raft.Raft",
            {
                "Deliver": grpc.unary_unary_rpc_method_handler(
                    self._deliver, request_deserializer=_identity, response_serializer=_identity
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))
        if server.add_insecure_port(self.bind) == 0:
            raise OSError(f"cannot bind the Raft port {self.bind}")
        await server.start()
        self._server = server
        for peer, addr in self.peers.items():
            if peer == self.id:
                continue
            self._channels[peer] = grpc.aio.insecure_channel(addr)
            self._queues[peer] = asyncio.Queue(SEND_QUEUE_MAX)
            self._tasks.append(asyncio.ensure_future(self._sender(peer)))
        self._tasks.append(asyncio.ensure_future(self._timer()))

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        self._tasks.clear()
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()
        for fut in self._futures.values():
            if not fut.done():
                fut.set_exception(NotLeader(None))
        self.disk.close()

    # ------------------------------------------------------------------ API

    async def propose(self, command: Any, timeout_s: float = 10.0) -> Any:
        """Replicate ``command``; returns the state machine's result once it is committed
        and applied here, raises :class:`NotLeader`, or the state machine's refusal."""
        self._next_request += 1
        rid = self._next_request
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._futures[rid] = fut
        self._handle(Proposed(rid, command))
        try:
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            self._futures.pop(rid, None)

    async def wait_leader(self, timeout_s: float) -> str | None:
        """The leader, waiting up to ``timeout_s`` for one to be known."""
        assert self._leader_changed is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while self.leader is None and loop.time() < end:
            self._leader_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._leader_changed.wait(), end - loop.time())
        return self.leader

    # ------------------------------------------------------------------ the core

    def _handle(self, event: Event) -> None:
        core = self.core
        assert core is not None
        core.handle(max(core.now, asyncio.get_running_loop().time()), event)
        pending: list[Any] = []
        for eff in core.take_effects():
            if isinstance(eff, PersistState | PersistEntries):
                pending.append(eff)
                continue
            if pending:  # durable before anything that depends on it leaves
                self.disk.persist(pending)
                pending = []
            if isinstance(eff, SendMessage):
                self._send(eff.message)
            elif isinstance(eff, Applied):
                fut = self._futures.get(eff.request_id) if eff.request_id is not None else None
                if fut is not None and not fut.done():
                    if eff.error is not None:
                        fut.set_exception(eff.error)
                    else:
                        fut.set_result(eff.result)
            elif isinstance(eff, ProposalDropped):
                fut = self._futures.get(eff.request_id)
                if fut is not None and not fut.done():
                    fut.set_exception(NotLeader(eff.leader))
            elif isinstance(eff, LeaderElected):
                self.leader = eff.leader
                log.info("raft: %s leads term %d", eff.leader, eff.term)
                if self._leader_changed is not None:
                    self._leader_changed.set()
        if pending:
            self.disk.persist(pending)
        if core.leader is None:
            self.leader = None
        if self._wake is not None:
            self._wake.set()

    async def _timer(self) -> None:
        assert self._wake is not None and self.core is not None
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            deadline = self.core.next_deadline()
            delay = 3600.0 if deadline is None else deadline - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                continue
            self._handle(TimerExpired())

    # ------------------------------------------------------------------ the network

    def _send(self, m: Message) -> None:
        q = self._queues.get(m.dst)
        if q is None:
            return
        try:
            q.put_nowait(encode_message(m))
        except asyncio.QueueFull:
            self.stats["send_dropped"] += 1

    async def _sender(self, peer: str) -> None:
        q = self._queues[peer]
        call = self._channels[peer].unary_unary(
            DELIVER_METHOD, request_serializer=_identity, response_deserializer=_identity
        )
        while True:
            data = await q.get()
            try:
                await call(data, timeout=CALL_TIMEOUT_S)
                self.stats["sent"] += 1
            except grpc.aio.AioRpcError:
                self.stats["send_dropped"] += 1

    async def _deliver(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            m = decode_message(request)
        except WireError:
            self.stats["bad_messages"] += 1
            return b""
        self.stats["received"] += 1
        if self.core is not None:
            self._handle(MessageReceived(m))
        return b""
