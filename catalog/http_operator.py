"""The operator endpoints for Raft and autopilot: ``/v1/operator/raft/*`` and
``/v1/operator/autopilot/*``, in Consul's paths, JSON shapes, status codes and texts.

Copied from hashicorp/consul (file, then what):

* ``agent/operator_endpoint.go`` ``OperatorRaftConfiguration``: ``GET
  /v1/operator/raft/configuration`` answers ``structs.RaftConfigurationResponse``
  (``{"Servers": [{ID, Node, Address, Leader, ProtocolVersion, Voter, LastIndex}],
  "Index"}``) with no index headers; ``?stale`` lets a server without a leader answer
  from its own configuration (without it, no leader is 500 ``No cluster leader``).
* ``OperatorRaftPeer``: ``DELETE /v1/operator/raft/peer`` with ``?id=`` or ``?address=``
  (400 ``Must specify either ?id with the server's ID or ?address with IP:port of peer to
  remove``, 400 ``Must specify only one of ?id or ?address``); an empty 200 on success.
  ``agent/consul/operator_raft_endpoint.go``: a peer not in the configuration is 500
  ``id "x" was not found in the Raft configuration`` (or ``address "x" …``).
* ``OperatorRaftTransferLeader``: ``POST /v1/operator/raft/transfer-leader[?id=]``
  answers ``{"Success": true}``. Consul calls its gRPC operator service here, so a
  failure reaches the client as the gRPC status text: 500 ``rpc error: code = Unknown
  desc = <error>``. Like Consul's handler it ignores ``?dc``.
* ``OperatorAutopilotConfiguration``: ``GET`` answers ``api.AutopilotConfiguration``;
  ``PUT`` decodes the body into ``api.NewAutopilotConfiguration()`` (so left-out fields
  take Consul's defaults) with Go's ``DisallowUnknownFields`` (400 ``Error parsing
  autopilot config: <Go's text>``, an empty body is ``EOF``), then ``?cas=`` (400 ``Error
  parsing cas value: strconv.ParseUint: …``); the answer is ``true``, or the CAS outcome.
* ``OperatorServerHealth``: ``GET /v1/operator/autopilot/health`` answers
  ``api.OperatorHealthReply``, with status 429 when the cluster is not healthy.

Every endpoint but transfer-leader takes ``?dc`` (another datacenter is 500 ``No path to
datacenter`` here; the router forwards before that where it can) and the query options'
400s (``?stale`` with ``?consistent``, a bad ``?wait``/``?index``) before anything else.

The agent's Raft side is :class:`RaftAdmin`, found as ``agent.raft_admin``; it is None on
a server not yet bootstrapped (and on clients, whose requests the router forwards), and
then every endpoint answers 500 ``No cluster leader`` (Consul's ``structs.ErrNoLeader``).
Errors the admin raises as :class:`AdminError` are 500 with their text, as Consul's
``handleErr`` renders an RPC error.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

import orjson

from catalog.aio import HTTPError, HTTPServer, Request, Response
from catalog.http_common import QueryOptions, query_options
from catalog.http_kv import go_parse_uint
from federation.autopilot import AutopilotConfig
from gossamer.duration import go_quote

__all__ = ["AdminError", "RaftAdmin", "register"]

NO_LEADER: Final = "No cluster leader"
_RAFT_SERVER_FIELDS: Final = (
    ("ID", ""),
    ("Node", ""),
    ("Address", ""),
    ("Leader", False),
    ("ProtocolVersion", ""),
    ("Voter", False),
    ("LastIndex", 0),
)
"""structs.RaftServer, in its field order, with Go's zero values."""


class AdminError(Exception):
    """A Raft operation the agent refused or failed; the text is what Consul would say."""


class RaftAdmin(Protocol):
    """What the operator endpoints need from a server agent's Raft side."""

    def configuration(self) -> tuple[int, list[dict[str, Any]]]:
        """(index, [{"ID", "Node", "Address", "Leader", "ProtocolVersion", "Voter",
        "LastIndex"}]) from this server's view of the Raft configuration."""

    async def remove_peer(self, server_id: str | None, address: str | None) -> None:
        """Remove one server, named by exactly one of the two; AdminError on failure."""

    async def transfer_leader(self, server_id: str | None) -> None:
        """Hand leadership to ``server_id``, or to a peer Raft picks; AdminError on failure."""

    def autopilot_config(self) -> tuple[AutopilotConfig, int, int]:
        """(config, create index, modify index)."""

    async def set_autopilot_config(self, cfg: AutopilotConfig, cas: int | None) -> bool:
        """Store ``cfg``; with ``cas``, only if the modify index still equals it."""

    def autopilot_health(self) -> dict[str, Any]:
        """Consul's OperatorHealthReply (federation.autopilot.Autopilot.health)."""


