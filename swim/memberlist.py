"""SWIM membership with Lifeguard, as hashicorp/memberlist 0.2.2 runs it — sans-IO.

Papers: Das, Gupta, Motivala, "SWIM: Scalable Weakly-consistent Infection-style Process
Group Membership Protocol" (DSN 2002); Dadgar, Phillips, Currey, "Lifeguard: Local Health
Awareness for More Accurate Failure Detection" (2018). Source: ML/state.go, ML/net.go.

Theory of operation. Every ``probe_interval_s`` (× health) a member probes the next
member round-robin: a direct ping; after ``probe_timeout_s`` without an ack, ``indirect_checks``
others ping the target for us (and nack if they get no answer, so we can tell whether
the fault is ours), and a TCP ping goes out in parallel. If nothing answers by the end of
the interval, we *suspect* the target and gossip that. A suspect that hears the news
refutes it by gossiping ``alive`` with a higher incarnation; otherwise its suspicion
timer (shortened by independent confirmations) expires and it is declared *dead* — unless,
with Lifeguard's health awareness, the timer fires more than a probe interval late: this
process was not running then, and the verdict is held a while (``_suspicion_late``).
News travels piggybacked on probes and in gossip rounds to ``gossip_nodes`` random
members; a periodic TCP push/pull of the whole member list repairs what gossip missed.

Rules (numbers refer to shared/reference/memberlist-wire.md §6.2):

1. A member's state only moves forward in (incarnation, severity) order: alive(i) is
   superseded by suspect(j>=i), dead(j>=i), or alive(j>i); left is dead with From == Node.
2. Only the member itself raises its incarnation (refutation, tag change).
3. Messages about ourselves are refuted, never applied — except our own leave; a suspect
   older than our incarnation is answered by gossiping our current ``alive`` again.
4. An address change for a live member is a conflict, reported and ignored, unless the
   old holder left, or has been dead for ``dead_node_reclaim_s`` (> 0).
5. Everything from the network is validated; bad input is dropped and counted in
   :attr:`Memberlist.dropped`; nothing from the network raises.

Invariants asserted: incarnations of a known member never decrease; our own node is
always present and alive until we leave.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from random import Random  # injected by the driver; cores never call the module
from typing import Protocol

from gossamer.core import Effect, Entropy, Event, TimerExpired, TimerWheel, counting
from swim import codec
from swim.awareness import Awareness
from swim.broadcast import BroadcastQueue
from swim.codec import (
    Ack,
    Alive,
    Dead,
    DecodeError,
    ErrResp,
    IndirectPing,
    Message,
    MsgType,
    Nack,
    NodeState,
    Ping,
    PushNodeState,
    PushPull,
    Suspect,
    User,
)
from swim.config import (
    PROTOCOL_MAX,
    PROTOCOL_MIN,
    SwimConfig,
    push_pull_scale,
    suspicion_timeout,
)
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
from swim.keyring import ENCRYPT_OVERHEAD_V0, ENCRYPT_OVERHEAD_V1, Keyring
from swim.suspicion import Suspicion

__all__ = ["Delegate", "Memberlist", "Node", "NodeState", "ip_bytes", "ip_text"]

log = logging.getLogger("gossamer.swim")

COMPOUND_HEADER_OVERHEAD = 2
COMPOUND_OVERHEAD = 2
USER_MSG_OVERHEAD = 1
_ALIVE, _SUSPECT, _DEAD, _LEFT = NodeState.ALIVE, NodeState.SUSPECT, NodeState.DEAD, NodeState.LEFT
TCP_FALLBACK_GRACE_S = 0.25
"""How long past the probe deadline we wait for a TCP fallback ping the driver has not
reported yet (the driver times it out at the deadline, so this only covers scheduling)."""


def ip_bytes(ip: str) -> bytes:
    """IPv4 as 4 bytes, IPv6 as 16 (memberlist compares addresses with bytes.Equal)."""
    return ipaddress.ip_address(ip).packed


def ip_text(b: bytes) -> str:
    host = _HOSTS.get(b)
    if host is not None:
        return host
    if len(b) == 4:
        host = f"{b[0]}.{b[1]}.{b[2]}.{b[3]}"
    elif len(b) == 16:
        host = str(ipaddress.IPv6Address(b))
    else:
        raise ValueError("an IP address is 4 or 16 bytes")
    if len(_HOSTS) >= _HOSTS_MAX:
        _HOSTS.clear()
    _HOSTS[bytes(b)] = host
    return host


_HOSTS: dict[bytes, str] = {}
"""ip_text's memo: one string per address, shared by every view of a member (a pure
function's cache, so sharing it between cores changes nothing but memory and time)."""
_HOSTS_MAX = 1 << 16


class Node:
    """Our view of one member (ML/state.go nodeState)."""

    __slots__ = (
        "addr",
        "incarnation",
        "meta",
        "name",
        "port",
        "state",
        "state_change",
        "vsn",
    )

    def __init__(
        self,
        name: str,
        addr: bytes,
        port: int,
        meta: bytes,
        vsn: bytes,
        incarnation: int = 0,
        state: NodeState = NodeState.DEAD,
        state_change: float = 0.0,
    ) -> None:
        self.name = name
        assert len(addr) in (4, 16), "an IP address is 4 or 16 bytes"
        self.addr = addr
        self.port = port
        self.meta = meta
        self.vsn = vsn
        self.incarnation = incarnation
        self.state = state
        self.state_change = state_change

    @property
    def host(self) -> str:
        """The address as text: looked up in ``ip_text``'s memo rather than stored, as a
        cluster holds N^2 views (8 bytes each)."""
        return ip_text(self.addr)

    @property
    def address(self) -> Address:
        return (ip_text(self.addr), self.port)

    @property
    def pmax(self) -> int:
        return self.vsn[1] if len(self.vsn) > 1 else 0

    def dead_or_left(self) -> bool:
        return self.state == NodeState.DEAD or self.state == NodeState.LEFT

    def set_addr(self, addr: bytes, port: int) -> None:
        assert len(addr) in (4, 16), "an IP address is 4 or 16 bytes"
        self.addr = addr
        self.port = port

    def __repr__(self) -> str:
        return (
            f"Node({self.name!r}, {self.host}:{self.port}, {self.state.name.lower()}, "
            f"inc={self.incarnation})"
        )


