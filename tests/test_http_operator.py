"""/v1/operator/raft/* and /v1/operator/autopilot/* against Consul's behaviour
(catalog/http_operator.py).

An :class:`catalog.aio.HTTPServer` on 127.0.0.1 (port 0) runs on its own event-loop
thread with only the operator routes; its agent's ``raft_admin`` is :class:`FakeRaftAdmin`,
which keeps a Raft configuration in memory and computes health with a real
:class:`federation.autopilot.Autopilot`. Requests are raw HTTP from the test thread.
Expected texts are Consul's (agent/operator_endpoint.go,
agent/consul/operator_raft_endpoint.go, agent/rpc/operator/service.go).
``tests/test_cli_operator.py`` reuses this harness.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

from catalog import http_operator
from catalog.aio import HTTPServer
from catalog.http_operator import AdminError
from federation.autopilot import Autopilot, AutopilotConfig, ServerState
from gossamer.config import AgentConfig

WALL_OFFSET_S = 1_700_000_000.0
"""Monotonic 0 is 2023-11-14T22:13:20Z for StableSince."""


def peer(n: int, leader: bool = False, voter: bool = True, last_index: int = 100) -> dict[str, Any]:
    return {
        "ID": f"0000000{n}-aaaa-bbbb-cccc-dddddddddddd",
        "Node": f"server-{n}",
        "Address": f"127.0.0.{n}:8300",
        "Leader": leader,
        "ProtocolVersion": "3",
        "Voter": voter,
        "LastIndex": last_index,
    }


class FakeRaftAdmin:
    """The agent's Raft side as the endpoints see it (catalog.http_operator.RaftAdmin)."""

    def __init__(self) -> None:
        self.index = 42
        self.servers = [peer(1, leader=True), peer(2, last_index=99), peer(3, last_index=90)]
        self.config = AutopilotConfig(dead_server_grace_s=45.0)
        self.create_index = 5
        self.modify_index = 5
        self.autopilot = Autopilot(self.config)
        self.calls: list[tuple[str, Any]] = []
        self.refuse: str | None = None
        """When set, remove_peer and set_autopilot_config raise AdminError with it."""

    def configuration(self) -> tuple[int, list[dict[str, Any]]]:
        return self.index, [dict(s) for s in self.servers]

    async def remove_peer(self, server_id: str | None, address: str | None) -> None:
        self.calls.append(("remove_peer", (server_id, address)))
        if self.refuse:
            raise AdminError(self.refuse)
        self.servers = [s for s in self.servers if s["ID"] != server_id and s["Address"] != address]
        self.index += 1

    async def transfer_leader(self, server_id: str | None) -> None:
        self.calls.append(("transfer_leader", server_id))
        ids = [s["ID"] for s in self.servers]
        if server_id is not None and server_id not in ids:
            raise AdminError(f"Could not find address for server id {server_id}")
        if server_id is None:
            server_id = next(s["ID"] for s in self.servers if not s["Leader"] and s["Voter"])
        for s in self.servers:
            s["Leader"] = s["ID"] == server_id

    def autopilot_config(self) -> tuple[AutopilotConfig, int, int]:
        return self.config, self.create_index, self.modify_index

    async def set_autopilot_config(self, cfg: AutopilotConfig, cas: int | None) -> bool:
        self.calls.append(("set_autopilot_config", (cfg, cas)))
        if self.refuse:
            raise AdminError(self.refuse)
        if cas is not None and cas != self.modify_index:
            return False
        self.config = cfg
        self.modify_index += 3  # a Raft index, not a counter
        return True

    def autopilot_health(self) -> dict[str, Any]:
        return self.autopilot.health(WALL_OFFSET_S)

    def observe(self, now: float, silent: tuple[str, ...] = ()) -> None:
        """Feed the autopilot what a leader would know; ``silent`` servers (by Node) have
        not been heard from for 5 s, so are unhealthy."""
        states = [
            ServerState(
                id=s["ID"],
                name=s["Node"],
                address=s["Address"],
                voter=s["Voter"],
                leader=s["Leader"],
                serf_status="alive",
                failed_since=None,
                last_contact_s=0.0 if s["Leader"] else 5.0 if s["Node"] in silent else 0.01,
                last_term=2,
                last_index=s["LastIndex"],
                version="0.1.0",
            )
            for s in self.servers
        ]
        self.autopilot.update(now, states, 100, 2)


class FakeAgent:
    def __init__(self, admin: FakeRaftAdmin | None) -> None:
        self.config = AgentConfig(node_name="server-1", data_dir="/nonexistent", server=True)
        self.node_id = "00000001-aaaa-bbbb-cccc-dddddddddddd"
        self.raft_admin = admin


