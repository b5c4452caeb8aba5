"""The KV store, transaction and session endpoints: ``/v1/kv/``, ``/v1/txn``,
``/v1/session/*``, in Consul's shapes, status codes and texts.

Copied from hashicorp/consul (file, then what):

* ``agent/kvs_endpoint.go``: GET one key (a one-element list), ``?recurse`` (every entry
  under the prefix, sorted), ``?keys`` with ``?separator=`` (also the historic spelling
  ``?seperator=``), ``?raw`` (the bytes, ``Content-Type: text/plain`` with
  ``X-Content-Type-Options: nosniff`` and ``Content-Security-Policy: sandbox``); a miss is
  404 with an empty body and the index headers, an empty listing too, except the key list
  of the empty prefix, which is ``[]``. PUT: the body is the value, ``?flags=``, ``?cas=``,
  ``?acquire=``/``?release=``; ``cas``, ``acquire`` and ``release`` are exclusive
  (``Conflicting flags: <sorted query>``); the answer is ``true``, or the outcome of the
  CAS or lock. DELETE: ``?recurse`` (a tree), ``?cas=``; ``recurse`` and ``cas`` are
  exclusive. ``Missing key name`` (400) without a key. Values over ``kv_max_value_size``
  (512 KiB) are 413 with Consul's text.
* ``agent/consul/kvs_endpoint.go`` ``kvsPreApply``: a lock on a key inside its lock delay
  is refused (``false``) before anything is written.
* ``agent/txn_endpoint.go``: the body is a list of ``{"KV": {...}}`` operations (JSON keys
  matched case-insensitively, unknown keys refused as Go's ``DisallowUnknownFields`` does,
  ``Value`` in base64), at most ``maxTxnOps`` (128) of them and ``txn_max_req_len``
  (512 KiB) in all. Success is 200 ``{"Results": [...], "Errors": null}``; a failed
  operation is 409 ``{"Results": null, "Errors": [{"OpIndex", "What"}]}`` and nothing is
  applied. ``agent/consul/txn_endpoint.go`` ``preCheck``: ``Must provide key`` and the
  lock delay are checked before the transaction runs.
* ``agent/session_endpoint.go`` and ``structs.Session.UnmarshalJSON``: session create
  defaults (this agent's node, ``serfHealth``, a 15 s lock delay, ``release``), a number
  under 1000 for ``LockDelay`` is seconds (``lockDelayMinThreshold``), the deprecated
  ``Checks`` (``fixupEmptySessionChecks``); ``agent/consul/session_endpoint.go``
  ``Session.Apply``: ``Must provide Node``, ``Invalid Behavior setting``, the TTL range
  ``[10s=24h0m0s]``; renew of an unknown session is 404 ``Session id '<id>' not found``,
  info of one is ``[]``; destroying an unknown session writes nothing and answers ``true``.

How errors map (``agent/http.go`` ``handleErr``): a rejected command is a plain error,
so 500 with its text (``invalid session "x"``, ``Missing node registration``); bad
request syntax is 400. One deliberate difference: Consul answers a non-numeric
``?flags=`` or ``?cas=`` with 500 (the bare ``strconv.ParseUint`` error); gossamer keeps
that text but answers 400, since it is the client's mistake.

Where gossamer differs because its store does (noted for the reader):

* the deprecated ``Checks`` of a session are folded into ``NodeChecks`` (Consul binds
  both lists and echoes ``Checks`` separately);
* a read-only transaction (only ``get``/``check-*`` verbs) goes through
  :meth:`catalog.server.CatalogServer.write` like any other, where Consul answers it from
  the state store without Raft (``Txn.Read``); its answer is the same.
"""

from __future__ import annotations

import base64
import binascii
import string
import uuid
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import quote_plus, urlencode

import orjson

from catalog import commands as C
from catalog.aio import HTTPError, HTTPServer, Request, Response
from catalog.http_common import (
    QueryOptions,
    blocking_read,
    query_options,
    read_headers,
    require_server,
)
from catalog.server import CatalogServer
from catalog.store import CommandRejected, Read, StateStore, TxnFailed
from gossamer.duration import format_duration, go_quote, parse_duration_ns

__all__ = [
    "KV_MAX_VALUE_BYTES",
    "LOCK_DELAY_DEFAULT_NS",
    "SESSION_TTL_MAX_NS",
    "SESSION_TTL_MIN_NS",
    "TXN_MAX_OPS",
    "TXN_MAX_REQ_BYTES",
    "dir_entry_json",
    "go_parse_uint",
    "register",
    "session_json",
]