class Delegate(Protocol):
    """What the layer above (Serf) plugs into memberlist (ML/delegate.go and friends).

    Callbacks run synchronously inside ``Memberlist.handle``; they may queue broadcasts
    and effects but must not call ``handle`` re-entrantly.
    """

    def node_meta(self, limit: int) -> bytes: ...
    def notify_msg(self, msg: bytes) -> None: ...
    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]: ...
    def local_state(self, join: bool) -> bytes: ...
    def merge_remote_state(self, buf: bytes, join: bool) -> None: ...
    def notify_join(self, node: Node) -> None: ...
    def notify_leave(self, node: Node) -> None: ...
    def notify_update(self, node: Node) -> None: ...
    def notify_conflict(self, existing: Node, other: Node) -> None: ...
    def notify_merge(self, nodes: list[Node]) -> str | None: ...
    def ack_payload(self) -> bytes | None: ...
    def notify_ping_complete(self, node: Node, rtt_s: float, payload: bytes) -> None: ...


class PendingBroadcasts(Protocol):
    """Optional delegate method: whether ``get_broadcasts`` could return anything now. A
    delegate that has it lets an idle gossip round be skipped (see ``_gossip_idle``)."""

    def has_broadcasts(self) -> bool: ...


class NullDelegate:
    """No layer above: no meta, no user messages. For tests and plain memberlist use."""

    def node_meta(self, limit: int) -> bytes:
        return b""

    def notify_msg(self, msg: bytes) -> None:
        return None

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        return []

    def has_broadcasts(self) -> bool:
        return False

    def local_state(self, join: bool) -> bytes:
        return b""

    def merge_remote_state(self, buf: bytes, join: bool) -> None:
        return None

    def notify_join(self, node: Node) -> None:
        return None

    def notify_leave(self, node: Node) -> None:
        return None

    def notify_update(self, node: Node) -> None:
        return None

    def notify_conflict(self, existing: Node, other: Node) -> None:
        return None

    def notify_merge(self, nodes: list[Node]) -> str | None:
        return None

    def ack_payload(self) -> bytes | None:
        return None

    def notify_ping_complete(self, node: Node, rtt_s: float, payload: bytes) -> None:
        return None


# --------------------------------------------------------------------------- internal records


@dataclass(slots=True)
class _Probe:
    """One probe round in flight (ML/state.go probeNode, unrolled into timer steps)."""

    node: Node
    incarnation: int
    seq_no: int
    sent: float
    deadline: float
    expected_nacks: int = 0
    nacks: int = 0
    indirect_sent: bool = False
    tcp_stream: int | None = None
    tcp_result: bool | None = None
    acked: bool = False
    expired: bool = False


@dataclass(slots=True)
class _Relay:
    """An indirect ping we are carrying out for someone else."""

    requester: Address
    requester_name: str
    their_seq: int
    want_nack: bool


@dataclass(slots=True)
class _Join:
    pending: int
    contacted: int
    errors: list[str]
    on_done: Callable[[int, list[str]], None]


@dataclass(slots=True)
class _OutStream:
    kind: str  # "pushpull" | "join" | "tcpping"
    addr: Address
    name: str | None
    join_id: int | None = None
    seq_no: int = 0


