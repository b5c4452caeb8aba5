"""The Serf layer over memberlist, as Consul uses it (hashicorp/serf 0.9.4 SERF/serf.go) — sans-IO.

memberlist answers "who is reachable"; Serf adds what a cluster manager needs on top:

* **Tags** — each member's node meta is ``0xff`` + a msgpack map of tags; a change is
  an alive with a higher incarnation, seen by others as a member update.
* **Intents** — join and leave messages stamped with the member Lamport clock. A leave
  intent gossiped *before* memberlist's dead message turns "dead" into "left" instead of
  "failed"; an intent for an unknown member is remembered for ``recent_intent_timeout_s``.
* **Member status** — alive, leaving, left, failed; failed members are retried
  (``reconnect_interval_s``) and reaped after ``reconnect_timeout_s``, left ones after
  ``tombstone_timeout_s``.
* **User events** — named payloads gossiped with their own Lamport clock, de-duplicated
  in a ring of ``event_buffer`` slots and replayed through push/pull.
* **Queries** — a request gossiped to every member (optionally filtered by name or tag)
  whose answers and acks come back directly by UDP, with a deadline. Serf's internal
  queries run key rotation (``_serf_install-key`` and friends) and name-conflict votes.
* **Coordinates** — Vivaldi coordinates ride in memberlist acks (:mod:`swim.coordinate`).

Rules:

1. Every message is validated; garbage is counted in ``dropped`` and never raised.
2. Lamport clocks: receivers witness every stamp; a sender stamps with the current value
   and then increments.
3. Whatever depends on time is a timer in the shared :class:`gossamer.core.TimerWheel`;
   whatever depends on chance draws from the injected ``random.Random``.
4. Request events (``JoinRequested``...) are answered by exactly one completion effect
   carrying the same ``request_id``.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from random import Random  # injected by the driver; cores never call the module

from gossamer import goregexp
from gossamer.core import Effect, Entropy, Event, TimerExpired, TimerWheel, counting
from swim import messages as sm
from swim.broadcast import BroadcastQueue
from swim.codec import DecodeError
from swim.config import SwimConfig
from swim.coordinate import (
    Coordinate,
    CoordinateCache,
    CoordinateClient,
    CoordinateConfig,
    CoordinateError,
    decode_ack_payload,
)
from swim.events import (
    ForceLeaveRequested,
    JoinCompleted,
    JoinRequested,
    KeyOp,
    KeyOperationCompleted,
    KeyOperationRequested,
    KeyringChanged,
    LeaveCompleted,
    LeaveRequested,
    Member,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberStatus,
    MemberUpdated,
    PacketReceived,
    QueryFinished,
    QueryReceived,
    QueryRequested,
    QueryResponded,
    QueryResponseReceived,
    RequestCompleted,
    RespondToQuery,
    ShutdownRequired,
    StreamFailed,
    StreamRequestReceived,
    StreamResponseReceived,
    TagsUpdateRequested,
    UserEventReceived,
    UserEventRequested,
)
from swim.keyring import Keyring, KeyringError
from swim.memberlist import Memberlist, Node, ip_text

__all__ = ["LamportClock", "Serf", "SerfConfig", "SerfState"]

log = logging.getLogger("gossamer.serf")

PROTOCOL_MIN = 2
PROTOCOL_MAX = 5
INTERNAL_PREFIX = "_serf_"
USER_EVENT_SIZE_LIMIT = 9 * 1024
MIN_ENCODED_KEY_LENGTH = 25
U64_MASK = (1 << 64) - 1


_MEMBERLIST_EVENT_TYPES = (
    PacketReceived,
    StreamRequestReceived,
    StreamResponseReceived,
    StreamFailed,
    TimerExpired,
)
"""Inputs Serf hands straight to memberlist."""
_MEMBERLIST_EVENTS = frozenset(_MEMBERLIST_EVENT_TYPES)
"""The same, for a dispatch on the exact type (the common case)."""


class SerfState(Enum):
    ALIVE = "alive"
    LEAVING = "leaving"
    LEFT = "left"
    SHUTDOWN = "shutdown"


@dataclass(frozen=True, slots=True)
class SerfConfig:
    """SERF/config.go DefaultConfig, with the memberlist timings in ``swim``."""

    swim: SwimConfig = field(default_factory=SwimConfig.lan)
    protocol_version: int = 5
    """Serf protocol spoken (the delegate version in memberlist's Vsn); the serf agent's is 5."""
    event_buffer: int = 512
    query_buffer: int = 512
    broadcast_timeout_s: float = 5.0
    leave_propagate_delay_s: float = 1.0
    reap_interval_s: float = 15.0
    reconnect_interval_s: float = 30.0
    reconnect_timeout_s: float = 24 * 3600.0
    tombstone_timeout_s: float = 24 * 3600.0
    recent_intent_timeout_s: float = 300.0
    queue_check_interval_s: float = 30.0
    queue_depth_warning: int = 128
    max_queue_depth: int = 4096
    min_queue_depth: int = 0
    query_timeout_mult: int = 16
    query_response_size_limit: int = 1024
    query_size_limit: int = 1024
    user_event_size_limit: int = 512
    enable_name_conflict_resolution: bool = True
    disable_coordinates: bool = False

    def validate(self) -> None:
        self.swim.validate()
        if not PROTOCOL_MIN <= self.protocol_version <= PROTOCOL_MAX:
            raise ValueError(f"Serf protocol version must be in {PROTOCOL_MIN}..{PROTOCOL_MAX}")
        if self.user_event_size_limit > USER_EVENT_SIZE_LIMIT:
            raise ValueError(f"user event size limit exceeds limit of {USER_EVENT_SIZE_LIMIT}")
        if self.event_buffer < 1 or self.query_buffer < 1:
            raise ValueError("event and query buffers need at least one slot")


class LamportClock:
    """SERF/lamport.go: a uint64 that wraps, as Go's does (a peer may send 2**64 - 1)."""

    __slots__ = ("counter",)

    def __init__(self) -> None:
        self.counter = 0

    def time(self) -> int:
        return self.counter

    def increment(self) -> int:
        self.counter = (self.counter + 1) & U64_MASK
        return self.counter

    def witness(self, v: int) -> None:
        if v >= self.counter:
            self.counter = (v + 1) & U64_MASK


class _MemberState:
    __slots__ = (
        "addr",
        "leave_time",
        "name",
        "port",
        "status",
        "status_ltime",
        "tags",
        "vsn",
    )

    def __init__(self, name: str, addr: bytes, port: int, tags: dict[str, str]) -> None:
        self.name = name
        self.addr = addr
        self.port = port
        self.tags = tags
        self.status = MemberStatus.ALIVE
        self.status_ltime = 0
        self.leave_time = 0.0
        self.vsn = bytes(6)

    def snapshot(self) -> Member:
        v = self.vsn
        # positional, in Member's field order: name, addr, port, tags, status, then the
        # protocol and delegate versions (min, max, cur)
        return Member(
            self.name, ip_text(self.addr), self.port, dict(self.tags), self.status, *v[:6]
        )


@dataclass(slots=True)
class _Intent:
    kind: int
    wall: float
    ltime: int


@dataclass(slots=True)
class _QueryTracker:
    """A query we started (SERF/query.go QueryResponse)."""

    id: int
    ltime: int
    deadline: float
    request_ack: bool
    acks: dict[str, None] = field(default_factory=dict)
    responses: dict[str, bytes] = field(default_factory=dict)
    request_id: int | None = None
    on_response: Callable[[str, bytes], bool] | None = None
    """Internal consumer; returns True when it has heard enough (closes the query early)."""
    on_close: Callable[[], None] | None = None
    closed: bool = False


@dataclass(slots=True)
class _InboundQuery:
    """A query we received and may answer once (SERF/event.go Query)."""

    ltime: int
    id: int
    addr: bytes
    port: int
    source_node: str
    relay_factor: int
    deadline: float
    responded: bool = False


@dataclass(slots=True)
class _KeyTally:
    request_id: int
    num_nodes: int
    num_resp: int = 0
    num_err: int = 0
    messages: dict[str, str] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)
    primary: dict[str, int] = field(default_factory=dict)
    error: str = ""


