"""Five real gossamer agents on 127.0.0.1: join, crash, leave, restart; the HTTP API's
errors and the CLI against a live agent. Processes are stopped by PID; waits are bounded."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest

from gossamer.cluster import Cluster, GossamerAgent, cluster, wait_for

pytestmark = pytest.mark.integration

DETECT_S = 30.0


def cli(agent: GossamerAgent, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gossamer", args[0], f"-http-addr={agent.http_addr}", *args[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def raw(
    agent: GossamerAgent, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://{agent.http_addr}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def all_see(agents: list[GossamerAgent], node: str, status: str) -> bool:
    return all(a.status_of(node) == status for a in agents)


@pytest.fixture(scope="module")
def five() -> Iterator[tuple[Cluster, list[GossamerAgent]]]:
    with cluster() as c:
        first = c.gossamer("n1")
        agents = [first] + [c.gossamer(f"n{i}", join=[first.gossip_addr]) for i in range(2, 6)]
        names = {a.name for a in agents}
        try:
            wait_for(
                lambda: (
                    all(set(a.members()) == names for a in agents)
                    and all(all_see(agents, n, "alive") for n in names)
                ),
                DETECT_S,
                what="five agents to converge",
            )
        except TimeoutError:
            pytest.fail(c.logs())
        yield c, agents


def test_five_agents_converge_with_consul_member_shape(
    five: tuple[Cluster, list[GossamerAgent]],
) -> None:
    _, agents = five
    for a in agents:
        ms = a.members()
        assert sorted(ms) == ["n1", "n2", "n3", "n4", "n5"]
        m = ms[a.name]
        assert m["Status"] == 1
        assert m["Addr"] == "127.0.0.1" and m["Port"] == a.serf_port
        assert m["Tags"]["role"] == "node" and m["Tags"]["dc"] == "dc1"
        assert (m["ProtocolMin"], m["ProtocolMax"], m["ProtocolCur"]) == (1, 5, 2)
        assert (m["DelegateMin"], m["DelegateMax"], m["DelegateCur"]) == (2, 5, 5)
    me = agents[0].get("/v1/agent/self")
    assert set(me) == {"Member", "xDS", "Stats", "Config", "Coord", "DebugConfig", "Meta"}
    assert me["Member"] == agents[0].members()["n1"]
    assert me["Config"]["NodeName"] == "n1"


def test_cli_members_lists_all_five(five: tuple[Cluster, list[GossamerAgent]]) -> None:
    _, agents = five
    r = cli(agents[1], "members")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == [
        "Node",
        "Address",
        "Status",
        "Type",
        "Build",
        "Protocol",
        "DC",
        "Partition",
        "Segment",
    ]
    assert [line.split()[0] for line in lines[1:]] == ["n1", "n2", "n3", "n4", "n5"]
    r = cli(agents[1], "members", "-status=failed")
    assert r.returncode == 2 and r.stdout == ""


def test_rtt_estimates_from_gossiped_coordinates(five: tuple[Cluster, list[GossamerAgent]]) -> None:
    _, agents = five

    def known() -> bool:
        coords = {c["Node"] for c in agents[0].get("/v1/coordinate/nodes")}
        return {"n1", "n2"} <= coords

    wait_for(known, DETECT_S, what="coordinates for n1 and n2")
    r = cli(agents[0], "rtt", "n2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Estimated n2 <-> n1 rtt: ") and "LAN coordinates" in r.stdout
    ms = float(r.stdout.split("rtt: ")[1].split(" ms")[0])
    assert 0.0 < ms < 100.0  # loopback


def test_events_fired_on_one_agent_reach_every_agent(
    five: tuple[Cluster, list[GossamerAgent]],
) -> None:
    _, agents = five
    r = cli(agents[2], "event", "-name=deploy", "v2.1")
    assert r.returncode == 0, r.stderr
    event_id = r.stdout.strip().removeprefix("Event ID: ")

    def everywhere() -> bool:
        return all(
            any(e["ID"] == event_id for e in a.get("/v1/event/list?name=deploy")) for a in agents
        )

    wait_for(everywhere, DETECT_S, what="the event on every agent")
    ev = next(e for e in agents[4].get("/v1/event/list") if e["ID"] == event_id)
    assert ev["Name"] == "deploy" and base64.b64decode(ev["Payload"]) == b"v2.1"
    assert ev["LTime"] >= 1


def test_http_errors_are_consul_shaped(five: tuple[Cluster, list[GossamerAgent]]) -> None:
    _, agents = five
    a = agents[0]
    status, headers, body = raw(a, "GET", "/v1/agent/leave")
    assert status == 405 and headers["Allow"] == "PUT"
    assert body == b"method GET not allowed"
    status, _, body = raw(a, "GET", "/v1/no/such/endpoint")
    assert status == 404
    status, _, body = raw(a, "PUT", "/v1/agent/force-leave/nobody")
    assert status == 500 and b"No node found with name 'nobody'" in body
    status, _, body = raw(a, "PUT", "/v1/operator/keyring", b'{"Key": 12}')
    assert status == 400
    status, _, body = raw(a, "PUT", "/v1/operator/keyring", b"{not json")
    assert status == 400 and body.startswith(b"Request decode failed")
    # no gossip encryption: every node refuses, as Consul's keyring endpoint reports it
    status, _, body = raw(a, "GET", "/v1/operator/keyring")
    assert status == 500
    # how many answer within the query timeout depends on gossip luck (serf's too)
    assert re.search(rb"dc1 \(LAN\) error: [1-5]/5 nodes reported failure", body), body
    assert b"Keyring is empty (encryption not enabled)" in body
    status, _, body = raw(a, "PUT", "/v1/agent/join/127.0.0.1:1")
    assert status == 500 and b"Failed to join 127.0.0.1" in body
    status, _, body = raw(a, "PUT", "/v1/event/fire/")
    assert status == 400


def test_sigkill_is_failed_leave_is_left_restart_is_alive(
    five: tuple[Cluster, list[GossamerAgent]],
) -> None:
    c, agents = five
    victim, leaver = agents[3], agents[4]
    rest = agents[:3]
    victim.kill()
    try:
        wait_for(
            lambda: all_see([*rest, leaver], victim.name, "failed"),
            DETECT_S,
            what="the SIGKILLed agent to be failed everywhere",
        )
    except TimeoutError:
        pytest.fail(c.logs())

    leaver.signal(signal.SIGINT)
    assert leaver.wait(DETECT_S) == 0, leaver.log()[-3000:]
    wait_for(
        lambda: all_see(rest, leaver.name, "left"),
        DETECT_S,
        what="the leaver to be left everywhere",
    )
    assert "gracefully leaving" in leaver.log()

    # same name, same address, same data dir: it refutes its death and is alive again
    c.restart(victim)
    wait_for(
        lambda: all_see([*rest, victim], victim.name, "alive"),
        DETECT_S,
        what="the restarted agent to be alive everywhere",
    )
    # like serf, a (re)joining member does not learn of members that already left
    assert leaver.name not in victim.members()
    with open(os.path.join(victim.data_dir, "node-id")) as f:
        assert victim.get("/v1/agent/self")["Config"]["NodeID"] == f.read().strip()


def test_graceful_leave_over_http_stops_the_agent() -> None:
    with cluster() as c:
        a = c.gossamer("solo-a")
        b = c.gossamer("solo-b", join=[a.gossip_addr])
        wait_for(lambda: len(a.members()) == 2, DETECT_S, what="two members")
        r = cli(b, "leave")
        assert r.returncode == 0 and r.stdout.strip() == "Graceful leave complete"
        assert b.wait(DETECT_S) == 0
        wait_for(lambda: a.status_of("solo-b") == "left", DETECT_S, what="solo-b left")


def test_server_does_not_leave_on_sigterm_client_does() -> None:
    with cluster() as c:
        a = c.gossamer("t-a")
        srv = c.gossamer("t-srv", join=[a.gossip_addr], extra=["-server"])
        cl = c.gossamer("t-cl", join=[a.gossip_addr])
        wait_for(lambda: len(a.members()) == 3, DETECT_S, what="three members")
        srv.signal(signal.SIGTERM)
        cl.signal(signal.SIGTERM)
        assert srv.wait(DETECT_S) == 0 and cl.wait(DETECT_S) == 0
        wait_for(lambda: a.status_of("t-cl") == "left", DETECT_S, what="client left")
        wait_for(lambda: a.status_of("t-srv") == "failed", DETECT_S, what="server failed")


def test_agent_start_errors_are_one_line() -> None:
    with cluster() as c:
        a = c.gossamer("busy")
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "gossamer",
                "agent",
                "-node=x",
                "-bind=127.0.0.1",
                f"-serf-lan-port={a.serf_port}",
                "-http-port=1",
                "-data-dir",
                c.root + "/x",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.returncode == 1
        assert r.stderr.strip().startswith("==> Failed to start the LAN gossip")
        assert "Traceback" not in r.stderr + r.stdout
        r = subprocess.run(
            [sys.executable, "-m", "gossamer", "agent", "-node=x"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.returncode == 1 and r.stderr.strip() == "==> data_dir cannot be empty"


def test_encrypted_cluster_rotates_keys_and_persists_them() -> None:
    k1 = base64.b64encode(bytes(range(32))).decode()
    k2 = base64.b64encode(bytes(range(1, 33))).decode()
    with cluster() as c:
        a = c.gossamer("e-a", encrypt=k1)
        b = c.gossamer("e-b", encrypt=k1, join=[a.gossip_addr])
        wait_for(lambda: len(a.members()) == 2 and len(b.members()) == 2, DETECT_S, what="join")
        for args in (("-install", k2), ("-use", k2), ("-remove", k1)):
            r = cli(a, "keyring", *args)
            assert r.returncode == 0, r.stdout + r.stderr
        listed = json.loads(json.dumps(a.get("/v1/operator/keyring")))
        assert listed[0]["Keys"] == {k2: 2} and listed[0]["PrimaryKeys"] == {k2: 2}
        with open(os.path.join(b.data_dir, "serf", "local.keyring")) as f:
            assert json.load(f) == [k2]
        # b restarts with the old -encrypt flag: the persisted keyring wins, so it rejoins
        b.stop()
        c.restart(b)
        wait_for(
            lambda: b.status_of("e-a") == "alive" and a.status_of("e-b") == "alive",
            DETECT_S,
            what="b back on the rotated key",
        )


def test_advertise_default_is_the_one_private_address_as_consul_picks_it() -> None:
    from gossamer.config import AgentConfig, ConfigError, pick_advertise

    assert pick_advertise(["127.0.0.1", "10.1.2.3", "8.8.8.8", "169.254.1.1"]) == "10.1.2.3"
    assert pick_advertise(["100.64.0.7"]) == "100.64.0.7"  # RFC 6598 shared space
    with pytest.raises(ConfigError, match="No private IPv4 address"):
        pick_advertise(["127.0.0.1", "192.0.2.2"])
    with pytest.raises(ConfigError, match="Multiple private IPv4 addresses found"):
        pick_advertise(["10.0.0.1", "192.168.1.1"])
    cfg = AgentConfig(node_name="n", data_dir="d")
    assert cfg.advertise(["10.0.0.9"]) == "10.0.0.9"
    assert AgentConfig(node_name="n", bind_addr="127.0.0.2").advertise([]) == "127.0.0.2"
    assert AgentConfig(node_name="n", advertise_addr="10.9.9.9").advertise([]) == "10.9.9.9"