KV_MAX_VALUE_BYTES: Final = 512 * 1024
"""Consul's ``kv_max_value_size`` default (raft.SuggestedMaxDataSize)."""
TXN_MAX_REQ_BYTES: Final = 512 * 1024
"""Consul's ``txn_max_req_len`` default; the larger of it and the KV limit applies."""
TXN_MAX_OPS: Final = 128
"""Consul's ``maxTxnOps`` (agent/txn_endpoint.go; 64 in older releases)."""
LOCK_DELAY_DEFAULT_NS: Final = 15 * 1_000_000_000
LOCK_DELAY_MIN_THRESHOLD: Final = 1000
"""A LockDelay under this many nanoseconds is taken as seconds (structs.Session)."""
SESSION_TTL_MIN_NS: Final = 10 * 1_000_000_000
"""Consul's ``session_ttl_min`` default."""
SESSION_TTL_MAX_NS: Final = 24 * 3600 * 1_000_000_000
"""structs.SessionTTLMax."""
SERF_CHECK: Final = "serfHealth"

KV_SIZE_DOC: Final = (
    "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size"
)
TXN_SIZE_DOC: Final = "https://www.consul.io/docs/agent/config/config-files#txn_max_req_len"

_UINT64_MAX: Final = (1 << 64) - 1
_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
_NS_PER_S: Final = 1_000_000_000
_B64_ALPHABET: Final = frozenset(string.ascii_letters + string.digits + "+/")


# --------------------------------------------------------------------------- Go's texts


def go_parse_uint(text: str) -> int:
    """Go's ``strconv.ParseUint(text, 10, 64)``: the value, or ValueError with Go's text."""
    quoted = go_quote(text)
    if not text:
        raise ValueError(f"strconv.ParseUint: parsing {quoted}: invalid syntax")
    cutoff = _UINT64_MAX // 10 + 1
    n = 0
    for ch in text:
        if not "0" <= ch <= "9":
            raise ValueError(f"strconv.ParseUint: parsing {quoted}: invalid syntax")
        if n >= cutoff:
            raise ValueError(f"strconv.ParseUint: parsing {quoted}: value out of range")
        n = n * 10 + (ord(ch) - 48)
        if n > _UINT64_MAX:
            raise ValueError(f"strconv.ParseUint: parsing {quoted}: value out of range")
    return n


def _uint_param(request: Request, name: str) -> int:
    try:
        return go_parse_uint(request.query[name])
    except ValueError as e:
        raise HTTPError(400, str(e)) from None


def _conflicting(request: Request, *names: str) -> None:
    """Consul's ``conflictingFlags``: two of ``names`` present is 400 with the whole query,
    encoded as Go's ``url.Values.Encode`` does (sorted keys, ``QueryEscape``)."""
    if sum(1 for n in names if n in request.query) > 1:
        encoded = urlencode(sorted(request.query.items()), quote_via=quote_plus)
        raise HTTPError(400, f"Conflicting flags: {encoded}\n")


# --------------------------------------------------------------------------- shapes


def dir_entry_json(ent: dict[str, Any]) -> dict[str, Any]:
    """structs.DirEntry as Consul marshals it: ``Value`` in base64 (null when empty),
    ``Session`` only when set (``json:",omitempty"``)."""
    value = ent.get("Value")
    out: dict[str, Any] = {
        "LockIndex": ent["LockIndex"],
        "Key": ent["Key"],
        "Flags": ent["Flags"],
        "Value": base64.b64encode(value).decode("ascii") if value else None,
    }
    if ent.get("Session"):
        out["Session"] = ent["Session"]
    out["CreateIndex"] = ent["CreateIndex"]
    out["ModifyIndex"] = ent["ModifyIndex"]
    return out


def session_json(sess: dict[str, Any]) -> dict[str, Any]:
    """structs.Session as Consul marshals it (LockDelay in nanoseconds). The deprecated
    ``Checks`` (``omitempty``) never appears: gossamer folds it into ``NodeChecks``.
    Consul keeps an emptied NodeChecks as ``[]`` (fixupEmptySessionChecks)."""
    return {
        "ID": sess["ID"],
        "Name": sess.get("Name") or "",
        "Node": sess["Node"],
        "LockDelay": sess.get("LockDelay") or 0,
        "Behavior": sess.get("Behavior") or "release",
        "TTL": sess.get("TTL") or "",
        "NodeChecks": list(sess.get("NodeChecks") or []),
        "ServiceChecks": sess.get("ServiceChecks") or None,
        "CreateIndex": sess["CreateIndex"],
        "ModifyIndex": sess["ModifyIndex"],
    }


