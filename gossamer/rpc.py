"""The agent's server RPC: which agent answers a request, and the calls that carry it there
(Consul's agent/consul/rpc.go ``forward`` and agent/router's server list).

Routing rules (the HTTP server asks :meth:`ServerRPC.route` before it runs a handler):

1. Only the server endpoints route: KV, txn, sessions, catalog, health, coordinates,
   status, operator raft/autopilot/usage. The agent endpoints are always answered here.
2. A **client** sends every server request to one server (a preferred one, picked at
   random among the alive servers of its datacenter in gossip, kept until a call to it
   fails). A read is retried on the next server when the call fails; a write only when the
   connection could not be made (it was never sent, so it cannot have been applied twice).
   No server in gossip: ``500 No known Consul servers`` (coordinate reads are answered
   from the client's own gossip instead).
3. A **server** answers ``/v1/status/*`` and ``?stale`` reads itself, from its replica.
   The leader answers everything else once its leadership is established (its store holds
   every committed write); a follower forwards to the leader, waiting up to
   ``RPC_HOLD_TIMEOUT_S`` (Consul's ``rpc_hold_timeout``) for one to be elected, else
   ``500 No cluster leader``. A forwarded request is forwarded at most ``HOPS_MAX`` times.
4. The answering agent runs the same endpoint code as for a local request, with the
   request's origin node (``?near=_agent``, a session's default node mean that agent).

Two narrower calls serve agents themselves: ``Apply`` (one state-store command: a client's
or a follower's anti-entropy, a follower's session expiry) and ``Query`` (named reads:
``node_state`` for anti-entropy, ``raft_stats`` for bootstrapping).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from catalog.aio import HTTPError, Request
from catalog.store import CommandRejected, TxnFailed
from federation import rpc
from federation.aio import RPCClient, RPCServer
from federation.bootstrap import ServerMeta, alive_servers
from gossamer.core import NoLeader
from gossamer.duration import parse_duration

if TYPE_CHECKING:
    from catalog.server import CatalogServer
    from federation.aio import RaftServer
    from swim.events import Member

__all__ = [
    "RPC_HOLD_TIMEOUT_S",
    "SERVER_PATHS",
    "RemoteCatalog",
    "ServerCatalog",
    "ServerRPC",
    "is_server_path",
]

log = logging.getLogger("gossamer.agent.rpc")

SERVICE = "gossamer.rpc.Server"
FORWARD = f"/{SERVICE}/Forward"
APPLY = f"/{SERVICE}/Apply"
QUERY = f"/{SERVICE}/Query"

SERVER_PATHS = (
    "/v1/kv/",
    "/v1/txn",
    "/v1/session/",
    "/v1/catalog/",
    "/v1/health/",
    "/v1/coordinate/",
    "/v1/status/",
    "/v1/operator/raft/",
    "/v1/operator/autopilot/",
    "/v1/operator/usage",
)
RPC_HOLD_TIMEOUT_S = 7.0
"""Consul's rpc_hold_timeout: how long a request waits for a leader to be elected."""
CONNECT_TIMEOUT_S = 1.0
NO_LEADER = "No cluster leader"
CALL_TIMEOUT_S = 30.0
ATTEMPTS_MAX = 3


def is_server_path(path: str) -> bool:
    return any(path.startswith(p) if p.endswith("/") else path == p for p in SERVER_PATHS)


def call_timeout(request: Request) -> float:
    """How long a forwarded request may take: a blocking read holds for its wait (at most
    10 minutes) plus Consul's jitter of up to wait/16, and some slack."""
    if request.method == "GET" and "index" in request.query:
        try:
            wait = parse_duration(request.query.get("wait", "") or "5m")
        except ValueError:
            wait = 300.0
        wait = 300.0 if wait <= 0 else min(wait, 600.0)
        return wait * 17 / 16 + 15.0
    return CALL_TIMEOUT_S


