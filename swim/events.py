"""Inputs to and outputs of the gossip cores (memberlist and Serf layers).

Inputs are facts (``PacketReceived``); effects the driver must carry out are imperatives
(``SendPacket``, ``OpenStream``); notifications are facts (``MemberFailed``). Addresses are
``(ip, port)`` tuples with the IP as a string; the core never resolves names (that is
I/O): the driver turns ``host:port`` into an IP before it asks the core to join.

Streams are one request frame and at most one response frame, as memberlist uses TCP:

* outbound: the core emits ``OpenStream(stream_id, addr, data, timeout_s,
  expect_response)``; the driver connects, writes, and if asked reads one frame back and
  reports ``StreamResponseReceived`` — or ``StreamFailed`` on any error or at the timeout.
* inbound: the driver reads one frame (see ``swim.codec.stream_frame_length``) and reports
  ``StreamRequestReceived``; the core answers with ``SendStreamResponse`` or
  ``CloseStream``. The driver closes a stream the core has not answered within its own
  timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from gossamer.core import Effect, Event

__all__ = [
    "Address",
    "CloseStream",
    "ForceLeaveRequested",
    "JoinCompleted",
    "JoinRequested",
    "KeyOp",
    "KeyOperationCompleted",
    "KeyOperationRequested",
    "KeyringChanged",
    "LeaveCompleted",
    "LeaveRequested",
    "Member",
    "MemberEvent",
    "MemberFailed",
    "MemberJoined",
    "MemberLeft",
    "MemberReaped",
    "MemberStatus",
    "MemberUpdated",
    "OpenStream",
    "PacketReceived",
    "QueryFinished",
    "QueryReceived",
    "QueryRequested",
    "QueryResponded",
    "QueryResponseReceived",
    "RequestCompleted",
    "RespondToQuery",
    "SendPacket",
    "SendStreamResponse",
    "ShutdownRequired",
    "StreamFailed",
    "StreamRequestReceived",
    "StreamResponseReceived",
    "TagsUpdateRequested",
    "UserEventReceived",
    "UserEventRequested",
]

Address = tuple[str, int]


# --------------------------------------------------------------------------- network inputs


@dataclass(frozen=True, slots=True)
class PacketReceived(Event):
    data: bytes
    addr: Address


@dataclass(frozen=True, slots=True)
class StreamRequestReceived(Event):
    stream_id: int
    data: bytes
    addr: Address


@dataclass(frozen=True, slots=True)
class StreamResponseReceived(Event):
    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamFailed(Event):
    stream_id: int
    reason: str


# --------------------------------------------------------------------------- requests (API)


@dataclass(frozen=True, slots=True)
class JoinRequested(Event):
    request_id: int
    addrs: tuple[tuple[str | None, Address], ...]
    """(expected node name or None, (ip, port)) per address, already resolved."""
    ignore_old: bool = False
    """Serf's ``-replay=false``: do not replay user events from before the join."""


@dataclass(frozen=True, slots=True)
class LeaveRequested(Event):
    request_id: int


@dataclass(frozen=True, slots=True)
class ForceLeaveRequested(Event):
    request_id: int
    node: str
    prune: bool = False


@dataclass(frozen=True, slots=True)
class UserEventRequested(Event):
    request_id: int
    name: str
    payload: bytes
    coalesce: bool = True


@dataclass(frozen=True, slots=True)
class TagsUpdateRequested(Event):
    request_id: int
    tags: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class QueryRequested(Event):
    request_id: int
    name: str
    payload: bytes
    filter_nodes: tuple[str, ...] = ()
    filter_tags: tuple[tuple[str, str], ...] = ()
    request_ack: bool = False
    relay_factor: int = 0
    timeout_s: float = 0.0
    """0 = Serf's default (gossip interval × query timeout mult × ceil(log10(n + 1)))."""


@dataclass(frozen=True, slots=True)
class RespondToQuery(Event):
    """Answer a query we were told about with ``QueryReceived``."""

    query_token: int
    payload: bytes


class KeyOp(IntEnum):
    INSTALL = 1
    USE = 2
    REMOVE = 3
    LIST = 4


@dataclass(frozen=True, slots=True)
class KeyOperationRequested(Event):
    """Serf's KeyManager: run a key query across the cluster and tally the answers."""

    request_id: int
    op: KeyOp
    key: bytes = b""
    relay_factor: int = 0


# --------------------------------------------------------------------------- effects (imperatives)


@dataclass(frozen=True, slots=True)
class SendPacket(Effect):
    addr: Address
    data: bytes


@dataclass(frozen=True, slots=True)
class OpenStream(Effect):
    stream_id: int
    addr: Address
    data: bytes
    timeout_s: float
    expect_response: bool = True


@dataclass(frozen=True, slots=True)
class SendStreamResponse(Effect):
    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class CloseStream(Effect):
    stream_id: int


# --------------------------------------------------------------------------- notifications (facts)


class MemberStatus(IntEnum):
    """Serf's MemberStatus; Consul's /v1/agent/members ``Status`` is this number."""

    NONE = 0
    ALIVE = 1
    LEAVING = 2
    LEFT = 3
    FAILED = 4

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Member:
    """A snapshot of one member as Serf reports it."""

    name: str
    addr: str
    port: int
    tags: dict[str, str]
    status: MemberStatus
    protocol_min: int
    protocol_max: int
    protocol_cur: int
    delegate_min: int
    delegate_max: int
    delegate_cur: int


@dataclass(frozen=True, slots=True)
class MemberEvent(Effect):
    member: Member


class MemberJoined(MemberEvent):
    __slots__ = ()


class MemberLeft(MemberEvent):
    __slots__ = ()


class MemberFailed(MemberEvent):
    __slots__ = ()


class MemberUpdated(MemberEvent):
    __slots__ = ()


class MemberReaped(MemberEvent):
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class UserEventReceived(Effect):
    ltime: int
    name: str
    payload: bytes
    coalesce: bool


@dataclass(frozen=True, slots=True)
class QueryReceived(Effect):
    """A (non-internal) query reached us; answer with ``RespondToQuery(query_token, ...)``."""

    query_token: int
    ltime: int
    name: str
    payload: bytes
    source_node: str
    deadline: float


@dataclass(frozen=True, slots=True)
class QueryResponseReceived(Effect):
    request_id: int
    from_node: str
    payload: bytes
    is_ack: bool


@dataclass(frozen=True, slots=True)
class QueryFinished(Effect):
    request_id: int
    acks: tuple[str, ...]
    responses: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class QueryResponded(Effect):
    """Result of RespondToQuery: ``error`` is empty on success."""

    query_token: int
    error: str


@dataclass(frozen=True, slots=True)
class JoinCompleted(Effect):
    request_id: int
    contacted: int
    errors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LeaveCompleted(Effect):
    request_id: int
    error: str = ""


@dataclass(frozen=True, slots=True)
class RequestCompleted(Effect):
    """A request that returns nothing but success or an error (tags, force-leave, event)."""

    request_id: int
    error: str = ""


@dataclass(frozen=True, slots=True)
class KeyOperationCompleted(Effect):
    """Serf's KeyResponse."""

    request_id: int
    num_nodes: int
    num_resp: int
    num_err: int
    messages: dict[str, str] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)
    primary_keys: dict[str, int] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True, slots=True)
class KeyringChanged(Effect):
    """A key query changed our keyring (primary first): persist it before relying on it,
    so a restarted agent still speaks the cluster's current key."""

    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ShutdownRequired(Effect):
    """The core has stopped itself (lost a name-conflict vote) and the agent must exit."""

    reason: str
