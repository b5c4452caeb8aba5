"""Serf 0.9.4's own messages, carried inside memberlist user messages (SERF/messages.go).

Each is one Serf type byte and a msgpack body encoded the Go way (see :mod:`swim.codec`).
Decoders raise :class:`swim.codec.DecodeError` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar

import msgpack

from swim.codec import (
    DECODED_MEMO_MAX,
    PUSH_PULL_NODES_MAX,
    DecodeError,
    Spec,
    _s,
    decode_struct,
    intern_str,
    pack,
    struct_fields,
    unpack,
)

__all__ = [
    "QUERY_FLAG_ACK",
    "QUERY_FLAG_NO_BROADCAST",
    "ConflictMember",
    "Join",
    "KeyRequest",
    "KeyResponse",
    "Leave",
    "PushPullState",
    "Query",
    "QueryResponse",
    "Relay",
    "SerfType",
    "UserEvent",
    "decode_serf",
    "decode_tags",
    "encode_filter_nodes",
    "encode_filter_tag",
    "encode_tags",
]

QUERY_FLAG_ACK = 1
QUERY_FLAG_NO_BROADCAST = 2
TAG_MAGIC = 0xFF
U64 = (1 << 64) - 1

# Bounds on a remote Serf push/pull state (SERF/delegate.go LocalState). Go has none; without
# them a few kilobytes of compressed stream decode into millions of entries, each of which
# Serf then applies (and user events are deduplicated by a linear scan per LTime slot).
MEMBERS_MAX = PUSH_PULL_NODES_MAX
"""Most entries in LeftMembers and in StatusLTimes (one per member)."""
EVENT_SLOTS_MAX = 1 << 16
"""Most slots in Events (the sender's EventBuffer; Serf's default is 512)."""
EVENTS_MAX = 4096
"""Most user events in all slots together."""


class SerfType(IntEnum):
    LEAVE = 0
    JOIN = 1
    PUSH_PULL = 2
    USER_EVENT = 3
    QUERY = 4
    QUERY_RESPONSE = 5
    CONFLICT_RESPONSE = 6
    KEY_REQUEST = 7
    KEY_RESPONSE = 8
    RELAY = 9


def _u64(v: Any, key: str) -> int:
    if v is None:
        return 0
    if type(v) is not int or not 0 <= v <= U64:
        raise DecodeError(f"{key}: expected uint64")
    return v


class SerfMessage:
    __slots__ = ()
    TYPE: ClassVar[SerfType]

    def body(self) -> bytes:
        raise NotImplementedError

    def encode(self) -> bytes:
        return bytes((self.TYPE,)) + self.body()


@dataclass(frozen=True, slots=True)
class Leave(SerfMessage):
    TYPE: ClassVar[SerfType] = SerfType.LEAVE
    ltime: int
    node: str
    prune: bool = False

    SPEC: ClassVar[Spec] = ((b"Node", "node", "str"), (b"Prune", "prune", "bool"))

    def body(self) -> bytes:
        return pack({"LTime": self.ltime, "Node": _s(self.node), "Prune": self.prune})


@dataclass(frozen=True, slots=True)
class Join(SerfMessage):
    TYPE: ClassVar[SerfType] = SerfType.JOIN
    ltime: int
    node: str

    SPEC: ClassVar[Spec] = ((b"Node", "node", "str"),)

    def body(self) -> bytes:
        return pack({"LTime": self.ltime, "Node": _s(self.node)})


@dataclass(frozen=True, slots=True)
class UserEvent(SerfMessage):
    TYPE: ClassVar[SerfType] = SerfType.USER_EVENT
    ltime: int
    name: str
    payload: bytes
    cc: bool

    SPEC: ClassVar[Spec] = (
        (b"Name", "name", "str"),
        (b"Payload", "payload", "bytes"),
        (b"CC", "cc", "bool"),
    )

    def body(self) -> bytes:
        return pack(
            {"CC": self.cc, "LTime": self.ltime, "Name": _s(self.name), "Payload": self.payload}
        )


@dataclass(frozen=True, slots=True)
class Query(SerfMessage):
    TYPE: ClassVar[SerfType] = SerfType.QUERY
    ltime: int
    id: int
    addr: bytes
    port: int
    source_node: str
    filters: tuple[bytes, ...]
    flags: int
    relay_factor: int
    timeout_ns: int
    name: str
    payload: bytes

    SPEC: ClassVar[Spec] = (
        (b"ID", "id", "u32"),
        (b"Addr", "addr", "bytes"),
        (b"Port", "port", "u16"),
        (b"SourceNode", "source_node", "str"),
        (b"Flags", "flags", "u32"),
        (b"RelayFactor", "relay_factor", "u8"),
        (b"Timeout", "timeout_ns", "int"),
        (b"Name", "name", "str"),
        (b"Payload", "payload", "bytes"),
    )

    def body(self) -> bytes:
        return pack(
            {
                "Addr": self.addr,
                "Filters": list(self.filters) if self.filters else None,
                "Flags": self.flags,
                "ID": self.id,
                "LTime": self.ltime,
                "Name": _s(self.name),
                "Payload": self.payload,
                "Port": self.port,
                "RelayFactor": self.relay_factor,
                "SourceNode": _s(self.source_node),
                "Timeout": self.timeout_ns,
            }
        )


@dataclass(frozen=True, slots=True)
class QueryResponse(SerfMessage):
    TYPE: ClassVar[SerfType] = SerfType.QUERY_RESPONSE
    ltime: int
    id: int
    from_: str
    flags: int
    payload: bytes

    SPEC: ClassVar[Spec] = (
        (b"ID", "id", "u32"),
        (b"From", "from_", "str"),
        (b"Flags", "flags", "u32"),
        (b"Payload", "payload", "bytes"),
    )

    def body(self) -> bytes:
        return pack(
            {
                "Flags": self.flags,
                "From": _s(self.from_),
                "ID": self.id,
                "LTime": self.ltime,
                "Payload": self.payload if self.payload else None,
            }
        )


@dataclass(frozen=True, slots=True)
class ConflictMember(SerfMessage):
    """Serf's Member struct, the payload of a ``_serf_conflict`` answer."""

    TYPE: ClassVar[SerfType] = SerfType.CONFLICT_RESPONSE
    name: str
    addr: bytes
    port: int
    tags: dict[str, str]
    status: int
    vsn: bytes

    SPEC: ClassVar[Spec] = (
        (b"Name", "name", "str"),
        (b"Addr", "addr", "bytes"),
        (b"Port", "port", "u16"),
        (b"Status", "status", "int"),
    )

    def body(self) -> bytes:
        v = self.vsn
        return pack(
            {
                "Addr": self.addr,
                "DelegateCur": v[5],
                "DelegateMax": v[4],
                "DelegateMin": v[3],
                "Name": _s(self.name),
                "Port": self.port,
                "ProtocolCur": v[2],
                "ProtocolMax": v[1],
                "ProtocolMin": v[0],
                "Status": self.status,
                "Tags": {_s(k): _s(val) for k, val in sorted(self.tags.items())},
            }
        )