class ServerRPC:
    """See the module docstring. ``catalog`` and ``raft`` are None on client agents."""

    def __init__(
        self,
        node_name: str,
        datacenter: str,
        members: Callable[[], list[Member]],
        client: RPCClient,
        rng: random.Random,
        catalog: CatalogServer | None = None,
        raft: RaftServer | None = None,
    ) -> None:
        self.node_name = node_name
        self.datacenter = datacenter
        self.members = members
        self.client = client
        self.rng = rng
        self.catalog = catalog
        self.raft = raft
        self.handle_http: Callable[[Request], Any] | None = None
        """The local HTTP dispatch (HTTPServer.handle), for forwarded requests."""
        self._preferred: str | None = None
        self.stats = {"forwarded": 0, "forward_failed": 0, "served": 0, "bad_requests": 0}

    def register(self, server: RPCServer) -> None:
        server.add_method(SERVICE, "Forward", self._on_forward)
        server.add_method(SERVICE, "Apply", self._on_apply)
        server.add_method(SERVICE, "Query", self._on_query)

    # ------------------------------------------------------------------ servers

    def servers(self) -> list[ServerMeta]:
        """The alive servers of our datacenter, the preferred one first (rule 2)."""
        found = alive_servers(self.members(), self.datacenter)
        if not found:
            return []
        addrs = [s.address for s in found]
        if self._preferred not in addrs:
            self._preferred = self.rng.choice(addrs)
        return sorted(found, key=lambda s: s.address != self._preferred)

    def _failed(self, address: str) -> None:
        if self._preferred == address:
            self._preferred = None

    async def _leader_address(self) -> str:
        """The leader's RPC address, waiting up to the hold timeout for one."""
        assert self.raft is not None
        leader = self.raft.leader
        if leader is None:
            leader = await self.raft.wait_leader(RPC_HOLD_TIMEOUT_S)
        addr = self.raft.leader_address if leader is not None else None
        if not addr:
            raise NoLeader
        return addr

    async def _leader_moved(self, tried: list[str]) -> None:
        """Wait (up to a third of the hold timeout, once per attempt) until the leader is
        someone we have not just tried: a follower whose leader died learns of the next
        one from the election."""
        assert self.raft is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + RPC_HOLD_TIMEOUT_S / ATTEMPTS_MAX
        while loop.time() < end:
            addr = self.raft.leader_address
            if addr is not None and addr not in tried:
                return
            await asyncio.sleep(0.01)

    async def _reachable(self, errors: list[str]) -> AsyncIterator[str]:
        """The servers to ask, in turn, that accept a connection (rules 2 and 3): the
        leader from a server, the preferred server first from a client; up to
        ``ATTEMPTS_MAX`` rounds, a server waiting between rounds for the election to name
        another leader. A refused connection is noted in ``errors`` and skipped: the
        request was never sent, so even a write may go to the next one."""
        for attempt in range(ATTEMPTS_MAX):
            targets = await self._targets()
            for addr in targets:
                if await self.client.connected(addr, CONNECT_TIMEOUT_S):
                    yield addr
                else:
                    self._failed(addr)
                    errors.append(f"cannot connect to {addr}")
            if attempt + 1 < ATTEMPTS_MAX:
                if self.raft is not None:
                    await self._leader_moved(targets)
                else:
                    await asyncio.sleep(0.2)

    async def _targets(self) -> list[str]:
        if self.raft is not None:
            return [await self._leader_address()]
        found = self.servers()
        if not found:
            raise HTTPError(500, "No known Consul servers")
        return [s.address for s in found]

    # ------------------------------------------------------------------ HTTP routing

    async def route(self, request: Request) -> tuple[int, dict[str, str], bytes] | None:
        """The HTTP server's forward hook (rules 1-3)."""
        if not is_server_path(request.path):
            return None
        if self.raft is not None:
            if request.path.startswith("/v1/status/"):
                return None
            if request.method == "GET" and "stale" in request.query:
                return None
            if self.raft.is_leader:
                await self._wait_established()
                return None
        elif request.path.startswith("/v1/coordinate/") and not self.servers():
            # with no server to ask, a client answers coordinate reads from its own gossip
            # (gossamer's fallback; the endpoint code does it when it has no catalog)
            return None
        if request.hops >= rpc.HOPS_MAX:
            raise NoLeader
        return await self._forward(request)

    async def _wait_established(self) -> None:
        assert self.raft is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + RPC_HOLD_TIMEOUT_S
        while not self.raft.leader_ready():
            if not self.raft.is_leader or loop.time() >= end:
                raise NoLeader
            await asyncio.sleep(0.005)

    async def _forward(self, request: Request) -> tuple[int, dict[str, str], bytes]:
        query = [(k, v) for k, vs in request.query_all.items() for v in vs] or list(
            request.query.items()
        )
        msg = rpc.ForwardRequest(
            request.method,
            request.path,
            tuple(query),
            tuple(request.headers.items()),
            request.body,
            request.origin or self.node_name,
            request.hops + 1,
        )
        payload = rpc.encode(msg)
        is_read = request.method in ("GET", "HEAD")
        errors: list[str] = []
        async for addr in self._reachable(errors):
            try:
                raw = await self.client.call(addr, FORWARD, payload, call_timeout(request))
            except grpc.aio.AioRpcError as e:
                self._failed(addr)
                self.stats["forward_failed"] += 1
                errors.append(f"{addr}: {e.details() or e.code().name}")
                if is_read:
                    continue
                raise HTTPError(500, f"rpc error making call: {errors[-1]}") from None
            resp = _decode_answer(raw, rpc.ForwardResponse)
            self.stats["forwarded"] += 1
            return resp.status, dict(resp.headers), resp.body
        raise _no_answer(errors)

    async def _on_forward(self, data: bytes) -> bytes:
        try:
            m = rpc.decode(data)
            if not isinstance(m, rpc.ForwardRequest):
                raise rpc.RPCError("expected a forwarded request")
        except rpc.RPCError as e:
            self.stats["bad_requests"] += 1
            return rpc.encode(rpc.ForwardResponse(400, (), f"bad RPC request: {e}".encode()))
        query_all: dict[str, list[str]] = {}
        for k, v in m.query:
            query_all.setdefault(k, []).append(v)
        request = Request(
            m.method,
            m.path,
            {k: vs[0] for k, vs in query_all.items()},
            dict(m.headers),
            m.body,
            query_all,
            origin=m.origin,
            hops=m.hops,
        )
        assert self.handle_http is not None
        status, headers, body = await self.handle_http(request)
        self.stats["served"] += 1
        return rpc.encode(rpc.ForwardResponse(status, tuple(headers.items()), body))

    # ------------------------------------------------------------------ Apply

    async def apply(self, command: dict[str, Any], hops: int = 0) -> Any:
        """Send a state-store command to the leader (via a server, on a client); returns
        its result or raises what the leader raised."""
        payload = rpc.encode(rpc.ApplyRequest(command, hops + 1))
        errors: list[str] = []
        async for addr in self._reachable(errors):
            try:
                raw = await self.client.call(addr, APPLY, payload, CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError as e:  # it may have been applied: no retry
                self._failed(addr)
                raise HTTPError(
                    500, f"rpc error making call: {e.details() or e.code().name}"
                ) from None
            resp = _decode_answer(raw, rpc.ApplyResponse)
            if resp.error_kind == "no-leader":
                errors.append(NO_LEADER)  # not applied: safe to ask again
                continue
            return _raise_or_result(resp)
        raise _no_answer(errors)

    async def _on_apply(self, data: bytes) -> bytes:
        try:
            m = rpc.decode(data)
            if not isinstance(m, rpc.ApplyRequest):
                raise rpc.RPCError("expected a command")
        except rpc.RPCError as e:
            self.stats["bad_requests"] += 1
            return rpc.encode(rpc.ApplyResponse(error=f"bad RPC request: {e}", error_kind="bad"))
        try:
            if self.catalog is None or self.raft is None:
                raise NoLeader
            if self.raft.is_leader:
                result = await self.catalog.write(m.command)
            elif m.hops >= rpc.HOPS_MAX:
                raise NoLeader
            else:
                result = await self.apply(m.command, m.hops)
            return rpc.encode(rpc.ApplyResponse(result))
        except TxnFailed as e:
            details = [[i, w] for i, w in e.errors]
            return rpc.encode(rpc.ApplyResponse(None, str(e), "txn", details))
        except CommandRejected as e:
            return rpc.encode(rpc.ApplyResponse(None, str(e), "rejected"))
        except NoLeader:
            return rpc.encode(rpc.ApplyResponse(None, NO_LEADER, "no-leader"))
        except TimeoutError:
            return rpc.encode(rpc.ApplyResponse(None, "timed out enqueuing operation", "internal"))
        except HTTPError as e:
            return rpc.encode(rpc.ApplyResponse(None, e.message, "internal"))

    # ------------------------------------------------------------------ Query

    async def query(self, name: str, *args: Any, hops: int = 0) -> rpc.QueryResponse:
        payload = rpc.encode(rpc.QueryRequest(name, args, hops + 1))
        errors: list[str] = []
        async for addr in self._reachable(errors):
            try:
                raw = await self.client.call(addr, QUERY, payload, CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError as e:  # a read: ask the next one
                self._failed(addr)
                errors.append(f"{addr}: {e.details() or e.code().name}")
                continue
            resp = _decode_answer(raw, rpc.QueryResponse)
            if resp.error == NO_LEADER:
                errors.append(NO_LEADER)
                continue
            if resp.error:
                raise HTTPError(500, resp.error)
            return resp
        raise _no_answer(errors)

    async def query_at(self, address: str, name: str, timeout_s: float) -> rpc.QueryResponse:
        """A named read answered by the server at ``address`` itself (bootstrapping)."""
        raw = await self.client.call(address, QUERY, rpc.encode(rpc.QueryRequest(name)), timeout_s)
        resp = rpc.decode(raw)
        if not isinstance(resp, rpc.QueryResponse):
            raise rpc.RPCError("unexpected answer")
        return resp

    async def _on_query(self, data: bytes) -> bytes:
        try:
            m = rpc.decode(data)
            if not isinstance(m, rpc.QueryRequest):
                raise rpc.RPCError("expected a query")
        except rpc.RPCError as e:
            self.stats["bad_requests"] += 1
            return rpc.encode(rpc.QueryResponse(error=f"bad RPC request: {e}"))
        try:
            if m.name == "raft_stats":
                core = self.raft.core if self.raft is not None else None
                last = core.last_index if core is not None else 0
                servers = (
                    {x.id: x.address for x in self.raft.configuration.servers}
                    if self.raft is not None
                    else {}
                )
                term = core.last_term if core is not None else 0
                value = {"LastIndex": last, "LastTerm": term, "Servers": servers}
                return rpc.encode(rpc.QueryResponse(last, value))
            if m.name == "node_state" and len(m.args) == 1 and isinstance(m.args[0], str):
                if self.catalog is None or self.raft is None:
                    raise NoLeader
                if not self.raft.is_leader:
                    if m.hops >= rpc.HOPS_MAX:
                        raise NoLeader
                    return rpc.encode(await self.query("node_state", m.args[0], hops=m.hops))
                await self._wait_established()
                services, checks = await self.catalog.node_state(m.args[0])
                index = self.catalog.store.index
                return rpc.encode(rpc.QueryResponse(index, [services, checks]))
            return rpc.encode(rpc.QueryResponse(error=f"unknown query {m.name!r}"))
        except NoLeader:
            return rpc.encode(rpc.QueryResponse(error=NO_LEADER))
        except HTTPError as e:
            return rpc.encode(rpc.QueryResponse(error=e.message))


_Answer = TypeVar("_Answer", rpc.ForwardResponse, rpc.ApplyResponse, rpc.QueryResponse)


def _decode_answer(raw: bytes, kind: type[_Answer]) -> _Answer:
    try:
        resp = rpc.decode(raw)
    except rpc.RPCError as e:
        raise HTTPError(500, f"rpc error making call: {e}") from None
    if not isinstance(resp, kind):
        raise HTTPError(500, "rpc error making call: unexpected answer")
    return resp


def _no_answer(errors: list[str]) -> Exception:
    """What a request that no server took ends with: no leader when that was the last
    word (it was not applied), else the last failure."""
    if errors and errors[-1] == NO_LEADER:
        return NoLeader()
    return HTTPError(500, f"rpc error making call: {errors[-1] if errors else 'no server'}")


def _raise_or_result(resp: rpc.ApplyResponse) -> Any:
    if not resp.error and not resp.error_kind:
        return resp.result
    if resp.error_kind == "txn" and isinstance(resp.details, list):
        errors = [
            (int(d[0]), str(d[1]))
            for d in resp.details
            if isinstance(d, list) and len(d) == 2 and isinstance(d[0], int)
        ]
        raise TxnFailed(errors)
    if resp.error_kind == "rejected":
        raise CommandRejected(resp.error)
    raise HTTPError(500, resp.error or "rpc error making call")


class RemoteCatalog:
    """Anti-entropy's view of the catalog through server RPC (clients and followers)."""

    def __init__(self, rpc_: ServerRPC) -> None:
        self.rpc = rpc_

    async def node_state(self, node: str) -> tuple[Any, Any]:
        resp = await self.rpc.query("node_state", node)
        value = resp.value
        if not isinstance(value, list) or len(value) != 2:
            raise HTTPError(500, "rpc error making call: malformed node state")
        return value[0], value[1]

    async def write(self, command: dict[str, Any], timeout_s: float = 10.0) -> Any:
        command["Now"] = time.time()
        return await self.rpc.apply(command)


class ServerCatalog:
    """Anti-entropy's view of the catalog on a server: its own store when it leads, the
    leader's through server RPC otherwise (Consul reads the leader by default)."""

    def __init__(self, rpc_: ServerRPC, catalog: CatalogServer) -> None:
        self.rpc = rpc_
        self.catalog = catalog
        self.remote = RemoteCatalog(rpc_)

    async def node_state(self, node: str) -> tuple[Any, Any]:
        raft = self.rpc.raft
        if raft is not None and raft.is_leader:
            await self.rpc._wait_established()
            return await self.catalog.node_state(node)
        return await self.remote.node_state(node)

    async def write(self, command: dict[str, Any], timeout_s: float = 10.0) -> Any:
        return await self.catalog.write(command, timeout_s)
