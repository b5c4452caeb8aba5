"""Finding the servers of a datacenter in LAN gossip, and deciding when to bootstrap Raft
(Consul's agent/metadata/server.go ``IsConsulServer`` and server_serf.go
``maybeBootstrap``). Pure functions: the agent feeds them its member list.

Rules:

1. A member is a server of datacenter D when its tags say ``role=consul``, ``dc=D`` and
   carry a valid server RPC ``port``; its Raft ID is its node ID (the ``id`` tag) and its
   RPC address is its gossip address with that port. ``expect`` is its
   ``-bootstrap-expect`` (0 when absent).
2. Bootstrap only while this server has no Raft state and ``-bootstrap-expect`` is set,
   and only once the alive servers of the datacenter number at least ``expect``. A server
   announcing a different ``expect`` stops it, with Consul's message: two operators'
   intents disagree and guessing could make two clusters.
3. Before bootstrapping, the agent asks every one of those servers whether it already has
   Raft state (an existing cluster adds new servers itself; bootstrapping beside it would
   split the datacenter). Every server then bootstraps the same configuration: all of them,
   as voters, in a fixed order, so the first log entries agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from swim.events import Member, MemberStatus

__all__ = ["BootstrapPlan", "ServerMeta", "bootstrap_plan", "server_meta"]


@dataclass(frozen=True, slots=True)
class ServerMeta:
    name: str
    id: str
    address: str
    """``host:port`` of its server RPC."""
    datacenter: str
    expect: int
    status: MemberStatus


def server_meta(m: Member) -> ServerMeta | None:
    """The server a member is, or None when it is not a (well-formed) server."""
    tags = m.tags
    if tags.get("role") != "consul":
        return None
    try:
        port = int(tags.get("port", ""))
        expect = int(tags.get("expect", "0") or "0")
    except ValueError:
        return None
    if not 0 < port < 65536 or expect < 0 or not tags.get("id") or not tags.get("dc"):
        return None
    host = f"[{m.addr}]" if ":" in m.addr else m.addr
    return ServerMeta(m.name, tags["id"], f"{host}:{port}", tags["dc"], expect, m.status)


def alive_servers(members: Iterable[Member], datacenter: str) -> list[ServerMeta]:
    """The alive servers of ``datacenter``, sorted by node name."""
    out = []
    for m in members:
        s = server_meta(m)
        if s is not None and s.datacenter == datacenter and s.status is MemberStatus.ALIVE:
            out.append(s)
    return sorted(out, key=lambda s: s.name)


@dataclass(frozen=True, slots=True)
class BootstrapPlan:
    ready: bool
    servers: tuple[ServerMeta, ...] = ()
    """When ready: every server to bootstrap with (this one included)."""
    reason: str = ""
    """When not ready: why, for the log."""
    conflict: bool = False


def bootstrap_plan(
    members: Iterable[Member], datacenter: str, expect: int, self_id: str
) -> BootstrapPlan:
    servers = alive_servers(members, datacenter)
    for s in servers:
        if s.expect and s.expect != expect:
            return BootstrapPlan(
                False,
                reason=(
                    f"Member {s.name} has a conflicting expect value. "
                    "All nodes should expect the same number."
                ),
                conflict=True,
            )
    if not any(s.id == self_id for s in servers):
        return BootstrapPlan(False, reason="this server is not yet in its own member list")
    if len(servers) < expect:
        return BootstrapPlan(
            False, reason=f"waiting for {expect} servers, {len(servers)} seen in gossip"
        )
    ids = [s.id for s in servers]
    if len(set(ids)) != len(ids):
        return BootstrapPlan(False, reason="two servers share a node ID", conflict=True)
    return BootstrapPlan(True, tuple(servers))
