"""Raft messages on the wire: a compact msgpack encoding, and a decoder that trusts
nothing it reads (server RPC carries these; the simulator moves the same bytes).

Layout: a msgpack array ``[version, kind, src, dst, term, ...]`` followed by the kind's
fields; an entry is ``[term, index, command, entry_kind]`` with the command kept as the
msgpack value it is (commands are msgpack-encodable by contract, catalog/commands.py) and a
configuration entry's command being ``Configuration.to_wire()``.

Versions: 1 had no entry kind; 2 (now) carries it. A server speaks one version and drops
the other's messages (rolling upgrades of the wire format are not supported yet).

Rules:

1. :func:`decode_message` raises only :class:`WireError` (a ``ValueError``) for any input;
   every value it returns is in range (terms and indexes are 0 <= n < 2**63, server IDs
   are short non-empty strings, entries are contiguous from ``prev_index + 1``, an entry's
   kind is an ``EntryKind`` and a configuration entry holds a valid configuration).
2. Bounded: at most ``MESSAGE_BYTES_MAX`` bytes and ``ENTRIES_MAX`` entries a message;
   msgpack itself is told the same limits so a hostile length prefix allocates nothing.
3. Whatever decodes re-encodes to a message equal to it (tested by property).
"""

from __future__ import annotations

from typing import Any, Final

import msgpack

from federation.raft import (
    AppendRequest,
    AppendResponse,
    Configuration,
    Entry,
    EntryKind,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    Message,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)

__all__ = [
    "BATCH_MESSAGES_MAX",
    "ENTRIES_MAX",
    "MESSAGE_BYTES_MAX",
    "WIRE_VERSION",
    "WireError",
    "decode_batch",
    "decode_message",
    "encode_batch",
    "encode_message",
]

WIRE_VERSION: Final = 2
BATCH_MESSAGES_MAX: Final = 1024
"""Messages in one delivery (one gRPC call carries whatever queued for that peer)."""
MESSAGE_BYTES_MAX: Final = 16 * 1024 * 1024
"""An AppendEntries batch, with room: 256 entries of Consul's 512 KiB KV limit would not
fit, so the leader's max_entries_per_append and the KV limit together bound a batch."""
ENTRIES_MAX: Final = 4096
SERVER_ID_MAX: Final = 256
_U63: Final = 1 << 63

_VOTE_REQ, _VOTE_RESP, _APPEND_REQ, _APPEND_RESP, _TIMEOUT_NOW = 1, 2, 3, 4, 5
_SNAP_REQ, _SNAP_RESP = 6, 7


class WireError(ValueError):
    """Malformed bytes: the receiver drops the message and counts the reason."""


def encode_message(m: Message) -> bytes:
    if not isinstance(m, Message):
        raise TypeError(f"not a Raft message: {type(m).__name__}")
    head: list[Any] = [WIRE_VERSION, 0, m.src, m.dst, m.term]
    if isinstance(m, VoteRequest):
        head[1] = _VOTE_REQ
        body: list[Any] = [m.last_index, m.last_term, m.pre_vote, m.transfer]
    elif isinstance(m, VoteResponse):
        head[1] = _VOTE_RESP
        body = [m.granted, m.pre_vote]
    elif isinstance(m, AppendRequest):
        head[1] = _APPEND_REQ
        body = [
            m.prev_index,
            m.prev_term,
            m.commit,
            [[e.term, e.index, e.command, int(e.kind)] for e in m.entries],
            m.seq,
        ]
    elif isinstance(m, AppendResponse):
        head[1] = _APPEND_RESP
        body = [m.success, m.match_index, m.seq]
    elif isinstance(m, TimeoutNow):
        head[1] = _TIMEOUT_NOW
        body = []
    elif isinstance(m, InstallSnapshotRequest):
        head[1] = _SNAP_REQ
        body = [
            m.last_index,
            m.last_term,
            m.configuration.to_wire(),
            m.offset,
            m.data,
            m.done,
        ]
    elif isinstance(m, InstallSnapshotResponse):
        head[1] = _SNAP_RESP
        body = [m.success, m.next_offset]
    else:
        raise TypeError(f"not a Raft message: {type(m).__name__}")
    out: bytes = msgpack.packb(head + body, use_bin_type=True)
    return out


