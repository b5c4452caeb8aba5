"""The agent's HTTP API in Consul's shapes (shared/reference/consul-http-api.md), served
by h11 (python-hyper's sans-IO HTTP/1.1) over asyncio streams.

Why h11 and not aiohttp: an agent runs on every host, and aiohttp's import alone costs
13 MB of RSS and 0.25 s of start-up (measured: ``python -c "import aiohttp"``); h11 is a
small, well-kept, sans-IO protocol machine — the same shape as our own cores — and this
module is the thin driver around it.

How it is built, so later issues can grow it:

* :class:`HTTPServer` keeps a route table: an exact path or a prefix ending in ``/`` with
  the rest of the path as the argument, and per method a handler. A path with no route is
  404 ``404 page not found``; a known path with the wrong method is 405 with ``Allow``.
* Handlers get a :class:`Request` and return a JSON-able value (sent as JSON) or a
  :class:`Response`; they raise :class:`HTTPError` for Consul's plain-text errors.
  Anything else that escapes becomes a 500 with a one-line message and is logged; a
  client never sees a traceback.
* Limits: request head ``HEAD_BYTES_MAX``, body ``BODY_BYTES_MAX`` (413 beyond),
  ``CONNECTIONS_MAX`` concurrent connections, ``READ_TIMEOUT_S`` to receive a request,
  ``IDLE_TIMEOUT_S`` between keep-alive requests. JSON keys are matched
  case-insensitively, as Go's decoder does (:func:`field`).

This module only speaks HTTP; what the endpoints do is the :class:`AgentAPI` it is given.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

import h11
import orjson

from gossamer.agent import (
    coordinate_entry,
    event_json,
    keyring_entry,
    keyring_errors,
    member_json,
    uuid_to_index,
)
from gossamer.config import AgentConfig
from gossamer.core import NoLeader
from swim.coordinate import Coordinate
from swim.events import KeyOp, KeyOperationCompleted, Member

__all__ = ["AgentAPI", "HTTPError", "HTTPServer", "Request", "Response", "field"]

log = logging.getLogger("gossamer.http")

BODY_BYTES_MAX = 4 * 1024 * 1024
HEAD_BYTES_MAX = 32 * 1024
CONNECTIONS_MAX = 1024
READ_TIMEOUT_S = 30.0
IDLE_TIMEOUT_S = 120.0
READ_CHUNK = 65536
SERVER_HEADER = b"gossamer"


class HTTPError(Exception):
    """A Consul error: plain-text body, status code."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class Response:
    body: Any = None
    status: int = 200
    headers: dict[str, str] = dc_field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json"


@dataclass
class Request:
    method: str
    path: str
    """Percent-decoded path, without the query string."""
    query: dict[str, str]
    """First value of each query parameter (Go's ``url.Values.Get``); bare ``?stale`` is ''."""
    headers: dict[str, str]
    """Lower-cased names; repeated headers joined with ', '."""
    body: bytes = b""
    query_all: dict[str, list[str]] = dc_field(default_factory=dict)
    """Every value of each query parameter, in order (Go's ``url.Values``)."""
    origin: str = ""
    """For a request forwarded by another agent over server RPC: the node name of the
    agent it reached first ('' = this agent)."""
    hops: int = 0
    """How many times it has been forwarded."""


class AgentAPI(Protocol):
    """What the HTTP API needs from the running agent (gossamer/aio.py)."""

    config: AgentConfig
    node_id: str

    def lan_members(self) -> list[Member]: ...
    def local_member(self) -> Member: ...
    def stats(self) -> dict[str, dict[str, str]]: ...
    def lan_coordinate(self) -> Coordinate | None: ...
    def lan_coordinates(self) -> dict[str, Coordinate]: ...
    async def join_lan(self, address: str) -> tuple[int, str | None]: ...
    async def leave(self) -> str | None: ...
    async def force_leave(self, node: str, prune: bool) -> str | None: ...
    async def keyring(self, op: KeyOp, key: bytes, relay_factor: int) -> KeyOperationCompleted: ...
    async def fire_event(
        self, name: str, payload: bytes, node: str = "", service: str = "", tag: str = ""
    ) -> tuple[dict[str, Any] | None, str | None]: ...
    def event_list(self, name: str = "") -> list[dict[str, Any]]: ...
    async def wait_event(self, timeout_s: float) -> None:
        """Return when a new event is stored, or after ``timeout_s``."""