class Memberlist:
    """The SWIM core. Drive it through ``handle``/``next_deadline``/``take_effects``, or embed
    it in a layer above (Serf) that shares its outbox and timer wheel.

    Construction does not announce anything; call :meth:`start` once with the start time.
    """

    def __init__(
        self,
        *,
        name: str,
        addr: str,
        port: int,
        config: SwimConfig,
        rng: Random,
        entropy: Entropy,
        delegate: Delegate | None = None,
        keyring: Keyring | None = None,
        delegate_versions: tuple[int, int, int] = (0, 0, 0),
        outbox: list[Effect] | None = None,
        timers: TimerWheel | None = None,
    ) -> None:
        config.validate()
        self.name = name
        self.config = config
        self.rng = rng
        self.entropy = entropy
        self.delegate: Delegate = delegate if delegate is not None else NullDelegate()
        self._delegate_pending: Callable[[], bool] | None = getattr(
            self.delegate, "has_broadcasts", None
        )
        self.lazy_timers = False
        """Set by a driver that accepts lazy timers (the simulator): then, while nothing is
        queued, ``next_deadline`` leaves out the gossip round, which then does nothing but
        re-arm, and is replayed at its own deadline on the next input (see ``TimerWheel``)."""
        self.keyring = keyring
        self.outbox: list[Effect] = outbox if outbox is not None else []
        self.timers = timers if timers is not None else TimerWheel()
        self.advertise_addr = ip_bytes(addr)
        self.advertise_port = port
        self.vsn = bytes((PROTOCOL_MIN, PROTOCOL_MAX, config.protocol_version, *delegate_versions))
        self.now = 0.0
        self.nodes: dict[str, Node] = {}
        self.probe_list: list[Node] = []
        self.probe_index = 0
        self.incarnation = 0
        self.seq_no = 0
        self.awareness = Awareness(config.awareness_max_multiplier, config.lifeguard_awareness)
        self.broadcasts = BroadcastQueue(config.retransmit_mult)
        self.suspicions: dict[str, Suspicion] = {}
        self._late_at: float | None = None
        """When a late suspicion timer last cost a health point (one point per wake-up)."""
        self.left = False
        self.shutdown = False
        self.started = False
        self._probe: _Probe | None = None
        self._probe_tick_pending = False
        self._acks: dict[int, _Probe | _Relay] = {}
        self._streams: dict[int, _OutStream] = {}
        self._next_stream = 0
        self._joins: dict[int, _Join] = {}
        self._next_join = 0
        self._leave_done: Callable[[], None] | None = None
        self.dropped: dict[str, int] = {}
        self.stats: dict[str, int] = {}

    # ------------------------------------------------------------------ core contract

    def handle(self, now: float, event: Event) -> None:
        assert now >= self.now, "time went backwards"
        self.now = now
        if self.shutdown:
            return
        timers = self.timers
        timers.run_lazy(now)
        if isinstance(event, PacketReceived):
            self.ingest_packet(event.data, event.addr)
        elif isinstance(event, TimerExpired):
            pass
        elif isinstance(event, StreamRequestReceived):
            self.handle_stream(event.stream_id, event.data, event.addr)
        elif isinstance(event, StreamResponseReceived):
            self._stream_response(event.stream_id, event.data)
        elif isinstance(event, StreamFailed):
            self._stream_failed(event.stream_id, event.reason)
        else:
            raise TypeError(f"memberlist cannot handle {type(event).__name__}")
        timers.run_due(now)

    def next_deadline(self) -> float | None:
        # After stop() no timer runs again; a stale deadline would make a driver spin.
        if self.shutdown:
            return None
        return self.timers.next_deadline(idle=self.lazy_timers and self.gossip_idle())

    def gossip_idle(self) -> bool:
        """Nothing is queued to gossip, here or in the delegate: a gossip round would do
        nothing but re-arm (``_gossip_tick``), so its timer may be run late, lazily
        (``TimerWheel``, "lazy timers"). With a delegate that cannot say (no
        ``has_broadcasts``), never idle."""
        if self.broadcasts.queued:
            return False
        pending = self._delegate_pending
        return pending is not None and not pending()

    def take_effects(self) -> list[Effect]:
        out, self.outbox[:] = list(self.outbox), []
        return out

    # ------------------------------------------------------------------ lifecycle

    def start(self, now: float) -> None:
        """Announce ourselves locally (ML/memberlist.go setAlive) and start the tickers."""
        assert not self.started
        self.started = True
        self.now = now
        meta = self.delegate.node_meta(codec.META_BYTES_MAX)
        assert len(meta) <= codec.META_BYTES_MAX, "node meta longer than 512 bytes"
        self.incarnation += 1
        self.alive_node(
            Alive(
                self.incarnation,
                self.name,
                self.advertise_addr,
                self.advertise_port,
                meta,
                self.vsn,
            ),
            bootstrap=True,
        )
        cfg = self.config

        def stagger(interval: float) -> float:
            return self.rng.random() * interval if cfg.stagger else 0.0

        self.timers.set("probe", now + stagger(cfg.probe_interval_s), self._probe_tick)
        self.timers.set(
            "gossip", now + stagger(cfg.gossip_interval_s), self._gossip_tick, lazy=True
        )
        if cfg.push_pull_interval_s > 0:
            self.timers.set(
                "pushpull", now + stagger(cfg.push_pull_interval_s), self._push_pull_tick
            )

    def stop(self) -> None:
        """Stop all activity (ML Shutdown). Pending requests are answered with failures."""
        self.shutdown = True
        for key in ("probe", "gossip", "pushpull"):
            self.timers.cancel(key)
        for sid in list(self._streams):
            self._stream_failed(sid, "shutdown")

    @property
    def local(self) -> Node:
        return self.nodes[self.name]

    def num_nodes(self) -> int:
        """ML estNumNodes: the length of the node list, dead-but-not-reaped included."""
        return len(self.probe_list)

    def any_alive(self) -> bool:
        return any(n.name != self.name and not n.dead_or_left() for n in self.probe_list)

    # ------------------------------------------------------------------ API used by Serf

    def join(
        self, addrs: list[tuple[str | None, Address]], on_done: Callable[[int, list[str]], None]
    ) -> None:
        """Push/pull with Join=true to each address; ``on_done(contacted, errors)`` at the end."""
        if not addrs:
            on_done(0, [])
            return
        self._next_join += 1
        jid = self._next_join
        self._joins[jid] = _Join(pending=len(addrs), contacted=0, errors=[], on_done=on_done)
        for name, addr in addrs:
            self._open_push_pull(addr, name, join=True, join_id=jid)

    def leave(self, on_done: Callable[[], None]) -> None:
        """Broadcast our own death with From == us (a graceful leave) and call ``on_done``
        once it has been transmitted its full count, or at once if no one is listening."""
        if self.left:
            on_done()
            return
        self.left = True
        me = self.nodes.get(self.name)
        if me is None:
            on_done()
            return
        self._leave_done = on_done
        self.dead_node(Dead(me.incarnation, me.name, me.name))
        if not self.any_alive() and self._leave_done is not None:
            done, self._leave_done = self._leave_done, None
            done()

    def update_meta(self) -> None:
        """Re-announce ourselves with fresh meta (ML UpdateNode): a higher incarnation."""
        meta = self.delegate.node_meta(codec.META_BYTES_MAX)
        assert len(meta) <= codec.META_BYTES_MAX
        me = self.local
        self.incarnation += 1
        self.alive_node(
            Alive(self.incarnation, self.name, me.addr, me.port, meta, self.vsn), bootstrap=True
        )

    def send_user_packet(self, addr: Address, payload: bytes, node: Node | None = None) -> None:
        """ML SendToAddress / SendBestEffort: one user message, no piggybacking."""
        self._raw_send(addr, node, User(payload).encode())

    # ------------------------------------------------------------------ sending

    def _encrypting(self) -> bool:
        return (
            self.keyring is not None
            and len(self.keyring) > 0
            and self.config.gossip_verify_outgoing
        )

    def _encrypt_overhead(self) -> int:
        return ENCRYPT_OVERHEAD_V0 if self.config.protocol_version == 1 else ENCRYPT_OVERHEAD_V1

    def _get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        queue = self.broadcasts
        if queue.queued:
            out = queue.get(overhead, limit, len(self.probe_list))
            used = sum(map(len, out)) + overhead * len(out)
        else:
            out = []
            used = 0
        avail = limit - used
        if avail > overhead + USER_MSG_OVERHEAD:
            pending = self._delegate_pending
            if pending is not None and not pending():
                return out  # get_broadcasts would hand out nothing
            for m in self.delegate.get_broadcasts(overhead + USER_MSG_OVERHEAD, avail):
                out.append(b"\x08" + m)
        return out

    def _send_msg(self, addr: Address, msg: bytes) -> None:
        """ML sendMsg: piggyback what fits, then send."""
        avail = self.config.udp_buffer_bytes - len(msg) - COMPOUND_HEADER_OVERHEAD
        if self._encrypting():
            avail -= self._encrypt_overhead()
        extra = self._get_broadcasts(COMPOUND_OVERHEAD, avail)
        if extra:
            extra.insert(0, msg)
            msg = codec.make_compound(extra)
        self._raw_send(addr, None, msg)

    def _raw_send(self, addr: Address, node: Node | None, msg: bytes) -> None:
        """ML rawSendMsgPacket: compress if smaller, CRC for protocol >= 5 peers, encrypt."""
        if node is None:
            # memberlist looks the destination up by IP string in its name-keyed map, which
            # only finds nodes named after their IP; we copy that so our bytes match.
            node = self.nodes.get(addr[0])
        crc = node is not None and len(node.vsn) > 1 and node.vsn[1] >= 5
        if self.config.enable_compression or self._encrypting():
            data = codec.seal_packet(
                msg,
                compress=self.config.enable_compression,
                crc=crc,
                keyring=self.keyring if self._encrypting() else None,
                entropy=self.entropy,
            )
        else:
            data = codec.add_crc(msg) if crc else msg  # seal_packet's plain case
        stats = self.stats
        stats["packets_sent"] = stats.get("packets_sent", 0) + 1
        stats["bytes_sent"] = stats.get("bytes_sent", 0) + len(data)
        self.outbox.append(SendPacket(addr, data))

    def _broadcast(
        self, node: str, msg: Message, on_finished: Callable[[], None] | None = None
    ) -> None:
        self.broadcasts.queue(msg.encode(), name=node, on_finished=on_finished)

    # ------------------------------------------------------------------ packets in

    def ingest_packet(self, data: bytes, addr: Address) -> None:
        stats = self.stats
        stats["packets_received"] = stats.get("packets_received", 0) + 1
        if self.keyring is None or not len(self.keyring):
            parts = codec.plain_packet_parts(data)
            if parts is not None:  # what open_packet would find, with nothing dropped
                for msg in parts:
                    self._handle_command(msg, addr)
                return
        opened = codec.open_packet(
            data,
            self.keyring if self.keyring is not None and len(self.keyring) else None,
            self.config.gossip_verify_incoming,
        )
        for reason in opened.dropped:
            self._drop(reason, addr)
        for msg in opened.messages:
            self._handle_command(msg, addr)

    def _drop(self, reason: str, addr: Address | None = None) -> None:
        key = reason.split(":", 1)[0]
        counting(self.dropped, key)
        log.debug("%s: dropped input from %s: %s", self.name, addr, reason)

    def _handle_command(self, msg: bytes, addr: Address) -> None:
        t = msg[0]
        if t == MsgType.USER:
            self.delegate.notify_msg(msg[1:])
            return
        try:
            m = codec.decode_message(msg)
        except DecodeError as e:
            self._drop(f"decode {t}: {e.reason}", addr)
            return
        # decode_message returns exactly these classes: dispatch on the type itself
        kind = type(m)
        if kind is Ack:
            self._handle_ack(m)  # type: ignore[arg-type]
        elif kind is Ping:
            self._handle_ping(m, addr)  # type: ignore[arg-type]
        elif kind is Alive:
            a: Alive = m  # type: ignore[assignment]
            if self.config.protocol_version < 2 or a.port == 0:
                a = Alive(a.incarnation, a.node, a.addr, self.advertise_port, a.meta, a.vsn)
            if len(a.addr) not in (4, 16):
                self._drop("alive: bad address", addr)
                return
            # old news is the common case while gossip spreads
            if not self._alive_is_old_news(a.node, a.incarnation, a.addr, a.port, a.vsn, a.meta):
                self.alive_node(a)
        elif kind is Suspect:
            self.suspect_node(m)  # type: ignore[arg-type]
        elif kind is Dead:
            self.dead_node(m)  # type: ignore[arg-type]
        elif kind is IndirectPing:
            self._handle_indirect_ping(m, addr)  # type: ignore[arg-type]
        elif kind is Nack:
            self._handle_nack(m)  # type: ignore[arg-type]
        else:
            self._drop(f"unexpected message type {t} in a packet", addr)

    def _handle_ping(self, p: Ping, addr: Address) -> None:
        if p.node and p.node != self.name:
            self._drop("ping for another node", addr)
            return
        ack = Ack(p.seq_no, self.delegate.ack_payload())
        to = addr
        if p.source_addr and p.source_port:
            try:
                to = (ip_text(p.source_addr), p.source_port)
            except ValueError:
                self._drop("ping: bad source address", addr)
                return
        self._send_msg(to, ack.encode())

    def _handle_indirect_ping(self, ind: IndirectPing, addr: Address) -> None:
        port = ind.port or self.advertise_port
        try:
            target = (ip_text(ind.target), port)
            requester = (
                (ip_text(ind.source_addr), ind.source_port)
                if ind.source_addr and ind.source_port
                else addr
            )
        except ValueError:
            self._drop("indirect ping: bad address", addr)
            return
        self.seq_no = (self.seq_no + 1) & 0xFFFFFFFF
        local_seq = self.seq_no
        self._acks[local_seq] = _Relay(requester, ind.source_node, ind.seq_no, ind.nack)
        self.timers.set(
            ("ack", local_seq),
            self.now + self.config.probe_timeout_s,
            self._relay_timeout(local_seq),
        )
        ping = Ping(local_seq, ind.node, self.advertise_addr, self.advertise_port, self.name)
        self._send_msg(target, ping.encode())

    def _relay_timeout(self, seq: int) -> Callable[[float], None]:
        def expire(now: float) -> None:
            relay = self._acks.pop(seq, None)
            if isinstance(relay, _Relay) and relay.want_nack:
                self._send_msg(relay.requester, Nack(relay.their_seq).encode())

        return expire

    def _handle_ack(self, ack: Ack) -> None:
        h = self._acks.pop(ack.seq_no, None)
        if h is None:
            counting(self.stats, "acks_unmatched")
            return
        self.timers.cancel(("ack", ack.seq_no))
        if isinstance(h, _Relay):
            self._send_msg(h.requester, Ack(h.their_seq, None).encode())
            return
        probe = h
        if probe is not self._probe or probe.acked:
            return
        probe.acked = True
        if not probe.indirect_sent:
            self.delegate.notify_ping_complete(
                probe.node, self.now - probe.sent, ack.payload or b""
            )
        self._finish_probe(probe, success=True)

    def _handle_nack(self, nack: Nack) -> None:
        h = self._acks.get(nack.seq_no)
        if isinstance(h, _Probe) and h is self._probe:
            h.nacks += 1

    # ------------------------------------------------------------------ probing

    def _probe_tick(self, now: float) -> None:
        self.timers.set("probe", now + self.config.probe_interval_s, self._probe_tick)
        if self._probe is not None:
            # Go's ticker channel holds one tick while probeNode runs over the interval.
            self._probe_tick_pending = True
            return
        self._probe_next()

    def _probe_next(self) -> None:
        """ML probe: next member round-robin, skipping ourselves and the dead."""
        checked = 0
        while True:
            if checked >= len(self.probe_list):
                return
            if self.probe_index >= len(self.probe_list):
                self._reset_nodes()
                self.probe_index = 0
                checked += 1
                continue
            node = self.probe_list[self.probe_index]
            self.probe_index += 1
            if node.name == self.name or node.dead_or_left():
                checked += 1
                continue
            self._probe_node(node)
            return

    def _reset_nodes(self) -> None:
        """ML resetNodes: forget members dead for longer than gossip_to_the_dead_s, shuffle."""
        horizon = self.now - self.config.gossip_to_the_dead_s
        keep = []
        for n in self.probe_list:
            if n.dead_or_left() and n.state_change < horizon and n.name != self.name:
                del self.nodes[n.name]
                self.suspicions.pop(n.name, None)
            else:
                keep.append(n)
        self.rng.shuffle(keep)
        self.probe_list = keep

    def _probe_node(self, node: Node) -> None:
        cfg = self.config
        interval = self.awareness.scale(cfg.probe_interval_s)
        self.seq_no = (self.seq_no + 1) & 0xFFFFFFFF
        probe = _Probe(
            node=node,
            incarnation=node.incarnation,
            seq_no=self.seq_no,
            sent=self.now,
            deadline=self.now + interval,
        )
        self._probe = probe
        self._acks[probe.seq_no] = probe
        counting(self.stats, "probes")
        ping = Ping(probe.seq_no, node.name, self.advertise_addr, self.advertise_port, self.name)
        if node.state == NodeState.ALIVE or not cfg.lifeguard_buddy:
            self._send_msg(node.address, ping.encode())
        else:
            # Lifeguard's buddy system: tell the suspect it is suspected so it can refute.
            sus = Suspect(node.incarnation, node.name, self.name)
            self._raw_send(node.address, node, codec.make_compound([ping.encode(), sus.encode()]))
        self.timers.set("probe-timeout", self.now + cfg.probe_timeout_s, self._probe_timeout)
        self.timers.set("probe-deadline", probe.deadline, self._probe_deadline)

    def _probe_timeout(self, now: float) -> None:
        """No direct ack within probe_timeout_s: ask k others, and try TCP."""
        probe = self._probe
        if probe is None or probe.acked:
            return
        node = probe.node
        probe.indirect_sent = True
        peers = self._k_random(
            self.config.indirect_checks,
            lambda n: n.name == self.name or n.name == node.name or n.state != NodeState.ALIVE,
        )
        for peer in peers:
            want_nack = peer.pmax >= 4
            if want_nack:
                probe.expected_nacks += 1
            ind = IndirectPing(
                seq_no=probe.seq_no,
                target=node.addr,
                port=node.port,
                node=node.name,
                nack=want_nack,
                source_addr=self.advertise_addr,
                source_port=self.advertise_port,
                source_node=self.name,
            )
            self._send_msg(peer.address, ind.encode())
        if not self.config.disable_tcp_pings and node.pmax >= 3:
            ping = Ping(
                probe.seq_no, node.name, self.advertise_addr, self.advertise_port, self.name
            )
            data = codec.seal_stream(
                ping.encode(),
                compress=self.config.enable_compression,
                keyring=self.keyring if self._encrypting() else None,
                entropy=self.entropy,
            )
            sid = self._new_stream(
                _OutStream("tcpping", node.address, node.name, seq_no=probe.seq_no)
            )
            probe.tcp_stream = sid
            self.outbox.append(
                OpenStream(sid, node.address, data, max(0.001, probe.deadline - now))
            )

    def _probe_deadline(self, now: float) -> None:
        probe = self._probe
        if probe is None or probe.acked:
            return
        probe.expired = True
        self._acks.pop(probe.seq_no, None)
        if probe.tcp_stream is not None and probe.tcp_result is None:
            # The driver reports the TCP ping by its own deadline; give it a moment.
            self.timers.set("probe-deadline", now + TCP_FALLBACK_GRACE_S, self._probe_give_up)
            return
        self._probe_failed(probe)

    def _probe_give_up(self, now: float) -> None:
        probe = self._probe
        if probe is not None and not probe.acked:
            self._probe_failed(probe)

    def _tcp_ping_result(self, probe: _Probe, ok: bool) -> None:
        probe.tcp_result = ok
        if probe is self._probe and probe.expired and not probe.acked:
            self._probe_failed(probe)

    def _probe_failed(self, probe: _Probe) -> None:
        if probe.tcp_result:
            log.warning(
                "%s: was able to connect to %s but other probes failed, network may be "
                "misconfigured",
                self.name,
                probe.node.name,
            )
            counting(self.stats, "tcp_fallback_saves")
            self._finish_probe(probe, success=True)
            return
        # Lifeguard: missing nacks point at us, not at the target; with no one asked for a
        # nack, a failed probe costs one point
        delta = max(0, probe.expected_nacks - probe.nacks) if probe.expected_nacks else 1
        self._finish_probe(probe, success=False, delta=delta)
        counting(self.stats, "probe_failures")
        log.info("%s: suspect %s has failed, no acks received", self.name, probe.node.name)
        self.suspect_node(Suspect(probe.incarnation, probe.node.name, self.name))

    def _finish_probe(self, probe: _Probe, success: bool, delta: int = 0) -> None:
        self.awareness.apply_delta(-1 if success else delta)
        self._acks.pop(probe.seq_no, None)
        self.timers.cancel("probe-timeout")
        self.timers.cancel("probe-deadline")
        if self._probe is probe:
            self._probe = None
        if self._probe_tick_pending:
            self._probe_tick_pending = False
            self._probe_next()

    def _k_random(self, k: int, exclude: Callable[[Node], bool]) -> list[Node]:
        """ML kRandomNodes: up to k distinct members by 3n random draws, skipping excluded."""
        nodes = self.probe_list
        n = len(nodes)
        out: list[Node] = []
        if n == 0:
            return out
        rand = self.rng.randrange
        for _ in range(3 * n):
            if len(out) >= k:
                break
            node = nodes[rand(n)]
            if exclude(node) or node in out:
                continue
            out.append(node)
        return out

    def _gossip_targets(self, now: float) -> list[Node]:
        """``_k_random(gossip_nodes, ...)`` for a gossip round: live or suspect members, and
        the dead for ``gossip_to_the_dead_s``."""
        dead_horizon = now - self.config.gossip_to_the_dead_s
        me = self.name

        def exclude(n: Node) -> bool:
            state = n.state
            if n.name == me:
                return True
            if state in (_ALIVE, _SUSPECT):
                return False
            return state != _DEAD or n.state_change < dead_horizon

        return self._k_random(self.config.gossip_nodes, exclude)

    # ------------------------------------------------------------------ gossip and push/pull

    def _gossip_tick(self, now: float) -> None:
        """ML gossip, with one departure: a round with nothing queued (here or in the
        delegate) draws no targets. memberlist draws them and then sends nothing, so the
        bytes on the wire are the same; only our random sequence differs, and the round
        becomes a pure re-arm, which is what lets the driver skip it (lazy timers)."""
        cfg = self.config
        timers = self.timers
        interval = cfg.gossip_interval_s
        nxt = now + interval
        if self.gossip_idle():
            # Rounds replayed late (lazy timers) that are due before anything else would do
            # nothing either: step over them here rather than each through the timer heap.
            while timers.lazy_due(nxt):
                nxt += interval
            timers.set("gossip", nxt, self._gossip_tick, lazy=True)
            return
        # lazy: while nothing is queued, the driver need not wake us for this (gossip_idle)
        timers.set("gossip", nxt, self._gossip_tick, lazy=True)
        targets = self._gossip_targets(now)
        if not targets:
            return
        avail = cfg.udp_buffer_bytes - COMPOUND_HEADER_OVERHEAD
        if self._encrypting():
            avail -= self._encrypt_overhead()
        for node in targets:
            msgs = self._get_broadcasts(COMPOUND_OVERHEAD, avail)
            if not msgs:
                return
            msg = msgs[0] if len(msgs) == 1 else codec.make_compound(msgs)
            self._raw_send(node.address, node, msg)

    def _push_pull_tick(self, now: float) -> None:
        cfg = self.config
        self.timers.set(
            "pushpull",
            now + push_pull_scale(cfg.push_pull_interval_s, self.num_nodes()),
            self._push_pull_tick,
        )
        nodes = self._k_random(1, lambda n: n.name == self.name or n.state != NodeState.ALIVE)
        if nodes:
            self._open_push_pull(nodes[0].address, nodes[0].name, join=False)

    def local_push_pull(self, join: bool) -> bytes:
        """Our side of a push/pull, sealed for the stream (ML sendLocalState)."""
        user = self.delegate.local_state(join)
        # = PushPull(join, (PushNodeState(...) for each node), user).encode()
        return self._seal_stream(codec.encode_push_pull(join, self.probe_list, user))

    def _seal_stream(self, msg: bytes) -> bytes:
        return codec.seal_stream(
            msg,
            compress=self.config.enable_compression,
            keyring=self.keyring if self._encrypting() else None,
            entropy=self.entropy,
        )

    def _open_push_pull(
        self, addr: Address, name: str | None, join: bool, join_id: int | None = None
    ) -> None:
        sid = self._new_stream(_OutStream("join" if join else "pushpull", addr, name, join_id))
        counting(self.stats, "push_pulls")
        self.outbox.append(
            OpenStream(sid, addr, self.local_push_pull(join), self.config.tcp_timeout_s)
        )

    def _new_stream(self, s: _OutStream) -> int:
        self._next_stream += 1
        self._streams[self._next_stream] = s
        return self._next_stream

    def _open(self, data: bytes) -> Message:
        return codec.open_stream(
            data,
            self.keyring if self.keyring is not None and len(self.keyring) else None,
            self.config.gossip_verify_incoming,
        )

    def _stream_response(self, sid: int, data: bytes) -> None:
        s = self._streams.pop(sid, None)
        if s is None:
            return
        try:
            msg = self._open(data)
        except DecodeError as e:
            self._drop(f"stream: {e.reason}", s.addr)
            self._stream_done(s, f"{e.reason}")
            return
        if s.kind == "tcpping":
            ok = isinstance(msg, Ack) and msg.seq_no == s.seq_no
            self._stream_done(s, "" if ok else "unexpected reply to TCP ping")
            return
        if isinstance(msg, ErrResp):
            self._stream_done(s, f"remote error: {msg.error}")
            return
        if not isinstance(msg, PushPull):
            self._stream_done(s, f"received invalid msgType ({data[0]}), expected pushPullMsg")
            return
        err = self._merge_remote_state(msg, join=s.kind == "join")
        self._stream_done(s, err or "")

    def _stream_failed(self, sid: int, reason: str) -> None:
        s = self._streams.pop(sid, None)
        if s is not None:
            self._stream_done(s, reason or "stream failed")

    def _stream_done(self, s: _OutStream, error: str) -> None:
        if s.kind == "tcpping":
            probe = self._probe
            if probe is not None and probe.seq_no == s.seq_no:
                self._tcp_ping_result(probe, not error)
            return
        if error:
            log.debug("%s: push/pull with %s failed: %s", self.name, s.addr, error)
        if s.kind == "join" and s.join_id is not None:
            j = self._joins[s.join_id]
            j.pending -= 1
            if error:
                j.errors.append(f"Failed to join {s.addr[0]}: {error}")
            else:
                j.contacted += 1
            if j.pending == 0:
                del self._joins[s.join_id]
                j.on_done(j.contacted, [] if j.contacted else j.errors)

    def handle_stream(self, sid: int, data: bytes, addr: Address) -> None:
        """An inbound TCP frame (ML handleConn)."""
        counting(self.stats, "streams_received")
        try:
            msg = self._open(data)
        except DecodeError as e:
            self._drop(f"stream: {e.reason}", addr)
            reply = ErrResp(e.reason).encode()
            self.outbox.append(SendStreamResponse(sid, self._seal_stream(reply)))
            return
        if isinstance(msg, PushPull):
            # answer first, then merge, as memberlist does
            self.outbox.append(SendStreamResponse(sid, self.local_push_pull(msg.join)))
            err = self._merge_remote_state(msg, msg.join)
            if err:
                self._drop(f"merge: {err}", addr)
        elif isinstance(msg, Ping):
            if msg.node and msg.node != self.name:
                self._drop("tcp ping for another node", addr)
                self.outbox.append(CloseStream(sid))
                return
            self.outbox.append(
                SendStreamResponse(sid, self._seal_stream(Ack(msg.seq_no, None).encode()))
            )
        elif isinstance(msg, User):
            self.outbox.append(CloseStream(sid))
            self._user_stream(msg.payload)
        else:
            self._drop(f"stream: unexpected message type {data[0]}", addr)
            self.outbox.append(CloseStream(sid))

    def _user_stream(self, payload: bytes) -> None:
        """A user message sent reliably (ML readUserMsg)."""
        try:
            body = codec.user_stream_body(payload)
        except DecodeError as e:
            self._drop(f"user stream: {e.reason}")
            return
        if body:
            self.delegate.notify_msg(body)

    # ------------------------------------------------------------------ merging state

    def _verify_protocol(self, remote: tuple[PushNodeState, ...]) -> str | None:
        """ML verifyProtocol: every member's current versions within everyone's ranges.

        The outcome depends only on the distinct version vectors (and which belong to alive
        members), of which a cluster has a handful, so they are checked first; only when one
        fails does :meth:`_verify_protocol_slow` walk the members to name the first culprit.
        """
        bounds: dict[bytes, None] = {}
        seen: dict[bytes, None] = {}
        for rn in remote:
            v = rn.vsn
            seen[v] = None
            if rn.state == _ALIVE and v:
                bounds[v] = None
        for n in self.probe_list:
            v = n.vsn
            seen[v] = None
            if n.state == _ALIVE:
                bounds[v] = None
        maxpmin = maxdmin = 0
        minpmax = mindmax = 255
        for v in bounds:
            if len(v) < 6:
                return self._verify_protocol_slow(remote)
            maxpmin = max(maxpmin, v[0])
            minpmax = min(minpmax, v[1])
            maxdmin = max(maxdmin, v[3])
            mindmax = min(mindmax, v[4])
        for v in seen:
            pcur = v[2] if len(v) > 2 else 0
            dcur = v[5] if len(v) > 5 else 0
            if pcur < maxpmin or pcur > minpmax or dcur < maxdmin or dcur > mindmax:
                return self._verify_protocol_slow(remote)
        return None

    def _verify_protocol_slow(self, remote: tuple[PushNodeState, ...]) -> str | None:
        maxpmin = maxdmin = 0
        minpmax = mindmax = 255
        for rn in remote:
            if rn.state != NodeState.ALIVE or not rn.vsn:
                continue
            if len(rn.vsn) < 6:
                return f"Node '{rn.name}' sent a short version vector"
            maxpmin = max(maxpmin, rn.vsn[0])
            minpmax = min(minpmax, rn.vsn[1])
            maxdmin = max(maxdmin, rn.vsn[3])
            mindmax = min(mindmax, rn.vsn[4])
        for n in self.probe_list:
            if n.state != NodeState.ALIVE:
                continue
            maxpmin = max(maxpmin, n.vsn[0])
            minpmax = min(minpmax, n.vsn[1])
            maxdmin = max(maxdmin, n.vsn[3])
            mindmax = min(mindmax, n.vsn[4])
        for name, vsn in [(r.name, r.vsn) for r in remote] + [
            (n.name, n.vsn) for n in self.probe_list
        ]:
            pcur = vsn[2] if len(vsn) > 2 else 0
            dcur = vsn[5] if len(vsn) > 5 else 0
            if pcur < maxpmin or pcur > minpmax:
                return (
                    f"Node '{name}' protocol version ({pcur}) is incompatible: "
                    f"[{maxpmin}, {minpmax}]"
                )
            if dcur < maxdmin or dcur > mindmax:
                return (
                    f"Node '{name}' delegate protocol version ({dcur}) is incompatible: "
                    f"[{maxdmin}, {mindmax}]"
                )
        return None

    def _merge_remote_state(self, pp: PushPull, join: bool) -> str | None:
        for r in pp.nodes:
            if len(r.addr) not in (4, 16) or len(r.vsn) not in (0, 6) or len(r.meta) > 512:
                return f"invalid node state for {r.name!r}"
            if not 0 <= r.state <= 3:
                return f"invalid state {r.state} for {r.name!r}"
        err = self._verify_protocol(pp.nodes)
        if err:
            return err
        if join:
            merged = [
                Node(
                    r.name,
                    r.addr,
                    r.port or self.advertise_port,
                    r.meta,
                    r.vsn,
                    r.incarnation,
                    NodeState(r.state),
                )
                for r in pp.nodes
            ]
            err = self.delegate.notify_merge(merged)
            if err:
                return err
        old_news = self._alive_is_old_news
        for r in pp.nodes:
            port = r.port or self.advertise_port
            if r.state == _ALIVE:
                # most entries repeat what we know
                if not old_news(r.name, r.incarnation, r.addr, port, r.vsn, r.meta):
                    self.alive_node(Alive(r.incarnation, r.name, r.addr, port, r.meta, r.vsn))
            elif r.state == NodeState.LEFT:
                self.dead_node(Dead(r.incarnation, r.name, r.name))
            else:
                # a remote "dead" is only a suspicion to us (ML mergeState)
                self.suspect_node(Suspect(r.incarnation, r.name, self.name))
        if pp.user_state:
            self.delegate.merge_remote_state(pp.user_state, join)
        return None

    # ------------------------------------------------------------------ the state rules

    def _refute(self, me: Node, accused: int) -> None:
        """ML refute: beat the accusation's incarnation and gossip that we are alive."""
        self.incarnation += 1
        if accused >= self.incarnation:
            self.incarnation = accused + 1
        me.incarnation = self.incarnation
        self.awareness.apply_delta(1)
        counting(self.stats, "refutes")
        self._broadcast(me.name, Alive(me.incarnation, me.name, me.addr, me.port, me.meta, me.vsn))

    def _alive_is_old_news(
        self, name: str, incarnation: int, addr: bytes, port: int, vsn: bytes, meta: bytes
    ) -> bool:
        """Would :meth:`alive_node` do nothing at all with this? (Known member, same
        address, no newer incarnation, not us, meta within bounds, and no version vector it
        would count as bad: the same tests, in its order.) Checked before building or
        passing the message, because it is true of most alives gossip and push/pull carry."""
        cur = self.nodes.get(name)
        if (
            cur is None
            or incarnation > cur.incarnation
            or cur.port != port
            or cur.addr != addr
            or name == self.name
            or len(meta) > codec.META_BYTES_MAX
        ):
            return False
        return len(vsn) < 3 or bool(vsn[0] and vsn[1] and vsn[0] <= vsn[1])

    def alive_node(self, a: Alive, bootstrap: bool = False) -> None:
        """ML aliveNode."""
        if self.left and a.node == self.name:
            return
        vsn = a.vsn
        if len(vsn) >= 3 and (vsn[0] == 0 or vsn[1] == 0 or vsn[0] > vsn[1]):
            self._drop("alive: bad protocol versions")
            return
        if len(a.meta) > codec.META_BYTES_MAX:
            self._drop("alive: meta too large")
            return
        state = self.nodes.get(a.node)
        updates_node = False
        if state is None:
            if len(vsn) not in (0, 6):
                self._drop("alive: short version vector")
                return
            state = Node(a.node, a.addr, a.port, a.meta, vsn or bytes(6))
            self.nodes[a.node] = state
            n = len(self.probe_list)
            offset = self.rng.randrange(n) if n else 0
            self.probe_list.append(state)
            self.probe_list[offset], self.probe_list[n] = (
                self.probe_list[n],
                self.probe_list[offset],
            )
        elif state.addr != a.addr or state.port != a.port:
            reclaim = (
                self.config.dead_node_reclaim_s > 0
                and self.now - state.state_change > self.config.dead_node_reclaim_s
            )
            if state.state == NodeState.LEFT or (state.state == NodeState.DEAD and reclaim):
                log.info(
                    "%s: updating address for left or failed node %s to %s:%d",
                    self.name,
                    state.name,
                    ip_text(a.addr),
                    a.port,
                )
                updates_node = True
            else:
                counting(self.stats, "conflicts")
                log.error(
                    "%s: conflicting address for %s. Mine: %s:%d Theirs: %s:%d Old state: %s",
                    self.name,
                    state.name,
                    state.host,
                    state.port,
                    ip_text(a.addr),
                    a.port,
                    state.state.name,
                )
                other = Node(a.node, a.addr, a.port, a.meta, vsn or bytes(6), a.incarnation)
                self.delegate.notify_conflict(state, other)
                return

        is_local = state.name == self.name
        if a.incarnation <= state.incarnation and not is_local and not updates_node:
            return
        if a.incarnation < state.incarnation and is_local:
            return
        self.suspicions.pop(a.node, None)
        self.timers.cancel(("suspect", a.node))
        old_state, old_meta = state.state, state.meta

        if not bootstrap and is_local:
            if a.incarnation == state.incarnation and a.meta == state.meta and a.vsn == state.vsn:
                return
            self._refute(state, a.incarnation)
            log.warning("%s: refuting an alive message for ourselves", self.name)
        else:
            self._broadcast(a.node, a)
            if len(vsn) == 6:
                state.vsn = vsn
            assert a.incarnation >= state.incarnation or updates_node
            state.incarnation = a.incarnation
            state.meta = a.meta
            state.set_addr(a.addr, a.port)
            if state.state != NodeState.ALIVE:
                state.state = NodeState.ALIVE
                state.state_change = self.now
        counting(self.stats, "msg_alive")
        if old_state == NodeState.DEAD or old_state == NodeState.LEFT:
            self.delegate.notify_join(state)
        elif old_meta != state.meta:
            self.delegate.notify_update(state)

    def suspect_node(self, s: Suspect) -> None:
        """ML suspectNode, plus one addition: a suspicion about *us* at an incarnation we
        have already refuted is not just ignored. Its holder missed our refutation (the
        ``alive`` ran out of retransmits before reaching it, or never got past a
        partition), so we gossip our current ``alive`` again, with no new incarnation.
        The queue keeps one message per member, so repeats only restart its retransmits."""
        state = self.nodes.get(s.node)
        if state is None:
            return
        if s.incarnation < state.incarnation:
            if s.node == self.name and not self.left and state.state == NodeState.ALIVE:
                counting(self.stats, "stale_suspicions_answered")
                self._broadcast(
                    state.name,
                    Alive(
                        state.incarnation,
                        state.name,
                        state.addr,
                        state.port,
                        state.meta,
                        state.vsn,
                    ),
                )
            return
        susp = self.suspicions.get(s.node)
        if susp is not None:
            if susp.confirm(s.from_, self.now):
                counting(self.stats, "suspect_confirmations")
                self.timers.set(
                    ("suspect", s.node),
                    susp.deadline,
                    self._suspicion_fired(s.node, state.state_change),
                )
                self._broadcast(s.node, s)
            return
        if state.state != NodeState.ALIVE:
            return
        if state.name == self.name:
            self._refute(state, s.incarnation)
            log.warning("%s: refuting a suspect message (from: %s)", self.name, s.from_)
            return
        self._broadcast(s.node, s)
        counting(self.stats, "msg_suspect")
        state.incarnation = s.incarnation
        state.state = NodeState.SUSPECT
        state.state_change = self.now
        cfg = self.config
        n = self.num_nodes()
        k = cfg.suspicion_mult - 2
        if n - 2 < k or not cfg.lifeguard_suspicion:
            k = 0
        lo = suspicion_timeout(cfg.suspicion_mult, n, cfg.probe_interval_s)
        hi = cfg.suspicion_max_timeout_mult * lo if cfg.lifeguard_suspicion else lo
        susp = Suspicion(s.from_, k, lo, hi, self.now)
        self.suspicions[s.node] = susp
        self.timers.set(("suspect", s.node), susp.deadline, self._suspicion_fired(s.node, self.now))

    def _suspicion_fired(self, node: str, change: float) -> Callable[[float], None]:
        def fire(now: float) -> None:
            state = self.nodes.get(node)
            susp = self.suspicions.get(node)
            if state is None or state.state != NodeState.SUSPECT or state.state_change != change:
                return
            cfg = self.config
            if (
                cfg.lifeguard_awareness
                and susp is not None
                and susp.late_s(now) > cfg.probe_interval_s
            ):
                self._suspicion_late(state, susp, now)
                return
            n = susp.n if susp is not None else 0
            log.info(
                "%s: marking %s as failed, suspect timeout reached (%d peer confirmations)",
                self.name,
                node,
                n,
            )
            self.dead_node(Dead(state.incarnation, node, self.name))

        return fire

    def _suspicion_late(self, state: Node, susp: Suspicion, now: float) -> None:
        """Local health awareness for suspicion timers (not in memberlist, whose Go timers
        cannot be seen firing late): the timer fired more than a probe interval after its
        deadline, so this process was not running — stalled, starved, paused — while the
        suspicion ran. Whatever would have cleared it (the suspect's refutation, which can
        only reach us once our suspicion has reached the suspect) may still be queued
        behind this timer, or never have been sent: our own gossip of the suspicion went
        out, if at all, while we were unresponsive. Declaring the member dead now would be
        a verdict on evidence we did not get to see.

        So, instead: hold the verdict for a grace period, gossip the suspicion again so the
        suspect (if it is alive) hears it and refutes, and count the lateness against our
        own health (+1, as a missing nack does; one point per wake-up however many timers
        it finds late, since one stall is one piece of evidence).

        The grace is the minimum suspicion timeout for the current member count,
        ``suspicion_mult × log10(n) × probe_interval`` — memberlist's own bound on how long
        a fully confirmed suspicion needs to reach the suspect and bring its refutation
        back, which is exactly the round trip this suspicion was denied. A few probe
        intervals (3 s on the LAN preset) would fall short of that bound (4 s at n <= 10,
        8 s at n = 100); the maximum timeout (6 × as long) would delay real detections for
        no gain. A member that is really dead is still
        declared dead by everyone else in the meantime (their ``dead`` reaches us too), and
        by us when the grace ends, as any suspicion with all its confirmations would be.
        Only with ``lifeguard_awareness``: without it, a late timer declares at once, as
        memberlist does."""
        cfg = self.config
        late = susp.late_s(now)
        grace = suspicion_timeout(cfg.suspicion_mult, self.num_nodes(), cfg.probe_interval_s)
        susp.hold(now + grace)
        self.timers.set(
            ("suspect", state.name),
            susp.deadline,
            self._suspicion_fired(state.name, state.state_change),
        )
        self._broadcast(state.name, Suspect(state.incarnation, state.name, self.name))
        if self._late_at != now:
            self._late_at = now
            self.awareness.apply_delta(1)
        counting(self.stats, "suspicions_late")
        log.info(
            "%s: suspicion of %s expired %.1fs ago while we were not running; "
            "holding it %.1fs more",
            self.name,
            state.name,
            late,
            grace,
        )

    def dead_node(self, d: Dead) -> None:
        """ML deadNode."""
        state = self.nodes.get(d.node)
        if state is None or d.incarnation < state.incarnation:
            return
        self.suspicions.pop(d.node, None)
        self.timers.cancel(("suspect", d.node))
        if state.dead_or_left():
            return
        if state.name == self.name:
            if not self.left:
                self._refute(state, d.incarnation)
                log.warning("%s: refuting a dead message (from: %s)", self.name, d.from_)
                return
            self._broadcast(d.node, d, on_finished=self._leave_broadcast_done)
        else:
            self._broadcast(d.node, d)
        counting(self.stats, "msg_dead")
        state.incarnation = d.incarnation
        state.state = NodeState.LEFT if d.node == d.from_ else NodeState.DEAD
        state.state_change = self.now
        self.delegate.notify_leave(state)

    def _leave_broadcast_done(self) -> None:
        if self._leave_done is not None:
            done, self._leave_done = self._leave_done, None
            done()