@dataclass(frozen=True, slots=True)
class KeyRequest(SerfMessage):
    TYPE: ClassVar[SerfType] = SerfType.KEY_REQUEST
    key: bytes

    SPEC: ClassVar[Spec] = ((b"Key", "key", "bytes"),)

    def body(self) -> bytes:
        return pack({"Key": self.key})


@dataclass(frozen=True, slots=True)
class KeyResponse(SerfMessage):
    TYPE: ClassVar[SerfType] = SerfType.KEY_RESPONSE
    result: bool
    message: str
    keys: tuple[str, ...]
    primary_key: str

    SPEC: ClassVar[Spec] = (
        (b"Result", "result", "bool"),
        (b"Message", "message", "str"),
        (b"PrimaryKey", "primary_key", "str"),
    )

    def body(self) -> bytes:
        return pack(
            {
                "Keys": [_s(k) for k in self.keys] if self.keys else None,
                "Message": _s(self.message),
                "PrimaryKey": _s(self.primary_key),
                "Result": self.result,
            }
        )


@dataclass(frozen=True, slots=True)
class PushPullState(SerfMessage):
    """Serf's LocalState: clocks, member status times, left members, recent events."""

    TYPE: ClassVar[SerfType] = SerfType.PUSH_PULL
    ltime: int
    status_ltimes: dict[str, int]
    left_members: tuple[str, ...]
    event_ltime: int
    events: tuple[tuple[int, tuple[tuple[str, bytes], ...]] | None, ...]
    query_ltime: int

    def body(self) -> bytes:
        events: list[Any] = []
        for e in self.events:
            if e is None:
                events.append(None)
            else:
                ltime, evs = e
                events.append(
                    {
                        "Events": [{"Name": _s(n), "Payload": p} for n, p in evs],
                        "LTime": ltime,
                    }
                )
        return pack(
            {
                "EventLTime": self.event_ltime,
                "Events": events,
                "LTime": self.ltime,
                "LeftMembers": [_s(m) for m in self.left_members],
                "QueryLTime": self.query_ltime,
                "StatusLTimes": _raw_keys(dict(sorted(self.status_ltimes.items()))),
            }
        )


