"""Membership drives the catalog, with real processes on 127.0.0.1: a server that
bootstraps alone and two clients. Alive members are registered with a passing
``serfHealth``; the server carries the ``consul`` service; a SIGKILLed member turns
critical and the sessions bound to it are invalidated, releasing their locks; a member
that leaves is deregistered. Processes are stopped by PID; every wait is bounded."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from gossamer.cluster import Cluster, GossamerAgent, cluster, wait_for

pytestmark = pytest.mark.integration

DETECT_S = 30.0


def catalog_nodes(a: GossamerAgent) -> set[str]:
    return {n["Node"] for n in a.get("/v1/catalog/nodes")}


def serf_health(a: GossamerAgent, node: str) -> dict[str, Any] | None:
    for c in a.get(f"/v1/health/node/{node}"):
        if c["CheckID"] == "serfHealth":
            return dict(c)
    return None


@pytest.fixture(scope="module")
def three() -> Iterator[tuple[Cluster, list[GossamerAgent]]]:
    with cluster() as c:
        # memberlist's LAN timing: its retransmit multiplier makes a lost leave intent (and so
        # a "failed" where "left" is meant) far rarer than the local profile does
        server = c.gossamer("s1", profile="lan", extra=["-server", "-bootstrap-expect=1"])
        clients = [c.gossamer(f"c{i}", profile="lan", join=[server.gossip_addr]) for i in (1, 2)]
        agents = [server, *clients]
        try:
            wait_for(
                lambda: catalog_nodes(server) == {"s1", "c1", "c2"},
                DETECT_S,
                what="the catalog to list every member",
            )
        except TimeoutError:
            pytest.fail(c.logs())
        yield c, agents


def test_alive_members_are_registered_with_passing_serf_health(
    three: tuple[Cluster, list[GossamerAgent]],
) -> None:
    _, (server, c1, _) = three
    for name in ("s1", "c1", "c2"):
        check = serf_health(server, name)
        assert check is not None
        assert check["Status"] == "passing"
        assert check["Output"] == "Agent alive and reachable"
        assert check["ServiceID"] == ""
    node = server.get("/v1/catalog/node/c1")["Node"]
    assert node["Address"] == "127.0.0.1"
    members = {m["Name"]: m for m in server.get("/v1/agent/members")}
    assert node["ID"] == members["c1"]["Tags"]["id"]
    assert server.get("/v1/catalog/services")["consul"] == []
    consul = server.get("/v1/catalog/service/consul")
    port = int(members["s1"]["Tags"]["port"])  # the server RPC port it was given
    assert [(s["Node"], s["ServicePort"]) for s in consul] == [("s1", port)]
    # a client reads the catalog through its server, over server RPC
    assert catalog_nodes(c1) == catalog_nodes(server)


def test_killed_member_turns_critical_and_loses_its_locks_then_leave_deregisters(
    three: tuple[Cluster, list[GossamerAgent]],
) -> None:
    _, (server, c1, c2) = three
    status, text = server.put("/v1/session/create", {"Node": "c2", "Name": "c2-lock"})
    assert status == 200, text
    sid = json.loads(text)["ID"]
    assert server.put(f"/v1/kv/locks/c2?acquire={sid}", "held") == (200, "true")
    assert server.get("/v1/kv/locks/c2")[0]["Session"] == sid

    c2.signal(signal.SIGKILL)
    wait_for(
        lambda: (serf_health(server, "c2") or {}).get("Status") == "critical",
        DETECT_S,
        what="c2's serfHealth to turn critical",
    )
    check = serf_health(server, "c2")
    assert check is not None and check["Output"] == "Agent not live or unreachable"
    crit = [c["Node"] for c in server.get("/v1/health/state/critical")]
    assert crit == ["c2"]
    # the session was bound to serfHealth (the default): invalidated, lock released
    assert server.get(f"/v1/session/info/{sid}") in ([], None)
    assert "Session" not in server.get("/v1/kv/locks/c2")[0]

    c1.put("/v1/agent/leave")
    wait_for(lambda: "c1" not in catalog_nodes(server), DETECT_S, what="c1 to be deregistered")
    assert catalog_nodes(server) == {"s1", "c2"}


def test_events_filtered_by_local_services_and_tags(
    three: tuple[Cluster, list[GossamerAgent]],
) -> None:
    _, (server, _, _) = three
    svc = {"Name": "web", "ID": "web-1", "Tags": ["v1", "blue"]}
    assert server.put("/v1/agent/service/register", svc)[0] == 200
    fired: dict[str, str] = {}
    # the misses go first: once the matches are stored, the misses were handled too
    for name, query in (
        ("svc-miss", "service=db"),
        ("tag-miss", "service=web&tag=green"),
        ("svc-match", "service=web"),
        ("tag-match", "service=web-.*&tag=^blu"),
    ):
        status, text = server.put(f"/v1/event/fire/{name}?{query}", None)
        assert status == 200, text
        fired[name] = json.loads(text)["ID"]
    wait_for(
        lambda: {"svc-match", "tag-match"} <= {e["Name"] for e in server.get("/v1/event/list")},
        DETECT_S,
        what="the matching events to be stored",
    )
    names = {e["Name"] for e in server.get("/v1/event/list")}
    assert "svc-miss" not in names and "tag-miss" not in names
