"""memberlist protocol 2 wire codec, as Serf 0.9.4 speaks it (shared/reference/memberlist-wire.md).

Layers, outermost first:

    UDP packet:  [AES-GCM envelope] -> [hasCrc 0c|crc32] -> [compress 09] -> message | compound 07
    TCP stream:  [encrypt frame 0a|len|envelope] -> [compress 09] -> message

Rules:

1. A message is one type byte and one msgpack value, encoded the way Go's go-msgpack
   encodes a struct: a map keyed by Go field names in byte-wise sorted order, strings and
   ``[]byte`` both as old-spec raw (``a0``-``bf``, ``da``, ``db``; never ``d9`` or bin).
   :func:`pack` does exactly that; message classes build their maps in sorted order.
2. Decoding is lenient where Go is (unknown keys skipped, missing keys zero, nil for a whole
   struct zero, str8/bin accepted, trailing bytes after the value ignored) and strict where
   Python would otherwise crash later (wrong types, out-of-range integers): such input raises
   :class:`DecodeError`, which cores count and drop. Nothing else escapes a decoder.
3. Every length is bounded: a UDP packet by :data:`PACKET_BYTES_MAX`, an inflated payload
   by :data:`INFLATE_BYTES_MAX`, a stream by :data:`STREAM_BYTES_MAX` (Go's
   ``maxPushStateBytes``), nesting of compound/compress by :data:`NESTING_MAX`. Within one
   UDP packet all compress layers share :data:`PACKET_INFLATE_BYTES_MAX` and all parts
   :data:`PACKET_PARTS_MAX`, so nesting cannot multiply them; a push/pull lists at most
   :data:`PUSH_PULL_NODES_MAX` nodes.
4. Node names and other Go strings may be arbitrary bytes; we keep them as ``str`` decoded
   with ``surrogateescape`` so they round-trip exactly.
"""

from __future__ import annotations

import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar

import msgpack

from gossamer.core import Entropy
from swim import lzw
from swim.keyring import DecryptError, Keyring, decrypt, encrypt

__all__ = [
    "INFLATE_BYTES_MAX",
    "NESTING_MAX",
    "PACKET_BYTES_MAX",
    "PACKET_INFLATE_BYTES_MAX",
    "PACKET_PARTS_MAX",
    "PUSH_PULL_NODES_MAX",
    "STREAM_BYTES_MAX",
    "Ack",
    "Alive",
    "Compress",
    "Dead",
    "DecodeError",
    "ErrResp",
    "FrameReader",
    "IndirectPing",
    "Message",
    "MsgType",
    "Nack",
    "Ping",
    "PushNodeState",
    "PushPull",
    "Suspect",
    "User",
    "decode_message",
    "encode_message",
    "make_compound",
    "open_packet",
    "open_stream",
    "pack",
    "seal_packet",
    "seal_stream",
    "split_compound",
    "stream_frame_length",
    "unpack",
]

PACKET_BYTES_MAX = 65536
"""Receive buffer of memberlist's UDP transport (ML/net_transport.go udpPacketBufSize)."""
STREAM_BYTES_MAX = 20 * 1024 * 1024
"""ML/net.go maxPushStateBytes: the largest stream frame we accept."""
INFLATE_BYTES_MAX = STREAM_BYTES_MAX
"""Largest inflated compress payload (bounds decompression bombs)."""
NESTING_MAX = 4
"""compound/compress wrappers nest at most this deep (Go recurses without bound)."""
PACKET_INFLATE_BYTES_MAX = PACKET_BYTES_MAX * 16
"""All compress layers of one UDP packet together inflate to at most this (nested bombs)."""
PACKET_PARTS_MAX = 1024
"""Messages (plus dropped parts) one UDP packet may yield in all. memberlist sends at most
255 (one compound); nested compounds could otherwise carry ~100k tiny messages."""
PUSH_PULL_NODES_MAX = 1 << 17
"""Most node states one push/pull may list: above any memberlist pool, and it stops a few
kilobytes of compressed ``{}`` maps from decoding into millions of objects."""
META_BYTES_MAX = 512
"""ML/net.go MetaMaxSize."""
U8, U16, U32 = 0xFF, 0xFFFF, 0xFFFFFFFF

Spec = tuple[tuple[bytes, str, str], ...]
"""A Go struct's decoding table: (wire key, python attribute, kind) per field."""


class DecodeError(ValueError):
    """Malformed bytes from the network. Cores catch it, count the reason and drop."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MsgType(IntEnum):
    PING = 0
    INDIRECT_PING = 1
    ACK = 2
    SUSPECT = 3
    ALIVE = 4
    DEAD = 5
    PUSH_PULL = 6
    COMPOUND = 7
    USER = 8
    COMPRESS = 9
    ENCRYPT = 10
    NACK = 11
    HAS_CRC = 12
    ERR = 13


# --------------------------------------------------------------------------- msgpack, Go style

_packer = msgpack.Packer(use_bin_type=False, autoreset=True)


def pack(obj: Any) -> bytes:
    """msgpack with Go's old-spec raw strings (str and bytes both become raw)."""
    out: bytes = _packer.pack(obj)
    return out