def _raw_keys(d: dict[str, int]) -> dict[str, int] | dict[bytes, int]:
    """``{_s(k): v for k, v in d.items()}`` where it differs: msgpack packs a valid str as
    the same raw bytes, so only a name with a surrogate (invalid UTF-8 that came in from
    the network) needs the conversion; a member list is a thousand names a push/pull."""
    try:
        "".join(d).encode()
    except UnicodeEncodeError:
        return {_s(k): v for k, v in d.items()}
    return d


@dataclass(frozen=True, slots=True)
class Relay:
    """A response to forward: ``dest`` gets ``inner`` (a Serf message) as a user packet."""

    dest_ip: bytes
    dest_port: int
    dest_name: str
    inner: bytes

    def encode(self) -> bytes:
        header = pack(
            {
                "DestAddr": {"IP": self.dest_ip, "Port": self.dest_port, "Zone": b""},
                "DestName": _s(self.dest_name),
            }
        )
        return bytes((SerfType.RELAY,)) + header + self.inner


# --------------------------------------------------------------------------- decoding


def _ltime(m: dict[bytes, Any], key: bytes = b"LTime") -> int:
    return _u64(m.get(key), key.decode())


def _map(body: bytes) -> dict[bytes, Any]:
    m = unpack(body)
    if m is None:
        return {}  # nil decodes into a zero struct (go-msgpack 0.5.5); serf sends 06 c0
    if not isinstance(m, dict):
        raise DecodeError("expected a msgpack map")
    return m


def _str_list(v: Any, key: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(x, bytes) for x in v):
        raise DecodeError(f"{key}: expected a list of strings")
    return tuple(x.decode("utf-8", "surrogateescape") for x in v)


def decode_serf(buf: bytes) -> SerfMessage | Relay:
    """One Serf message (type byte first).

    Gossiped intents and events (join, leave, user event, query) reach every member many
    times with the same bytes; like memberlist's gossip (``swim.codec.decode_message``) they
    are decoded once per process and the immutable result shared.
    """
    if not buf:
        raise DecodeError("empty serf message")
    t = buf[0]
    if t in _SHARED_TYPES and type(buf) is bytes:
        msg = _DECODED.get(buf)
        if msg is None:
            msg = _decode_serf(buf, t)
            if len(_DECODED) >= DECODED_MEMO_MAX:
                _DECODED.clear()
            _DECODED[buf] = msg
        return msg
    return _decode_serf(buf, t)


_SHARED_TYPES = frozenset((SerfType.LEAVE, SerfType.JOIN, SerfType.USER_EVENT, SerfType.QUERY))
_DECODED: dict[bytes, SerfMessage | Relay] = {}


