"""What every catalog endpoint shares: Consul's query options, blocking reads, read
headers, filters and the decoding of request bodies.

Consul behaviour copied here (agent/http.go ``parseWait``, ``parseConsistency``,
``parseDC``, ``setMeta``, ``decodeBody``; agent/consul/rpc.go ``blockingQuery``):

* ``?index=N&wait=D``: block until the answer's index passes N, for D (a Go duration;
  default 5 min, capped at 10 min, plus jitter). A bad value is 400 ``Invalid wait time``
  or ``Invalid index``.
* ``?stale`` and ``?consistent`` together are 400 ``Cannot specify ?stale with
  ?consistent, conflicting semantics.``. A server answers ``?stale`` from its own
  replica; other reads reach the leader, and ``?consistent`` ones confirm it still leads.
* ``?dc=`` naming another datacenter is 500 ``No path to datacenter`` until WAN
  federation exists.
* Every read answers with ``X-Consul-Index`` (never 0), ``X-Consul-KnownLeader`` and
  ``X-Consul-LastContact`` (ms since the leader was last heard; 0 on the leader).
* ``?filter=`` is a go-bexpr expression (:mod:`catalog.bexpr`) applied to each result
  item; a bad one is 400.
* Bodies: JSON decoded as Go does, keys matched case-insensitively, with Consul's
  snake_case aliases (``tagged_addresses``), by :func:`canon` against a schema; a wrong
  type is 400 ``Request decode failed: …`` and nothing is applied.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from catalog.aio import HTTPError, Request, Response, read_json
from catalog.store import Read, StateStore
from gossamer.duration import parse_duration

if TYPE_CHECKING:
    from catalog.server import CatalogServer

__all__ = [
    "ANY",
    "BOOL",
    "DURATION",
    "FLOAT",
    "INT",
    "MAP",
    "STR",
    "STRLIST",
    "QueryOptions",
    "blocking_read",
    "canon",
    "compile_filter_or_400",
    "decode_body",
    "filter_items",
    "query_options",
    "read_headers",
    "require_server",
]

STR = "str"
INT = "int"
FLOAT = "float"
BOOL = "bool"
STRLIST = "strlist"
MAP = "map"
"""A JSON object whose keys are the user's (Meta, TaggedAddresses): kept verbatim, string
values."""
ANY = "any"
"""Kept verbatim (free-form config)."""
DURATION = "duration"
"""A Go duration string ("10s") or a number of nanoseconds, as Go's time.Duration decodes;
kept as given, checked to parse."""

Schema = Mapping[str, Any]


def _norm(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def canon(obj: Any, schema: Schema, where: str = "") -> dict[str, Any]:
    """``obj`` (decoded JSON) with its keys renamed to the schema's canonical spellings
    and its values type-checked. A schema maps a canonical name to a type tag, a nested
    schema (dict), or a one-element list holding the element type. An ``"@aliases"``
    entry maps extra normalised spellings to canonical names. Unknown keys are dropped,
    as Go's decoder does."""
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise HTTPError(400, f"Request decode failed: {where or 'body'}: expected an object")
    lookup = {_norm(k): k for k in schema if not k.startswith("@")}
    for alias, target in schema.get("@aliases", {}).items():
        lookup[_norm(alias)] = target
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = lookup.get(_norm(key)) if isinstance(key, str) else None
        if name is None or value is None:
            continue
        out[name] = _value(value, schema[name], f"{where}.{name}" if where else name)
    return out


def _value(value: Any, spec: Any, where: str) -> Any:
    if isinstance(spec, dict):
        return canon(value, spec, where)
    if isinstance(spec, list):
        if not isinstance(value, list):
            raise HTTPError(400, f"Request decode failed: {where}: expected a list")
        return [_value(v, spec[0], f"{where}[{i}]") for i, v in enumerate(value) if v is not None]
    match spec:
        case "str":
            if not isinstance(value, str):
                raise HTTPError(400, f"Request decode failed: {where}: expected a string")
            return value
        case "int":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise HTTPError(400, f"Request decode failed: {where}: expected a number")
            if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
                raise HTTPError(400, f"Request decode failed: {where}: expected an integer")
            v = int(value)
            if not -(1 << 63) <= v < (1 << 64):
                raise HTTPError(400, f"Request decode failed: {where}: number out of range")
            return v
        case "float":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise HTTPError(400, f"Request decode failed: {where}: expected a number")
            return float(value)
        case "bool":
            if not isinstance(value, bool):
                raise HTTPError(400, f"Request decode failed: {where}: expected true or false")
            return value
        case "strlist":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise HTTPError(400, f"Request decode failed: {where}: expected a list of strings")
            return list(value)
        case "map":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise HTTPError(
                    400, f"Request decode failed: {where}: expected an object of strings"
                )
            return dict(value)
        case "duration":
            if isinstance(value, bool):
                raise HTTPError(400, f"Request decode failed: {where}: expected a duration")
            if isinstance(value, int | float):
                if not math.isfinite(value):
                    raise HTTPError(400, f"Request decode failed: {where}: bad duration")
                return f"{int(value)}ns"
            if not isinstance(value, str):
                raise HTTPError(400, f"Request decode failed: {where}: expected a duration")
            try:
                parse_duration(value)
            except ValueError as e:
                raise HTTPError(400, f"Request decode failed: {where}: {e}") from None
            return value
        case "any":
            return value
    raise AssertionError(f"bad schema type {spec!r}")