def unpack(body: bytes | memoryview) -> Any:
    """One msgpack value, raw strings as bytes; trailing bytes ignored as Go does."""
    try:
        return msgpack.unpackb(body, raw=True, strict_map_key=False, use_list=True)
    except msgpack.ExtraData as e:  # Go's decoder reads one value and leaves the rest
        return e.unpacked
    except Exception as e:  # msgpack raises several types for bad input
        raise DecodeError(f"bad msgpack: {type(e).__name__}") from None


def _s(v: str) -> bytes:
    return v.encode("utf-8", "surrogateescape")


def _str(v: Any, key: str) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "surrogateescape")
    if v is None:
        return ""
    raise DecodeError(f"{key}: expected string")


def _bytes(v: Any, key: str) -> bytes:
    if isinstance(v, bytes):
        return v
    if v is None:
        return b""
    if isinstance(v, list) and all(type(x) is int and 0 <= x <= U8 for x in v):
        return bytes(v)  # a Go []uint8 encoded as an array by a non-Go peer
    raise DecodeError(f"{key}: expected bytes")


def _uint(v: Any, key: str, hi: int) -> int:
    if v is None:
        return 0
    if type(v) is not int or not 0 <= v <= hi:
        raise DecodeError(f"{key}: expected integer in 0..{hi}")
    return v


def _int(v: Any, key: str) -> int:
    if v is None:
        return 0
    if type(v) is not int or not -(2**63) <= v < 2**63:
        raise DecodeError(f"{key}: expected int64")
    return v


def _bool(v: Any, key: str) -> bool:
    if v is None:
        return False
    if type(v) is not bool:
        raise DecodeError(f"{key}: expected bool")
    return v


_CONVERTERS: dict[str, Callable[[Any, str], Any]] = {
    "str": _str,
    "bytes": _bytes,
    "u8": lambda v, k: _uint(v, k, U8),
    "u16": lambda v, k: _uint(v, k, U16),
    "u32": lambda v, k: _uint(v, k, U32),
    "int": _int,
    "bool": _bool,
}


def decode_struct(body: bytes | memoryview | Any, spec: Spec) -> dict[str, Any]:
    """Map a msgpack map onto fields: ``spec`` = ((wire key, python name, kind), ...)."""
    m = unpack(body) if isinstance(body, bytes | memoryview) else body
    return struct_fields(m, spec)


def struct_fields(m: Any, spec: Spec) -> dict[str, Any]:
    if m is None:
        m = {}  # go-msgpack 0.5.5 decodes nil into a struct as its zero value, no error
    if not isinstance(m, dict):
        raise DecodeError("expected a msgpack map")
    out: dict[str, Any] = {}
    get = m.get
    for wire, name, kind in spec:
        out[name] = _CONVERTERS[kind](get(wire), name)
    return out


# --------------------------------------------------------------------------- messages


class Message:
    """A memberlist message: a type byte and a body.

    Messages are immutable, so :meth:`encode` remembers its bytes in the ``_wire`` slot (not a
    dataclass field: equality, hashing and repr ignore it): an alive or suspect message is
    re-gossiped by every member that learns from it, and :func:`decode_message` hands all of
    them the same object.
    """

    __slots__ = ("_wire",)
    TYPE: ClassVar[MsgType]
    _wire: bytes

    def body(self) -> bytes:
        raise NotImplementedError

    def encode(self) -> bytes:
        try:
            return self._wire
        except AttributeError:
            wire = bytes((self.TYPE,)) + self.body()
            object.__setattr__(self, "_wire", wire)  # frozen dataclasses refuse setattr
            return wire


@dataclass(frozen=True, slots=True)
class Ping(Message):
    TYPE: ClassVar[MsgType] = MsgType.PING
    seq_no: int
    node: str
    source_addr: bytes = b""
    source_port: int = 0
    source_node: str = ""

    SPEC: ClassVar[Spec] = (
        (b"SeqNo", "seq_no", "u32"),
        (b"Node", "node", "str"),
        (b"SourceAddr", "source_addr", "bytes"),
        (b"SourcePort", "source_port", "u16"),
        (b"SourceNode", "source_node", "str"),
    )

    def body(self) -> bytes:
        m: dict[str, Any] = {"Node": _s(self.node), "SeqNo": self.seq_no}
        # omitempty, and keys stay in sorted order: SourceAddr < SourceNode < SourcePort
        if self.source_addr:
            m["SourceAddr"] = self.source_addr
        if self.source_node:
            m["SourceNode"] = _s(self.source_node)
        if self.source_port:
            m["SourcePort"] = self.source_port
        return pack(m)