def register(srv: HTTPServer) -> None:
    """Add the operator Raft and autopilot routes to ``srv``."""
    agent = srv.agent

    def admin() -> RaftAdmin:
        found: RaftAdmin | None = getattr(agent, "raft_admin", None)
        if found is None:
            raise HTTPError(500, NO_LEADER)
        return found

    def parse(request: Request) -> QueryOptions:
        """Consul's ``parse``: the 400s first, then the datacenter (the RPC's forward)."""
        opts = query_options(request, request.query.get("dc") or agent.config.datacenter)
        check_dc(request)
        return opts

    def check_dc(request: Request) -> None:
        dc = request.query.get("dc", "")
        if dc and dc != agent.config.datacenter:
            raise HTTPError(500, "No path to datacenter")

    async def raft_configuration(request: Request, _: str) -> Any:
        opts = parse(request)
        index, servers = admin().configuration()
        if not opts.stale and not any(s.get("Leader") for s in servers):
            raise HTTPError(500, NO_LEADER)  # the forward to the leader would fail
        return {
            "Servers": [{k: s.get(k, zero) for k, zero in _RAFT_SERVER_FIELDS} for s in servers],
            "Index": index,
        }

    async def raft_peer(request: Request, _: str) -> Any:
        q = request.query
        has_id, has_address = "id" in q, "address" in q
        if not has_id and not has_address:
            raise HTTPError(
                400,
                "Must specify either ?id with the server's ID or ?address with IP:port of "
                "peer to remove",
            )
        if has_id and has_address:
            raise HTTPError(400, "Must specify only one of ?id or ?address")
        check_dc(request)
        raft = admin()
        servers = raft.configuration()[1]
        # Consul refuses a peer it does not have: "likely they screwed up"
        if has_address:
            if not any(s.get("Address") == q["address"] for s in servers):
                raise HTTPError(
                    500, f"address {go_quote(q['address'])} was not found in the Raft configuration"
                )
        elif not any(s.get("ID") == q["id"] for s in servers):
            raise HTTPError(500, f"id {go_quote(q['id'])} was not found in the Raft configuration")
        try:
            if has_address:
                await raft.remove_peer(None, q["address"])
            else:
                await raft.remove_peer(q["id"], None)
        except AdminError as e:
            raise HTTPError(500, str(e)) from None
        return Response(raw=b"")  # the handler returns nil: an empty 200

    async def transfer_leader(request: Request, _: str) -> Any:
        target = request.query.get("id", "")
        raft = admin()
        try:
            await raft.transfer_leader(target or None)
        except AdminError as e:
            raise HTTPError(500, f"rpc error: code = Unknown desc = {e}") from None
        return {"Success": True}

    async def autopilot_get(request: Request, _: str) -> Any:
        parse(request)
        cfg, create_index, modify_index = admin().autopilot_config()
        return cfg.to_json(create_index, modify_index)

    async def autopilot_put(request: Request, _: str) -> Any:
        raft: RaftAdmin | None = getattr(agent, "raft_admin", None)
        base = raft.autopilot_config()[0] if raft is not None else AutopilotConfig()
        cfg = _decode_config(request.body, base)
        cas: int | None = None
        if "cas" in request.query:
            try:
                cas = go_parse_uint(request.query["cas"])
            except ValueError as e:
                raise HTTPError(400, f"Error parsing cas value: {e}") from None
        check_dc(request)
        try:
            ok = await admin().set_autopilot_config(cfg, cas)
        except AdminError as e:
            raise HTTPError(500, str(e)) from None
        return True if cas is None else bool(ok)  # only a CAS reports its outcome

    async def autopilot_health(request: Request, _: str) -> Any:
        parse(request)
        reply = admin().autopilot_health()
        return Response(reply, status=200 if reply.get("Healthy") else 429)

    srv.route("/v1/operator/raft/configuration", {"GET": raft_configuration})
    srv.route("/v1/operator/raft/peer", {"DELETE": raft_peer})
    srv.route("/v1/operator/raft/transfer-leader", {"POST": transfer_leader})
    srv.route("/v1/operator/autopilot/configuration", {"GET": autopilot_get, "PUT": autopilot_put})
    srv.route("/v1/operator/autopilot/health", {"GET": autopilot_health})


def _decode_config(body: bytes, base: AutopilotConfig) -> AutopilotConfig:
    """``decodeBody`` into ``api.AutopilotConfiguration``; 400 with Consul's prefix."""
    prefix = "Error parsing autopilot config: "
    if not body.strip():
        raise HTTPError(400, prefix + "EOF")  # Go's decoder on an empty body
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise HTTPError(400, f"{prefix}{e}") from None
    if decoded is None:
        decoded = {}  # null decodes into nothing: every default stands
    if not isinstance(decoded, dict):
        kind = "array" if isinstance(decoded, list) else _scalar_kind(decoded)
        raise HTTPError(
            400,
            f"{prefix}json: cannot unmarshal {kind} into Go value of type "
            "api.AutopilotConfiguration",
        )
    try:
        return AutopilotConfig.from_json(decoded, base)
    except ValueError as e:
        raise HTTPError(400, f"{prefix}{e}") from None


def _scalar_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    return "number"