class Serf:
    """A gossip pool member: memberlist + Serf. The public core of :mod:`swim`.

    ``handle(now, event)`` takes network events (``PacketReceived``, stream events),
    ``TimerExpired`` and the request events of :mod:`swim.events`; effects are sends,
    stream operations, member notifications and request completions.
    """

    def __init__(
        self,
        *,
        name: str,
        addr: str,
        port: int,
        config: SerfConfig,
        tags: dict[str, str] | None,
        rng: Random,
        entropy: Entropy,
        keyring: Keyring | None = None,
    ) -> None:
        config.validate()
        self.name = name
        self.config = config
        self.rng = rng
        self.entropy = entropy
        self.keyring = keyring
        self.tags = dict(tags or {})
        if len(sm.encode_tags(self.tags)) > 512:
            raise ValueError("Encoded length of tags exceeds limit of 512 bytes")
        self.outbox: list[Effect] = []
        self.timers = TimerWheel()
        self.now = 0.0
        self.state = SerfState.ALIVE
        self.clock = LamportClock()
        self.event_clock = LamportClock()
        self.query_clock = LamportClock()
        self.clock.increment()
        self.event_clock.increment()
        self.query_clock.increment()
        self.members: dict[str, _MemberState] = {}
        self.failed_members: list[_MemberState] = []
        self.left_members: list[_MemberState] = []
        self.recent_intents: dict[str, _Intent] = {}
        mult = config.swim.retransmit_mult
        self.broadcasts = BroadcastQueue(mult)
        self.event_broadcasts = BroadcastQueue(mult)
        self.query_broadcasts = BroadcastQueue(mult)
        # each slot: (ltime, events seen at that ltime, in arrival order, as dict keys so
        # the duplicate check is O(1) however many events share a slot)
        self.event_buffer: list[tuple[int, dict[tuple[str, bytes], None]] | None] = [
            None
        ] * config.event_buffer
        self.query_buffer: list[tuple[int, dict[int, None]] | None] = [None] * config.query_buffer
        self.event_min_time = 0
        self.query_min_time = 0
        self._event_join_ignore = 0
        self.queries: dict[int, _QueryTracker] = {}
        self._inbound: dict[int, _InboundQuery] = {}
        self._next_token = 0
        self.coord_client: CoordinateClient | None = None
        self.coord_cache = CoordinateCache()
        if not config.disable_coordinates:
            self.coord_client = CoordinateClient(CoordinateConfig.default(), rng)
            self.coord_cache[name] = self.coord_client.coordinate()
        self.dropped: dict[str, int] = {}
        self.stats: dict[str, int] = {}
        self.ml = Memberlist(
            name=name,
            addr=addr,
            port=port,
            config=config.swim,
            rng=rng,
            entropy=entropy,
            delegate=self,
            keyring=keyring,
            delegate_versions=(PROTOCOL_MIN, PROTOCOL_MAX, config.protocol_version),
            outbox=self.outbox,
            timers=self.timers,
        )
        self.lazy_timers = False
        """As ``Memberlist.lazy_timers``: a driver that sets it need not wake us for gossip
        rounds while nothing is queued (they are replayed on the next input)."""
        self._leave_request: int | None = None
        self._leave_phase = ""
        self._force_leaves: dict[int, None] = {}

    # ------------------------------------------------------------------ core contract

    def start(self, now: float) -> None:
        self.now = now
        self.ml.start(now)
        cfg = self.config
        self.timers.set("reap", now + cfg.reap_interval_s, self._reap_tick)
        self.timers.set("reconnect", now + cfg.reconnect_interval_s, self._reconnect_tick)
        self.timers.set("queue-check", now + cfg.queue_check_interval_s, self._queue_check_tick)

    def handle(self, now: float, event: Event) -> None:
        assert now >= self.now, "time went backwards"
        self.now = now
        if self.state is SerfState.SHUTDOWN:
            self._refuse(event)
            return
        if type(event) in _MEMBERLIST_EVENTS or isinstance(event, _MEMBERLIST_EVENT_TYPES):
            self.ml.handle(now, event)
            return
        self.ml.now = now
        self.timers.run_lazy(now)
        if isinstance(event, JoinRequested):
            self._join(event)
        elif isinstance(event, LeaveRequested):
            self._leave(event.request_id)
        elif isinstance(event, UserEventRequested):
            err = self.user_event(event.name, event.payload, event.coalesce)
            self.outbox.append(RequestCompleted(event.request_id, err))
        elif isinstance(event, QueryRequested):
            self._query_requested(event)
        elif isinstance(event, RespondToQuery):
            err = self._respond_token(event.query_token, event.payload)
            self.outbox.append(QueryResponded(event.query_token, err))
        elif isinstance(event, TagsUpdateRequested):
            self.outbox.append(RequestCompleted(event.request_id, self.set_tags(dict(event.tags))))
        elif isinstance(event, ForceLeaveRequested):
            self._force_leave(event)
        elif isinstance(event, KeyOperationRequested):
            self._key_operation(event)
        else:
            raise TypeError(f"serf cannot handle {type(event).__name__}")
        self.timers.run_due(now)

    def next_deadline(self) -> float | None:
        # After shutdown no timer runs again; a stale deadline would make a driver spin.
        if self.state is SerfState.SHUTDOWN:
            return None
        idle = self.lazy_timers and not (
            self.ml.broadcasts.queued
            or self.broadcasts.queued
            or self.query_broadcasts.queued
            or self.event_broadcasts.queued
        )
        return self.timers.next_deadline(idle=idle)

    def take_effects(self) -> list[Effect]:
        outbox = self.outbox
        if not outbox:
            return []
        out = list(outbox)
        outbox.clear()
        return out

    def _refuse(self, event: Event) -> None:
        """After shutdown, requests still get their one answer."""
        why = "Serf is shut down"
        if isinstance(event, JoinRequested):
            self.outbox.append(JoinCompleted(event.request_id, 0, (why,)))
        elif isinstance(event, LeaveRequested):
            self.outbox.append(LeaveCompleted(event.request_id, ""))
        elif isinstance(event, UserEventRequested | TagsUpdateRequested | ForceLeaveRequested):
            self.outbox.append(RequestCompleted(event.request_id, why))
        elif isinstance(event, QueryRequested):
            self.outbox.append(QueryFinished(event.request_id, (), ()))
        elif isinstance(event, KeyOperationRequested):
            self.outbox.append(KeyOperationCompleted(event.request_id, 0, 0, 0, error=why))
        elif isinstance(event, RespondToQuery):
            self.outbox.append(QueryResponded(event.query_token, why))

    # ------------------------------------------------------------------ public views

    def local_member(self) -> Member:
        return self.members[self.name].snapshot()

    def member_list(self) -> list[Member]:
        return [m.snapshot() for m in self.members.values()]

    def num_nodes(self) -> int:
        return len(self.members)

    def num_alive_ml(self) -> int:
        """memberlist NumMembers: nodes neither dead nor left."""
        return sum(1 for n in self.ml.probe_list if not n.dead_or_left())

    def coordinate(self) -> Coordinate | None:
        return self.coord_client.coordinate() if self.coord_client is not None else None

    def encryption_enabled(self) -> bool:
        return self.keyring is not None and len(self.keyring) > 0

    def stats_map(self) -> dict[str, str]:
        """SERF Stats(), the strings Consul shows under /v1/agent/self Stats.serf_lan."""
        s = {
            "members": str(len(self.members)),
            "failed": str(len(self.failed_members)),
            "left": str(len(self.left_members)),
            "health_score": str(self.ml.awareness.score),
            "member_time": str(self.clock.time()),
            "event_time": str(self.event_clock.time()),
            "query_time": str(self.query_clock.time()),
            "intent_queue": str(len(self.broadcasts)),
            "event_queue": str(len(self.event_broadcasts)),
            "query_queue": str(len(self.query_broadcasts)),
            "encrypted": "true" if self.encryption_enabled() else "false",
        }
        if self.coord_client is not None:
            s["coordinate_resets"] = str(self.coord_client.stats.get("resets", 0))
        return s

    # ------------------------------------------------------------------ memberlist delegate

    def node_meta(self, limit: int) -> bytes:
        meta = sm.encode_tags(self.tags)
        if len(meta) > limit:
            raise ValueError(f"Node tags exceed length limit of {limit} bytes")
        return meta

    def notify_msg(self, buf: bytes) -> None:
        if not buf:
            return
        counting(self.stats, "msgs_received")
        try:
            msg = sm.decode_serf(buf)
        except DecodeError as e:
            counting(self.dropped, f"serf type {buf[0]}: {e.reason.split(':')[0]}")
            return
        rebroadcast = False
        queue = self.broadcasts
        kind = type(msg)  # decode_serf returns exactly these classes
        if kind is sm.Join:
            rebroadcast = self._handle_join_intent(msg)  # type: ignore[arg-type]
        elif kind is sm.Leave:
            rebroadcast = self._handle_leave_intent(msg)  # type: ignore[arg-type]
        elif isinstance(msg, sm.UserEvent):
            rebroadcast = self._handle_user_event(msg)
            queue = self.event_broadcasts
        elif isinstance(msg, sm.Query):
            rebroadcast = self._handle_query(msg)
            queue = self.query_broadcasts
        elif isinstance(msg, sm.QueryResponse):
            self._handle_query_response(msg)
        elif isinstance(msg, sm.Relay):
            self.ml.send_user_packet((ip_text(msg.dest_ip), msg.dest_port), msg.inner)
        else:
            counting(self.dropped, f"unexpected serf message {buf[0]}")
        if rebroadcast:
            queue.queue(bytes(buf))

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        n = len(self.members)
        msgs = self.broadcasts.get(overhead, limit, n)
        used = sum(map(len, msgs)) + overhead * len(msgs)
        q = self.query_broadcasts.get(overhead, limit - used, n)
        used += sum(map(len, q)) + overhead * len(q)
        e = self.event_broadcasts.get(overhead, limit - used, n)
        return msgs + q + e

    def has_broadcasts(self) -> bool:
        """Whether get_broadcasts could hand out anything (memberlist's gossip_idle)."""
        return bool(
            self.broadcasts.queued or self.query_broadcasts.queued or self.event_broadcasts.queued
        )

    def local_state(self, join: bool) -> bytes:
        events = tuple(None if e is None else (e[0], tuple(e[1])) for e in self.event_buffer)
        return sm.PushPullState(
            ltime=self.clock.time(),
            status_ltimes={name: m.status_ltime for name, m in self.members.items()},
            left_members=tuple(m.name for m in self.left_members),
            event_ltime=self.event_clock.time(),
            events=events,
            query_ltime=self.query_clock.time(),
        ).encode()

    def merge_remote_state(self, buf: bytes, join: bool) -> None:
        if not buf or buf[0] != sm.SerfType.PUSH_PULL:
            counting(self.dropped, "remote state: bad type")
            return
        try:
            pp = sm.decode_serf(buf)
        except DecodeError as e:
            counting(self.dropped, f"remote state: {e.reason.split(':')[0]}")
            return
        assert isinstance(pp, sm.PushPullState)
        if pp.ltime > 0:
            self.clock.witness(pp.ltime - 1)
        if pp.event_ltime > 0:
            self.event_clock.witness(pp.event_ltime - 1)
        if pp.query_ltime > 0:
            self.query_clock.witness(pp.query_ltime - 1)
        left = set(pp.left_members)
        for name in pp.left_members:
            self._handle_leave_intent(sm.Leave(pp.status_ltimes.get(name, 0) + 1, name))
        status_ltimes = pp.status_ltimes
        members = self.members
        clock = self.clock
        for name in sorted(status_ltimes):
            if name in left:
                continue
            ltime = status_ltimes[name]
            member = members.get(name)
            if member is not None and ltime <= member.status_ltime:
                # what _handle_join_intent does with old news: witness it, change nothing
                if ltime >= clock.counter:
                    clock.counter = (ltime + 1) & U64_MASK
                continue
            self._handle_join_intent(sm.Join(ltime, name))
        if join and self._event_join_ignore and pp.event_ltime > self.event_min_time:
            self.event_min_time = pp.event_ltime
        for slot in pp.events:
            if slot is None:
                continue
            ltime, evs = slot
            for name, payload in evs:
                self._handle_user_event(sm.UserEvent(ltime, name, payload, False))

    def notify_join(self, node: Node) -> None:
        member = self.members.get(node.name)
        if member is None:
            member = _MemberState(node.name, node.addr, node.port, sm.decode_tags(node.meta))
            intent = self.recent_intents.get(node.name)
            if intent is not None and intent.kind == sm.SerfType.JOIN:
                member.status_ltime = intent.ltime
            if intent is not None and intent.kind == sm.SerfType.LEAVE:
                member.status = MemberStatus.LEAVING
                member.status_ltime = intent.ltime
            self.members[node.name] = member
            old = MemberStatus.NONE
        else:
            old = member.status
            member.status = MemberStatus.ALIVE
            member.leave_time = 0.0
            member.addr = node.addr
            member.port = node.port
            member.tags = sm.decode_tags(node.meta)
        member.vsn = node.vsn
        if old in (MemberStatus.FAILED, MemberStatus.LEFT):
            self.failed_members = [m for m in self.failed_members if m.name != member.name]
            self.left_members = [m for m in self.left_members if m.name != member.name]
        if log.isEnabledFor(logging.DEBUG):  # N^2 joins when a simulated pool starts
            log.debug("%s: EventMemberJoin: %s %s", self.name, member.name, ip_text(member.addr))
        self.outbox.append(MemberJoined(member.snapshot()))

    def notify_leave(self, node: Node) -> None:
        member = self.members.get(node.name)
        if member is None:
            return
        if member.status == MemberStatus.LEAVING:
            member.status = MemberStatus.LEFT
            member.leave_time = self.now
            self.left_members.append(member)
            log.debug("%s: EventMemberLeave: %s %s", self.name, member.name, ip_text(member.addr))
            self.outbox.append(MemberLeft(member.snapshot()))
        elif member.status == MemberStatus.ALIVE:
            member.status = MemberStatus.FAILED
            member.leave_time = self.now
            self.failed_members.append(member)
            log.debug("%s: EventMemberFailed: %s %s", self.name, member.name, ip_text(member.addr))
            self.outbox.append(MemberFailed(member.snapshot()))
        else:
            log.warning("%s: bad state when leave: %s", self.name, member.status.name)

    def notify_update(self, node: Node) -> None:
        member = self.members.get(node.name)
        if member is None:
            return
        member.addr = node.addr
        member.port = node.port
        member.tags = sm.decode_tags(node.meta)
        member.vsn = node.vsn
        log.debug("%s: EventMemberUpdate: %s", self.name, member.name)
        self.outbox.append(MemberUpdated(member.snapshot()))

    def notify_conflict(self, existing: Node, other: Node) -> None:
        if existing.name != self.name:
            log.warning(
                "%s: name conflict for %r: both %s:%d and %s:%d are claiming",
                self.name,
                existing.name,
                existing.host,
                existing.port,
                other.host,
                other.port,
            )
            return
        log.error(
            "%s: node name conflicts with another node at %s:%d. Names must be unique!",
            self.name,
            other.host,
            other.port,
        )
        if self.config.enable_name_conflict_resolution and "conflict" not in self.timers:
            self._resolve_conflict()

    def notify_merge(self, nodes: list[Node]) -> str | None:
        for n in nodes:
            if not n.name:
                return "node name is empty"
        return None

    def ack_payload(self) -> bytes | None:
        if self.coord_client is None:
            return None
        return self.coord_client.ack_payload()

    def notify_ping_complete(self, node: Node, rtt_s: float, payload: bytes) -> None:
        if self.coord_client is None or not payload:
            return
        try:
            coord = decode_ack_payload(payload)
            ours = self.coord_client.update(node.name, coord, rtt_s)  # a copy of the new one
        except CoordinateError as e:
            counting(self.dropped, f"coordinate: {str(e)[:40]}")
            return
        self.coord_cache.put_compact(node.name, coord)  # = coord, in a quarter the memory
        self.coord_cache[self.name] = ours

    # ------------------------------------------------------------------ intents

    def _broadcast(
        self, msg: sm.SerfMessage, on_finished: Callable[[], None] | None = None
    ) -> None:
        self.broadcasts.queue(msg.encode(), on_finished=on_finished)

    def _handle_leave_intent(self, msg: sm.Leave) -> bool:
        self.clock.witness(msg.ltime)
        member = self.members.get(msg.node)
        if member is None:
            return self._upsert_intent(msg.node, sm.SerfType.LEAVE, msg.ltime)
        if msg.ltime <= member.status_ltime:
            return False
        if msg.node == self.name and self.state == SerfState.ALIVE:
            log.debug("%s: refuting an older leave intent", self.name)
            self._broadcast_join(self.clock.time())
            return False
        member.status_ltime = msg.ltime
        if member.status == MemberStatus.ALIVE:
            member.status = MemberStatus.LEAVING
            if msg.prune:
                self._prune(member)
            return True
        if member.status == MemberStatus.FAILED:
            member.status = MemberStatus.LEFT
            self.failed_members = [m for m in self.failed_members if m.name != member.name]
            self.left_members.append(member)
            log.info("%s: EventMemberLeave (forced): %s", self.name, member.name)
            self.outbox.append(MemberLeft(member.snapshot()))
            if msg.prune:
                self._prune(member)
            return True
        if member.status in (MemberStatus.LEAVING, MemberStatus.LEFT):
            if msg.prune:
                self._prune(member)
            return True
        return False

    def _prune(self, member: _MemberState) -> None:
        def erase(now: float) -> None:
            if self.members.get(member.name) is member:
                self.left_members = [m for m in self.left_members if m.name != member.name]
                self._erase(member)

        if member.status == MemberStatus.LEAVING:
            delay = self.config.broadcast_timeout_s + self.config.leave_propagate_delay_s
            self.timers.set(("prune", member.name), self.now + delay, erase)
        else:
            erase(self.now)

    def _handle_join_intent(self, msg: sm.Join) -> bool:
        self.clock.witness(msg.ltime)
        member = self.members.get(msg.node)
        if member is None:
            return self._upsert_intent(msg.node, sm.SerfType.JOIN, msg.ltime)
        if msg.ltime <= member.status_ltime:
            return False
        member.status_ltime = msg.ltime
        if member.status == MemberStatus.LEAVING:
            member.status = MemberStatus.ALIVE
        return True

    def _upsert_intent(self, node: str, kind: int, ltime: int) -> bool:
        old = self.recent_intents.get(node)
        if old is None or ltime > old.ltime:
            self.recent_intents[node] = _Intent(kind, self.now, ltime)
            return True
        return False

    def _broadcast_join(self, ltime: int) -> None:
        msg = sm.Join(ltime, self.name)
        self.clock.witness(ltime)
        self._handle_join_intent(msg)
        self._broadcast(msg)

    # ------------------------------------------------------------------ join, leave, tags

    def _join(self, ev: JoinRequested) -> None:
        if self.state != SerfState.ALIVE:
            self.outbox.append(
                JoinCompleted(ev.request_id, 0, ("Serf can't Join after Leave or Shutdown",))
            )
            return
        if ev.ignore_old:
            self._event_join_ignore += 1

        def done(contacted: int, errors: list[str]) -> None:
            if ev.ignore_old:
                self._event_join_ignore -= 1
            if contacted > 0 and self.state == SerfState.ALIVE:
                self._broadcast_join(self.clock.time())
            self.outbox.append(JoinCompleted(ev.request_id, contacted, tuple(errors)))

        self.ml.join(list(ev.addrs), done)

    def _has_alive_members(self) -> bool:
        return any(
            m.name != self.name and m.status == MemberStatus.ALIVE for m in self.members.values()
        )

    def _leave(self, request_id: int) -> None:
        """SERF Leave: gossip our leave intent, then memberlist's dead-about-self, then wait
        ``leave_propagate_delay_s``. Each phase is bounded by ``broadcast_timeout_s``."""
        if self.state == SerfState.LEFT:
            self.outbox.append(LeaveCompleted(request_id))
            return
        if self.state == SerfState.LEAVING:
            self.outbox.append(LeaveCompleted(request_id, "Leave already in progress"))
            return
        self.state = SerfState.LEAVING
        self._leave_request = request_id
        msg = sm.Leave(self.clock.time(), self.name)
        self.clock.increment()
        self._handle_leave_intent(msg)
        if self._has_alive_members():
            self._leave_phase = "intent"
            self._arm_leave_timeout("timeout while waiting for graceful leave")
            self._broadcast(msg, on_finished=lambda: self._leave_next("intent"))
        else:
            self._leave_phase = "intent"
            self._leave_next("intent")

    def _arm_leave_timeout(self, why: str) -> None:
        self.timers.set(
            "leave", self.now + self.config.broadcast_timeout_s, lambda now: self._leave_failed(why)
        )

    def _leave_next(self, finished: str) -> None:
        """Advance the leave one phase. Broadcast-finished callbacks can fire in the middle of
        building a packet, so the next phase starts from a timer, never re-entrantly."""
        if self._leave_phase != finished:
            return
        self._leave_phase = finished + "-done"
        self.timers.set("leave-step", self.now, lambda now: self._leave_step(finished))

    def _leave_step(self, finished: str) -> None:
        if finished == "intent":
            self._leave_phase = "memberlist"
            self._arm_leave_timeout("timeout waiting for leave broadcast")
            self.ml.leave(lambda: self._leave_next("memberlist"))
        elif finished == "memberlist":
            self._leave_phase = "propagate"
            self.timers.set(
                "leave",
                self.now + self.config.leave_propagate_delay_s,
                lambda now: self._leave_next("propagate"),
            )
        elif finished == "propagate":
            self._leave_phase = ""
            self.timers.cancel("leave")
            if self.state != SerfState.SHUTDOWN:
                self.state = SerfState.LEFT
            rid, self._leave_request = self._leave_request, None
            if rid is not None:
                self.outbox.append(LeaveCompleted(rid))

    def _leave_failed(self, why: str) -> None:
        self._leave_phase = ""
        rid, self._leave_request = self._leave_request, None
        if rid is not None:
            self.outbox.append(LeaveCompleted(rid, why))

    def shutdown(self) -> None:
        """Stop everything; only a leave first makes peers say "left" rather than "failed"."""
        if self.state == SerfState.SHUTDOWN:
            return
        if self.state != SerfState.LEFT:
            log.warning("%s: shutdown without a leave", self.name)
        self.state = SerfState.SHUTDOWN
        self.ml.stop()
        for key in ("reap", "reconnect", "queue-check", "leave", "leave-step"):
            self.timers.cancel(key)
        # Rule 4: no timer runs after this, so requests still in flight get their one
        # answer now: queries close with what they have, leaves and force-leaves end.
        for t in list(self.queries.values()):
            self._close_query(t)
        for force_id in list(self._force_leaves):
            self.timers.cancel(("force-leave", force_id))
            self.outbox.append(RequestCompleted(force_id, "Serf is shut down"))
        self._force_leaves.clear()
        leave_id, self._leave_request = self._leave_request, None
        if leave_id is not None:
            done = self._leave_phase == "propagate"
            self._leave_phase = ""
            self.outbox.append(LeaveCompleted(leave_id, "" if done else "Serf is shut down"))

    def set_tags(self, tags: dict[str, str]) -> str:
        if len(sm.encode_tags(tags)) > 512:
            return "Encoded length of tags exceeds limit of 512 bytes"
        self.tags = dict(tags)
        self.ml.update_meta()
        return ""

    def _force_leave(self, ev: ForceLeaveRequested) -> None:
        msg = sm.Leave(self.clock.time(), ev.node, ev.prune)
        self.clock.increment()
        self._handle_leave_intent(msg)
        if not self._has_alive_members():
            self.outbox.append(RequestCompleted(ev.request_id))
            return
        key = ("force-leave", ev.request_id)

        def sent() -> None:
            if key in self.timers:
                self.timers.cancel(key)
                self._force_leaves.pop(ev.request_id, None)
                self.outbox.append(RequestCompleted(ev.request_id))

        def timeout(now: float) -> None:
            self._force_leaves.pop(ev.request_id, None)
            self.outbox.append(
                RequestCompleted(ev.request_id, "timed out broadcasting node removal")
            )

        self._force_leaves[ev.request_id] = None
        self.timers.set(key, self.now + self.config.broadcast_timeout_s, timeout)
        self._broadcast(msg, on_finished=sent)

    # ------------------------------------------------------------------ user events

    def user_event(self, name: str, payload: bytes, coalesce: bool) -> str:
        """SERF UserEvent; returns an error message or ''."""
        size = len(name.encode()) + len(payload)
        limit = self.config.user_event_size_limit
        if size > limit:
            return f"user event exceeds configured limit of {limit} bytes before encoding"
        msg = sm.UserEvent(self.event_clock.time(), name, payload, coalesce)
        raw = msg.encode()
        if len(raw) > limit:
            return f"encoded user event exceeds configured limit of {limit} bytes after encoding"
        self.event_clock.increment()
        self._handle_user_event(msg)
        self.event_broadcasts.queue(raw)
        return ""

    def _handle_user_event(self, msg: sm.UserEvent) -> bool:
        self.event_clock.witness(msg.ltime)
        if msg.ltime < self.event_min_time:
            return False
        cur = self.event_clock.time()
        size = len(self.event_buffer)
        if cur > size and msg.ltime < cur - size:
            log.warning("%s: received old event %s from time %d", self.name, msg.name, msg.ltime)
            return False
        idx = msg.ltime % size
        seen = self.event_buffer[idx]
        if seen is not None and seen[0] == msg.ltime:
            if (msg.name, msg.payload) in seen[1]:
                return False
        else:
            seen = (msg.ltime, {})
            self.event_buffer[idx] = seen
        seen[1][(msg.name, msg.payload)] = None
        counting(self.stats, "events")
        self.outbox.append(UserEventReceived(msg.ltime, msg.name, msg.payload, msg.cc))
        return True

    # ------------------------------------------------------------------ queries

    def default_query_timeout(self) -> float:
        n = self.num_alive_ml()
        return (
            self.config.swim.gossip_interval_s
            * self.config.query_timeout_mult
            * math.ceil(math.log10(n + 1))
        )

    def query(
        self,
        name: str,
        payload: bytes,
        *,
        filter_nodes: tuple[str, ...] = (),
        filter_tags: tuple[tuple[str, str], ...] = (),
        request_ack: bool = False,
        relay_factor: int = 0,
        timeout_s: float = 0.0,
        request_id: int | None = None,
        on_response: Callable[[str, bytes], bool] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> tuple[_QueryTracker | None, str]:
        """SERF Query: register, handle locally, gossip. Returns (tracker, error)."""
        if self.config.protocol_version < 4:
            return None, "Feature not supported"
        if timeout_s <= 0:
            timeout_s = self.default_query_timeout()
        filters: list[bytes] = []
        if filter_nodes:
            filters.append(sm.encode_filter_nodes(filter_nodes))
        for tag, expr in filter_tags:
            filters.append(sm.encode_filter_tag(tag, expr))
        local = self.ml.local
        q = sm.Query(
            ltime=self.query_clock.time(),
            id=self.rng.getrandbits(31),
            addr=local.addr,
            port=local.port,
            source_node=self.name,
            filters=tuple(filters),
            flags=sm.QUERY_FLAG_ACK if request_ack else 0,
            relay_factor=relay_factor,
            timeout_ns=int(timeout_s * 1e9),
            name=name,
            payload=payload,
        )
        raw = q.encode()
        if len(raw) > self.config.query_size_limit:
            return None, f"query exceeds limit of {self.config.query_size_limit} bytes"
        tracker = _QueryTracker(
            id=q.id,
            ltime=q.ltime,
            deadline=self.now + timeout_s,
            request_ack=request_ack,
            request_id=request_id,
            on_response=on_response,
            on_close=on_close,
        )
        old = self.queries.get(q.ltime)
        if old is not None:
            self._close_query(old)
        self.queries[q.ltime] = tracker
        self.timers.set(
            ("query", q.ltime), tracker.deadline, lambda now: self._close_query(tracker)
        )
        self._handle_query(q)
        self.query_broadcasts.queue(raw)
        return tracker, ""

    def _close_query(self, t: _QueryTracker) -> None:
        if t.closed:
            return
        t.closed = True
        if self.queries.get(t.ltime) is t:
            del self.queries[t.ltime]
        self.timers.cancel(("query", t.ltime))
        if t.request_id is not None:
            self.outbox.append(
                QueryFinished(t.request_id, tuple(t.acks), tuple(t.responses.items()))
            )
        if t.on_close is not None:
            t.on_close()

    def _query_requested(self, ev: QueryRequested) -> None:
        _, err = self.query(
            ev.name,
            ev.payload,
            filter_nodes=ev.filter_nodes,
            filter_tags=ev.filter_tags,
            request_ack=ev.request_ack,
            relay_factor=ev.relay_factor,
            timeout_s=ev.timeout_s,
            request_id=ev.request_id,
        )
        if err:
            self.outbox.append(QueryFinished(ev.request_id, (), (("", err.encode()),)))

    def _handle_query(self, q: sm.Query) -> bool:
        self.query_clock.witness(q.ltime)
        if q.ltime < self.query_min_time:
            return False
        cur = self.query_clock.time()
        size = len(self.query_buffer)
        if cur > size and q.ltime < cur - size:
            return False
        idx = q.ltime % size
        seen = self.query_buffer[idx]
        if seen is not None and seen[0] == q.ltime:
            if q.id in seen[1]:
                return False
        else:
            seen = (q.ltime, {})
            self.query_buffer[idx] = seen
        seen[1][q.id] = None
        counting(self.stats, "queries")
        rebroadcast = not (q.flags & sm.QUERY_FLAG_NO_BROADCAST)
        if not self._should_process(q.filters):
            return rebroadcast
        try:
            dest = (ip_text(q.addr), q.port)
        except ValueError:
            counting(self.dropped, "query: bad source address")
            return False
        if q.flags & sm.QUERY_FLAG_ACK:
            ack = sm.QueryResponse(q.ltime, q.id, self.name, sm.QUERY_FLAG_ACK, b"")
            self.ml.send_user_packet(dest, ack.encode())
            self._relay(q.relay_factor, q.addr, q.port, q.source_node, ack)
        inbound = _InboundQuery(
            q.ltime,
            q.id,
            q.addr,
            q.port,
            q.source_node,
            q.relay_factor,
            self.now + max(0, q.timeout_ns) / 1e9,
        )
        if q.name.startswith(INTERNAL_PREFIX):
            self._internal_query(q, inbound)
        else:
            self._next_token += 1
            token = self._next_token
            self._inbound[token] = inbound

            def forget(now: float) -> None:
                self._inbound.pop(token, None)

            self.timers.set(("inbound", token), inbound.deadline, forget)
            self.outbox.append(
                QueryReceived(token, q.ltime, q.name, q.payload, q.source_node, inbound.deadline)
            )
        return rebroadcast

    def _should_process(self, filters: tuple[bytes, ...]) -> bool:
        for f in filters:
            try:
                kind, val = sm.decode_filter(f)
            except DecodeError:
                return False
            if kind == "nodes":
                if self.name not in val:
                    return False
            else:
                tag, expr = val
                try:
                    if not goregexp.search(expr, self.tags.get(tag, "")):
                        return False
                except goregexp.RegexpError:
                    return False
        return True

    def _respond_token(self, token: int, payload: bytes) -> str:
        inbound = self._inbound.get(token)
        if inbound is None:
            return "response is past the deadline"
        err = self._respond(inbound, payload)
        if not err:
            self._inbound.pop(token, None)
            self.timers.cancel(("inbound", token))
        return err

    def _respond(self, q: _InboundQuery, payload: bytes) -> str:
        """SERF Query.Respond: one answer, straight to the asker, before the deadline."""
        resp = sm.QueryResponse(q.ltime, q.id, self.name, 0, payload)
        raw = resp.encode()
        if len(raw) > self.config.query_response_size_limit:
            return f"response exceeds limit of {self.config.query_response_size_limit} bytes"
        if q.responded:
            return "response already sent"
        if self.now > q.deadline:
            return "response is past the deadline"
        self.ml.send_user_packet((ip_text(q.addr), q.port), raw)
        self._relay(q.relay_factor, q.addr, q.port, q.source_node, resp)
        q.responded = True
        return ""

    def _relay(
        self, factor: int, addr: bytes, port: int, node: str, resp: sm.QueryResponse
    ) -> None:
        if factor == 0:
            return
        members = list(self.members.values())
        if len(members) < factor + 1:
            return
        raw = sm.Relay(addr, port, node, resp.encode()).encode()
        if len(raw) > self.config.query_response_size_limit:
            return
        chosen: list[_MemberState] = []
        n = len(members)
        for _ in range(3 * n):
            if len(chosen) >= factor:
                break
            m = members[self.rng.randrange(n)]
            if m.status != MemberStatus.ALIVE or m.vsn[1] < 5 or m.name == self.name or m in chosen:
                continue
            chosen.append(m)
        for m in chosen:
            self.ml.send_user_packet((ip_text(m.addr), m.port), raw)

    def _handle_query_response(self, resp: sm.QueryResponse) -> None:
        t = self.queries.get(resp.ltime)
        if t is None or t.id != resp.id or t.closed or self.now > t.deadline:
            counting(self.stats, "query_responses_unmatched")
            return
        if resp.flags & sm.QUERY_FLAG_ACK:
            if resp.from_ in t.acks:
                return
            t.acks[resp.from_] = None
            if t.request_id is not None:
                self.outbox.append(QueryResponseReceived(t.request_id, resp.from_, b"", True))
            return
        if resp.from_ in t.responses:
            return
        t.responses[resp.from_] = resp.payload
        if t.request_id is not None:
            self.outbox.append(QueryResponseReceived(t.request_id, resp.from_, resp.payload, False))
        if t.on_response is not None and t.on_response(resp.from_, resp.payload):
            self._close_query(t)

    # ------------------------------------------------------------------ internal queries

    def _internal_query(self, q: sm.Query, inbound: _InboundQuery) -> None:
        kind = q.name[len(INTERNAL_PREFIX) :]
        if kind == "ping":
            return
        if kind == "conflict":
            node = q.payload.decode("utf-8", "surrogateescape")
            if node == self.name:
                return
            m = self.members.get(node)
            if m is None:
                payload = bytes((sm.SerfType.CONFLICT_RESPONSE,)) + b"\xc0"
            else:
                payload = sm.ConflictMember(
                    m.name, m.addr, m.port, m.tags, int(m.status), m.vsn
                ).encode()
            self._respond(inbound, payload)
            return
        if kind in ("install-key", "use-key", "remove-key", "list-keys"):
            self._respond_key(kind, q, inbound)
            return
        log.warning("%s: unhandled internal query %r", self.name, kind)

    def _respond_key(self, kind: str, q: sm.Query, inbound: _InboundQuery) -> None:
        result, message = False, ""
        keys: tuple[str, ...] = ()
        primary = ""
        ring = self.keyring
        if kind == "list-keys":
            if ring is None or not len(ring):
                message = "Keyring is empty (encryption not enabled)"
            else:
                keys = tuple(base64.b64encode(k).decode() for k in ring.keys)
                primary = base64.b64encode(ring.primary or b"").decode()
                result = True
        else:
            key = b""
            try:
                req = sm.decode_serf(q.payload)
                if not isinstance(req, sm.KeyRequest):
                    raise DecodeError("not a key request")
                key = req.key
            except DecodeError as e:
                message = f"Failed to decode key request: {e.reason}"
            if not message:
                if ring is None or not len(ring):
                    message = "No keyring to modify (encryption not enabled)"
                else:
                    try:
                        if kind == "install-key":
                            ring.add_key(key)
                        elif kind == "use-key":
                            ring.use_key(key)
                        else:
                            ring.remove_key(key)
                        result = True
                        log.info("%s: received %s query", self.name, kind)
                        self.outbox.append(KeyringChanged(tuple(ring.keys)))
                    except KeyringError as e:
                        message = str(e)
        resp = sm.KeyResponse(result, message, keys, primary)
        if kind == "list-keys":
            # SERF keyListResponseWithCorrectSize: drop keys until the answer fits
            actual = len(keys)
            for i in range(self.config.query_response_size_limit // MIN_ENCODED_KEY_LENGTH, -1, -1):
                raw = sm.QueryResponse(q.ltime, q.id, self.name, 0, resp.encode()).encode()
                if len(raw) <= self.config.query_response_size_limit:
                    break
                resp = sm.KeyResponse(
                    result,
                    f"truncated key list response, showing first {i} of {actual} keys",
                    keys[:i],
                    primary,
                )
        self._respond(inbound, resp.encode())

    def _key_operation(self, ev: KeyOperationRequested) -> None:
        """SERF KeyManager.handleKeyRequest: query everyone, tally the answers."""
        names = {
            KeyOp.INSTALL: "install-key",
            KeyOp.USE: "use-key",
            KeyOp.REMOVE: "remove-key",
            KeyOp.LIST: "list-keys",
        }
        tally = _KeyTally(ev.request_id, num_nodes=self.num_alive_ml())

        def on_response(node: str, payload: bytes) -> bool:
            tally.num_resp += 1
            try:
                r = sm.decode_serf(payload)
                if not isinstance(r, sm.KeyResponse):
                    raise DecodeError("wrong type")
            except DecodeError:
                tally.messages[node] = f"Invalid key query response type: {payload!r}"
                tally.num_err += 1
                return tally.num_resp >= tally.num_nodes
            if not r.result:
                tally.messages[node] = r.message
                tally.num_err += 1
            elif r.message:
                tally.messages[node] = r.message
            for k in r.keys:
                tally.keys[k] = tally.keys.get(k, 0) + 1
            tally.primary[r.primary_key] = tally.primary.get(r.primary_key, 0) + 1
            return tally.num_resp >= tally.num_nodes

        def on_close() -> None:
            err = ""
            if tally.num_err:
                err = f"{tally.num_err}/{tally.num_nodes} nodes reported failure"
            elif tally.num_resp != tally.num_nodes:
                err = f"{tally.num_resp}/{tally.num_nodes} nodes reported success"
            self.outbox.append(
                KeyOperationCompleted(
                    ev.request_id,
                    tally.num_nodes,
                    tally.num_resp,
                    tally.num_err,
                    dict(tally.messages),
                    dict(tally.keys),
                    dict(tally.primary),
                    err,
                )
            )

        payload = sm.KeyRequest(ev.key).encode()
        _, err = self.query(
            INTERNAL_PREFIX + names[ev.op],
            payload,
            relay_factor=ev.relay_factor,
            on_response=on_response,
            on_close=on_close,
        )
        if err:
            self.outbox.append(KeyOperationCompleted(ev.request_id, 0, 0, 0, error=err))

    def _resolve_conflict(self) -> None:
        """SERF resolveNodeConflict: ask everyone who owns our name; quit if we are the minority."""
        local = self.ml.local
        votes = {"responses": 0, "matching": 0}

        def on_response(node: str, payload: bytes) -> bool:
            try:
                m = sm.decode_serf(payload)
            except DecodeError:
                return False
            if not isinstance(m, sm.ConflictMember):
                return False
            votes["responses"] += 1
            if m.addr == local.addr and m.port == local.port:
                votes["matching"] += 1
            return False

        def on_close() -> None:
            self.timers.cancel("conflict")
            if self.state == SerfState.SHUTDOWN:
                return  # shut down for another reason while the vote was running
            majority = votes["responses"] // 2 + 1
            if votes["matching"] >= majority:
                log.info("%s: majority in name conflict resolution %s", self.name, votes)
                return
            log.warning("%s: minority in name conflict resolution, quitting %s", self.name, votes)
            self.shutdown()
            self.outbox.append(
                ShutdownRequired(
                    f"name conflict: another member holds {self.name!r} "
                    f"({votes['matching']}/{votes['responses']} members agree with us)"
                )
            )

        self.timers.set("conflict", float("inf"), lambda now: None)
        _, err = self.query(
            INTERNAL_PREFIX + "conflict",
            self.name.encode(),
            on_response=on_response,
            on_close=on_close,
        )
        if err:
            self.timers.cancel("conflict")

    # ------------------------------------------------------------------ housekeeping

    def _erase(self, m: _MemberState) -> None:
        self.members.pop(m.name, None)
        if self.coord_client is not None:
            self.coord_client.forget_node(m.name)
            self.coord_cache.pop(m.name, None)
        log.debug("%s: EventMemberReap: %s", self.name, m.name)
        self.outbox.append(MemberReaped(m.snapshot()))

    def _reap_tick(self, now: float) -> None:
        cfg = self.config
        self.timers.set("reap", now + cfg.reap_interval_s, self._reap_tick)
        self.failed_members = self._reap(self.failed_members, cfg.reconnect_timeout_s)
        self.left_members = self._reap(self.left_members, cfg.tombstone_timeout_s)
        horizon = now - cfg.recent_intent_timeout_s
        for name in [n for n, i in self.recent_intents.items() if i.wall < horizon]:
            del self.recent_intents[name]

    def _reap(self, members: list[_MemberState], timeout_s: float) -> list[_MemberState]:
        keep = []
        for m in members:
            if self.now - m.leave_time <= timeout_s:
                keep.append(m)
            else:
                self._erase(m)
        return keep

    def _reconnect_tick(self, now: float) -> None:
        """SERF reconnect: now and then, try to rejoin one failed member (partition healing)."""
        self.timers.set("reconnect", now + self.config.reconnect_interval_s, self._reconnect_tick)
        n = len(self.failed_members)
        if n == 0 or self.state != SerfState.ALIVE:
            return
        alive = len(self.members) - n - len(self.left_members)
        prob = n / max(1, alive)
        if self.rng.random() > prob:
            return
        m = self.failed_members[self.rng.randrange(n)]
        log.info("%s: attempting reconnect to %s", self.name, m.name)
        self.ml.join([(m.name, (ip_text(m.addr), m.port))], lambda c, e: None)

    def _queue_check_tick(self, now: float) -> None:
        cfg = self.config
        self.timers.set("queue-check", now + cfg.queue_check_interval_s, self._queue_check_tick)
        limit = cfg.max_queue_depth
        if cfg.min_queue_depth > 0:
            limit = max(2 * len(self.members), cfg.min_queue_depth)
        for label, q in (
            ("Intent", self.broadcasts),
            ("Event", self.event_broadcasts),
            ("Query", self.query_broadcasts),
        ):
            if len(q) >= cfg.queue_depth_warning:
                log.warning("%s: %s queue depth: %d", self.name, label, len(q))
            if len(q) > limit:
                log.warning(
                    "%s: %s queue depth exceeds limit (%d), dropping", self.name, label, limit
                )
                q.prune(limit)
