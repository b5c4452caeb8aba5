"""Server RPC between agents: the messages client agents and servers exchange over gRPC,
and a decoder that trusts nothing it reads.

Consul's client agents turn each HTTP request into an RPC (``KVS.Get``, ``Catalog.Register``,
...) to one server, and a server that does not lead forwards it to the leader
(agent/consul/rpc.go ``forward``). gossamer keeps the request whole instead of one message
type per endpoint: a :class:`ForwardRequest` carries the API request (method, path, query,
body, and the node it came from) and the server that takes it runs the same endpoint code
a local request runs, so every endpoint is forwardable the day it is written and the two
paths cannot drift apart. Two narrower calls serve the agent's own needs:
:class:`ApplyRequest` (one state-store command, from a follower's or a client's
anti-entropy and leader tasks) and :class:`QueryRequest` (a named read: a node's services
and checks for anti-entropy, a server's Raft stats for bootstrapping).

Rules:

1. Every message is a msgpack array ``[version, kind, ...fields]``; :func:`decode` raises
   only :class:`RPCError` (a ``ValueError``) for any input, and what it returns is in
   range (strings bounded, status codes 100-599, hops small).
2. ``hops`` counts forwards; a server refuses to forward a request that has been forwarded
   ``HOPS_MAX`` times (a client to a follower to the leader is 2), so a leadership change
   in flight cannot bounce a request forever.
3. Bounded: a message is at most ``MESSAGE_BYTES_MAX`` bytes; msgpack is given the same
   limits so a hostile length prefix allocates nothing.
4. Whatever decodes re-encodes to an equal message (tested by property).

The gRPC plumbing is in :mod:`federation.aio`; this module has no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgpack

__all__ = [
    "HOPS_MAX",
    "MESSAGE_BYTES_MAX",
    "ApplyRequest",
    "ApplyResponse",
    "ForwardRequest",
    "ForwardResponse",
    "QueryRequest",
    "QueryResponse",
    "RPCError",
    "decode",
    "encode",
]

RPC_VERSION: Final = 1
MESSAGE_BYTES_MAX: Final = 64 * 1024 * 1024
"""A forwarded answer can be a whole catalog listing (10,000 nodes is ~10 MB of JSON)."""
HOPS_MAX: Final = 3
STRING_MAX: Final = 64 * 1024
"""Paths, header values, node names, error texts."""
ITEMS_MAX: Final = 4096
"""Query parameters or headers in one request."""

_FWD_REQ, _FWD_RESP, _APPLY_REQ, _APPLY_RESP, _QUERY_REQ, _QUERY_RESP = 1, 2, 3, 4, 5, 6


class RPCError(ValueError):
    """Malformed bytes: the receiver answers with an error and counts the reason."""


Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ForwardRequest:
    method: str
    path: str
    """Percent-decoded, without the query string."""
    query: Pairs
    """Every query parameter, in order (repeated names repeat)."""
    headers: Pairs
    body: bytes
    origin: str
    """The node name of the agent the request reached first (``?near=_agent`` and a
    session's default node mean that agent, not the server answering)."""
    hops: int = 0


@dataclass(frozen=True, slots=True)
class ForwardResponse:
    status: int
    headers: Pairs
    body: bytes


@dataclass(frozen=True, slots=True)
class ApplyRequest:
    command: Any
    """A state-store command: a msgpack-encodable dict (catalog/commands.py)."""
    hops: int = 0


@dataclass(frozen=True, slots=True)
class ApplyResponse:
    result: Any = None
    error: str = ""
    """Empty on success; otherwise the refusal's text."""
    error_kind: str = ""
    """What kind of refusal, so the caller can raise the same exception the leader did:
    ``rejected`` (the state machine refused), ``txn`` (a failed transaction; ``details``
    holds its ``[[op index, what], ...]``), ``no-leader``, ``internal``."""
    details: Any = None


@dataclass(frozen=True, slots=True)
class QueryRequest:
    name: str
    args: tuple[Any, ...] = ()
    hops: int = 0


@dataclass(frozen=True, slots=True)
class QueryResponse:
    index: int = 0
    value: Any = None
    error: str = ""


Message = (
    ForwardRequest | ForwardResponse | ApplyRequest | ApplyResponse | QueryRequest | QueryResponse
)


def encode(m: Message) -> bytes:
    if isinstance(m, ForwardRequest):
        body: list[Any] = [
            _FWD_REQ,
            m.method,
            m.path,
            [list(p) for p in m.query],
            [list(p) for p in m.headers],
            m.body,
            m.origin,
            m.hops,
        ]
    elif isinstance(m, ForwardResponse):
        body = [_FWD_RESP, m.status, [list(p) for p in m.headers], m.body]
    elif isinstance(m, ApplyRequest):
        body = [_APPLY_REQ, m.command, m.hops]
    elif isinstance(m, ApplyResponse):
        body = [_APPLY_RESP, m.result, m.error, m.error_kind, m.details]
    elif isinstance(m, QueryRequest):
        body = [_QUERY_REQ, m.name, list(m.args), m.hops]
    elif isinstance(m, QueryResponse):
        body = [_QUERY_RESP, m.index, m.value, m.error]
    else:
        raise TypeError(f"not an RPC message: {type(m).__name__}")
    out: bytes = msgpack.packb([RPC_VERSION, *body], use_bin_type=True)
    return out


def _str(v: Any, what: str, empty: bool = True) -> str:
    if not isinstance(v, str) or len(v) > STRING_MAX or (not empty and not v):
        raise RPCError(f"{what}: expected a string of at most {STRING_MAX} characters")
    return v


def _int(v: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise RPCError(f"{what}: expected an integer in [{lo}, {hi}]")
    return v


def _bytes(v: Any, what: str) -> bytes:
    if not isinstance(v, bytes):
        raise RPCError(f"{what}: expected bytes")
    return v


def _pairs(v: Any, what: str) -> Pairs:
    if not isinstance(v, list) or len(v) > ITEMS_MAX:
        raise RPCError(f"{what}: expected a list of at most {ITEMS_MAX} pairs")
    out = []
    for p in v:
        if not isinstance(p, list) or len(p) != 2:
            raise RPCError(f"{what}: expected [name, value] pairs")
        out.append((_str(p[0], what), _str(p[1], what)))
    return tuple(out)


def decode(data: bytes) -> Message:
    if len(data) > MESSAGE_BYTES_MAX:
        raise RPCError(f"message of {len(data)} bytes is over {MESSAGE_BYTES_MAX}")
    try:
        v = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=False,
            max_bin_len=MESSAGE_BYTES_MAX,
            max_str_len=MESSAGE_BYTES_MAX,
            max_array_len=1 << 20,
            max_map_len=1 << 20,
            max_ext_len=0,
        )
    except Exception as e:  # msgpack raises several types (and UnicodeDecodeError)
        raise RPCError(f"not msgpack: {type(e).__name__}") from None
    if not isinstance(v, list) or len(v) < 2:
        raise RPCError("expected an array of at least 2 items")
    if v[0] != RPC_VERSION:
        raise RPCError(f"unsupported RPC version {v[0]!r}")
    kind, f = v[1], v[2:]
    if kind == _FWD_REQ and len(f) == 7:
        method = _str(f[0], "method", empty=False)
        if len(method) > 16:
            raise RPCError("method: too long")
        return ForwardRequest(
            method,
            _str(f[1], "path", empty=False),
            _pairs(f[2], "query"),
            _pairs(f[3], "headers"),
            _bytes(f[4], "body"),
            _str(f[5], "origin"),
            _int(f[6], "hops", 0, HOPS_MAX),
        )
    if kind == _FWD_RESP and len(f) == 3:
        return ForwardResponse(
            _int(f[0], "status", 100, 599), _pairs(f[1], "headers"), _bytes(f[2], "body")
        )
    if kind == _APPLY_REQ and len(f) == 2:
        if not isinstance(f[0], dict):
            raise RPCError("command: expected a map")
        return ApplyRequest(f[0], _int(f[1], "hops", 0, HOPS_MAX))
    if kind == _APPLY_RESP and len(f) == 4:
        return ApplyResponse(f[0], _str(f[1], "error"), _str(f[2], "error_kind"), f[3])
    if kind == _QUERY_REQ and len(f) == 3:
        if not isinstance(f[1], list) or len(f[1]) > 16:
            raise RPCError("args: expected a list of at most 16 values")
        return QueryRequest(
            _str(f[0], "name", empty=False), tuple(f[1]), _int(f[2], "hops", 0, HOPS_MAX)
        )
    if kind == _QUERY_RESP and len(f) == 3:
        return QueryResponse(_int(f[0], "index", 0, (1 << 64) - 1), f[1], _str(f[2], "error"))
    raise RPCError(f"unknown message kind {kind!r} with {len(f)} fields")
