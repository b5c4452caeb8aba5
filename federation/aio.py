"""The asyncio driver of federation: the server RPC port (grpc.aio, as shared/DESIGN.md
prescribes for server RPC), the channels to other servers, and the Raft server running
the core on the loop's clock with its durable state in SQLite.

One gRPC server per agent listens on the server port and hosts every service:
``gossamer.raft.Raft/Deliver`` (Raft messages between servers) and the agent's server RPC
(``gossamer.rpc.Server/*``: forwarded API requests, commands, named reads; see
:mod:`federation.rpc`). :class:`RPCServer` owns that port, :class:`RPCClient` the channels
out, one per peer address.

How :class:`RaftServer` carries out the core's effects (federation/raft.py, "persist
before send"): persist effects are collected and made durable in one SQLite transaction
(:class:`federation.disk.RaftDisk`) before the first send that follows them; sends go to a
bounded queue per peer, drained by one task per peer making unary ``Deliver`` calls with
the encoded message (federation/wire.py). A full queue or a failed call drops the
message: Raft retries through its heartbeats, and an unreachable peer must never block
the leader. Applied entries resolve the futures of :meth:`RaftServer.propose`.

Bootstrapping (Consul's ``BootstrapCluster``): a fresh server has no configuration; it
campaigns and votes for no one until :meth:`RaftServer.bootstrap` writes the first one
(the agent does, once it has seen ``-bootstrap-expect`` servers in gossip), or a leader
adds it (it accepts appends from anyone). Peer addresses come from the configuration,
and from gossip (``resolve``) for a leader not yet in it.

Not yet: TLS between servers, streaming appends, snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from federation.disk import RaftDisk
from federation.raft import (
    Applied,
    BootstrapRequested,
    CompactLog,
    Configuration,
    ConfigurationChange,
    ConfigurationChanged,
    ConfigurationChangeRequested,
    LeaderElected,
    LeadershipTransferRequested,
    Message,
    MessageReceived,
    PersistEntries,
    PersistSnapshot,
    PersistState,
    ProposalDropped,
    Proposed,
    ProposedMany,
    RaftConfig,
    RaftCore,
    ReadIndexReady,
    ReadIndexRequested,
    RequestRefused,
    Role,
    SendMessage,
    ServerInfo,
    StateMachine,
    TransferDone,
)
from federation.wire import (
    BATCH_MESSAGES_MAX,
    WireError,
    decode_batch,
    decode_message,
    encode_batch,
    encode_message,
)
from gossamer.core import Event, NoLeader, TimerExpired

__all__ = [
    "DELIVER_METHOD",
    "GRPC_OPTIONS",
    "NotLeader",
    "RPCClient",
    "RPCServer",
    "RaftRefused",
    "RaftServer",
]

log = logging.getLogger("gossamer.raft")

DELIVER_METHOD = "/gossamer.raft.Raft/Deliver"
SEND_QUEUE_MAX = 1024
"""Messages queued per peer before new ones are dropped (Raft retries)."""
CALL_TIMEOUT_S = 2.0
BATCH_BYTES = 4 * 1024 * 1024
"""A delivery stops taking queued messages past this size."""
MESSAGE_BYTES_MAX = 64 * 1024 * 1024
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MESSAGE_BYTES_MAX),
    ("grpc.max_receive_message_length", MESSAGE_BYTES_MAX),
    # a server that restarts on the same port must be reachable again within a second or
    # two, not after gRPC's default reconnect back-off of up to 120 s
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class NotLeader(NoLeader):
    """This server does not lead (or lost leadership before the entry committed);
    ``leader`` is who does, when known."""

    def __init__(self, leader: str | None) -> None:
        super().__init__(f"not the leader (leader: {leader or 'unknown'})")
        self.leader = leader


class RaftRefused(Exception):
    """The leader will not carry out a membership change or transfer now (one is already
    in progress, the server is unknown, ...); the message says why."""


def _identity(b: bytes) -> bytes:
    return b


UnaryHandler = Callable[[bytes], Awaitable[bytes]]


class RPCServer:
    """The server port: unary methods taking and returning bytes, added before start."""

    def __init__(self, bind: str) -> None:
        self.bind = bind
        self._methods: dict[str, dict[str, UnaryHandler]] = {}
        self._server: grpc.aio.Server | None = None
        self.port = 0

    def add_method(self, service: str, method: str, handler: UnaryHandler) -> None:
        assert self._server is None, "methods are added before start()"
        self._methods.setdefault(service, {})[method] = handler

    async def start(self) -> None:
        # no SO_REUSEPORT (gRPC's default on Linux): a second process on the same port must
        # fail to start, not silently receive a share of this server's connections
        server = grpc.aio.server(options=[*GRPC_OPTIONS, ("grpc.so_reuseport", 0)])
        for service, methods in self._methods.items():
            handlers = {
                name: grpc.unary_unary_rpc_method_handler(
                    _adapt(fn), request_deserializer=_identity, response_serializer=_identity
                )
                for name, fn in methods.items()
            }
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, handlers),)
            )
        self.port = server.add_insecure_port(self.bind)
        if self.port == 0:
            raise OSError(f"cannot bind the server RPC port {self.bind}")
        await server.start()
        self._server = server

    async def close(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None


def _adapt(fn: UnaryHandler) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]:
    async def handler(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return await fn(request)

    return handler


class RPCClient:
    """Channels to other servers, one per address, kept open and reused."""

    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, address: str) -> grpc.aio.Channel:
        ch = self._channels.get(address)
        if ch is None:
            ch = self._channels[address] = grpc.aio.insecure_channel(address, options=GRPC_OPTIONS)
        return ch

    async def connected(self, address: str, timeout_s: float) -> bool:
        """Whether a connection to ``address`` is up (or comes up within ``timeout_s``).
        A request sent only after this returned True and then failed may have been
        processed; one never sent was not: callers retry writes only in the latter case."""
        ch = self.channel(address)
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        state = ch.get_state(try_to_connect=True)
        while state is not grpc.ChannelConnectivity.READY:
            # a refused or failed connection answers at once (a dead server costs nothing
            # here); gRPC tries again after its reconnect back-off (at most 1 s)
            if state in (
                grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                grpc.ChannelConnectivity.SHUTDOWN,
            ):
                return False
            remaining = end - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(ch.wait_for_state_change(state), remaining)
            except TimeoutError:
                return False
            state = ch.get_state(try_to_connect=True)
        return True

    async def call(self, address: str, method: str, payload: bytes, timeout_s: float) -> bytes:
        """One unary call; raises ``grpc.aio.AioRpcError`` on failure."""
        fn = self.channel(address).unary_unary(
            method, request_serializer=_identity, response_deserializer=_identity
        )
        out: bytes = await fn(payload, timeout=timeout_s)
        return out

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()


class RaftServer:
    def __init__(
        self,
        server_id: str,
        rpc: RPCServer,
        client: RPCClient,
        disk_path: str,
        state_machine: StateMachine,
        config: RaftConfig | None = None,
        rng: random.Random | None = None,
        on_leader: Callable[[str | None], None] | None = None,
        resolve: Callable[[str], str | None] | None = None,
    ) -> None:
        """``disk_path`` is the SQLite file (``:memory:`` keeps nothing, for -dev);
        ``on_leader`` is called with the leader's ID (or None) whenever it changes;
        ``resolve`` maps a server ID to its RPC address when the configuration does not
        know it yet (the agent looks it up in gossip), so a server that is being added
        can answer the leader before the entry that adds it reaches it."""
        self.id = server_id
        self.disk_path = disk_path
        self.disk = RaftDisk(disk_path)
        self.sm = state_machine
        self.config = config or RaftConfig()
        self.rng = rng or random.Random()
        self.client = client
        self.core: RaftCore | None = None
        self.leader: str | None = None
        self.addresses: dict[str, str] = {}
        """Server ID -> host:port of its server RPC, for every server ever configured
        (a removed one still gets the entries that remove it)."""
        self.stats = {
            "sent": 0,
            "send_dropped": 0,
            "received": 0,
            "bad_messages": 0,
            "deliveries": 0,
            "persists": 0,
            "persist_us": 0,
            "entries_persisted": 0,
        }
        self._on_leader = on_leader
        self._resolve = resolve
        self._queues: dict[str, asyncio.Queue[bytes]] = {}
        self._senders: dict[str, tuple[str, asyncio.Task[None]]] = {}
        self._timer_task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._next_request = 0
        self._leader_changed: asyncio.Event | None = None
        self._applied: asyncio.Event | None = None
        self._inbox: list[Event] = []
        self._drain_scheduled = False
        rpc.add_method("gossamer.raft.Raft", "Deliver", self._deliver)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start from the disk. A server with no configuration on it is unbootstrapped:
        it waits for :meth:`bootstrap`, or for a leader to add it."""
        self._wake = asyncio.Event()
        self._leader_changed = asyncio.Event()
        self._applied = asyncio.Event()
        loop = asyncio.get_running_loop()
        self.core = RaftCore(
            self.id, None, self.sm, self.rng, self.config, self.disk.load(), now=loop.time()
        )
        self._timer_task = asyncio.ensure_future(self._timer())
        self._handle([])

    @property
    def bootstrapped(self) -> bool:
        """Whether this server has a configuration (bootstrapped, or added by a leader)."""
        return self.core is not None and bool(self.core.configuration.servers)

    async def bootstrap(self, servers: dict[str, str]) -> None:
        """Write the first configuration: ``servers`` maps every voter (this one included)
        to its RPC address. Every initial server must be given the same map; the entry is
        then identical on all of them (ordered by ID). Durable before anything is sent."""
        if self.core is None:
            raise RuntimeError("start() the Raft server first")
        config = Configuration(
            tuple(ServerInfo(sid, addr, True) for sid, addr in sorted(servers.items()))
        )
        self._handle([BootstrapRequested(config)])

    async def close(self) -> None:
        tasks = [t for _, t in self._senders.values()]
        if self._timer_task is not None:
            tasks.append(self._timer_task)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        self._senders.clear()
        self._timer_task = None
        for fut in self._futures.values():
            if not fut.done():
                fut.set_exception(NotLeader(None))
        self.core = None
        self.disk.close()

    # ------------------------------------------------------------------ API

    @property
    def is_leader(self) -> bool:
        return self.core is not None and self.core.role is Role.LEADER

    @property
    def leader_address(self) -> str | None:
        return self.address_of(self.leader) if self.leader is not None else None

    def address_of(self, server_id: str) -> str | None:
        addr = self.addresses.get(server_id)
        if addr is None and self._resolve is not None:
            addr = self._resolve(server_id)
        return addr or None

    @property
    def configuration(self) -> Configuration:
        return self.core.configuration if self.core is not None else Configuration()

    def leader_ready(self) -> bool:
        """This server leads and has applied everything up to an entry of its own term
        (its no-op), so its state store holds every committed write: Consul's leader
        barrier before establishLeadership."""
        c = self.core
        return (
            c is not None
            and c.role is Role.LEADER
            and c.commit_index > 0
            and c.term_at(c.commit_index) == c.term
            and c.last_applied >= c.commit_index
        )

    def last_contact_s(self) -> float | None:
        """Seconds since this server last heard from the leader (0 on the leader), or
        None when it has never heard from one."""
        c = self.core
        if c is None:
            return None
        if c.role is Role.LEADER:
            return 0.0
        contact = c.leader_contact
        if contact is None:
            return None
        return max(0.0, asyncio.get_running_loop().time() - contact)

    def peer_addresses(self) -> list[str]:
        """The RPC addresses of the servers in the configuration, in its order."""
        return [s.address for s in self.configuration.servers]

    async def propose(self, command: Any, timeout_s: float = 10.0) -> Any:
        """Replicate ``command``; returns the state machine's result once it is committed
        and applied here, raises :class:`NotLeader`, or the state machine's refusal."""
        return await self._request(lambda rid: Proposed(rid, command), timeout_s)

    async def read_barrier(self, timeout_s: float) -> None:
        """Return once this server has confirmed it leads and has applied every entry
        committed before the call (ReadIndex, thesis §6.4): a linearizable read may then
        use its state machine. Raises :class:`NotLeader` otherwise."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        index = await self._request(ReadIndexRequested, timeout_s)
        if not await self.wait_applied(int(index), max(0.0, end - loop.time())):
            raise TimeoutError("read index not applied in time")

    async def change_configuration(self, change: ConfigurationChange, timeout_s: float) -> None:
        """One membership change, done once the new configuration commits; raises
        :class:`NotLeader` or :class:`RaftRefused`."""
        await self._request(lambda rid: ConfigurationChangeRequested(rid, change), timeout_s)

    async def transfer_leadership(self, target: str | None, timeout_s: float) -> str:
        """Hand leadership to ``target`` (None: the most up-to-date voter); returns the new
        leader's ID, or raises :class:`NotLeader` / :class:`RaftRefused`."""
        return str(
            await self._request(lambda rid: LeadershipTransferRequested(rid, target), timeout_s)
        )

    async def _request(self, make: Callable[[int], Event], timeout_s: float) -> Any:
        if self.core is None:
            raise NotLeader(None)
        self._next_request += 1
        rid = self._next_request
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._futures[rid] = fut
        self._submit(make(rid))
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

    async def wait_applied(self, index: int, timeout_s: float) -> bool:
        """Wait until this server has applied ``index``; False on timeout."""
        assert self._applied is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while self.core is not None and self.core.last_applied < index:
            remaining = end - loop.time()
            if remaining <= 0:
                return False
            self._applied.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._applied.wait(), remaining)
        return self.core is not None

    # ------------------------------------------------------------------ the core

    def _resolve_future(self, request_id: int | None, result: Any, error: Any = None) -> None:
        fut = self._futures.get(request_id) if request_id is not None else None
        if fut is not None and not fut.done():
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(result)

    def _submit(self, event: Event) -> None:
        """Queue an event for this loop turn's batch (group commit): everything that
        arrives before the loop comes round (proposals from many HTTP requests, messages
        from many peers) is handed to the core together, and what it must persist is
        made durable in one transaction, with one fsync, before any send."""
        self._inbox.append(event)
        if not self._drain_scheduled:
            self._drain_scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        events, self._inbox = self._inbox, []
        if self.core is None:
            for e in events:
                rid = getattr(e, "request_id", None)
                self._resolve_future(rid, None, NotLeader(None))
            return
        proposals = tuple(e for e in events if isinstance(e, Proposed))
        batch = [e for e in events if not isinstance(e, Proposed)]
        if proposals:
            batch.append(ProposedMany(proposals))
        self._handle(batch)

    def _handle(self, events: list[Event]) -> None:
        core = self.core
        assert core is not None
        for event in events:
            core.handle(max(core.now, asyncio.get_running_loop().time()), event)
        pending: list[Any] = []
        applied_before = core.last_applied
        leader_before = self.leader
        for eff in core.take_effects():
            if isinstance(eff, PersistState | PersistEntries | PersistSnapshot | CompactLog):
                pending.append(eff)
                continue
            if pending:  # durable before anything that depends on it leaves
                self._persist(pending)
                pending = []
            if isinstance(eff, SendMessage):
                self._send(eff.message)
            elif isinstance(eff, Applied):
                self._resolve_future(eff.request_id, eff.result, eff.error)
            elif isinstance(eff, ReadIndexReady):
                self._resolve_future(eff.request_id, eff.index)
            elif isinstance(eff, TransferDone):
                self._resolve_future(eff.request_id, eff.leader)
            elif isinstance(eff, ProposalDropped):
                self._resolve_future(eff.request_id, None, NotLeader(eff.leader))
            elif isinstance(eff, RequestRefused):
                self._resolve_future(eff.request_id, None, RaftRefused(eff.reason))
            elif isinstance(eff, ConfigurationChanged):
                for srv in eff.configuration.servers:
                    if srv.address:
                        self.addresses[srv.id] = srv.address
                log.info(
                    "raft: configuration at index %d: %s",
                    eff.index,
                    ", ".join(
                        f"{x.id[:8]}@{x.address}{'' if x.voter else ' (non-voter)'}"
                        for x in eff.configuration.servers
                    ),
                )
            elif isinstance(eff, LeaderElected):
                self.leader = eff.leader
                log.info("raft: %s leads term %d", eff.leader, eff.term)
        if pending:
            self._persist(pending)
        if core.leader is None:
            self.leader = None
        if core.last_applied != applied_before and self._applied is not None:
            self._applied.set()
        if self.leader != leader_before:
            if self._leader_changed is not None:
                self._leader_changed.set()
            if self._on_leader is not None:
                self._on_leader(self.leader)
        if self._wake is not None:
            self._wake.set()

    def _persist(self, effects: list[Any]) -> None:
        t = time.perf_counter()
        self.disk.persist(effects)
        self.stats["persists"] += 1
        self.stats["persist_us"] += int((time.perf_counter() - t) * 1e6)
        self.stats["entries_persisted"] += sum(
            len(e.entries) for e in effects if isinstance(e, PersistEntries)
        )
        for eff in effects:
            if isinstance(eff, PersistSnapshot):
                log.info(
                    "raft: snapshot at index %d (term %d): %d bytes",
                    eff.index,
                    eff.term,
                    len(eff.data),
                )

    async def _timer(self) -> None:
        assert self._wake is not None and self.core is not None
        loop = asyncio.get_running_loop()
        while self.core is not None:
            self._wake.clear()
            deadline = self.core.next_deadline()
            delay = 3600.0 if deadline is None else deadline - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                continue
            self._handle([TimerExpired()])

    # ------------------------------------------------------------------ the network

    def _send(self, m: Message) -> None:
        addr = self.address_of(m.dst)
        if addr is None:
            self.stats["send_dropped"] += 1
            return
        sender = self._senders.get(m.dst)
        if sender is None or sender[0] != addr:
            if sender is not None:
                sender[1].cancel()
            self._queues[m.dst] = asyncio.Queue(SEND_QUEUE_MAX)
            self._senders[m.dst] = (addr, asyncio.ensure_future(self._sender(m.dst, addr)))
        try:
            self._queues[m.dst].put_nowait(encode_message(m))
        except asyncio.QueueFull:
            self.stats["send_dropped"] += 1

    async def _sender(self, peer: str, addr: str) -> None:
        """One call at a time per peer, in order; each call carries everything that queued
        while the previous one was out (federation/wire.py ``encode_batch``)."""
        q = self._queues[peer]
        call = self.client.channel(addr).unary_unary(
            DELIVER_METHOD, request_serializer=_identity, response_deserializer=_identity
        )
        while True:
            batch = [await q.get()]
            size = len(batch[0])
            while not q.empty() and len(batch) < BATCH_MESSAGES_MAX and size < BATCH_BYTES:
                data = q.get_nowait()
                batch.append(data)
                size += len(data)
            try:
                await call(encode_batch(batch), timeout=CALL_TIMEOUT_S)
                self.stats["sent"] += len(batch)
                self.stats["deliveries"] += 1
            except grpc.aio.AioRpcError:
                self.stats["send_dropped"] += len(batch)
            except Exception:  # never let one odd failure silence a peer for good
                log.exception("raft: sending to %s (%s) failed", peer, addr)
                self.stats["send_dropped"] += len(batch)

    async def _deliver(self, request: bytes) -> bytes:
        try:
            batch = decode_batch(request)
        except WireError:
            self.stats["bad_messages"] += 1
            return b""
        for data in batch:
            try:
                m = decode_message(data)
            except WireError:
                self.stats["bad_messages"] += 1
                continue
            self.stats["received"] += 1
            if self.core is not None:
                self._submit(MessageReceived(m))
        return b""