@dataclass(frozen=True, slots=True)
class IndirectPing(Message):
    TYPE: ClassVar[MsgType] = MsgType.INDIRECT_PING
    seq_no: int
    target: bytes
    port: int
    node: str
    nack: bool
    source_addr: bytes = b""
    source_port: int = 0
    source_node: str = ""

    SPEC: ClassVar[Spec] = (
        (b"SeqNo", "seq_no", "u32"),
        (b"Target", "target", "bytes"),
        (b"Port", "port", "u16"),
        (b"Node", "node", "str"),
        (b"Nack", "nack", "bool"),
        (b"SourceAddr", "source_addr", "bytes"),
        (b"SourcePort", "source_port", "u16"),
        (b"SourceNode", "source_node", "str"),
    )

    def body(self) -> bytes:
        m: dict[str, Any] = {
            "Nack": self.nack,
            "Node": _s(self.node),
            "Port": self.port,
            "SeqNo": self.seq_no,
        }
        if self.source_addr:
            m["SourceAddr"] = self.source_addr
        if self.source_node:
            m["SourceNode"] = _s(self.source_node)
        if self.source_port:
            m["SourcePort"] = self.source_port
        m["Target"] = self.target
        return pack(m)


@dataclass(frozen=True, slots=True)
class Ack(Message):
    TYPE: ClassVar[MsgType] = MsgType.ACK
    seq_no: int
    payload: bytes | None = None

    SPEC: ClassVar[Spec] = ((b"SeqNo", "seq_no", "u32"), (b"Payload", "payload", "bytes"))

    def body(self) -> bytes:
        return pack({"Payload": self.payload, "SeqNo": self.seq_no})


@dataclass(frozen=True, slots=True)
class Nack(Message):
    TYPE: ClassVar[MsgType] = MsgType.NACK
    seq_no: int

    SPEC: ClassVar[Spec] = ((b"SeqNo", "seq_no", "u32"),)

    def body(self) -> bytes:
        return pack({"SeqNo": self.seq_no})


@dataclass(frozen=True, slots=True)
class Suspect(Message):
    TYPE: ClassVar[MsgType] = MsgType.SUSPECT
    incarnation: int
    node: str
    from_: str

    SPEC: ClassVar[Spec] = (
        (b"Incarnation", "incarnation", "u32"),
        (b"Node", "node", "str"),
        (b"From", "from_", "str"),
    )

    def body(self) -> bytes:
        return pack(
            {"From": _s(self.from_), "Incarnation": self.incarnation, "Node": _s(self.node)}
        )


@dataclass(frozen=True, slots=True)
class Dead(Message):
    TYPE: ClassVar[MsgType] = MsgType.DEAD
    incarnation: int
    node: str
    from_: str

    SPEC: ClassVar[Spec] = Suspect.SPEC

    def body(self) -> bytes:
        return pack(
            {"From": _s(self.from_), "Incarnation": self.incarnation, "Node": _s(self.node)}
        )


@dataclass(frozen=True, slots=True)
class Alive(Message):
    TYPE: ClassVar[MsgType] = MsgType.ALIVE
    incarnation: int
    node: str
    addr: bytes
    port: int
    meta: bytes
    vsn: bytes
    """[pmin, pmax, pcur, dmin, dmax, dcur] as 6 raw bytes (Go []uint8)."""

    SPEC: ClassVar[Spec] = (
        (b"Incarnation", "incarnation", "u32"),
        (b"Node", "node", "str"),
        (b"Addr", "addr", "bytes"),
        (b"Port", "port", "u16"),
        (b"Meta", "meta", "bytes"),
        (b"Vsn", "vsn", "bytes"),
    )

    def body(self) -> bytes:
        return pack(
            {
                "Addr": self.addr,
                "Incarnation": self.incarnation,
                "Meta": self.meta,
                "Node": _s(self.node),
                "Port": self.port,
                "Vsn": self.vsn,
            }
        )


@dataclass(frozen=True, slots=True)
class User(Message):
    """A delegate (Serf) message: the raw bytes after the type byte."""

    TYPE: ClassVar[MsgType] = MsgType.USER
    payload: bytes

    def body(self) -> bytes:
        return self.payload


@dataclass(frozen=True, slots=True)
class ErrResp(Message):
    TYPE: ClassVar[MsgType] = MsgType.ERR
    error: str

    SPEC: ClassVar[Spec] = ((b"Error", "error", "str"),)

    def body(self) -> bytes:
        return pack({"Error": _s(self.error)})


@dataclass(frozen=True, slots=True)
class Compress(Message):
    TYPE: ClassVar[MsgType] = MsgType.COMPRESS
    algo: int
    buf: bytes

    SPEC: ClassVar[Spec] = ((b"Algo", "algo", "u8"), (b"Buf", "buf", "bytes"))

    def body(self) -> bytes:
        return pack({"Algo": self.algo, "Buf": self.buf})


class NodeState(IntEnum):
    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


@dataclass(frozen=True, slots=True)
class PushNodeState:
    name: str
    addr: bytes
    port: int
    meta: bytes
    incarnation: int
    state: int
    vsn: bytes

    SPEC: ClassVar[Spec] = (
        (b"Name", "name", "str"),
        (b"Addr", "addr", "bytes"),
        (b"Port", "port", "u16"),
        (b"Meta", "meta", "bytes"),
        (b"Incarnation", "incarnation", "u32"),
        (b"State", "state", "int"),
        (b"Vsn", "vsn", "bytes"),
    )

    def to_wire(self) -> dict[str, Any]:
        return {
            "Addr": self.addr,
            "Incarnation": self.incarnation,
            "Meta": self.meta,
            "Name": _s(self.name),
            "Port": self.port,
            "State": self.state,
            "Vsn": self.vsn,
        }