# --------------------------------------------------------------------------- shared steps


def _parse(request: Request, server: CatalogServer) -> QueryOptions:
    """Consul's ``parse``: ``?wait``, ``?index``, ``?stale``/``?consistent`` (400s). The
    datacenter is only resolved when the request reaches the servers (:func:`_check_dc`),
    so a bad wait on a request for another datacenter is still 400, as in Consul."""
    return query_options(request, request.query.get("dc") or server.datacenter)


def _check_dc(request: Request, server: CatalogServer) -> None:
    dc = request.query.get("dc", "")
    if dc and dc != server.datacenter:
        raise HTTPError(500, "No path to datacenter")


async def _write(server: CatalogServer, command: dict[str, Any]) -> Any:
    try:
        return await server.write(command)
    except TxnFailed:
        raise
    except CommandRejected as e:
        raise HTTPError(500, str(e)) from None


def _lock_delayed(server: CatalogServer, key: str) -> bool:
    """kvsPreApply: a key whose holder's session was invalidated cannot be locked again
    until the session's lock delay has passed (the leader's clock decides)."""
    return server.store.lock_delay.get(key, 0.0) > server.now()


# --------------------------------------------------------------------------- /v1/kv


def _register_kv(srv: HTTPServer) -> None:
    agent = srv.agent

    async def kv_get(request: Request, key: str) -> Any:
        server = require_server(agent)
        opts = _parse(request, server)
        q = request.query
        if "keys" in q:
            sep = q.get("seperator", "")
            if "separator" in q:
                sep = q["separator"]
            _check_dc(request, server)
            r = await server.read(
                lambda s: s.kv_keys(key, sep), opts.min_index, opts.wait_s, opts.consistent
            )
            headers = read_headers(r.index, server)
            if not r.value and key:
                return _not_found(headers)
            return Response(list(r.value), headers=headers)
        recurse = "recurse" in q
        if not recurse and not key:
            raise HTTPError(400, "Missing key name")
        _check_dc(request, server)
        fn: Callable[[StateStore], Read] = (
            (lambda s: s.kv_list(key)) if recurse else (lambda s: s.kv_get(key))
        )
        r = await server.read(fn, opts.min_index, opts.wait_s, opts.consistent)
        headers = read_headers(r.index, server)
        entries = list(r.value) if recurse else ([r.value] if r.value is not None else [])
        if not entries:
            return _not_found(headers)
        if "raw" in q and not recurse:
            headers["X-Content-Type-Options"] = "nosniff"
            headers["Content-Security-Policy"] = "sandbox"
            return Response(
                raw=entries[0].get("Value") or b"", headers=headers, content_type="text/plain"
            )
        return Response([dir_entry_json(e) for e in entries], headers=headers)

    async def kv_put(request: Request, key: str) -> Any:
        server = require_server(agent)
        _parse(request, server)
        if not key:
            raise HTTPError(400, "Missing key name")
        _conflicting(request, "cas", "acquire", "release")
        q = request.query
        verb, flags, index, session = "set", 0, 0, ""
        if "flags" in q:
            flags = _uint_param(request, "flags")
        if "cas" in q:
            index = _uint_param(request, "cas")
            verb = "cas"
        if "acquire" in q:
            session, verb = q["acquire"], "lock"
        if "release" in q:
            session, verb = q["release"], "unlock"
        size = len(request.body)
        if size > KV_MAX_VALUE_BYTES:
            raise HTTPError(
                413,
                f"Request body({size} bytes) too large, max size: {KV_MAX_VALUE_BYTES} bytes. "
                f"See {KV_SIZE_DOC}.",
            )
        _check_dc(request, server)
        if verb == "lock" and _lock_delayed(server, key):
            return False
        cmd = C.kv(0.0, verb, key, request.body or None, flags=flags, index=index, session=session)
        ok = await _write(server, cmd)
        return True if verb == "set" else bool(ok)

    async def kv_delete(request: Request, key: str) -> Any:
        server = require_server(agent)
        _parse(request, server)
        _conflicting(request, "recurse", "cas")
        q = request.query
        verb, index = "delete", 0
        if "recurse" in q:
            verb = "delete-tree"
        elif not key:
            raise HTTPError(400, "Missing key name")
        if "cas" in q:
            index = _uint_param(request, "cas")
            verb = "delete-cas"
        _check_dc(request, server)
        ok = await _write(server, C.kv(0.0, verb, key, index=index))
        return bool(ok) if verb == "delete-cas" else True

    srv.route("/v1/kv/", {"GET": kv_get, "PUT": kv_put, "DELETE": kv_delete})


