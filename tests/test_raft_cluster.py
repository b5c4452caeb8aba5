"""Server clusters with real processes on 127.0.0.1 (issue 5): three servers find each
other in LAN gossip and bootstrap Raft at ``-bootstrap-expect=3``; a client agent and the
followers forward to the leader over gRPC; and a writer's acknowledged writes survive the
leader being SIGKILLed and restarted, twice: afterwards each one is readable with
``?consistent`` from every server. Processes are stopped by PID; every wait is bounded."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from gossamer.cluster import Cluster, GossamerAgent, cluster, free_port, wait_for

pytestmark = pytest.mark.integration

SERVERS = ("s1", "s2", "s3")


def start_servers(c: Cluster, n: int = 3, extra: tuple[str, ...] = ()) -> list[GossamerAgent]:
    """``n`` servers, each told the others' gossip addresses (Consul's retry_join), so
    whichever restarts finds the rest again; ``extra`` flags go to every one."""
    ports = [free_port() for _ in range(n)]
    out = []
    for i, name in enumerate(SERVERS[:n]):
        agent = c.gossamer(
            name,
            join=[f"127.0.0.1:{p}" for k, p in enumerate(ports) if k != i],
            serf_port=ports[i],
            extra=["-server", f"-bootstrap-expect={n}", f"-server-port={free_port()}", *extra],
        )
        out.append(agent)
    return out


def leader_of(a: GossamerAgent) -> str:
    try:
        return str(a.get("/v1/status/leader", timeout_s=2.0))
    except (OSError, ValueError):
        return ""


def server_port(a: GossamerAgent) -> str:
    return str(a.members()[a.name]["Tags"]["port"])


def leader_agent(agents: list[GossamerAgent]) -> GossamerAgent:
    """The live agent whose server RPC address every live server names as leader."""
    live = [a for a in agents if a.alive()]
    ports = {server_port(a): a for a in live}
    found: list[GossamerAgent] = []

    def agreed() -> bool:
        seen = {leader_of(a) for a in live}
        if len(seen) != 1:
            return False
        port = next(iter(seen)).rpartition(":")[2]
        if port not in ports:
            return False  # still the dead leader, or none yet
        found[:] = [ports[port]]
        return True

    wait_for(agreed, 30.0, what="every live server to agree on a live leader")
    return found[0]


def raw_get(a: GossamerAgent, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(f"http://{a.http_addr}{path}", timeout=10.0) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture(scope="module")
def dc() -> Iterator[tuple[Cluster, list[GossamerAgent], GossamerAgent]]:
    with cluster() as c:
        servers = start_servers(c)
        client = c.gossamer("c1", join=[servers[0].gossip_addr])
        try:
            leader_agent(servers)
            wait_for(
                lambda: (
                    {n["Node"] for n in servers[0].get("/v1/catalog/nodes")}
                    == {"s1", "s2", "s3", "c1"}
                ),
                30.0,
                what="the leader to register every member",
            )
        except TimeoutError:
            pytest.fail(c.logs())
        yield c, servers, client


def test_servers_bootstrap_from_gossip_and_agree_on_peers(
    dc: tuple[Cluster, list[GossamerAgent], GossamerAgent],
) -> None:
    _, servers, client = dc
    peers = {tuple(sorted(a.get("/v1/status/peers"))) for a in servers}
    assert len(peers) == 1
    ports = sorted(server_port(a) for a in servers)
    assert sorted(p.rsplit(":", 1)[1] for p in next(iter(peers))) == ports
    # the client asks a server, so it knows the same leader
    assert leader_of(client) == leader_of(servers[0])
    # every server carries the consul service, registered by the leader's reconcile
    consul = servers[0].get("/v1/catalog/service/consul")
    assert sorted(s["Node"] for s in consul) == ["s1", "s2", "s3"]


def test_writes_from_followers_and_clients_reach_every_replica(
    dc: tuple[Cluster, list[GossamerAgent], GossamerAgent],
) -> None:
    _, servers, client = dc
    lead = leader_agent(servers)
    followers = [a for a in servers if a is not lead]
    for a in (*followers, client):
        assert a.put(f"/v1/kv/origin/{a.name}", f"from {a.name}") == (200, "true")
    for a in (*servers, client):
        keys = a.get("/v1/kv/origin/?keys&consistent")
        assert keys == sorted(f"origin/{x.name}" for x in (*followers, client))
    # a stale read is answered by the follower itself, and says how stale
    status, headers, body = raw_get(followers[0], "/v1/kv/origin/c1?stale")
    assert status == 200 and json.loads(body)[0]["Key"] == "origin/c1"
    assert headers["X-Consul-KnownLeader"] == "true"
    assert int(headers["X-Consul-LastContact"]) < 5000


def test_forwarded_requests_keep_the_node_they_reached(
    dc: tuple[Cluster, list[GossamerAgent], GossamerAgent],
) -> None:
    _, servers, client = dc
    # a session's default node is the agent the request reached, not the leader
    status, text = client.put("/v1/session/create", {"Name": "from-client"})
    assert status == 200, text
    sid = json.loads(text)["ID"]
    info = servers[0].get(f"/v1/session/info/{sid}?consistent")
    assert info[0]["Node"] == "c1"
    assert client.put(f"/v1/session/destroy/{sid}") == (200, "true")


def test_a_blocking_query_on_a_client_wakes_on_a_write_through_another_server(
    dc: tuple[Cluster, list[GossamerAgent], GossamerAgent],
) -> None:
    _, servers, client = dc
    assert servers[1].put("/v1/kv/block", "one")[0] == 200
    _, headers, _ = raw_get(client, "/v1/kv/block")
    index = int(headers["X-Consul-Index"])
    got: dict[str, object] = {}

    def wait() -> None:
        got["answer"] = raw_get(client, f"/v1/kv/block?index={index}&wait=20s")

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.3)  # let the blocking query reach the leader before the write
    assert servers[2].put("/v1/kv/block", "two")[0] == 200
    t.join(25.0)
    assert not t.is_alive()
    status, headers2, body = got["answer"]  # type: ignore[misc]
    assert status == 200
    assert int(headers2["X-Consul-Index"]) > index
    assert json.loads(body)[0]["Value"] == "InR3byI="  # base64 of the JSON string "two"


class Writer(threading.Thread):
    """Writes w/0, w/1, ... through one agent as fast as it is answered; records which
    writes were acknowledged (200 true)."""

    def __init__(self, via: GossamerAgent) -> None:
        super().__init__(daemon=True)
        self.via = via
        self.acked: list[int] = []
        self.failed = 0
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set() and n < 100_000:
            try:
                status, text = self.via.put(f"/v1/kv/w/{n}", str(n), timeout_s=15.0)
            except OSError:
                status, text = 0, ""
            if status == 200 and text == "true":
                self.acked.append(n)
            else:
                self.failed += 1
                time.sleep(0.05)
            n += 1


def test_acknowledged_writes_survive_killing_the_leader_twice(tmp_path: object) -> None:
    with cluster() as c:
        servers = start_servers(c)
        client = c.gossamer("w1", join=[servers[0].gossip_addr])
        try:
            leader_agent(servers)
            writer = Writer(client)
            writer.start()
            for _round in range(2):
                before = len(writer.acked)
                wait_for(lambda b=before: len(writer.acked) >= b + 30, 30.0, what="writes")
                lead = leader_agent(servers)
                lead.signal(signal.SIGKILL)
                lead.wait(5.0)
                # the survivors elect a new leader and go on acknowledging writes
                new = leader_agent(servers)
                assert new is not lead
                after = len(writer.acked)
                wait_for(lambda a=after: len(writer.acked) >= a + 30, 30.0, what="writes")
                c.restart(lead)
            writer.stop.set()
            writer.join(30.0)
            assert not writer.is_alive()
            assert len(writer.acked) >= 120
            leader_agent(servers)
            last = writer.acked[-1]
            for a in servers:
                # the restarted servers catch up; then every acknowledged write is there
                wait_for(
                    lambda a=a: a.put(f"/v1/kv/w/{last}?stale", method="GET")[0] == 200,
                    30.0,
                    what=f"{a.name} to catch up",
                )
                keys = set(a.get("/v1/kv/w/?keys&consistent", timeout_s=30.0))
                missing = [n for n in writer.acked if f"w/{n}" not in keys]
                assert not missing, f"{a.name} lacks acknowledged writes {missing[:10]}"
                stale_keys = set(a.get("/v1/kv/w/?keys&stale", timeout_s=30.0))
                assert {f"w/{n}" for n in writer.acked} <= stale_keys
        except (TimeoutError, AssertionError):
            for a in servers:
                try:
                    print(a.name, a.get("/v1/agent/self", timeout_s=2.0)["Stats"]["consul"])
                except OSError as e:
                    print(a.name, e)
            print(c.logs())
            raise


def operator_raft(a: GossamerAgent, sub: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``gossamer operator raft SUB -http-addr=<a> ARGS`` (flags follow the subcommand)."""
    return subprocess.run(
        [sys.executable, "-m", "gossamer", "operator", "raft", sub, f"-http-addr={a.http_addr}",
         *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def raft_ids(a: GossamerAgent) -> dict[str, tuple[str, bool]]:
    """Node name -> (Raft ID, voter) from /v1/operator/raft/configuration."""
    conf = a.get("/v1/operator/raft/configuration")
    return {s["Node"]: (s["ID"], s["Voter"]) for s in conf["Servers"]}


def test_servers_join_leave_and_are_removed_through_raft_membership() -> None:
    with cluster() as c:
        servers = start_servers(c)
        try:
            leader_agent(servers)
            # a fourth server with the same -bootstrap-expect finds a cluster already
            # running: the leader adds it as a non-voter and autopilot promotes it
            s4 = c.gossamer(
                "s4",
                join=[servers[0].gossip_addr],
                extra=["-server", "-bootstrap-expect=3", f"-server-port={free_port()}"],
            )
            wait_for(
                lambda: raft_ids(servers[0]).get("s4", ("", False))[1],
                60.0,
                what="s4 to be added and promoted to voter",
            )
            assert "disabling bootstrap mode" in s4.log()
            servers.append(s4)
            out = operator_raft(s4, "list-peers")
            assert out.returncode == 0, out.stderr
            lines = out.stdout.splitlines()
            assert lines[0].split()[:5] == ["Node", "ID", "Address", "State", "Voter"]
            assert sorted(line.split()[0] for line in lines[1:]) == ["s1", "s2", "s3", "s4"]
            # hand leadership to the newcomer, by ID, with the CLI
            s4_id = raft_ids(s4)["s4"][0]
            out = operator_raft(servers[0], "transfer-leader", f"-id={s4_id}")
            assert out.returncode == 0, out.stdout + out.stderr
            assert leader_agent(servers) is s4
            # a server that leaves gracefully is removed from the configuration
            servers[1].signal(signal.SIGINT)
            assert servers[1].wait(30.0) == 0
            wait_for(
                lambda: set(raft_ids(s4)) == {"s1", "s3", "s4"},
                30.0,
                what="the leaver's removal",
            )
            # an operator removes another by ID; the remaining two still take writes
            s3_id = raft_ids(s4)["s3"][0]
            out = operator_raft(s4, "remove-peer", f"-id={s3_id}")
            assert out.returncode == 0, out.stdout + out.stderr
            wait_for(lambda: set(raft_ids(s4)) == {"s1", "s4"}, 30.0, what="s3's removal")
            assert servers[0].put("/v1/kv/after-removal", "ok") == (200, "true")
            assert len(s4.get("/v1/status/peers")) == 2
            out = operator_raft(s4, "remove-peer", "-id=no-such-server")
            assert out.returncode != 0 and "not found" in (out.stdout + out.stderr)
        except (TimeoutError, AssertionError):
            print(c.logs())
            raise


def consul_stats(a: GossamerAgent) -> dict[str, str]:
    return dict(a.get("/v1/agent/self", timeout_s=5.0)["Stats"]["consul"])


def test_a_follower_that_missed_compacted_entries_catches_up_by_snapshot() -> None:
    """With a small -raft-snapshot-threshold the leader snapshots and compacts its log
    while a follower is down; the restarted follower is sent the snapshot (and then the
    trailing log), and holds every key; restarting again, it starts from its own
    snapshot."""
    with cluster() as c:
        servers = start_servers(
            c,
            extra=(
                "-raft-snapshot-threshold=40",
                "-raft-trailing-logs=5",
            ),
        )
        try:
            lead = leader_agent(servers)
            follower = next(a for a in servers if a is not lead)
            other = next(a for a in servers if a is not lead and a is not follower)
            follower.signal(signal.SIGKILL)
            follower.wait(5.0)
            for n in range(200):
                assert other.put(f"/v1/kv/snap/{n}", str(n)) == (200, "true")
            assert int(consul_stats(lead)["last_snapshot_index"]) >= 160
            c.restart(follower)
            wait_for(
                lambda: follower.put("/v1/kv/snap/199?stale", method="GET")[0] == 200,
                30.0,
                what="the restarted follower to catch up",
            )
            assert len(follower.get("/v1/kv/snap/?keys&stale")) == 200
            assert "snapshot at index" in follower.log()
            assert int(consul_stats(follower)["last_snapshot_index"]) >= 160
            # and from its own snapshot after another restart
            follower.signal(signal.SIGKILL)
            follower.wait(5.0)
            c.restart(follower)
            wait_for(
                lambda: len(follower.get("/v1/kv/snap/?keys&stale") or []) == 200,
                30.0,
                what="the follower to start from its snapshot",
            )
        except (TimeoutError, AssertionError):
            print(c.logs())
            raise


def test_autopilot_removes_a_server_failed_longer_than_the_grace_period() -> None:
    with cluster() as c:
        servers = start_servers(c, extra=("-autopilot-dead-server-grace=1s",))
        try:
            lead = leader_agent(servers)
            victim = next(a for a in servers if a is not lead)
            victim.signal(signal.SIGKILL)
            victim.wait(5.0)
            wait_for(
                lambda: victim.name not in raft_ids(lead),
                60.0,
                what="autopilot to remove the failed server",
            )
            assert set(raft_ids(lead)) == {a.name for a in servers if a is not victim}
            assert lead.put("/v1/kv/after-cleanup", "ok") == (200, "true")
            # autopilot's health follows at its next update (every 2 s): the two left are
            # healthy voters, and a cluster of two tolerates no failure

            def health() -> dict[str, object]:
                status, _, body = raw_get(lead, "/v1/operator/autopilot/health")
                return {"status": status, **json.loads(body)}

            wait_for(lambda: health()["status"] == 200, 30.0, what="autopilot health")
            h = health()
            assert sorted(s["Name"] for s in h["Servers"]) == sorted(set(raft_ids(lead)))  # type: ignore[attr-defined]
            assert h["Healthy"] is True and h["FailureTolerance"] == 0
        except (TimeoutError, AssertionError):
            print(c.logs())
            raise