@dataclass(frozen=True, slots=True)
class PushPull(Message):
    """The TCP state exchange: a header, every node we know, then the delegate's state."""

    TYPE: ClassVar[MsgType] = MsgType.PUSH_PULL
    join: bool
    nodes: tuple[PushNodeState, ...]
    user_state: bytes = b""

    def body(self) -> bytes:
        parts = [
            pack(
                {
                    "Join": self.join,
                    "Nodes": len(self.nodes),
                    "UserStateLen": len(self.user_state),
                }
            )
        ]
        parts.extend(pack(n.to_wire()) for n in self.nodes)
        parts.append(self.user_state)
        return b"".join(parts)


_PUSH_HEADER_SPEC = (
    (b"Join", "join", "bool"),
    (b"Nodes", "nodes", "int"),
    (b"UserStateLen", "user_state_len", "int"),
)

_SIMPLE: dict[int, Any] = {
    MsgType.PING: Ping,
    MsgType.INDIRECT_PING: IndirectPing,
    MsgType.ACK: Ack,
    MsgType.NACK: Nack,
    MsgType.SUSPECT: Suspect,
    MsgType.DEAD: Dead,
    MsgType.ALIVE: Alive,
    MsgType.ERR: ErrResp,
    MsgType.COMPRESS: Compress,
}


def encode_message(msg: Message) -> bytes:
    return msg.encode()


# Hand-specialised decoders for the messages every probe and gossip round carries. Each does
# what ``cls(**decode_struct(body, cls.SPEC))`` does, field for field (the converters above
# run for anything but the common well-typed value, so errors and zero values are the
# same), without building a kwargs dict per message.


def _map_of(body: bytes | memoryview) -> dict[bytes, Any]:
    m = unpack(body)
    if type(m) is dict:
        return m
    if m is None:
        return {}  # go-msgpack 0.5.5 decodes nil into a struct as its zero value, no error
    if not isinstance(m, dict):
        raise DecodeError("expected a msgpack map")
    return m


def _u32_of(v: Any, key: str) -> int:
    if type(v) is int and 0 <= v <= U32:
        return v
    return _uint(v, key, U32)


def _u16_of(v: Any, key: str) -> int:
    if type(v) is int and 0 <= v <= U16:
        return v
    return _uint(v, key, U16)


def _str_of(v: Any, key: str) -> str:
    if type(v) is bytes:
        return v.decode("utf-8", "surrogateescape")
    return _str(v, key)


def _bytes_of(v: Any, key: str) -> bytes:
    if type(v) is bytes:
        return v
    return _bytes(v, key)


def _dec_ping(body: memoryview) -> Ping:
    g = _map_of(body).get
    return Ping(
        _u32_of(g(b"SeqNo"), "seq_no"),
        _str_of(g(b"Node"), "node"),
        _bytes_of(g(b"SourceAddr"), "source_addr"),
        _u16_of(g(b"SourcePort"), "source_port"),
        _str_of(g(b"SourceNode"), "source_node"),
    )


def _dec_ack(body: memoryview) -> Ack:
    g = _map_of(body).get
    return Ack(_u32_of(g(b"SeqNo"), "seq_no"), _bytes_of(g(b"Payload"), "payload"))


def _dec_alive(body: memoryview) -> Alive:
    g = _map_of(body).get
    return Alive(
        _u32_of(g(b"Incarnation"), "incarnation"),
        intern_str(_str_of(g(b"Node"), "node")),
        intern_bytes(_bytes_of(g(b"Addr"), "addr")),
        _u16_of(g(b"Port"), "port"),
        intern_bytes(_bytes_of(g(b"Meta"), "meta")),
        intern_bytes(_bytes_of(g(b"Vsn"), "vsn")),
    )


def _dec_suspect(body: memoryview) -> Suspect:
    g = _map_of(body).get
    return Suspect(
        _u32_of(g(b"Incarnation"), "incarnation"),
        _str_of(g(b"Node"), "node"),
        _str_of(g(b"From"), "from_"),
    )


def _dec_dead(body: memoryview) -> Dead:
    g = _map_of(body).get
    return Dead(
        _u32_of(g(b"Incarnation"), "incarnation"),
        _str_of(g(b"Node"), "node"),
        _str_of(g(b"From"), "from_"),
    )


def _generic_decoder(cls: Any) -> Callable[[memoryview], Message]:
    def dec(body: memoryview) -> Message:
        return cls(**decode_struct(body, cls.SPEC))  # type: ignore[no-any-return]

    return dec


_DECODERS: dict[int, Callable[[memoryview], Message]] = {
    t: _generic_decoder(cls) for t, cls in _SIMPLE.items()
}
_DECODERS.update(
    {
        MsgType.PING: _dec_ping,
        MsgType.ACK: _dec_ack,
        MsgType.ALIVE: _dec_alive,
        MsgType.SUSPECT: _dec_suspect,
        MsgType.DEAD: _dec_dead,
    }
)