def _not_found(headers: dict[str, str]) -> Response:
    return Response(raw=b"", status=404, headers=headers, content_type="text/plain")


# --------------------------------------------------------------------------- /v1/txn

_TXN_OP_FIELDS: Final = ("KV", "Node", "Service", "Check")
_TXN_KV_FIELDS: Final = (
    "Verb",
    "Key",
    "Value",
    "Flags",
    "Index",
    "Session",
    "Namespace",
    "Partition",
)
_TXN_WRITE_VERBS: Final = frozenset(C.KV_VERBS)


class _BodyError(Exception):
    """A transaction body Go's decoder would refuse (400 ``Failed to parse body: …``)."""


def _go_fields(obj: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """``obj``'s keys matched to ``fields`` as encoding/json does (exact, then
    case-insensitive), refusing unknown keys as ``DisallowUnknownFields`` does."""
    out: dict[str, Any] = {}
    lower = {f.lower(): f for f in fields}
    for key, value in obj.items():
        name = key if key in fields else lower.get(key.lower())
        if name is None:
            raise _BodyError(f"json: unknown field {go_quote(key)}")
        out[name] = value
    return out


def _go_type(value: Any, kind: str, where: str) -> Any:
    """One field of api.KVTxnOp: JSON null leaves Go's zero value."""
    if value is None:
        return 0 if kind == "uint64" else ""
    if kind == "string":
        if not isinstance(value, str):
            raise _BodyError(
                f"json: cannot unmarshal {_json_kind(value)} into Go struct field {where} "
                "of type string"
            )
        return value
    # Go parses the literal with ParseUint: a fraction or an exponent is refused too
    if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _UINT64_MAX):
        shown = _json_kind(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            shown = f"number {value}"
        raise _BodyError(
            f"json: cannot unmarshal {shown} into Go struct field {where} of type uint64"
        )
    return value


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _b64_decode(text: str) -> bytes:
    """Go's ``base64.StdEncoding`` as encoding/json applies it to ``[]byte`` (newlines
    ignored, padding required); the error names the first bad input byte."""
    clean = text.replace("\r", "").replace("\n", "")
    try:
        return base64.b64decode(clean, validate=True)
    except (binascii.Error, ValueError):
        pass
    pos = len(clean) - len(clean) % 4 if len(clean) % 4 else len(clean)
    for i, ch in enumerate(clean):
        if ch == "=":
            pos = min(pos, i)
            break
        if ch not in _B64_ALPHABET:
            pos = i
            break
    raise _BodyError(f"illegal base64 data at input byte {pos}")


def _txn_ops(body: Any) -> tuple[list[dict[str, Any]], int]:
    """The KV operations of a decoded /v1/txn body and how many of them write, checked in
    Consul's order: the body decodes (400), then the number of operations (413), then each
    operation (a value over the KV limit is 413; gossamer adds: a non-KV operation is 400)."""
    if body is None:
        return [], 0
    if not isinstance(body, list):
        raise _BodyError(
            f"json: cannot unmarshal {_json_kind(body)} into Go value of type api.TxnOps"
        )
    decoded: list[tuple[int, str, dict[str, Any]]] = []
    for i, raw in enumerate(body):
        if raw is None:
            continue
        if not isinstance(raw, dict):
            raise _BodyError(
                f"json: cannot unmarshal {_json_kind(raw)} into Go value of type api.TxnOp"
            )
        op = _go_fields(raw, _TXN_OP_FIELDS)
        kv = op.get("KV")
        if kv is None:
            other = [k for k in _TXN_OP_FIELDS[1:] if op.get(k) is not None]
            if other:
                decoded.append((i, other[0], {}))
            continue  # Consul skips an operation with nothing in it
        decoded.append((i, "KV", _txn_kv_op(kv)))
    if len(body) > TXN_MAX_OPS:
        raise HTTPError(
            413, f"Transaction contains too many operations ({len(body)} > {TXN_MAX_OPS})"
        )
    ops: list[dict[str, Any]] = []
    writes = 0
    for i, kind, entry in decoded:
        if kind != "KV":
            raise HTTPError(
                400,
                f"gossamer supports only KV operations in /v1/txn so far; operation {i} "
                f"is a {kind} operation",
            )
        value = entry["Value"]
        if value is not None and len(value) > KV_MAX_VALUE_BYTES:
            raise HTTPError(
                413,
                f"Value for key {go_quote(entry['Key'])} is too large "
                f"({len(value)} > {KV_MAX_VALUE_BYTES} bytes)",
            )
        if entry["Verb"] in _TXN_WRITE_VERBS:
            writes += 1
        ops.append(entry)
    return ops, writes


def _txn_kv_op(kv: Any) -> dict[str, Any]:
    """One api.KVTxnOp as the store's transaction takes it."""
    if not isinstance(kv, dict):
        raise _BodyError(
            f"json: cannot unmarshal {_json_kind(kv)} into Go struct field TxnOp.KV "
            "of type api.KVTxnOp"
        )
    fields = _go_fields(kv, _TXN_KV_FIELDS)
    raw_value = fields.get("Value")
    if raw_value is not None and not isinstance(raw_value, str):
        raise _BodyError(
            f"json: cannot unmarshal {_json_kind(raw_value)} into Go struct field "
            "KVTxnOp.KV.Value of type []uint8"
        )
    _go_type(fields.get("Namespace"), "string", "KVTxnOp.KV.Namespace")
    _go_type(fields.get("Partition"), "string", "KVTxnOp.KV.Partition")
    return {
        "Verb": _go_type(fields.get("Verb"), "string", "KVTxnOp.KV.Verb"),
        "Key": _go_type(fields.get("Key"), "string", "KVTxnOp.KV.Key"),
        "Value": _b64_decode(raw_value) if raw_value is not None else None,
        "Flags": _go_type(fields.get("Flags"), "uint64", "KVTxnOp.KV.Flags"),
        "Index": _go_type(fields.get("Index"), "uint64", "KVTxnOp.KV.Index"),
        "Session": _go_type(fields.get("Session"), "string", "KVTxnOp.KV.Session"),
    }


def _txn_conflict(errors: list[tuple[int, str]]) -> Response:
    body = {"Results": None, "Errors": [{"OpIndex": i, "What": w} for i, w in errors]}
    return Response(body, status=409)


def _register_txn(srv: HTTPServer) -> None:
    agent = srv.agent

    async def txn(request: Request, _: str) -> Any:
        server = require_server(agent)
        limit = max(TXN_MAX_REQ_BYTES, KV_MAX_VALUE_BYTES)
        size = len(request.body)
        if size > limit:
            if "content-length" in request.headers:
                msg = f"Request body({size} bytes) too large, max size: {limit} bytes."
            else:
                msg = f"Request body too large, max size: {limit} bytes."
            raise HTTPError(413, f"{msg} See {TXN_SIZE_DOC}.")
        try:
            if not request.body.strip():
                raise _BodyError("EOF")
            try:
                decoded = orjson.loads(request.body)
            except orjson.JSONDecodeError as e:
                raise _BodyError(str(e)) from None
            ops, writes = _txn_ops(decoded)
        except _BodyError as e:
            raise HTTPError(400, f"Failed to parse body: {e}") from None
        headers: dict[str, str] = {}
        if writes == 0:
            _parse(request, server)  # a read-only transaction takes the query options
            headers = {
                "X-Consul-KnownLeader": "true" if server.known_leader else "false",
                "X-Consul-LastContact": str(server.last_contact_ms()),
            }
        _check_dc(request, server)
        if not ops:
            return Response({"Results": None, "Errors": None}, headers=headers)
        # Txn.preCheck: these fail the transaction before it reaches the log
        pre: list[tuple[int, str]] = []
        for i, op in enumerate(ops):
            if op["Key"] == "" and op["Verb"] != "delete-tree":
                pre.append((i, "Must provide key"))
            elif op["Verb"] == "lock" and _lock_delayed(server, op["Key"]):
                pre.append((i, f"failed to lock key {go_quote(op['Key'])} due to lock delay"))
        if pre:
            return _txn_conflict(pre)
        try:
            result = await _write(server, C.txn(0.0, ops))
        except TxnFailed as e:
            return _txn_conflict(e.errors)
        results = [{"KV": dir_entry_json(r["KV"])} for r in result.get("Results") or []]
        return Response({"Results": results or None, "Errors": None}, headers=headers)

    srv.route("/v1/txn", {"PUT": txn})


# --------------------------------------------------------------------------- /v1/session


def _lock_delay_ns(value: Any) -> int:
    """structs.Session.UnmarshalJSON: a Go duration string or a number of nanoseconds;
    under 1000 ns it is taken as seconds; any other JSON type leaves it 0."""
    dur = 0
    if isinstance(value, str):
        try:
            dur = parse_duration_ns(value)
        except ValueError as e:
            raise HTTPError(400, f"Request decode failed: {e}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if value != value or not _INT64_MIN <= value <= _INT64_MAX:
            raise HTTPError(400, "Request decode failed: LockDelay out of range")
        dur = int(value)
    if dur < LOCK_DELAY_MIN_THRESHOLD:
        dur *= _NS_PER_S
    return max(_INT64_MIN, min(_INT64_MAX, dur))


_SESSION_FIELDS: Final = (
    "ID",
    "Name",
    "Node",
    "LockDelay",
    "Behavior",
    "TTL",
    "NodeChecks",
    "ServiceChecks",
    "Checks",
    "CreateIndex",
    "ModifyIndex",
    "Namespace",
    "Partition",
)


def _str_list(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise HTTPError(400, f"Request decode failed: {where}: expected a list of strings")
    return list(value)


def _decode_session(request: Request, node_name: str) -> dict[str, Any]:
    """The session a /v1/session/create body asks for, with Consul's defaults and its
    fixupEmptySessionChecks; unknown JSON keys are ignored (Session.UnmarshalJSON)."""
    node_checks: list[str] | None = [SERF_CHECK]
    checks: list[str] | None = [SERF_CHECK]
    sess: dict[str, Any] = {
        "Name": "",
        "Node": node_name,
        "LockDelay": LOCK_DELAY_DEFAULT_NS,
        "Behavior": "release",
        "TTL": "",
        "ServiceChecks": None,
    }
    if request.body:
        if not request.body.strip():
            raise HTTPError(400, "Request decode failed: EOF")
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError as e:
            raise HTTPError(400, f"Request decode failed: {e}") from None
        if body is not None and not isinstance(body, dict):
            raise HTTPError(
                400,
                f"Request decode failed: json: cannot unmarshal {_json_kind(body)} into Go "
                "value of type structs.Session",
            )
        lower = {f.lower(): f for f in _SESSION_FIELDS}
        for key, value in (body or {}).items():
            name = key if key in _SESSION_FIELDS else lower.get(key.lower())
            if name is None:
                continue
            if name == "LockDelay":
                if value is not None:
                    sess["LockDelay"] = _lock_delay_ns(value)
            elif name in ("Name", "Node", "Behavior", "TTL", "Namespace", "Partition"):
                if value is not None and not isinstance(value, str):
                    raise HTTPError(
                        400,
                        f"Request decode failed: json: cannot unmarshal {_json_kind(value)} "
                        f"into Go struct field Session.{name} of type string",
                    )
                if name not in ("Namespace", "Partition"):
                    sess[name] = value or ""
            elif name == "NodeChecks":
                node_checks = _str_list(value, name)
            elif name == "Checks":
                checks = _str_list(value, name)
            elif name == "ServiceChecks":
                sess["ServiceChecks"] = _service_checks(value)
    # agent/session_endpoint.go fixupEmptySessionChecks
    # an empty Checks empties NodeChecks; the default Checks, or an empty NodeChecks,
    # drops Checks; otherwise the session is bound to both lists
    if not checks:
        node_checks = []
    elif checks == [SERF_CHECK] or not node_checks:
        checks = None
    bound: dict[str, None] = dict.fromkeys([*(checks or []), *(node_checks or [])])
    sess["NodeChecks"] = list(bound)
    return sess


def _service_checks(value: Any) -> list[dict[str, str]] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise HTTPError(400, "Request decode failed: ServiceChecks: expected a list")
    out = []
    for i, item in enumerate(value):
        if item is None:
            item = {}
        if not isinstance(item, dict):
            raise HTTPError(400, f"Request decode failed: ServiceChecks[{i}]: expected an object")
        fields = {k.lower(): v for k, v in item.items() if isinstance(k, str)}
        sid = fields.get("id")
        ns = fields.get("namespace")
        sid = "" if sid is None else sid
        ns = "" if ns is None else ns
        if not isinstance(sid, str) or not isinstance(ns, str):
            raise HTTPError(
                400, f"Request decode failed: ServiceChecks[{i}]: ID and Namespace are strings"
            )
        out.append({"ID": sid, "Namespace": ns})
    return out


def _validate_session(sess: dict[str, Any]) -> None:
    """agent/consul/session_endpoint.go ``Session.Apply``'s checks (plain errors: 500)."""
    if not sess["Node"]:
        raise HTTPError(500, "Must provide Node")
    if sess["Behavior"] == "":
        sess["Behavior"] = "release"
    if sess["Behavior"] not in ("release", "delete"):
        raise HTTPError(500, f"Invalid Behavior setting '{sess['Behavior']}'")
    ttl = sess["TTL"]
    if ttl:
        try:
            ttl_ns = parse_duration_ns(ttl)
        except ValueError as e:
            raise HTTPError(500, f"Session TTL '{ttl}' invalid: {e}") from None
        if ttl_ns != 0 and not SESSION_TTL_MIN_NS <= ttl_ns <= SESSION_TTL_MAX_NS:
            raise HTTPError(
                500,
                f"Invalid Session TTL '{ttl_ns}', must be between "
                f"[{format_duration(SESSION_TTL_MIN_NS)}={format_duration(SESSION_TTL_MAX_NS)}]",
            )
        if ttl_ns == 0:
            # a zero TTL is no TTL; the server's timers take "" for that
            sess["TTL"] = ""


def _register_session(srv: HTTPServer) -> None:
    agent = srv.agent

    async def create(request: Request, _: str) -> Any:
        server = require_server(agent)
        # the session's default node is the agent the request reached (Consul's client
        # fills it in before its RPC), not the server answering a forwarded request
        sess = _decode_session(request, request.origin or agent.config.node_name)
        _check_dc(request, server)
        _validate_session(sess)
        sess["ID"] = str(uuid.uuid4())
        sid = await _write(server, C.session_create(0.0, sess))
        return {"ID": sid}

    async def destroy(request: Request, sid: str) -> Any:
        server = require_server(agent)
        if not sid:
            raise HTTPError(400, "Missing session")
        _check_dc(request, server)
        if sid not in server.store.sessions:
            return True  # Consul answers before the log: nothing to destroy
        await _write(server, C.session_destroy(0.0, sid))
        return True

    async def renew(request: Request, sid: str) -> Any:
        server = require_server(agent)
        _parse(request, server)
        if not sid:
            raise HTTPError(400, "Missing session")
        _check_dc(request, server)
        sess = server.renew_session(sid)
        if sess is None:
            raise HTTPError(404, f"Session id '{sid}' not found")
        return [session_json(sess)]

    async def info(request: Request, sid: str) -> Any:
        if not sid:
            raise HTTPError(400, "Missing session")
        return await blocking_read(
            agent,
            request,
            lambda s: s.session_get(sid),
            shape=lambda v: [session_json(v)] if v is not None else [],
        )

    async def node(request: Request, name: str) -> Any:
        if not name:
            raise HTTPError(400, "Missing node name")
        return await blocking_read(
            agent,
            request,
            lambda s: s.node_sessions(name),
            shape=lambda v: [session_json(x) for x in v],
        )

    async def list_(request: Request, _: str) -> Any:
        return await blocking_read(
            agent, request, lambda s: s.session_list(), shape=lambda v: [session_json(x) for x in v]
        )

    srv.route("/v1/session/create", {"PUT": create})
    srv.route("/v1/session/destroy/", {"PUT": destroy})
    srv.route("/v1/session/renew/", {"PUT": renew})
    srv.route("/v1/session/info/", {"GET": info})
    srv.route("/v1/session/node/", {"GET": node})
    srv.route("/v1/session/list", {"GET": list_})


def register(srv: HTTPServer) -> None:
    """Add the KV, transaction and session routes to ``srv`` (its agent must have a
    ``catalog`` :class:`~catalog.server.CatalogServer` and a ``config.node_name``)."""
    _register_kv(srv)
    _register_txn(srv)
    _register_session(srv)