Handler = Callable[[Request, str], Awaitable[Any]]


class _BodyTooLarge(Exception):
    pass


class HTTPServer:
    def __init__(self, agent: AgentAPI, host: str, port: int) -> None:
        self.agent = agent
        self.host = host
        self.port = port
        self._exact: dict[str, dict[str, Handler]] = {}
        self._prefix: list[tuple[str, dict[str, Handler]]] = []
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[Any]] = set()
        self.stats = {"requests": 0, "connections_refused": 0, "bad_requests": 0}
        self.forward: Callable[[Request], Awaitable[tuple[int, dict[str, str], bytes] | None]]
        self.forward = _answer_here
        """Decides, for a routed request, whether another agent answers it (server RPC:
        a client to a server, a follower to the leader); returns that answer, or None to
        answer here. The agent sets it."""
        _register_agent_endpoints(self)

    def route(self, path: str, methods: dict[str, Handler]) -> None:
        if path.endswith("/") and path != "/":
            self._prefix.append((path, methods))
            self._prefix.sort(key=lambda p: -len(p[0]))
        else:
            self._exact[path] = methods

    def _find(self, path: str) -> tuple[dict[str, Handler], str] | None:
        if path in self._exact:
            return self._exact[path], ""
        for prefix, methods in self._prefix:
            if path.startswith(prefix):
                return methods, path[len(prefix) :]
        return None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=READ_CHUNK, reuse_address=True
        )

    @property
    def bound_port(self) -> int:
        """The port actually bound (useful when started on port 0)."""
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._conns):
            t.cancel()
        for t in list(self._conns):
            with contextlib.suppress(BaseException):
                await t
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    # ------------------------------------------------------------------ connections

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._conns) >= CONNECTIONS_MAX:
            self.stats["connections_refused"] += 1
            writer.close()
            return
        assert task is not None
        self._conns.add(task)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=HEAD_BYTES_MAX)
        try:
            while True:
                req = await self._read_request(conn, reader, writer)
                if req is None:
                    return
                self.stats["requests"] += 1
                status, headers, body = await self.handle(req)
                await self._send(conn, writer, status, headers, body)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    return
        except (
            ConnectionError,
            TimeoutError,
            OSError,
            asyncio.IncompleteReadError,
            asyncio.CancelledError,  # close() cancels kept-alive connections
        ):
            return
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Request | None:
        """One whole request, or None when the client went away or sent garbage (after
        answering 400/413 when the protocol state still allows an answer)."""
        head: h11.Request | None = None
        body = bytearray()
        timeout = IDLE_TIMEOUT_S
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    if conn.they_are_waiting_for_100_continue:
                        writer.write(
                            conn.send(h11.InformationalResponse(status_code=100, headers=[]))
                        )
                    data = await asyncio.wait_for(reader.read(READ_CHUNK), timeout)
                    conn.receive_data(data)
                    timeout = READ_TIMEOUT_S
                    continue
                if isinstance(event, h11.Request):
                    head = event
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > BODY_BYTES_MAX:
                        raise _BodyTooLarge
                elif isinstance(event, h11.EndOfMessage):
                    assert head is not None
                    return _request(head, bytes(body))
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return None
        except h11.RemoteProtocolError as e:
            self.stats["bad_requests"] += 1
            status = e.error_status_hint
            await self._try_error(conn, writer, status, f"Bad request: {e}")
            return None
        except _BodyTooLarge:
            await self._try_error(conn, writer, 413, "Request body too large")
            return None
        except TimeoutError:
            if head is not None:
                await self._try_error(conn, writer, 408, "Timed out reading the request")
            return None

    async def _try_error(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, status: int, msg: str
    ) -> None:
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            headers = {"Content-Type": "text/plain; charset=utf-8", "Connection": "close"}
            with contextlib.suppress(h11.LocalProtocolError, ConnectionError, OSError):
                await self._send(conn, writer, status, headers, msg.encode())

    async def _send(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        status: int,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        hs = [(k.encode(), v.encode("latin-1", "replace")) for k, v in headers.items()]
        hs.append((b"Content-Length", str(len(body)).encode()))
        hs.append((b"Server", SERVER_HEADER))
        out = conn.send(h11.Response(status_code=status, headers=hs, reason=_reason(status)))
        if body:
            out += conn.send(h11.Data(data=body))
        out += conn.send(h11.EndOfMessage())
        writer.write(out)
        await writer.drain()

    # ------------------------------------------------------------------ dispatch

    async def handle(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        """Route one request to its handler; Consul's error conventions for everything else."""
        headers = {"X-Consul-Default-Acl-Policy": "allow"}
        try:
            found = self._find(request.path)
            if found is None:
                raise HTTPError(404, "404 page not found\n")
            methods, arg = found
            handler = methods.get(request.method)
            if handler is None:
                if request.method == "OPTIONS":
                    headers["Allow"] = ",".join(methods)
                    return 200, headers, b""
                raise HTTPError(
                    405, f"method {request.method} not allowed", {"Allow": ",".join(methods)}
                )
            forwarded = await self.forward(request)
            if forwarded is not None:
                return forwarded
            result = await handler(request, arg)
        except HTTPError as e:
            headers.update(e.headers)
            headers["Content-Type"] = "text/plain; charset=utf-8"
            return e.status, headers, e.message.encode()
        except NoLeader:  # Consul's structs.ErrNoLeader
            headers["Content-Type"] = "text/plain; charset=utf-8"
            return 500, headers, b"No cluster leader"
        except TimeoutError:  # a write that did not commit in time (raft.ErrEnqueueTimeout)
            headers["Content-Type"] = "text/plain; charset=utf-8"
            return 500, headers, b"timed out enqueuing operation"
        except Exception as e:  # one line for the client, the traceback for the log
            log.exception("HTTP %s %s failed", request.method, request.path)
            headers["Content-Type"] = "text/plain; charset=utf-8"
            return 500, headers, f"{type(e).__name__}: {e}".encode()
        if not isinstance(result, Response):
            result = Response(result)
        headers.update(result.headers)
        headers["Content-Type"] = result.content_type
        if result.raw is not None:
            return result.status, headers, result.raw
        opts = orjson.OPT_INDENT_2 if "pretty" in request.query else 0
        return result.status, headers, orjson.dumps(result.body, option=opts)


async def _answer_here(request: Request) -> None:
    return None


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _request(head: h11.Request, body: bytes) -> Request:
    target = head.target.decode("latin-1")
    path, _, qs = target.partition("?")
    query: dict[str, str] = {}
    query_all: dict[str, list[str]] = {}
    for k, v in parse_qsl(qs, keep_blank_values=True):
        query.setdefault(k, v)
        query_all.setdefault(k, []).append(v)
    headers: dict[str, str] = {}
    for raw_name, raw_value in head.headers:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return Request(head.method.decode("latin-1"), unquote(path), query, headers, body, query_all)


# --------------------------------------------------------------------------- request helpers


def query_bool(request: Request, name: str) -> bool:
    """Consul treats a present query parameter as true unless it says false/0."""
    if name not in request.query:
        return False
    return request.query[name].lower() not in ("false", "0")


def read_json(request: Request) -> Any:
    body = request.body
    if not body.strip():
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise HTTPError(400, f"Request decode failed: {e}") from None


def field(obj: Any, name: str, default: Any = None) -> Any:
    """A JSON object's field, matched case-insensitively like Go's encoding/json."""
    if not isinstance(obj, dict):
        return default
    if name in obj:
        return obj[name]
    low = name.lower()
    for k, v in obj.items():
        if isinstance(k, str) and k.lower() == low:
            return v
    return default


def apply_filter(request: Request, items: Any) -> Any:
    """``?filter=`` (go-bexpr, :mod:`catalog.bexpr`) on each item of a list or each value
    of a dict; 400 for a bad expression, as Consul."""
    text = request.query.get("filter", "")
    if not text:
        return items
    from catalog import bexpr

    try:
        flt = bexpr.compile_filter(text)
        return flt.apply(items) if isinstance(items, list) else flt.apply_map(items)
    except bexpr.FilterError as e:
        raise HTTPError(400, str(e)) from None


# --------------------------------------------------------------------------- /v1/agent, keyring


def _register_agent_endpoints(srv: HTTPServer) -> None:
    agent = srv.agent

    async def members(request: Request, _: str) -> Any:
        if query_bool(request, "wan"):
            # no WAN pool yet: WAN federation arrives with the federation issue
            return apply_filter(request, [])
        segment = request.query.get("segment", "")
        if segment not in ("", "_all"):
            return apply_filter(request, [])
        return apply_filter(request, [member_json(m) for m in agent.lan_members()])

    async def self_(request: Request, _: str) -> Any:
        cfg = agent.config
        from gossamer import __version__

        coord = agent.lan_coordinate()
        return {
            "Config": {
                "Datacenter": cfg.datacenter,
                "PrimaryDatacenter": cfg.datacenter,
                "NodeName": cfg.node_name,
                "NodeID": agent.node_id,
                "Revision": "gossamer",
                "Server": cfg.server,
                "Version": __version__,
                "BuildDate": "",
            },
            "DebugConfig": {
                "BindAddr": cfg.bind_addr,
                "AdvertiseAddrLAN": agent.local_member().addr,
                "SerfPortLAN": cfg.serf_lan_port,
                "HTTPPort": cfg.http_port,
                "ClientAddrs": [cfg.client_addr],
                "DataDir": cfg.data_dir or "",
                "RetryJoinLAN": list(cfg.retry_join),
                "EncryptKeyConfigured": cfg.encrypt_key is not None,
                "GossipProfile": cfg.gossip_profile,
            },
            "Coord": coord.to_wire() if coord is not None else None,
            "Member": member_json(agent.local_member()),
            "Stats": agent.stats(),
            "Meta": {"consul-network-segment": ""},
            "xDS": None,
        }

    async def join(request: Request, address: str) -> Any:
        if query_bool(request, "wan"):
            if not agent.config.server:
                raise HTTPError(500, "Must be a server to join WAN cluster")
            raise HTTPError(500, "WAN federation is not implemented in gossamer yet")
        if not address:
            raise HTTPError(400, "Missing address to join")
        _, err = await agent.join_lan(address)
        if err:
            raise HTTPError(500, err)
        return None

    async def leave(request: Request, _: str) -> Any:
        err = await agent.leave()
        if err:
            raise HTTPError(500, err)
        return None

    async def force_leave(request: Request, node: str) -> Any:
        if not node:
            raise HTTPError(400, "Missing node name")
        if query_bool(request, "wan"):
            raise HTTPError(500, "WAN federation is not implemented in gossamer yet")
        err = await agent.force_leave(node, query_bool(request, "prune"))
        if err:
            raise HTTPError(500, err)
        return None

    async def keyring(request: Request, _: str) -> Any:
        key = b""
        if request.method != "GET":
            body = read_json(request)
            text = field(body, "Key", "")
            if not isinstance(text, str):
                raise HTTPError(400, "Request decode failed: Key must be a string")
            try:
                key = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError) as e:
                raise HTTPError(400, f"Request decode failed: {e}") from None
            if len(key) not in (16, 24, 32):
                raise HTTPError(400, "Invalid key: key size must be 16, 24 or 32 bytes")
        relay = 0
        if "relay-factor" in request.query:
            try:
                relay = int(request.query["relay-factor"])
            except ValueError as e:
                raise HTTPError(400, f"Error parsing relay factor: {e}") from None
            if not 0 <= relay <= 5:
                raise HTTPError(400, "Invalid relay-factor: Relay factor must be in range: [0, 5]")
        if query_bool(request, "local-only") and request.method != "GET":
            raise HTTPError(
                400, "Invalid use of local-only: local-only can only be set for list requests"
            )
        op = {"GET": KeyOp.LIST, "POST": KeyOp.INSTALL, "PUT": KeyOp.USE, "DELETE": KeyOp.REMOVE}[
            request.method
        ]
        result = await agent.keyring(op, key, relay)
        entries = [keyring_entry(agent.config.datacenter, result)]
        err = keyring_errors(entries)
        if err:
            raise HTTPError(500, err)
        if op != KeyOp.LIST:
            return None
        for entry in entries:
            del entry["Error"]
        return entries

    async def coordinate_nodes(request: Request, _: str) -> Any:
        coords = agent.lan_coordinates()
        return [coordinate_entry(n, c) for n, c in sorted(coords.items())]

    async def event_fire(request: Request, name: str) -> Any:
        if request.query.get("dc") not in (None, "", agent.config.datacenter):
            raise HTTPError(500, "No path to datacenter")
        payload = request.body
        q = request.query
        ev, err = await agent.fire_event(
            name, payload, q.get("node", ""), q.get("service", ""), q.get("tag", "")
        )
        if err:
            raise HTTPError(400 if "filter" in err or "name" in err else 500, err)
        assert ev is not None
        return event_json(ev)

    async def event_list(request: Request, _: str) -> Any:
        """Consul's EventList (agent/event_endpoint.go): the index is derived from the last
        event's ID; with ``?index=N`` the answer waits while that index still equals N
        (``!=``, not ``>``: event IDs are random), up to the wait."""
        from catalog.http_common import query_options

        opts = query_options(request, agent.config.datacenter)
        name = request.query.get("name", "")
        loop = asyncio.get_running_loop()
        deadline = None
        while True:
            events = agent.event_list(name)
            index = uuid_to_index(events[-1]["ID"]) if events else 1
            if opts.min_index == 0 or opts.min_index != index:
                break
            if deadline is None:
                wait = opts.wait_s if opts.wait_s else 300.0
                deadline = loop.time() + min(wait, 600.0)
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await agent.wait_event(remaining)
        body = apply_filter(request, [event_json(e) for e in events])
        return Response(body, headers={"X-Consul-Index": str(index)})

    async def index(request: Request, _: str) -> Any:
        """Consul's Index handler with the UI off: a line that says what answers here."""
        return Response(
            raw=b"Gossamer agent: no UI. The HTTP API is under /v1/.",
            content_type="text/plain; charset=utf-8",
        )

    srv.route("/", {"GET": index})
    srv.route("/v1/agent/members", {"GET": members})
    srv.route("/v1/event/fire/", {"PUT": event_fire})
    srv.route("/v1/event/list", {"GET": event_list})
    srv.route("/v1/agent/self", {"GET": self_})
    srv.route("/v1/agent/join/", {"PUT": join})
    srv.route("/v1/agent/leave", {"PUT": leave})
    srv.route("/v1/agent/force-leave/", {"PUT": force_leave})
    srv.route(
        "/v1/operator/keyring",
        {"GET": keyring, "POST": keyring, "PUT": keyring, "DELETE": keyring},
    )
    srv.route("/v1/coordinate/nodes", {"GET": coordinate_nodes})