_SHARED_TYPES = frozenset((MsgType.ALIVE, MsgType.SUSPECT, MsgType.DEAD))
"""Gossiped messages: the same bytes reach every member many times over."""
_DECODED: dict[bytes, Message] = {}
"""decode_message's memo for gossiped messages (decoding is a pure function of the bytes and
messages are immutable, so every core in a process may share the result, and with it the
strings inside: members' names, addresses and meta are stored once, not once per view)."""
DECODED_MEMO_MAX = 1 << 16
"""Entries the memo keeps; it is emptied when full (bounds memory, keeps it deterministic)."""


def decode_message(buf: bytes) -> Message:
    """Decode one message (type byte + body). Compound/CRC/encrypt wrappers are not messages:
    use :func:`open_packet` or :func:`open_stream` for those."""
    if not buf:
        raise DecodeError("empty message")
    t = buf[0]
    dec = _DECODERS.get(t)
    if dec is not None:
        if t in _SHARED_TYPES and type(buf) is bytes:
            msg = _DECODED.get(buf)
            if msg is None:
                msg = dec(memoryview(buf)[1:])
                if len(_DECODED) >= DECODED_MEMO_MAX:
                    _DECODED.clear()
                _DECODED[buf] = msg
            return msg
        return dec(memoryview(buf)[1:])
    if t == MsgType.USER:
        return User(bytes(buf[1:]))
    if t == MsgType.PUSH_PULL:
        return _decode_push_pull(buf)
    raise DecodeError(f"unknown message type {t}")


def _decode_push_pull(buf: bytes) -> PushPull:
    up = msgpack.Unpacker(raw=True, strict_map_key=False, max_buffer_size=len(buf) + 1)
    up.feed(memoryview(buf)[1:])
    memo = _PUSH_STATES
    try:
        header = struct_fields(up.unpack(), _PUSH_HEADER_SPEC)
        n = header["nodes"]
        user_len = header["user_state_len"]
        if not 0 <= n <= min(len(buf), PUSH_PULL_NODES_MAX) or not 0 <= user_len <= len(buf):
            raise DecodeError("push/pull header counts out of range")
        nodes = []
        skip = up.skip
        tell = up.tell
        start = tell()
        for _ in range(n):
            # Find the entry's bytes, then decode them once per process: every member
            # lists every member, so the same entry arrives in push/pulls over and over.
            skip()
            end = tell()
            raw = buf[1 + start : 1 + end]
            state = memo.get(raw)
            if state is None:
                state = _push_node_state(msgpack.unpackb(raw, raw=True, strict_map_key=False))
                if len(memo) >= DECODED_MEMO_MAX:
                    memo.clear()
                memo[raw] = state
            nodes.append(state)
            start = end
        consumed = 1 + tell()
    except msgpack.OutOfData:
        raise DecodeError("truncated push/pull") from None
    except DecodeError:
        raise
    except Exception as e:
        raise DecodeError(f"bad push/pull: {type(e).__name__}") from None
    user_state = bytes(buf[consumed : consumed + user_len])
    if len(user_state) != user_len:
        raise DecodeError(f"Failed to read full user state ({len(user_state)} / {user_len})")
    return PushPull(join=header["join"], nodes=tuple(nodes), user_state=user_state)


_PUSH_STATES: dict[bytes, PushNodeState] = {}
"""_decode_push_pull's memo, entry bytes -> PushNodeState (as ``_DECODED``)."""


def _push_node_state(m: Any) -> PushNodeState:
    """``PushNodeState(**struct_fields(m, PushNodeState.SPEC))``, fields checked in the same
    order, with the member's name and byte strings interned (shared by every view)."""
    if type(m) is not dict:
        if m is None:
            m = {}
        elif not isinstance(m, dict):
            raise DecodeError("expected a msgpack map")
    g = m.get
    state = g(b"State")
    return PushNodeState(
        intern_str(_str_of(g(b"Name"), "name")),
        intern_bytes(_bytes_of(g(b"Addr"), "addr")),
        _u16_of(g(b"Port"), "port"),
        intern_bytes(_bytes_of(g(b"Meta"), "meta")),
        _u32_of(g(b"Incarnation"), "incarnation"),
        state if type(state) is int and 0 <= state <= 3 else _int(state, "state"),
        intern_bytes(_bytes_of(g(b"Vsn"), "vsn")),
    )


def encode_push_pull(join: bool, nodes: Any, user_state: bytes) -> bytes:
    """``PushPull(join, states, user_state).encode()`` straight from objects with the
    PushNodeState attributes (``Node`` will do; ``state`` is converted with ``int``), without
    a PushNodeState per member. Each entry's bytes are remembered by its fields: every
    member lists every member, so the same entries are encoded over and over."""
    memo = _PUSH_ENTRIES
    parts = [bytes((MsgType.PUSH_PULL,)), b""]
    append = parts.append
    for n in nodes:
        key = (n.name, n.incarnation, n.state, n.port, n.addr, n.meta, n.vsn)
        entry = memo.get(key)
        if entry is None:
            entry = pack(
                {
                    "Addr": n.addr,
                    "Incarnation": n.incarnation,
                    "Meta": n.meta,
                    "Name": n.name.encode("utf-8", "surrogateescape"),
                    "Port": n.port,
                    "State": int(n.state),
                    "Vsn": n.vsn,
                }
            )
            if len(memo) >= DECODED_MEMO_MAX:
                memo.clear()
            memo[key] = entry
        append(entry)
    parts[1] = pack({"Join": join, "Nodes": len(parts) - 2, "UserStateLen": len(user_state)})
    append(user_state)
    return b"".join(parts)


