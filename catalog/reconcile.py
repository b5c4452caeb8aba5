"""Membership into the catalog: what the leader writes when gossip says a member joined,
failed or left (Consul's agent/consul/leader.go ``reconcileMember``).

Rules, as Consul's leader applies them:

1. An **alive** member is registered with its address, its node ID (the ``id`` tag) and
   the node-level check ``serfHealth`` passing (``Agent alive and reachable``). A server
   (``role=consul``) also gets the ``consul`` service on its RPC port.
2. A **failed** member's ``serfHealth`` turns critical (``Agent not live or
   unreachable``); a member the catalog has never seen is registered that way. Sessions
   bound to ``serfHealth`` (the default binding) are invalidated by the store.
3. A member that **left** (or was reaped) is deregistered with everything on it, unless it
   is the leader itself (Consul: "do not deregister ourself").
4. Nothing is written when the catalog already says so, so a periodic full reconcile
   (which repairs a catalog edited behind the leader's back) costs no index churn.
5. Members of other datacenters, or whose tags are not Consul's, are ignored.

Pure functions of the store and the member: the agent's driver calls them on each
membership event and on a timer, and writes the commands they return.
"""

from __future__ import annotations

from typing import Any

from catalog import commands as C
from catalog.store import SERF_CHECK_ID, StateStore
from swim.events import Member, MemberStatus

__all__ = [
    "CONSUL_SERVICE",
    "SERF_ALIVE_OUTPUT",
    "SERF_CHECK_NAME",
    "SERF_FAILED_OUTPUT",
    "reconcile_member",
    "reconcile_reaped",
    "tagged_addresses",
]

SERF_CHECK_NAME = "Serf Health Status"
SERF_ALIVE_OUTPUT = "Agent alive and reachable"
SERF_FAILED_OUTPUT = "Agent not live or unreachable"
CONSUL_SERVICE = "consul"


def _serf_check(node: str, status: str, output: str) -> dict[str, Any]:
    return {
        "Node": node,
        "CheckID": SERF_CHECK_ID,
        "Name": SERF_CHECK_NAME,
        "Status": status,
        "Output": output,
    }


def tagged_addresses(addr: str) -> dict[str, str]:
    """What a Consul agent reports for itself when no WAN address is configured."""
    return {"lan": addr, "lan_ipv4": addr, "wan": addr, "wan_ipv4": addr}


def consul_service(member: Member) -> dict[str, Any] | None:
    """The ``consul`` service of a server member (leader.go handleAliveMember)."""
    if member.tags.get("role") != "consul":
        return None
    try:
        port = int(member.tags.get("port", "8300"))
    except ValueError:
        port = 8300
    return {
        "ID": CONSUL_SERVICE,
        "Service": CONSUL_SERVICE,
        "Tags": [],
        "Address": "",
        "Meta": {
            "raft_version": "3",
            "serf_protocol_current": str(member.protocol_cur),
            "serf_protocol_min": str(member.protocol_min),
            "serf_protocol_max": str(member.protocol_max),
            "version": member.tags.get("build", "").split(":", 1)[0],
        },
        "Port": port,
        "Weights": {"Passing": 1, "Warning": 1},
        "EnableTagOverride": False,
    }


def reconcile_member(
    store: StateStore, member: Member, datacenter: str, leader_name: str, now: float
) -> list[dict[str, Any]]:
    """The commands that bring the catalog in line with one member's gossip state."""
    if member.tags.get("dc", datacenter) != datacenter or "role" not in member.tags:
        return []
    status = member.status
    if status == MemberStatus.ALIVE:
        return _alive(store, member, datacenter, now)
    if status == MemberStatus.FAILED:
        return _failed(store, member, datacenter, now)
    if status == MemberStatus.LEFT:
        return reconcile_reaped(store, member.name, leader_name, now)
    return []  # leaving: wait for left or failed


def reconcile_reaped(
    store: StateStore, name: str, leader_name: str, now: float
) -> list[dict[str, Any]]:
    if name.lower() == leader_name.lower() or store.node(name) is None:
        return []
    return [C.deregister(now, name)]


def _alive(store: StateStore, member: Member, datacenter: str, now: float) -> list[dict[str, Any]]:
    node = store.node(member.name)
    service = consul_service(member)
    check = store.check(member.name, SERF_CHECK_ID)
    node_id = member.tags.get("id", "")
    up_to_date = (
        node is not None
        and node["Address"] == member.addr
        and (not node_id or node["ID"] == node_id)
        and check is not None
        and check["Status"] == "passing"
        and check["Output"] == SERF_ALIVE_OUTPUT
    )
    if up_to_date and service is not None:
        current = store.node_service(member.name, CONSUL_SERVICE)
        up_to_date = current is not None and all(current.get(k) == v for k, v in service.items())
    if up_to_date:
        return []
    return [
        C.register(
            now,
            member.name,
            member.addr,
            node_id=node_id,
            datacenter=datacenter,
            tagged_addresses=tagged_addresses(member.addr),
            service=service,
            checks=[_serf_check(member.name, "passing", SERF_ALIVE_OUTPUT)],
        )
    ]


def _failed(store: StateStore, member: Member, datacenter: str, now: float) -> list[dict[str, Any]]:
    check = store.check(member.name, SERF_CHECK_ID)
    if check is not None and check["Status"] == "critical":
        return []
    node = store.node(member.name)
    return [
        C.register(
            now,
            member.name,
            node["Address"] if node is not None else member.addr,
            node_id=member.tags.get("id", ""),
            datacenter=datacenter,
            skip_node_update=node is not None,
            checks=[_serf_check(member.name, "critical", SERF_FAILED_OUTPUT)],
        )
    ]