class Harness:
    """An HTTPServer with only the operator routes, on an event loop in a thread."""

    def __init__(self, admin: FakeRaftAdmin | None) -> None:
        self.admin = admin
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.agent = FakeAgent(admin)
        self.http = HTTPServer(self.agent, "127.0.0.1", 0)  # type: ignore[arg-type]
        http_operator.register(self.http)
        self.call(self.http.start())
        self.port = self.http.bound_port
        self.addr = f"127.0.0.1:{self.port}"

    def call(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        self.call(self.http.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def request(
        self, method: str, path: str, body: bytes | str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10.0)
        try:
            data = body.encode() if isinstance(body, str) else body
            conn.request(method, path, body=data)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        data = None if body is None else json.dumps(body)
        status, _, out = self.request(method, path, data)
        assert status == expect, (status, out)
        return json.loads(out) if out else None

    def error(self, method: str, path: str, body: str | None = None) -> tuple[int, str]:
        status, headers, out = self.request(method, path, body)
        assert headers["content-type"].startswith("text/plain"), headers
        return status, out.decode()


@pytest.fixture
def op() -> Iterator[Harness]:
    h = Harness(FakeRaftAdmin())
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def no_raft() -> Iterator[Harness]:
    h = Harness(None)
    try:
        yield h
    finally:
        h.close()


# --------------------------------------------------------------------------- raft configuration


def test_raft_configuration_shape(op: Harness) -> None:
    assert op.admin is not None
    op.admin.servers[2] = {"ID": "x", "Address": "127.0.0.9:8300"}  # the rest left out
    status, headers, body = op.request("GET", "/v1/operator/raft/configuration")
    assert status == 200
    assert "x-consul-index" not in headers  # Consul sets no query meta here
    out = json.loads(body)
    assert list(out) == ["Servers", "Index"]
    assert out["Index"] == 42
    assert out["Servers"][0] == {
        "ID": "00000001-aaaa-bbbb-cccc-dddddddddddd",
        "Node": "server-1",
        "Address": "127.0.0.1:8300",
        "Leader": True,
        "ProtocolVersion": "3",
        "Voter": True,
        "LastIndex": 100,
    }
    assert list(out["Servers"][0]) == [
        "ID",
        "Node",
        "Address",
        "Leader",
        "ProtocolVersion",
        "Voter",
        "LastIndex",
    ]
    assert out["Servers"][2] == {
        "ID": "x",
        "Node": "",
        "Address": "127.0.0.9:8300",
        "Leader": False,
        "ProtocolVersion": "",
        "Voter": False,
        "LastIndex": 0,
    }


def test_raft_configuration_without_leader_needs_stale(op: Harness) -> None:
    assert op.admin is not None
    for s in op.admin.servers:
        s["Leader"] = False
    assert op.error("GET", "/v1/operator/raft/configuration") == (500, "No cluster leader")
    out = op.json("GET", "/v1/operator/raft/configuration?stale")
    assert [s["Leader"] for s in out["Servers"]] == [False, False, False]


@pytest.mark.parametrize(
    ("query", "status", "text"),
    [
        (
            "?stale&consistent",
            400,
            "Cannot specify ?stale with ?consistent, conflicting semantics.",
        ),
        ("?wait=forever", 400, "Invalid wait time"),
        ("?index=x", 400, "Invalid index"),
        ("?dc=dc2", 500, "No path to datacenter"),
        ("?dc=dc2&wait=x", 400, "Invalid wait time"),  # the 400s come before the forward
    ],
)
def test_query_options(op: Harness, query: str, status: int, text: str) -> None:
    for path in (
        "/v1/operator/raft/configuration",
        "/v1/operator/autopilot/configuration",
        "/v1/operator/autopilot/health",
    ):
        assert op.error("GET", path + query) == (status, text)


def test_own_datacenter_is_fine(op: Harness) -> None:
    assert op.json("GET", "/v1/operator/raft/configuration?dc=dc1")["Index"] == 42


# --------------------------------------------------------------------------- remove peer


def test_remove_peer_by_id_and_by_address(op: Harness) -> None:
    assert op.admin is not None
    status, _, body = op.request("DELETE", "/v1/operator/raft/peer?id=" + peer(3)["ID"])
    assert (status, body) == (200, b"")
    status, _, body = op.request("DELETE", "/v1/operator/raft/peer?address=127.0.0.2:8300")
    assert (status, body) == (200, b"")
    assert op.admin.calls == [
        ("remove_peer", (peer(3)["ID"], None)),
        ("remove_peer", (None, "127.0.0.2:8300")),
    ]
    out = op.json("GET", "/v1/operator/raft/configuration")
    assert [s["Node"] for s in out["Servers"]] == ["server-1"]
    assert out["Index"] == 44


@pytest.mark.parametrize(
    ("query", "status", "text"),
    [
        (
            "",
            400,
            "Must specify either ?id with the server's ID or ?address with IP:port of peer "
            "to remove",
        ),
        ("?id=a&address=b", 400, "Must specify only one of ?id or ?address"),
        ("?id=nope", 500, 'id "nope" was not found in the Raft configuration'),
        ("?id=", 500, 'id "" was not found in the Raft configuration'),
        (
            "?address=10.0.0.1:8300",
            500,
            'address "10.0.0.1:8300" was not found in the Raft configuration',
        ),
        ("?id=a&dc=dc2", 500, "No path to datacenter"),
    ],
)
def test_remove_peer_refused(op: Harness, query: str, status: int, text: str) -> None:
    assert op.error("DELETE", "/v1/operator/raft/peer" + query) == (status, text)
    assert op.admin is not None and op.admin.calls == []


def test_remove_peer_admin_error(op: Harness) -> None:
    assert op.admin is not None
    op.admin.refuse = "need at least one voter in configuration"
    assert op.error("DELETE", "/v1/operator/raft/peer?address=127.0.0.3:8300") == (
        500,
        "need at least one voter in configuration",
    )


def test_remove_peer_method(op: Harness) -> None:
    status, headers, body = op.request("GET", "/v1/operator/raft/peer?id=x")
    assert (status, headers["allow"], body) == (405, "DELETE", b"method GET not allowed")


# --------------------------------------------------------------------------- transfer leader


def test_transfer_leader(op: Harness) -> None:
    assert op.admin is not None
    assert op.json("POST", "/v1/operator/raft/transfer-leader") == {"Success": True}
    target = peer(3)["ID"]
    assert op.json("POST", f"/v1/operator/raft/transfer-leader?id={target}") == {"Success": True}
    assert op.admin.calls == [("transfer_leader", None), ("transfer_leader", target)]
    servers = op.json("GET", "/v1/operator/raft/configuration")["Servers"]
    assert [s["Leader"] for s in servers] == [False, False, True]


def test_transfer_leader_error_is_the_grpc_status_text(op: Harness) -> None:
    assert op.error("POST", "/v1/operator/raft/transfer-leader?id=ghost") == (
        500,
        "rpc error: code = Unknown desc = Could not find address for server id ghost",
    )


# --------------------------------------------------------------------------- autopilot config


def test_autopilot_get(op: Harness) -> None:
    out = op.json("GET", "/v1/operator/autopilot/configuration")
    assert out == {
        "CleanupDeadServers": True,
        "LastContactThreshold": "200ms",
        "MaxTrailingLogs": 250,
        "MinQuorum": 0,
        "ServerStabilizationTime": "10s",
        "RedundancyZoneTag": "",
        "DisableUpgradeMigration": False,
        "UpgradeVersionTag": "",
        "CreateIndex": 5,
        "ModifyIndex": 5,
    }


def test_autopilot_put_resets_what_it_leaves_out(op: Harness) -> None:
    assert op.admin is not None
    op.admin.config = AutopilotConfig(max_trailing_logs=7, dead_server_grace_s=45.0)
    body = {"CleanupDeadServers": False, "lastcontactthreshold": "1s", "MinQuorum": 3}
    assert op.json("PUT", "/v1/operator/autopilot/configuration", body) is True
    assert op.admin.config == AutopilotConfig(
        cleanup_dead_servers=False,
        last_contact_threshold_s=1.0,
        min_quorum=3,
        dead_server_grace_s=45.0,  # not in Consul's JSON: the agent's value stays
    )
    out = op.json("GET", "/v1/operator/autopilot/configuration")
    assert (out["MaxTrailingLogs"], out["ModifyIndex"]) == (250, 8)


def test_autopilot_put_cas(op: Harness) -> None:
    assert op.admin is not None
    current = op.json("GET", "/v1/operator/autopilot/configuration")
    current["MinQuorum"] = 5
    assert op.json("PUT", "/v1/operator/autopilot/configuration?cas=4", current) is False
    assert op.admin.config.min_quorum == 0
    assert op.json("PUT", "/v1/operator/autopilot/configuration?cas=5", current) is True
    assert op.admin.config.min_quorum == 5
    assert op.json("PUT", "/v1/operator/autopilot/configuration?cas=5", current) is False


@pytest.mark.parametrize(
    ("query", "body", "text"),
    [
        ("", "", "Error parsing autopilot config: EOF"),
        ("", "  \n", "Error parsing autopilot config: EOF"),
        ("", '{"Foo": 1}', 'Error parsing autopilot config: json: unknown field "Foo"'),
        (
            "",
            "[]",
            "Error parsing autopilot config: json: cannot unmarshal array into Go value of "
            "type api.AutopilotConfiguration",
        ),
        (
            "",
            '"x"',
            "Error parsing autopilot config: json: cannot unmarshal string into Go value of "
            "type api.AutopilotConfiguration",
        ),
        (
            "",
            '{"MaxTrailingLogs": -5}',
            "Error parsing autopilot config: json: cannot unmarshal number -5 into Go struct "
            "field AutopilotConfiguration.MaxTrailingLogs of type uint64",
        ),
        (
            "",
            '{"ServerStabilizationTime": "10 s"}',
            'Error parsing autopilot config: time: unknown unit " s" in duration "10 s"',
        ),
        (
            "?cas=abc",
            "{}",
            'Error parsing cas value: strconv.ParseUint: parsing "abc": invalid syntax',
        ),
        (
            "?cas=-1",
            "{}",
            'Error parsing cas value: strconv.ParseUint: parsing "-1": invalid syntax',
        ),
        # the body is decoded before the cas value is read
        ("?cas=abc", "{", "Error parsing autopilot config: "),
    ],
)
def test_autopilot_put_bad_input(op: Harness, query: str, body: str, text: str) -> None:
    status, got = op.error("PUT", "/v1/operator/autopilot/configuration" + query, body)
    assert status == 400
    assert got.startswith(text) if text.endswith(": ") else got == text
    assert op.admin is not None and op.admin.calls == []


def test_autopilot_put_null_body_is_all_defaults(op: Harness) -> None:
    assert op.admin is not None
    op.admin.config = AutopilotConfig(min_quorum=3, dead_server_grace_s=45.0)
    status, _, out = op.request("PUT", "/v1/operator/autopilot/configuration", "null")
    assert (status, out) == (200, b"true")
    assert op.admin.config == AutopilotConfig(dead_server_grace_s=45.0)


def test_autopilot_put_admin_error(op: Harness) -> None:
    assert op.admin is not None
    op.admin.refuse = "Not ready to serve consistent reads"
    assert op.error("PUT", "/v1/operator/autopilot/configuration", "{}") == (
        500,
        "Not ready to serve consistent reads",
    )


def test_autopilot_configuration_methods(op: Harness) -> None:
    status, headers, _ = op.request("DELETE", "/v1/operator/autopilot/configuration")
    assert (status, headers["allow"]) == (405, "GET,PUT")


# --------------------------------------------------------------------------- autopilot health


def test_autopilot_health_healthy_is_200(op: Harness) -> None:
    assert op.admin is not None
    op.admin.observe(0.0)
    out = op.json("GET", "/v1/operator/autopilot/health")
    assert (out["Healthy"], out["FailureTolerance"]) == (True, 1)
    assert [s["Name"] for s in out["Servers"]] == ["server-1", "server-2", "server-3"]
    assert out["Servers"][0]["Leader"] is True
    assert out["Servers"][0]["StableSince"] == "2023-11-14T22:13:20Z"
    assert out["Servers"][1]["LastContact"] == "10ms"


def test_autopilot_health_unhealthy_is_429_with_the_reply(op: Harness) -> None:
    assert op.admin is not None
    op.admin.observe(0.0, silent=("server-3",))
    out = op.json("GET", "/v1/operator/autopilot/health", expect=429)
    assert (out["Healthy"], out["FailureTolerance"]) == (False, 0)
    assert [s["Healthy"] for s in out["Servers"]] == [True, True, False]


# --------------------------------------------------------------------------- no Raft yet


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/operator/raft/configuration", None),
        ("GET", "/v1/operator/raft/configuration?stale", None),
        ("DELETE", "/v1/operator/raft/peer?id=x", None),
        ("POST", "/v1/operator/raft/transfer-leader", None),
        ("GET", "/v1/operator/autopilot/configuration", None),
        ("PUT", "/v1/operator/autopilot/configuration", "{}"),
        ("GET", "/v1/operator/autopilot/health", None),
    ],
)
def test_without_raft_admin_no_cluster_leader(
    no_raft: Harness, method: str, path: str, body: str | None
) -> None:
    assert no_raft.error(method, path, body) == (500, "No cluster leader")


def test_without_raft_admin_bad_input_is_still_400(no_raft: Harness) -> None:
    assert no_raft.error("DELETE", "/v1/operator/raft/peer")[0] == 400
    assert no_raft.error("PUT", "/v1/operator/autopilot/configuration", "")[0] == 400