_PUSH_ENTRIES: dict[tuple[Any, ...], bytes] = {}
"""encode_push_pull's memo: (name, incarnation, state, port, addr, meta, vsn) -> bytes."""


_INTERNED_BYTES: dict[bytes, bytes] = {}
INTERNED_MAX = 1 << 17


def intern_str(s: str) -> str:
    """One object per distinct member name in the process (``sys.intern``): a name is held
    by every view of the member, so this divides that memory by the cluster size."""
    return sys.intern(s) if type(s) is str else s


def intern_bytes(b: bytes) -> bytes:
    """:func:`intern_str` for addresses, meta and version vectors (a bounded table)."""
    got = _INTERNED_BYTES.get(b)
    if got is not None:
        return got
    if len(_INTERNED_BYTES) >= INTERNED_MAX:
        _INTERNED_BYTES.clear()
    _INTERNED_BYTES[b] = b
    return b


# --------------------------------------------------------------------------- compound, CRC, LZW


def make_compound(parts: list[bytes]) -> bytes:
    n = len(parts)
    if not 1 <= n <= 255:
        raise ValueError("a compound message holds 1 to 255 parts")
    lengths = list(map(len, parts))
    if max(lengths) > U16:
        raise ValueError("compound part longer than 65535 bytes")
    return b"".join((bytes((MsgType.COMPOUND, n)), _COMPOUND_LENGTHS[n].pack(*lengths), *parts))


def split_compound(buf: bytes) -> tuple[list[bytes], int]:
    """Body after the 07 byte -> (parts, number truncated). Go keeps the complete parts."""
    if len(buf) < 1:
        raise DecodeError("missing compound length byte")
    n = buf[0]
    if len(buf) < 1 + 2 * n:
        raise DecodeError("truncated len slice")
    lengths = struct.unpack_from(f">{n}H", buf, 1)
    off = 1 + 2 * n
    parts: list[bytes] = []
    for i, ln in enumerate(lengths):
        if len(buf) - off < ln:
            return parts, n - i
        parts.append(buf[off : off + ln])
        off += ln
    return parts, 0


def add_crc(msg: bytes) -> bytes:
    return struct.pack(">BI", MsgType.HAS_CRC, zlib.crc32(msg)) + msg


def compress_message(msg: bytes) -> bytes:
    return Compress(0, lzw.compress(msg)).encode()


def inflate(body: bytes, limit: int = INFLATE_BYTES_MAX) -> bytes:
    c = decode_struct(body, Compress.SPEC)
    if c["algo"] != 0:
        raise DecodeError(f"Cannot decompress unknown algorithm {c['algo']}")
    try:
        out = lzw.decompress(c["buf"], max_out=limit)
    except lzw.LZWError as e:
        raise DecodeError(f"bad LZW: {e}") from None
    if not out:
        raise DecodeError("empty compressed payload")
    return out


# --------------------------------------------------------------------------- packets


def seal_packet(
    msg: bytes,
    *,
    compress: bool,
    crc: bool,
    keyring: Keyring | None,
    entropy: Entropy | None,
) -> bytes:
    """message (possibly compound) -> UDP payload, in memberlist's order: compress if shorter,
    CRC if the recipient speaks protocol >= 5, then encrypt (ML/net.go rawSendMsgPacket)."""
    if compress:
        c = compress_message(msg)
        if len(c) < len(msg):
            msg = c
    if crc:
        msg = add_crc(msg)
    if keyring is not None and len(keyring):
        assert entropy is not None
        msg = encrypt(keyring, msg, None, entropy)
    return msg


_COMPOUND_LENGTHS = [struct.Struct(f">{n}H") for n in range(256)]


def plain_packet_parts(buf: bytes) -> list[bytes] | None:
    """The messages in an unencrypted UDP payload, for the common shapes only: a message or
    one compound of messages, with or without a (good) CRC. Returns exactly what
    ``open_packet(buf, None).messages`` would, or None whenever that would also drop
    something or unwrap anything else (then call :func:`open_packet`, which says why)."""
    n = len(buf)
    if n == 0 or n > PACKET_BYTES_MAX:
        return None
    t = buf[0]
    if t == MsgType.HAS_CRC:
        if n <= 5 or zlib.crc32(memoryview(buf)[5:]) != int.from_bytes(buf[1:5], "big"):
            return None
        buf = buf[5:]
        n -= 5
        t = buf[0]
    if t != MsgType.COMPOUND:
        return None if t == MsgType.COMPRESS else [buf]
    if n < 2:
        return None
    k = buf[1]
    off = 2 + 2 * k
    if n < off:
        return None
    parts = []
    for ln in _COMPOUND_LENGTHS[k].unpack_from(buf, 2):
        end = off + ln
        if ln == 0 or end > n:
            return None
        part = buf[off:end]
        first = part[0]
        if first == MsgType.COMPOUND or first == MsgType.COMPRESS:
            return None
        parts.append(part)
        off = end
    return parts