def _uint(v: Any, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < _U63:
        raise WireError(f"{what}: expected an integer in [0, 2**63)")
    return v


def _bool(v: Any, what: str) -> bool:
    if not isinstance(v, bool):
        raise WireError(f"{what}: expected a boolean")
    return v


def _server(v: Any, what: str) -> str:
    if not isinstance(v, str) or not 0 < len(v) <= SERVER_ID_MAX:
        raise WireError(f"{what}: expected a server ID of 1-{SERVER_ID_MAX} characters")
    return v


def _entry(term: int, index: int, command: Any, kind: Any) -> Entry:
    if isinstance(kind, bool) or not isinstance(kind, int):
        raise WireError(f"entry kind: expected an integer, not {type(kind).__name__}")
    if kind == EntryKind.COMMAND:
        return Entry(term, index, command)
    if kind == EntryKind.CONFIGURATION:
        try:
            Configuration.from_wire(command)
        except ValueError as e:
            raise WireError(f"configuration entry: {e}") from None
        return Entry(term, index, command, EntryKind.CONFIGURATION)
    raise WireError(f"entry kind: unknown {kind!r}")


def decode_message(data: bytes) -> Message:
    if len(data) > MESSAGE_BYTES_MAX:
        raise WireError(f"message of {len(data)} bytes is over {MESSAGE_BYTES_MAX}")
    try:
        v = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=False,
            max_array_len=ENTRIES_MAX + 8,
            max_map_len=1 << 16,
            max_ext_len=0,
        )
    except Exception as e:  # msgpack raises several types (and UnicodeDecodeError)
        raise WireError(f"not msgpack: {type(e).__name__}") from None
    if not isinstance(v, list) or len(v) < 5:
        raise WireError("expected an array of at least 5 items")
    version, kind = v[0], v[1]
    if version != WIRE_VERSION:
        raise WireError(f"unsupported wire version {version!r}")
    src, dst = _server(v[2], "src"), _server(v[3], "dst")
    term = _uint(v[4], "term")
    body = v[5:]
    if kind == _VOTE_REQ and len(body) == 4:
        return VoteRequest(
            src, dst, term, _uint(body[0], "last_index"), _uint(body[1], "last_term"),
            _bool(body[2], "pre_vote"), _bool(body[3], "transfer"),
        )  # fmt: skip
    if kind == _VOTE_RESP and len(body) == 2:
        return VoteResponse(src, dst, term, _bool(body[0], "granted"), _bool(body[1], "pre_vote"))
    if kind == _APPEND_RESP and len(body) == 3:
        return AppendResponse(
            src, dst, term, _bool(body[0], "success"), _uint(body[1], "match_index"),
            _uint(body[2], "seq"),
        )  # fmt: skip
    if kind == _TIMEOUT_NOW and not body:
        return TimeoutNow(src, dst, term)
    if kind == _SNAP_RESP and len(body) == 2:
        return InstallSnapshotResponse(
            src, dst, term, _bool(body[0], "success"), _uint(body[1], "next_offset")
        )
    if kind == _SNAP_REQ and len(body) == 6:
        try:
            conf = Configuration.from_wire(body[2])
        except ValueError as e:
            raise WireError(f"snapshot configuration: {e}") from None
        if not isinstance(body[4], bytes):
            raise WireError("snapshot data: expected bytes")
        return InstallSnapshotRequest(
            src, dst, term, _uint(body[0], "last_index"), _uint(body[1], "last_term"), conf,
            _uint(body[3], "offset"), body[4], _bool(body[5], "done"),
        )  # fmt: skip
    if kind == _APPEND_REQ and len(body) == 5:
        prev = _uint(body[0], "prev_index")
        raw = body[3]
        if not isinstance(raw, list) or len(raw) > ENTRIES_MAX:
            raise WireError(f"entries: expected a list of at most {ENTRIES_MAX}")
        entries = []
        for i, item in enumerate(raw):
            if not isinstance(item, list) or len(item) != 4:
                raise WireError("entry: expected [term, index, command, kind]")
            index = _uint(item[1], "entry index")
            if index != prev + 1 + i:
                raise WireError("entries must be contiguous from prev_index + 1")
            entries.append(_entry(_uint(item[0], "entry term"), index, item[2], item[3]))
        return AppendRequest(
            src, dst, term, prev, _uint(body[1], "prev_term"), tuple(entries),
            _uint(body[2], "commit"), _uint(body[4], "seq"),
        )  # fmt: skip
    raise WireError(f"unknown message kind {kind!r} with {len(body)} fields")


def encode_batch(messages: list[bytes]) -> bytes:
    """Several encoded messages for one peer in one delivery: a msgpack array of them.
    The receiver hands them to its core together (one fsync for all they make it
    persist), which is what keeps a busy leader's followers from one fsync per append."""
    if not 0 < len(messages) <= BATCH_MESSAGES_MAX:
        raise ValueError(f"a batch holds 1 to {BATCH_MESSAGES_MAX} messages")
    out: bytes = msgpack.packb(messages, use_bin_type=True)
    return out


def decode_batch(data: bytes) -> list[bytes]:
    """The encoded messages of a delivery; raises only :class:`WireError` (each message
    is then decoded, and may be refused, on its own)."""
    if len(data) > MESSAGE_BYTES_MAX * 2:
        raise WireError(f"batch of {len(data)} bytes is over {MESSAGE_BYTES_MAX * 2}")
    try:
        v = msgpack.unpackb(
            data,
            raw=False,
            max_array_len=BATCH_MESSAGES_MAX,
            max_bin_len=MESSAGE_BYTES_MAX,
            max_str_len=0,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as e:  # msgpack raises several types
        raise WireError(f"not a batch: {type(e).__name__}") from None
    if not isinstance(v, list) or not v or not all(isinstance(x, bytes) for x in v):
        raise WireError(f"expected an array of 1 to {BATCH_MESSAGES_MAX} messages")
    return v