def _decode_serf(buf: bytes, t: int) -> SerfMessage | Relay:
    body = buf[1:]
    if t == SerfType.LEAVE:
        m = _map(body)
        return Leave(ltime=_ltime(m), **struct_fields(m, Leave.SPEC))
    if t == SerfType.JOIN:
        m = _map(body)
        # Join(ltime=..., **struct_fields(m, Join.SPEC)), without the kwargs round trip
        node = m.get(b"Node")
        return Join(
            _ltime(m),
            intern_str(node.decode("utf-8", "surrogateescape"))
            if type(node) is bytes
            else struct_fields(m, Join.SPEC)["node"],
        )
    if t == SerfType.USER_EVENT:
        m = _map(body)
        return UserEvent(ltime=_ltime(m), **struct_fields(m, UserEvent.SPEC))
    if t == SerfType.QUERY:
        m = _map(body)
        f = m.get(b"Filters")
        if f is not None and (not isinstance(f, list) or not all(isinstance(x, bytes) for x in f)):
            raise DecodeError("Filters: expected a list of byte strings")
        return Query(ltime=_ltime(m), filters=tuple(f or ()), **struct_fields(m, Query.SPEC))
    if t == SerfType.QUERY_RESPONSE:
        m = _map(body)
        return QueryResponse(ltime=_ltime(m), **struct_fields(m, QueryResponse.SPEC))
    if t == SerfType.KEY_REQUEST:
        return KeyRequest(**decode_struct(body, KeyRequest.SPEC))
    if t == SerfType.KEY_RESPONSE:
        m = _map(body)
        return KeyResponse(
            keys=_str_list(m.get(b"Keys"), "Keys"), **struct_fields(m, KeyResponse.SPEC)
        )
    if t == SerfType.CONFLICT_RESPONSE:
        m = _map(body)
        f = struct_fields(m, ConflictMember.SPEC)
        vsn = bytes(
            _u8(m.get(k), k)
            for k in (
                b"ProtocolMin",
                b"ProtocolMax",
                b"ProtocolCur",
                b"DelegateMin",
                b"DelegateMax",
                b"DelegateCur",
            )
        )
        return ConflictMember(tags=_tag_map(m.get(b"Tags")), vsn=vsn, **f)
    if t == SerfType.PUSH_PULL:
        return _decode_push_pull_state(body)
    if t == SerfType.RELAY:
        return _decode_relay(body)
    raise DecodeError(f"unknown serf message type {t}")


def _u8(v: Any, key: bytes) -> int:
    if v is None:
        return 0
    if type(v) is not int or not 0 <= v <= 255:
        raise DecodeError(f"{key.decode()}: expected uint8")
    return v


def _tag_map(v: Any) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise DecodeError("Tags: expected a map")
    out = {}
    for k, val in v.items():
        if not isinstance(k, bytes) or not isinstance(val, bytes):
            raise DecodeError("Tags: expected string keys and values")
        out[k.decode("utf-8", "surrogateescape")] = val.decode("utf-8", "surrogateescape")
    return out


def _decode_push_pull_state(body: bytes) -> PushPullState:
    m = _map(body)
    st = m.get(b"StatusLTimes")
    if st is None:
        st = {}
    if not isinstance(st, dict):
        raise DecodeError("StatusLTimes: expected a map")
    if len(st) > MEMBERS_MAX:
        raise DecodeError(f"StatusLTimes: more than {MEMBERS_MAX} members")
    status: dict[str, int] = {}
    for k, v in st.items():
        if not isinstance(k, bytes):
            raise DecodeError("StatusLTimes: expected string keys")
        status[k.decode("utf-8", "surrogateescape")] = _u64(v, "StatusLTimes")
    raw_events = m.get(b"Events")
    if raw_events is None:
        raw_events = []
    if not isinstance(raw_events, list):
        raise DecodeError("Events: expected a list")
    if len(raw_events) > EVENT_SLOTS_MAX:
        raise DecodeError(f"Events: more than {EVENT_SLOTS_MAX} slots")
    left = m.get(b"LeftMembers")
    if isinstance(left, list) and len(left) > MEMBERS_MAX:
        raise DecodeError(f"LeftMembers: more than {MEMBERS_MAX} members")
    n_events = 0
    events: list[tuple[int, tuple[tuple[str, bytes], ...]] | None] = []
    for e in raw_events:
        if e is None:
            events.append(None)
            continue
        if not isinstance(e, dict):
            raise DecodeError("Events: expected maps")
        evs = e.get(b"Events")
        if evs is None:
            evs = []
        if not isinstance(evs, list):
            raise DecodeError("Events.Events: expected a list")
        n_events += len(evs)
        if n_events > EVENTS_MAX:
            raise DecodeError(f"Events: more than {EVENTS_MAX} user events")
        items = []
        for ue in evs:
            f = struct_fields(ue, ((b"Name", "name", "str"), (b"Payload", "payload", "bytes")))
            items.append((f["name"], f["payload"]))
        events.append((_u64(e.get(b"LTime"), "LTime"), tuple(items)))
    return PushPullState(
        ltime=_ltime(m),
        status_ltimes=status,
        left_members=_str_list(left, "LeftMembers"),
        event_ltime=_ltime(m, b"EventLTime"),
        events=tuple(events),
        query_ltime=_ltime(m, b"QueryLTime"),
    )