@dataclass(slots=True)
class Opened:
    """What :func:`open_packet` found: messages in order, and the reasons parts were dropped."""

    messages: list[bytes] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    had_crc: bool = False


def open_packet(buf: bytes, keyring: Keyring | None, verify_incoming: bool = True) -> Opened:
    """UDP payload -> the plain messages inside (each starting with its type byte).

    Never raises: undecodable layers become entries in ``dropped``. Compound and compress
    are unwrapped recursively up to :data:`NESTING_MAX` deep.
    """
    out = Opened()
    if len(buf) > PACKET_BYTES_MAX:
        out.dropped.append("packet too large")
        return out
    if keyring is not None and len(keyring):
        try:
            buf = decrypt(keyring, buf, None)
        except DecryptError as e:
            if verify_incoming:
                out.dropped.append(f"decrypt: {e}")
                return out
    if len(buf) >= 5 and buf[0] == MsgType.HAS_CRC:
        (expected,) = struct.unpack_from(">I", buf, 1)
        buf = buf[5:]
        if zlib.crc32(buf) != expected:
            out.dropped.append("bad checksum")
            return out
        out.had_crc = True
    _Unwrapper(out).unwrap(buf, 0)
    return out


class _Unwrapper:
    """Flattens compound/compress layers of one packet within a shared budget: nesting must
    not multiply the inflate limit or the number of parts (rule 3)."""

    __slots__ = ("inflate_left", "out", "parts_left")

    def __init__(self, out: Opened) -> None:
        self.out = out
        self.inflate_left = PACKET_INFLATE_BYTES_MAX
        self.parts_left = PACKET_PARTS_MAX

    def unwrap(self, buf: bytes, depth: int) -> None:
        out = self.out
        if self.parts_left <= 0:
            if self.parts_left == 0:  # report once, then ignore the rest
                out.dropped.append("too many messages in one packet")
                self.parts_left = -1
            return
        self.parts_left -= 1
        if not buf:
            out.dropped.append("empty message")
            return
        t = buf[0]
        if t == MsgType.COMPOUND or t == MsgType.COMPRESS:
            if depth >= NESTING_MAX:
                out.dropped.append("nesting too deep")
                return
            try:
                if t == MsgType.COMPOUND:
                    parts, trunc = split_compound(buf[1:])
                    if trunc:
                        out.dropped.append(f"compound: {trunc} truncated parts")
                    for p in parts:
                        self.unwrap(p, depth + 1)
                else:
                    try:
                        inner = inflate(buf[1:], self.inflate_left)
                    except DecodeError:
                        # it may have inflated up to the whole budget before failing
                        self.inflate_left = 0
                        raise
                    self.inflate_left -= len(inner)
                    self.unwrap(inner, depth + 1)
            except DecodeError as e:
                out.dropped.append(e.reason)
            return
        out.messages.append(buf)


# --------------------------------------------------------------------------- streams


def seal_stream(
    msg: bytes, *, compress: bool, keyring: Keyring | None, entropy: Entropy | None
) -> bytes:
    """message -> TCP bytes. Serf compresses every stream, even when it grows (wire spec §5)."""
    if compress:
        msg = compress_message(msg)
    if keyring is not None and len(keyring):
        assert entropy is not None
        length = 1 + 12 + len(msg) + 16
        header = struct.pack(">BI", MsgType.ENCRYPT, length)
        msg = header + encrypt(keyring, msg, header, entropy)
    return msg


