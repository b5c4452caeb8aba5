"""The agent's HTTP API (aiohttp), in Consul's shapes (shared/reference/consul-http-api.md).

How it is built, so later issues can grow it:

* :class:`HTTPServer` keeps a route table: an exact path or a prefix ending in ``/`` with
  the rest of the path as the argument, and per method a handler. A path with no route is
  404 ``404 page not found``; a known path with the wrong method is 405 with ``Allow``.
* Handlers return a JSON-able value (sent as JSON) or a :class:`Response`; they raise
  :class:`HTTPError` for Consul's plain-text errors. Anything else that escapes becomes a
  500 with a one-line message and is logged; a client never sees a traceback.
* Bodies are bounded (``BODY_BYTES_MAX``); JSON keys are matched case-insensitively, as
  Go's decoder does (:func:`field`).

This module only speaks HTTP; what the endpoints do is the :class:`AgentAPI` it is given.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Protocol
from urllib.parse import unquote

import orjson
from aiohttp import web

from gossamer.agent import (
    coordinate_entry,
    event_json,
    keyring_entry,
    keyring_errors,
    member_json,
    uuid_to_index,
)
from gossamer.config import AgentConfig
from swim.coordinate import Coordinate
from swim.events import KeyOp, KeyOperationCompleted, Member

__all__ = ["AgentAPI", "HTTPError", "HTTPServer", "Response", "field"]

log = logging.getLogger("gossamer.http")

BODY_BYTES_MAX = 4 * 1024 * 1024


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


class AgentAPI(Protocol):
    """What the HTTP API needs from the running agent (gossamer/runtime.py)."""

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


Handler = Callable[[web.Request, str], Awaitable[Any]]


class HTTPServer:
    def __init__(self, agent: AgentAPI, host: str, port: int) -> None:
        self.agent = agent
        self.host = host
        self.port = port
        self._exact: dict[str, dict[str, Handler]] = {}
        self._prefix: list[tuple[str, dict[str, Handler]]] = []
        self._runner: web.AppRunner | None = None
        _register_agent_endpoints(self)

    def route(self, path: str, methods: dict[str, Handler]) -> None:
        if path.endswith("/"):
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
        app = web.Application(client_max_size=BODY_BYTES_MAX)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        headers = {"X-Consul-Default-Acl-Policy": "allow"}
        try:
            found = self._find(request.path)
            if found is None:
                raise HTTPError(404, "404 page not found\n")
            methods, arg = found
            handler = methods.get(request.method)
            if handler is None:
                if request.method == "OPTIONS":
                    return web.Response(status=200, headers={"Allow": ",".join(methods)})
                raise HTTPError(
                    405,
                    f"method {request.method} not allowed",
                    {"Allow": ",".join(methods)},
                )
            result = await handler(request, unquote(arg))
        except HTTPError as e:
            headers.update(e.headers)
            return web.Response(
                status=e.status, text=e.message, headers=headers, content_type="text/plain"
            )
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text="Request body too large", headers=headers)
        except Exception as e:  # one line for the client, the traceback for the log
            log.exception("HTTP %s %s failed", request.method, request.path)
            return web.Response(status=500, text=f"{type(e).__name__}: {e}", headers=headers)
        if isinstance(result, Response):
            headers.update(result.headers)
            if result.raw is not None:
                return web.Response(
                    status=result.status,
                    body=result.raw,
                    headers=headers,
                    content_type=result.content_type,
                )
            result_body = result.body
            status = result.status
        else:
            result_body, status = result, 200
        opts = orjson.OPT_INDENT_2 if "pretty" in request.query else 0
        return web.Response(
            status=status,
            body=orjson.dumps(result_body, option=opts),
            headers=headers,
            content_type="application/json",
        )


# --------------------------------------------------------------------------- request helpers


def query_bool(request: web.Request, name: str) -> bool:
    """Consul treats a present query parameter as true unless it says false/0."""
    if name not in request.query:
        return False
    return request.query[name].lower() not in ("false", "0")


async def read_json(request: web.Request) -> Any:
    body = await request.read()
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


def reject_filter(request: web.Request) -> None:
    if request.query.get("filter"):
        raise HTTPError(
            400,
            "Failed to create boolean expression evaluator: ?filter is not supported by "
            "gossamer yet",
        )


# --------------------------------------------------------------------------- /v1/agent, keyring


def _register_agent_endpoints(srv: HTTPServer) -> None:
    agent = srv.agent

    async def members(request: web.Request, _: str) -> Any:
        reject_filter(request)
        if query_bool(request, "wan"):
            # no WAN pool yet: WAN federation arrives with the federation issue
            return []
        segment = request.query.get("segment", "")
        if segment not in ("", "_all"):
            return []
        return [member_json(m) for m in agent.lan_members()]

    async def self_(request: web.Request, _: str) -> Any:
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
                "AdvertiseAddrLAN": cfg.advertise,
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

    async def join(request: web.Request, address: str) -> Any:
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

    async def leave(request: web.Request, _: str) -> Any:
        err = await agent.leave()
        if err:
            raise HTTPError(500, err)
        return None

    async def force_leave(request: web.Request, node: str) -> Any:
        if not node:
            raise HTTPError(400, "Missing node name")
        if query_bool(request, "wan"):
            raise HTTPError(500, "WAN federation is not implemented in gossamer yet")
        err = await agent.force_leave(node, query_bool(request, "prune"))
        if err:
            raise HTTPError(500, err)
        return None

    async def keyring(request: web.Request, _: str) -> Any:
        key = b""
        if request.method != "GET":
            body = await read_json(request)
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

    async def coordinate_nodes(request: web.Request, _: str) -> Any:
        coords = agent.lan_coordinates()
        return [coordinate_entry(n, c) for n, c in sorted(coords.items())]

    async def event_fire(request: web.Request, name: str) -> Any:
        if request.query.get("dc") not in (None, "", agent.config.datacenter):
            raise HTTPError(500, "No path to datacenter")
        payload = await request.read()
        q = request.query
        ev, err = await agent.fire_event(
            name, payload, q.get("node", ""), q.get("service", ""), q.get("tag", "")
        )
        if err:
            raise HTTPError(400 if "filter" in err or "name" in err else 500, err)
        assert ev is not None
        return event_json(ev)

    async def event_list(request: web.Request, _: str) -> Any:
        reject_filter(request)
        events = agent.event_list(request.query.get("name", ""))
        index = uuid_to_index(events[-1]["ID"]) if events else 1
        return Response([event_json(e) for e in events], headers={"X-Consul-Index": str(index)})

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