def decode_body(request: Request, schema: Schema) -> dict[str, Any]:
    """The request body as a canonical dict; an empty body is ``{}``."""
    return canon(read_json(request), schema)


@dataclass(frozen=True, slots=True)
class QueryOptions:
    min_index: int = 0
    wait_s: float | None = None
    stale: bool = False
    consistent: bool = False
    filter: str = ""


def query_options(request: Request, datacenter: str) -> QueryOptions:
    """Consul's parseDC + parseConsistency + parseWait + filter."""
    q = request.query
    dc = q.get("dc", "")
    if dc and dc != datacenter:
        raise HTTPError(500, "No path to datacenter")
    stale = "stale" in q
    consistent = "consistent" in q
    if stale and consistent:
        raise HTTPError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
    wait_s: float | None = None
    if "wait" in q:
        try:
            wait_s = parse_duration(q["wait"])
        except ValueError:
            raise HTTPError(400, "Invalid wait time") from None
        if wait_s < 0:
            raise HTTPError(400, "Invalid wait time")
    min_index = 0
    if "index" in q:
        text = q["index"]
        if not text.isdigit() or len(text) > 20 or int(text) >= 1 << 64:
            raise HTTPError(400, "Invalid index")
        min_index = int(text)
    return QueryOptions(min_index, wait_s, stale, consistent, q.get("filter", ""))


def require_server(agent: Any) -> CatalogServer:
    """The catalog server this agent talks to; clients have none until server RPC exists."""
    server = getattr(agent, "catalog", None)
    if server is None:
        config = getattr(agent, "config", None)
        if config is not None and config.server:
            # a server waiting for -bootstrap-expect peers: Consul's structs.ErrNoLeader
            raise HTTPError(500, "No cluster leader")
        raise HTTPError(500, "No known Consul servers")
    return server  # type: ignore[no-any-return]


def read_headers(index: int, server: CatalogServer) -> dict[str, str]:
    return {
        "X-Consul-Index": str(max(index, 1)),
        "X-Consul-KnownLeader": "true" if server.known_leader else "false",
        "X-Consul-LastContact": str(server.last_contact_ms()),
    }


async def blocking_read(
    agent: Any,
    request: Request,
    fn: Callable[[StateStore], Read],
    shape: Callable[[Any], Any] | None = None,
    not_found: Callable[[Any], bool] | None = None,
) -> Response:
    """The whole GET path of a read endpoint: options, the (blocking) read, the filter,
    the headers. ``shape`` turns the stored value into the JSON answer; ``not_found``
    says when to answer 404 (with the index headers, as Consul does)."""
    opts = query_options(request, agent.config.datacenter)
    server = require_server(agent)
    flt = compile_filter_or_400(opts.filter) if opts.filter else None
    r = await server.read(fn, opts.min_index, opts.wait_s, opts.consistent)
    headers = read_headers(r.index, server)
    if not_found is not None and not_found(r.value):
        return Response(raw=b"", status=404, headers=headers, content_type="text/plain")
    value = shape(r.value) if shape is not None else r.value
    if flt is not None:
        value = filter_items(flt, value)
    return Response(value, headers=headers)


def compile_filter_or_400(text: str) -> Any:
    from catalog import bexpr

    try:
        return bexpr.compile_filter(text)
    except bexpr.FilterError as e:
        raise HTTPError(400, str(e)) from None


def filter_items(flt: Any, value: Any) -> Any:
    """Apply a compiled filter to a list (each item) or a dict (each value)."""
    from catalog import bexpr

    try:
        if isinstance(value, list):
            return flt.apply(value)
        if isinstance(value, dict):
            return flt.apply_map(value)
    except bexpr.FilterError as e:
        raise HTTPError(400, str(e)) from None
    return value