class FrameReader:
    """Finds where one stream frame ends while its bytes arrive in pieces.

    Streams carry no length prefix (except the encrypt frame), so we parse as far as the
    frame's own structure says. Parsing is incremental: each :meth:`feed` resumes where the
    last stopped (a msgpack value cut by a read is retried alone), so reading a 20 MiB
    push/pull costs one pass, not one pass per read. Raises DecodeError for a frame that can
    never be valid, including one longer than :data:`STREAM_BYTES_MAX`.
    """

    __slots__ = ("_end", "_fixed", "_head", "_nodes_left", "_stage", "_type", "_up", "received")

    def __init__(self) -> None:
        self.received = 0
        self._type: int | None = None
        self._up: Any = None
        self._stage = 0
        self._nodes_left = 0
        self._fixed = 0
        """Bytes after the msgpack part that complete the frame (user state, user message)."""
        self._end: int | None = None
        self._head = b""
        """The first bytes of an encrypt frame, until its 5-byte header is complete."""

    def feed(self, data: bytes) -> int | None:
        """Add bytes; the total frame length once it is known and fully received, else None."""
        if data:
            if self._type is None:
                self._type = data[0]
                if self._type not in _STREAM_TYPES:
                    raise DecodeError(f"Received invalid msgType ({self._type})")
                if self._type != MsgType.ENCRYPT:
                    self._up = msgpack.Unpacker(
                        raw=True, strict_map_key=False, max_buffer_size=STREAM_BYTES_MAX
                    )
                body = data[1:]
                self.received = 1
            else:
                body = data
            room = STREAM_BYTES_MAX - self.received
            if self._up is not None and self._end is None:
                self._up.feed(body[: max(0, room)])
            elif self._type == MsgType.ENCRYPT and len(self._head) < 4:
                self._head += body[: 4 - len(self._head)]
            self.received += len(body)
        if self._type is None:
            return None
        if self._end is None:
            self._end = self._advance()
        if self._end is None:
            if self.received >= STREAM_BYTES_MAX + 5:
                raise DecodeError("stream frame larger than limit")
            return None
        return self._end if self.received >= self._end else None

    def _advance(self) -> int | None:
        t = self._type
        if t == MsgType.ENCRYPT:
            if len(self._head) < 4:
                return None
            (n,) = struct.unpack(">I", self._head)
            if n > STREAM_BYTES_MAX:
                raise DecodeError(f"Remote node state is larger than limit ({n})")
            return 5 + int(n)
        up = self._up
        try:
            if t in (MsgType.COMPRESS, MsgType.PING, MsgType.ACK, MsgType.ERR):
                up.skip()
                return 1 + int(up.tell())
            if self._stage == 0:
                if t == MsgType.USER:
                    h = struct_fields(up.unpack(), ((b"UserMsgLen", "n", "int"),))
                    if not 0 <= h["n"] <= STREAM_BYTES_MAX:
                        raise DecodeError("user message length out of range")
                    self._fixed = h["n"]
                else:
                    h = struct_fields(up.unpack(), _PUSH_HEADER_SPEC)
                    if not 0 <= h["nodes"] <= PUSH_PULL_NODES_MAX or h["user_state_len"] < 0:
                        raise DecodeError("push/pull header counts out of range")
                    self._nodes_left = h["nodes"]
                    self._fixed = h["user_state_len"]
                self._stage = 1
            while self._nodes_left:
                up.skip()
                self._nodes_left -= 1
            end = 1 + int(up.tell()) + self._fixed
            if end > STREAM_BYTES_MAX:
                raise DecodeError("stream frame larger than limit")
            return end
        except msgpack.OutOfData:
            if self.received >= STREAM_BYTES_MAX:
                raise DecodeError("stream frame larger than limit") from None
            return None
        except DecodeError:
            raise
        except Exception as e:
            raise DecodeError(f"bad stream: {type(e).__name__}") from None


_STREAM_TYPES = frozenset(
    (
        MsgType.ENCRYPT,
        MsgType.COMPRESS,
        MsgType.PING,
        MsgType.ACK,
        MsgType.ERR,
        MsgType.USER,
        MsgType.PUSH_PULL,
    )
)


def stream_frame_length(buf: bytes) -> int | None:
    """Length of the first complete stream frame in ``buf``, or None if more bytes are needed.
    Raises DecodeError for a frame that can never be valid. (:class:`FrameReader` does the
    same incrementally, for a driver reading a socket.)"""
    return FrameReader().feed(buf)


def user_stream_body(payload: bytes) -> bytes:
    """The body of a stream user message (after its 08 byte): msgpack {UserMsgLen} + bytes."""
    up = msgpack.Unpacker(raw=True, strict_map_key=False, max_buffer_size=STREAM_BYTES_MAX)
    try:
        up.feed(payload)  # BufferFull past STREAM_BYTES_MAX, reported below as DecodeError
        n = struct_fields(up.unpack(), ((b"UserMsgLen", "n", "int"),))["n"]
    except msgpack.OutOfData:
        raise DecodeError("truncated user message header") from None
    except DecodeError:
        raise
    except Exception as e:
        raise DecodeError(f"bad user message: {type(e).__name__}") from None
    start = up.tell()
    body = payload[start : start + n]
    if n < 0 or len(body) != n:
        raise DecodeError(f"Failed to read full user message ({len(body)} / {n})")
    return body


def open_stream(frame: bytes, keyring: Keyring | None, verify_incoming: bool = True) -> Message:
    """One complete stream frame -> its message. Raises DecodeError with memberlist's texts."""
    if not frame:
        raise DecodeError("empty stream")
    encrypted_on = keyring is not None and len(keyring) > 0
    if frame[0] == MsgType.ENCRYPT:
        if not encrypted_on:
            raise DecodeError("Remote state is encrypted and encryption is not configured")
        assert keyring is not None
        if len(frame) < 5:
            raise DecodeError("truncated encrypt frame")
        try:
            frame = decrypt(keyring, frame[5:], frame[:5])
        except DecryptError as e:
            raise DecodeError(str(e)) from None
        if not frame:
            raise DecodeError("empty decrypted stream")
    elif encrypted_on and verify_incoming:
        raise DecodeError("Encryption is configured but remote state is not encrypted")
    if frame[0] == MsgType.COMPRESS:
        frame = inflate(frame[1:])
    if frame[0] in (MsgType.COMPRESS, MsgType.ENCRYPT, MsgType.COMPOUND, MsgType.HAS_CRC):
        raise DecodeError(f"unexpected wrapper {frame[0]} inside a stream")
    return decode_message(frame)