def _decode_relay(body: bytes) -> Relay:
    up = msgpack.Unpacker(raw=True, strict_map_key=False, max_buffer_size=len(body) + 1)
    up.feed(body)
    try:
        header = up.unpack()
    except Exception:
        raise DecodeError("bad relay header") from None
    if not isinstance(header, dict) or not isinstance(header.get(b"DestAddr"), dict):
        raise DecodeError("bad relay header")
    dest = header[b"DestAddr"]
    ip = dest.get(b"IP")
    port = dest.get(b"Port")
    if not isinstance(ip, bytes) or len(ip) not in (4, 16):
        raise DecodeError("relay: bad destination IP")
    if type(port) is not int or not 0 < port <= 0xFFFF:
        raise DecodeError("relay: bad destination port")
    name = header.get(b"DestName") or b""
    if not isinstance(name, bytes):
        raise DecodeError("relay: bad destination name")
    inner = body[up.tell() :]
    if not inner:
        raise DecodeError("relay: nothing to relay")
    return Relay(ip, port, name.decode("utf-8", "surrogateescape"), inner)


# --------------------------------------------------------------------------- tags and filters


def encode_tags(tags: dict[str, str]) -> bytes:
    """SERF/serf.go encodeTags: 0xff + msgpack map (keys sorted, for determinism)."""
    return bytes((TAG_MAGIC,)) + pack({_s(k): _s(v) for k, v in sorted(tags.items())})


def decode_tags(meta: bytes) -> dict[str, str]:
    """SERF/serf.go decodeTags: no magic byte means the whole meta is the role.

    The result is shared: every view of a member (in every core of a simulation) gets the
    same dict for the same meta bytes, so callers must treat it as read-only (Serf stores
    it and copies it into each ``Member`` snapshot).
    """
    tags = _TAGS.get(meta)
    if tags is not None:
        return tags
    if not meta or meta[0] != TAG_MAGIC:
        tags = {"role": meta.decode("utf-8", "surrogateescape")}
    else:
        try:
            tags = _tag_map(unpack(meta[1:]))
        except DecodeError:
            tags = {}
    if len(_TAGS) >= _TAGS_MAX:
        _TAGS.clear()
    _TAGS[bytes(meta)] = tags
    return tags


_TAGS: dict[bytes, dict[str, str]] = {}
"""decode_tags' memo (a pure function of the meta bytes)."""
_TAGS_MAX = 1 << 14


def encode_filter_nodes(nodes: tuple[str, ...]) -> bytes:
    return b"\x00" + pack([_s(n) for n in nodes])


def encode_filter_tag(tag: str, expr: str) -> bytes:
    return b"\x01" + pack({"Expr": _s(expr), "Tag": _s(tag)})


def decode_filter(f: bytes) -> tuple[str, Any]:
    """-> ("nodes", tuple of names) or ("tag", (tag, expr)); DecodeError otherwise."""
    if not f:
        raise DecodeError("empty filter")
    if f[0] == 0:
        return "nodes", _str_list(unpack(f[1:]), "filter nodes")
    if f[0] == 1:
        fl = struct_fields(unpack(f[1:]), ((b"Tag", "tag", "str"), (b"Expr", "expr", "str")))
        return "tag", (fl["tag"], fl["expr"])
    raise DecodeError(f"unrecognized filter type {f[0]}")
