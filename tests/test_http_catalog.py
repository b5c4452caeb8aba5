"""The catalog, health, coordinate and status endpoints (catalog/http_catalog.py).

(a) An in-process HTTPServer on 127.0.0.1:0 whose fake agent holds a real CatalogServer,
    driven over raw HTTP: Consul's shapes, indexes, 404 vs null, ``passing``, ``tag``,
    ``near``, ``filter``, blocking reads woken only by relevant changes, and bad input
    answered with Consul's status and text while the store stays as it was.
(b) py-consul against a real ``gossamer agent -dev`` subprocess (stopped by PID).
(c) Hypothesis: fuzzed register bodies and read query strings only ever get Consul-shaped
    answers, never a traceback-like 500, and a rejected write changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog import aio as http
from catalog import http_catalog
from catalog.server import CatalogServer
from gossamer.cluster import free_port, wait_for
from gossamer.config import AgentConfig
from swim.coordinate import Coordinate
from swim.events import Member, MemberStatus

REPO = Path(__file__).resolve().parents[1]

NODE_KEYS = {
    "ID",
    "Node",
    "Address",
    "Datacenter",
    "TaggedAddresses",
    "Meta",
    "CreateIndex",
    "ModifyIndex",
}
SERVICE_KEYS = {
    "ID",
    "Service",
    "Tags",
    "Address",
    "Meta",
    "Port",
    "Weights",
    "EnableTagOverride",
    "Proxy",
    "Connect",
    "PeerName",
    "CreateIndex",
    "ModifyIndex",
}
SERVICE_NODE_KEYS = {
    "ID",
    "Node",
    "Address",
    "Datacenter",
    "TaggedAddresses",
    "NodeMeta",
    "ServiceKind",
    "ServiceID",
    "ServiceName",
    "ServiceTags",
    "ServiceAddress",
    "ServiceWeights",
    "ServiceMeta",
    "ServicePort",
    "ServiceSocketPath",
    "ServiceEnableTagOverride",
    "ServiceProxy",
    "ServiceConnect",
    "ServiceLocality",
    "CreateIndex",
    "ModifyIndex",
}
CHECK_KEYS = {
    "Node",
    "CheckID",
    "Name",
    "Status",
    "Notes",
    "Output",
    "ServiceID",
    "ServiceName",
    "ServiceTags",
    "Type",
    "Interval",
    "Timeout",
    "ExposedPort",
    "Definition",
    "CreateIndex",
    "ModifyIndex",
}
EMPTY_PROXY = {"Mode": "", "MeshGateway": {}, "Expose": {}}
TRACEBACK_LIKE = re.compile(r"Traceback|\b\w*(Error|Exception): |malformed")


def member(name: str, role: str = "consul", status: MemberStatus = MemberStatus.ALIVE) -> Member:
    return Member(name, "127.0.0.1", 8301, {"role": role, "dc": "dc1"}, status, 1, 5, 2, 2, 5, 5)


class FakeAgent:
    """What the endpoints use of the agent, with a real catalog server (or none)."""

    def __init__(self, catalog: bool = True, server: bool = True) -> None:
        self.config = AgentConfig(node_name="me", data_dir="/tmp/x", server=server)
        self.node_id = "11111111-2222-3333-4444-555555555555"
        self.catalog = CatalogServer("dc1", "127.0.0.1:8300") if catalog else None
        self.members = [member("me"), member("gone", status=MemberStatus.LEFT)]
        self.coords = {"me": Coordinate.origin(8), "gone": Coordinate.origin(8)}

    def lan_members(self) -> list[Member]:
        return list(self.members)

    def local_member(self) -> Member:
        return self.members[0]

    def lan_coordinate(self) -> Coordinate | None:
        return Coordinate.origin(8)

    def lan_coordinates(self) -> dict[str, Coordinate]:
        return dict(self.coords)


class Server:
    """An HTTPServer with the catalog routes on its own event-loop thread."""

    def __init__(self, agent: FakeAgent | None = None) -> None:
        self.agent = agent or FakeAgent()
        self.loop = asyncio.new_event_loop()
        self.srv = http.HTTPServer(self.agent, "127.0.0.1", 0)  # type: ignore[arg-type]
        http_catalog.register(self.srv)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        if self.agent.catalog is not None:
            self.run(self.agent.catalog.start())
        self.run(self.srv.start())
        self.port = self.srv.bound_port

    def run(self, coro: Any, timeout_s: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def call(self, fn: Callable[[], Any]) -> Any:
        async def wrapped() -> Any:
            return fn()

        return self.run(wrapped())

    @property
    def catalog(self) -> CatalogServer:
        assert self.agent.catalog is not None
        return self.agent.catalog

    def write(self, cmd: dict[str, Any]) -> Any:
        return self.run(self.catalog.write(cmd))

    def state(self) -> dict[str, Any]:
        """The store's content, without the log index (a rejected command moves it)."""
        snap = self.call(self.catalog.store.snapshot)
        snap.pop("Index")
        return json.loads(json.dumps(snap, default=repr))  # type: ignore[no-any-return]

    def close(self) -> None:
        self.run(self.srv.close())
        if self.agent.catalog is not None:
            self.run(self.agent.catalog.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float = 10.0,
    ) -> tuple[int, dict[str, str], bytes]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, int, Any]:
        """(status, X-Consul-Index, JSON body) of a read that must succeed."""
        status, headers, body = self.request("GET", path)
        assert status == 200, (path, status, body)
        assert headers["content-type"] == "application/json"
        index = headers["x-consul-index"]
        assert index.isdigit() and int(index) >= 1
        assert headers["x-consul-knownleader"] == "true"
        assert headers["x-consul-lastcontact"] == "0"
        return status, int(index), json.loads(body)

    def put(self, path: str, body: Any) -> tuple[int, bytes]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        status, _, out = self.request("PUT", path, raw)
        return status, out

    def register(self, body: dict[str, Any]) -> None:
        status, out = self.put("/v1/catalog/register", body)
        assert (status, out) == (200, b"true"), out


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.close()


def web(node: str, sid: str = "web", status: str = "passing", **svc: Any) -> dict[str, Any]:
    return {
        "Node": node,
        "Address": f"10.0.0.{len(node)}",
        "Service": {"ID": sid, "Service": "web", "Port": 80, **svc},
        "Checks": [{"CheckID": f"{sid}-ok", "Name": "web", "Status": status, "ServiceID": sid}],
    }


# =========================================================================== (a) shapes


def test_register_then_every_read_has_consuls_shape_and_index(server: Server) -> None:
    server.register(
        {
            "Node": "n1",
            "Address": "10.0.0.1",
            "NodeMeta": {"rack": "r1"},
            "TaggedAddresses": {"lan": "10.0.0.1"},
            "Service": {"Service": "web", "Tags": ["v1"], "Port": 8080},
            "Check": {"Name": "node alive", "Status": "passing"},
            "Checks": [{"CheckID": "web-http", "Name": "web", "ServiceID": "web"}],
        }
    )
    index = server.call(lambda: server.catalog.store.index)

    _, idx, nodes = server.get("/v1/catalog/nodes")
    assert idx == index
    assert [set(n) for n in nodes] == [NODE_KEYS]
    assert nodes[0]["Meta"] == {"rack": "r1"} and nodes[0]["Datacenter"] == "dc1"

    _, _, services = server.get("/v1/catalog/services")
    assert services == {"web": ["v1"]}

    _, _, rows = server.get("/v1/catalog/service/web")
    assert [set(r) for r in rows] == [SERVICE_NODE_KEYS]
    row = rows[0]
    assert (row["ServiceID"], row["ServicePort"], row["NodeMeta"]) == ("web", 8080, {"rack": "r1"})
    assert row["ServiceWeights"] == {"Passing": 1, "Warning": 1}
    assert row["ServiceMeta"] == {} and row["ServiceLocality"] is None
    assert row["ServiceProxy"] == EMPTY_PROXY and row["ServiceConnect"] == {}

    _, _, node = server.get("/v1/catalog/node/N1")  # node names are case-insensitive
    assert set(node) == {"Node", "Services"} and set(node["Node"]) == NODE_KEYS
    svc = node["Services"]["web"]
    assert set(svc) == SERVICE_KEYS
    assert svc["Meta"] is None and svc["PeerName"] == "" and svc["Tags"] == ["v1"]

    _, _, listed = server.get("/v1/catalog/node-services/n1")
    assert listed["Node"] == node["Node"] and listed["Services"] == [svc]

    _, _, health = server.get("/v1/health/service/web")
    assert [set(h) for h in health] == [{"Node", "Service", "Checks"}]
    assert health[0]["Service"] == svc
    checks = health[0]["Checks"]
    assert [c["CheckID"] for c in checks] == ["node alive", "web-http"]  # node's own first
    assert all(set(c) == CHECK_KEYS for c in checks)
    assert checks[1]["Status"] == "critical"  # Consul's default status
    assert checks[1]["ServiceTags"] == ["v1"] and checks[0]["ServiceTags"] == []

    _, _, by_node = server.get("/v1/health/node/n1")
    assert [c["CheckID"] for c in by_node] == ["node alive", "web-http"]
    _, _, by_service = server.get("/v1/health/checks/web")
    assert [c["CheckID"] for c in by_service] == ["web-http"]
    for state, want in (
        ("any", ["node alive", "web-http"]),
        ("passing", ["node alive"]),
        ("critical", ["web-http"]),
        ("CRITICAL", ["web-http"]),  # the status index lower-cases
        ("warning", []),
        ("nonsense", []),  # Consul does not validate the state
    ):
        _, _, got = server.get(f"/v1/health/state/{state}")
        assert [c["CheckID"] for c in got] == want, state


def test_stored_service_and_check_get_consuls_defaults(server: Server) -> None:
    server.register(
        {
            "node": "n1",  # keys are matched case-insensitively
            "address": "10.0.0.1",
            "service": {
                "service": "proxy",
                "Kind": "connect-proxy",
                "Port": 21000,
                "Weights": {"Passing": 0, "Warning": 1},  # invalid: the default is stored
                "Proxy": {
                    "destination_service_name": "web",  # snake_case where Consul has it
                    "upstreams": [{"destination_name": "db", "local_bind_port": 9191}],
                },
            },
            "checks": [
                {"Name": "http", "Definition": {"HTTP": "http://x", "Interval": "10s"}},
                {"Name": "ttl", "Definition": {"TTL": "30s"}},
                {"Name": "bare"},
            ],
        }
    )
    _, _, node = server.get("/v1/catalog/node/n1")
    svc = node["Services"]["proxy"]
    assert svc["Kind"] == "connect-proxy" and svc["Tags"] == []
    assert svc["Weights"] == {"Passing": 1, "Warning": 1}
    assert svc["Proxy"] == {
        "DestinationServiceName": "web",
        "Mode": "",
        "Upstreams": [
            {
                "DestinationType": "",
                "DestinationName": "db",
                "Datacenter": "",
                "LocalBindPort": 9191,
                "MeshGateway": {},
            }
        ],
        "MeshGateway": {},
        "Expose": {},
    }
    _, _, checks = server.get("/v1/health/node/n1")
    by_id = {c["CheckID"]: c for c in checks}
    assert by_id["http"]["Type"] == "http"
    assert by_id["http"]["Definition"] == {"Interval": "10s", "HTTP": "http://x"}
    assert by_id["ttl"]["Type"] == "ttl" and by_id["ttl"]["Definition"] == {"TTL": 30_000_000_000}
    assert by_id["bare"]["Type"] == "" and by_id["bare"]["Definition"] == {}
    # a service without a port has no Port field on the NodeService (omitempty)
    server.register({"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": "noport"}})
    _, _, node = server.get("/v1/catalog/node/n1")
    assert "Port" not in node["Services"]["noport"]
    _, _, rows = server.get("/v1/catalog/service/noport")
    assert rows[0]["ServicePort"] == 0


def test_reregistering_the_same_thing_does_not_move_the_index(server: Server) -> None:
    body = web("n1", Tags=["a"])
    server.register(body)
    _, idx, _ = server.get("/v1/health/service/web")
    server.register(body)
    assert server.get("/v1/health/service/web")[1] == idx


REJECTIONS: list[tuple[str, Any, int, str]] = [
    ("empty body", b"", 400, "Request decode failed: EOF"),
    ("not json", b"{", 400, "Request decode failed: "),
    (
        "array",
        b"[]",
        400,
        "Request decode failed: json: cannot unmarshal array into Go value of type "
        "structs.RegisterRequest",
    ),
    ("unknown field", {"Node": "n", "Address": "a", "Bogus": 1}, 400, 'unknown field "Bogus"'),
    (
        "snake case at the top",
        {"Node": "n", "Address": "a", "node_meta": {}},
        400,
        'Request decode failed: json: unknown field "node_meta"',
    ),
    (
        "namespace",
        {"Node": "n", "Address": "a", "Namespace": "x"},
        400,
        'Request decode failed: json: unknown field "Namespace" - Namespaces are a Consul '
        "Enterprise feature",
    ),
    (
        "port type",
        {"Node": "n", "Address": "a", "Service": {"Service": "s", "Port": "80"}},
        400,
        "Request decode failed: json: cannot unmarshal string into Go struct field "
        "NodeService.Service.Port of type int",
    ),
    (
        "tags type",
        {"Node": "n", "Address": "a", "Service": {"Service": "s", "Tags": "x"}},
        400,
        "Request decode failed: json: cannot unmarshal string into Go struct field "
        "NodeService.Service.Tags of type []string",
    ),
    (
        "bad duration",
        {"Node": "n", "Address": "a", "Check": {"Name": "c", "Definition": {"TTL": "x"}}},
        400,
        'Request decode failed: time: invalid duration "x"',
    ),
    ("no node", {"Address": "a"}, 500, "Must provide node"),
    ("no address", {"Node": "n"}, 500, "Must provide address if SkipNodeUpdate is not set"),
    ("other dc", {"Node": "n", "Address": "a", "Datacenter": "dc2"}, 500, "No path to datacenter"),
    (
        "peer",
        {"Node": "n", "Address": "a", "PeerName": "p"},
        500,
        "cannot register requests with PeerName in them",
    ),
    ("short id", {"Node": "n", "Address": "a", "ID": "1"}, 500, "Bad node ID: uuid string is"),
    (
        "hex id",
        {"Node": "n", "Address": "a", "ID": "zzzzzzzz-2222-3333-4444-555555555555"},
        500,
        "Bad node ID: encoding/hex: invalid byte: U+007A 'z'",
    ),
    (
        "id without name",
        {"Node": "n", "Address": "a", "Service": {"ID": "s1"}},
        500,
        "Must provide service name (Service.Service) when service ID is provided",
    ),
    (
        "any address",
        {"Node": "n", "Address": "a", "Service": {"Service": "s", "Address": "0.0.0.0"}},
        500,
        "Invalid service address",
    ),
    (
        "proxy without destination",
        {"Node": "n", "Address": "a", "Service": {"Service": "p", "Kind": "connect-proxy"}},
        500,
        "2 errors occurred:\n\t* Port or SocketPath must be set for a connect-proxy\n\t* "
        "Proxy.DestinationServiceName must be non-empty for Connect proxy services\n\n",
    ),
    (
        "check on another node",
        {"Node": "n", "Address": "a", "Check": {"Node": "m", "CheckID": "c"}},
        500,
        "Node 'm' for check 'c' doesn't match register request node 'n'",
    ),
    (
        "check for an unknown service",
        {"Node": "n", "Address": "a", "Check": {"CheckID": "c", "ServiceID": "zz"}},
        500,
        "Unknown service ID 'zz' for check ID 'c'",
    ),
    (
        "service meta",
        {"Node": "n", "Address": "a", "Service": {"Service": "s", "Meta": {"a b": "1"}}},
        500,
        "failed inserting service: Invalid Service Meta for node n and serviceID s: "
        "Couldn't load metadata pair ('a b', '1'): Key contains invalid characters",
    ),
    (
        "reserved meta",
        {"Node": "n", "Address": "a", "Service": {"Service": "s", "Meta": {"consul-x": "1"}}},
        500,
        "Key prefix 'consul-' is reserved for internal use",
    ),
]


@pytest.mark.parametrize(
    ("what", "body", "status", "text"), REJECTIONS, ids=[r[0] for r in REJECTIONS]
)
def test_rejected_registrations_answer_consuls_text_and_change_nothing(
    server: Server, what: str, body: Any, status: int, text: str
) -> None:
    server.register(web("base"))
    before = server.state()
    got, out = server.put("/v1/catalog/register", body)
    assert got == status, out
    assert text in out.decode(), out
    assert not TRACEBACK_LIKE.search(out.decode().replace(text, ""))
    assert server.state() == before


def test_enterprise_parameters_are_refused(server: Server) -> None:
    status, _, body = server.request("GET", "/v1/catalog/services?ns=x")
    assert (status, body) == (
        400,
        b'Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature',
    )
    status, _, body = server.request(
        "GET", "/v1/health/service/web", headers={"X-Consul-Partition": "p"}
    )
    assert status == 400 and b"Partitions are a Consul Enterprise feature" in body
    # /v1/catalog/nodes parses the partition only
    assert server.request("GET", "/v1/catalog/nodes?ns=x")[0] == 200


def test_deregister_service_check_and_node(server: Server) -> None:
    server.register(web("n1"))
    server.register(web("n2"))
    assert server.put("/v1/catalog/deregister", {"Node": "n1", "CheckID": "web-ok"}) == (
        200,
        b"true",
    )
    _, _, checks = server.get("/v1/health/checks/web")
    assert [c["Node"] for c in checks] == ["n2"]
    assert server.put("/v1/catalog/deregister", {"node": "n1", "serviceid": "web"})[0] == 200
    _, _, rows = server.get("/v1/catalog/service/web")
    assert [r["Node"] for r in rows] == ["n2"]
    assert server.put("/v1/catalog/deregister", {"Node": "n2"})[0] == 200
    assert [n["Node"] for n in server.get("/v1/catalog/nodes")[2]] == ["n1"]
    # deregistering what is not there is fine; these are not
    assert server.put("/v1/catalog/deregister", {"Node": "ghost"}) == (200, b"true")
    before = server.state()
    assert server.put("/v1/catalog/deregister", {}) == (500, b"Must provide node")
    assert server.put("/v1/catalog/deregister", {"Node": "n1", "Datacenter": "dc2"}) == (
        500,
        b"No path to datacenter",
    )
    status, out = server.put("/v1/catalog/deregister", {"Node": "n1", "X": 1})
    assert (status, out) == (400, b'Request decode failed: json: unknown field "X"')
    assert server.state() == before


def test_unknown_things_answer_like_consul(server: Server) -> None:
    server.register(web("n1"))
    _, idx, value = server.get("/v1/catalog/node/ghost")
    assert value is None and idx >= 1  # 200 null (hashicorp/consul#9330)
    assert server.get("/v1/catalog/node-services/ghost")[2] == {"Node": None, "Services": None}
    assert server.get("/v1/health/node/ghost")[2] == []
    assert server.get("/v1/health/service/ghost")[2] == []
    assert server.get("/v1/catalog/service/ghost")[2] == []
    status, headers, body = server.request("GET", "/v1/coordinate/node/ghost")
    assert (status, body) == (404, b"") and headers["x-consul-index"].isdigit()
    for path, text in (
        ("/v1/catalog/node/", b"Missing node name"),
        ("/v1/catalog/node-services/", b"Missing node name"),
        ("/v1/catalog/service/", b"Missing service name"),
        ("/v1/health/node/", b"Missing node name"),
        ("/v1/health/checks/", b"Missing service name"),
        ("/v1/health/service/", b"Missing service name"),
        ("/v1/health/state/", b"Missing check state"),
    ):
        assert server.request("GET", path)[::2] == (400, text), path
    # a node with no services: the list endpoint says null, the map endpoint {}
    server.register({"Node": "bare", "Address": "10.9.9.9"})
    assert server.get("/v1/catalog/node-services/bare")[2]["Services"] is None
    assert server.get("/v1/catalog/node/bare")[2]["Services"] == {}


def test_connect_reads_find_proxies_and_native_instances(server: Server) -> None:
    server.register(web("n1"))
    proxy = {
        "Node": "n1",
        "Address": "10.0.0.2",
        "Service": {
            "ID": "web-sidecar-proxy",
            "Service": "web-sidecar-proxy",
            "Kind": "connect-proxy",
            "Port": 21000,
            "Proxy": {"DestinationServiceName": "web", "LocalServicePort": 80},
        },
    }
    server.register(proxy)
    native = web("n2", "web-native", Connect={"Native": True})
    server.register(native)
    _, _, rows = server.get("/v1/health/connect/web")
    assert [r["Service"]["ID"] for r in rows] == ["web-sidecar-proxy", "web-native"]
    assert rows[0]["Service"]["Kind"] == "connect-proxy"
    assert [r["ServiceID"] for r in server.get("/v1/catalog/connect/web")[2]] == [
        "web-sidecar-proxy",
        "web-native",
    ]
    assert server.get("/v1/health/connect/db")[2] == []
    # no ingress gateways until config entries exist; an unknown peer has nothing
    assert server.get("/v1/health/ingress/web")[2] == []
    assert server.get("/v1/health/service/web?peer=elsewhere")[2] == []
    assert server.get("/v1/catalog/service/web?peer=elsewhere")[2] == []
    assert len(server.get("/v1/health/service/web")[2]) == 2


def test_operator_usage_counts_the_catalog(server: Server) -> None:
    server.register(web("n1"))
    server.register(web("n2", "web-2"))
    _, _, body = server.get("/v1/operator/usage")
    assert body["Usage"]["dc1"]["Nodes"] == 2
    assert body["Usage"]["dc1"]["ServiceInstances"] == 2
    assert body["Usage"]["dc1"]["Services"] == 1
    assert body["KnownLeader"] is True


def test_a_node_is_found_by_a_unique_id_prefix(server: Server) -> None:
    server.register({"Node": "n1", "Address": "a", "ID": "40e4a748-2192-161a-0510-9bf59fe950b5"})
    server.register({"Node": "n2", "Address": "b", "ID": "40e4b000-2192-161a-0510-9bf59fe950b5"})
    assert server.get("/v1/catalog/node/40e4a7")[2]["Node"]["Node"] == "n1"
    assert server.get("/v1/catalog/node/40E4A748-21")[2]["Node"]["Node"] == "n1"
    assert server.get("/v1/catalog/node/40e4")[2] is None  # ambiguous
    assert server.get("/v1/catalog/node-services/40e4b0")[2]["Node"]["Node"] == "n2"
    # an odd-length key loses its last character first (resizeNodeLookupKey)
    assert server.get("/v1/catalog/node-services/40e4b")[2] == {"Node": None, "Services": None}


# =========================================================================== passing, tag, meta


def test_passing_drops_entries_like_filter_non_passing(server: Server) -> None:
    for i, status in ((1, "warning"), (2, "passing"), (3, "passing"), (4, "passing")):
        server.register(web(f"n{i}", status=status))
    _, _, all_ = server.get("/v1/health/service/web")
    assert [e["Node"]["Node"] for e in all_] == ["n1", "n2", "n3", "n4"]
    for q in ("passing", "passing=1", "passing=true", "passing=T"):
        _, _, got = server.get(f"/v1/health/service/web?{q}")
        # n1 is swapped out by the last entry: Consul's filterNonPassing reorders
        assert [e["Node"]["Node"] for e in got] == ["n4", "n2", "n3"], q
    assert len(server.get("/v1/health/service/web?passing=false")[2]) == 4
    assert server.request("GET", "/v1/health/service/web?passing=yes")[::2] == (
        400,
        b"Invalid value for ?passing",
    )
    # a node-level check counts for every service on the node
    server.register(
        {"Node": "n2", "Address": "10.0.0.2", "Check": {"Name": "disk", "Status": "critical"}}
    )
    assert [e["Node"]["Node"] for e in server.get("/v1/health/service/web?passing")[2]] == [
        "n4",
        "n3",
    ]


def test_tag_and_node_meta_selections(server: Server) -> None:
    server.register({**web("n1", Tags=["Primary", "v1"]), "NodeMeta": {"rack": "r1"}})
    server.register({**web("n2", Tags=["v1"]), "NodeMeta": {"rack": "r2"}})
    server.register({**web("n3"), "NodeMeta": {"rack": "r1", "os": "linux:x"}})

    def names(path: str) -> list[str]:
        value = server.get(path)[2]
        return [v["Node"]["Node"] if "Checks" in v else v["Node"] for v in value]

    assert names("/v1/catalog/service/web?tag=v1") == ["n1", "n2"]
    assert names("/v1/catalog/service/web?tag=primary") == ["n1"]  # case-insensitive
    assert names("/v1/health/service/web?tag=PRIMARY") == ["n1"]
    assert names("/v1/catalog/service/web?tag=nope") == []
    assert names("/v1/catalog/service/web?node-meta=rack:r1") == ["n1", "n3"]
    assert names("/v1/health/service/web?node-meta=os:linux:x") == ["n3"]  # first colon
    assert [n["Node"] for n in server.get("/v1/catalog/nodes?node-meta=rack:r2")[2]] == ["n2"]
    assert [c["Node"] for c in server.get("/v1/health/state/any?node-meta=rack:r1")[2]] == [
        "n1",
        "n3",
    ]
    assert [c["Node"] for c in server.get("/v1/health/checks/web?node-meta=rack:r2")[2]] == ["n2"]
    server.register({"Node": "n4", "Address": "x", "Service": {"Service": "db", "Tags": ["z"]}})
    assert server.get("/v1/catalog/services?node-meta=rack:r1")[2] == {"web": ["Primary", "v1"]}


def test_repeated_tags_must_all_match(server: Server) -> None:
    if not hasattr(http.Request("GET", "/", {}, {}), "query_all"):
        pytest.skip("catalog.aio.Request keeps only the first value of a query parameter")
    server.register(web("n1", Tags=["a", "b"]))
    server.register(web("n2", Tags=["a"]))
    rows = server.get("/v1/catalog/service/web?tag=a&tag=b")[2]
    assert [r["Node"] for r in rows] == ["n1"]
    entries = server.get("/v1/health/service/web?tag=a&tag=B")[2]
    assert [e["Node"]["Node"] for e in entries] == ["n1"]


# =========================================================================== near


def coord(x: float) -> dict[str, Any]:
    c = Coordinate.origin(8)
    c.vec[0] = x
    c.height = 0.0
    return c.to_wire()


def test_near_sorts_by_estimated_rtt_and_puts_unknowns_last(server: Server) -> None:
    for name in ("a", "b", "c", "d", "me"):
        server.register(web(name))
    # on a line: me at 0, c at 0.01, a at 0.025, b at 0.06; d has no coordinate
    for name, x in (("me", 0.0), ("c", 0.01), ("a", 0.025), ("b", 0.06)):
        assert server.put("/v1/coordinate/update", {"Node": name, "Coord": coord(x)})[0] == 200

    def order(path: str) -> list[str]:
        value = server.get(path)[2]
        return [v["Node"]["Node"] if isinstance(v["Node"], dict) else v["Node"] for v in value]

    assert order("/v1/catalog/nodes") == ["a", "b", "c", "d", "me"]
    assert order("/v1/catalog/nodes?near=c") == ["c", "me", "a", "b", "d"]
    assert order("/v1/catalog/nodes?near=_agent") == ["me", "c", "a", "b", "d"]
    assert order("/v1/catalog/service/web?near=b") == ["b", "a", "c", "me", "d"]
    assert order("/v1/health/service/web?near=a") == ["a", "c", "me", "b", "d"]
    assert order("/v1/health/checks/web?near=me") == ["me", "c", "a", "b", "d"]
    assert order("/v1/health/state/passing?near=B") == ["b", "a", "c", "me", "d"]
    # a source without a coordinate leaves Consul's order alone
    assert order("/v1/catalog/nodes?near=d") == ["a", "b", "c", "d", "me"]
    assert order("/v1/catalog/nodes?near=ghost") == ["a", "b", "c", "d", "me"]


# =========================================================================== filter


def test_filter_applies_where_consul_applies_it(server: Server) -> None:
    server.register(web("n1", Tags=["a", "b"]))
    server.register(web("n2", sid="web2", Tags=["c"]))
    server.register({"Node": "n3", "Address": "x", "Service": {"Service": "db", "Tags": ["c"]}})
    q = urllib.parse.quote
    nodes = server.get("/v1/catalog/nodes?filter=" + q('Node != "n2"'))[2]
    assert [n["Node"] for n in nodes] == ["n1", "n3"]
    # /v1/catalog/services filters ServiceNode rows, then folds them
    services = server.get("/v1/catalog/services?filter=" + q('ServiceTags contains "a"'))[2]
    assert services == {"web": ["a", "b"]}
    services = server.get("/v1/catalog/services?filter=" + q('ServiceTags contains "c"'))[2]
    assert services == {"db": ["c"], "web": ["c"]}
    # /v1/catalog/node/<n> filters the Services map
    node = server.get("/v1/catalog/node/n1?filter=" + q('Service == "nope"'))[2]
    assert node["Services"] == {} and node["Node"]["Node"] == "n1"
    entries = server.get("/v1/health/service/web?filter=" + q('Node.Node == "n2"'))[2]
    assert [e["Service"]["ID"] for e in entries] == ["web2"]
    checks = server.get("/v1/health/state/any?filter=" + q('ServiceID == "web"'))[2]
    assert [c["Node"] for c in checks] == ["n1"]
    status, _, body = server.request("GET", "/v1/catalog/nodes?filter=" + q("Node =="))
    assert status == 400 and body.startswith(b"Failed to create boolean expression evaluator")
    # coordinates take no filter in Consul: it is ignored
    assert server.request("GET", "/v1/coordinate/nodes?filter=" + q("Node =="))[0] == 200


# =========================================================================== blocking


def blocking_get(server: Server, path: str) -> tuple[float, int, Any]:
    start = time.monotonic()
    status, headers, body = server.request("GET", path, timeout_s=20)
    assert status == 200, body
    return time.monotonic() - start, int(headers["x-consul-index"]), json.loads(body)


def test_blocking_read_wakes_only_for_a_relevant_change(server: Server) -> None:
    server.register(web("n1"))
    _, idx, _ = server.get("/v1/health/service/web")
    result: list[tuple[float, int, Any]] = []

    def wait(path: str) -> threading.Thread:
        t = threading.Thread(target=lambda: result.append(blocking_get(server, path)))
        t.start()
        return t

    # a change to db does not end the wait: back at the timeout with the same index
    t = wait(f"/v1/health/service/web?index={idx}&wait=200ms")
    time.sleep(0.05)
    server.register({"Node": "n2", "Address": "x", "Service": {"Service": "db"}})
    t.join(10)
    elapsed, got, value = result.pop()
    assert got == idx and 0.19 <= elapsed < 2.0
    assert [e["Node"]["Node"] for e in value] == ["n1"]

    # a change to a web check does, at once
    t = wait(f"/v1/health/service/web?index={idx}&wait=10s")
    time.sleep(0.05)
    server.register(web("n1", status="critical"))
    t.join(15)
    elapsed, got, value = result.pop()
    assert got > idx and elapsed < 5.0
    assert value[0]["Checks"][0]["Status"] == "critical"

    # so does a node-level check on a node that runs web
    _, idx, _ = server.get("/v1/health/service/web")
    t = wait(f"/v1/health/service/web?index={idx}&wait=10s")
    time.sleep(0.05)
    server.register({"Node": "n1", "Address": "10.0.0.2", "Check": {"Name": "disk"}})
    t.join(15)
    elapsed, got, _ = result.pop()
    assert got > idx and elapsed < 5.0

    # catalog/nodes blocks too and comes back unchanged at its timeout
    _, idx, _ = server.get("/v1/catalog/nodes")
    elapsed, got, _ = blocking_get(server, f"/v1/catalog/nodes?index={idx}&wait=100ms")
    assert got == idx and elapsed >= 0.09


# =========================================================================== coordinates


def test_coordinate_update_and_reads(server: Server) -> None:
    server.register(web("n1"))
    assert server.request("GET", "/v1/coordinate/nodes")[2] == b"[]"
    status, _, body = server.request(
        "PUT", "/v1/coordinate/update", json.dumps({"Node": "n1", "Coord": coord(0.5)}).encode()
    )
    assert (status, body) == (200, b"")
    _, idx, entries = server.get("/v1/coordinate/nodes")
    assert entries == [{"Node": "n1", "Segment": "", "Coord": coord(0.5)}]
    assert list(entries[0]["Coord"]) == ["Vec", "Error", "Adjustment", "Height"]
    assert server.get("/v1/coordinate/node/N1")[2][0]["Node"] == "N1"  # as asked, like Consul
    assert server.get("/v1/coordinate/nodes?segment=other")[2] == []
    # an update for a node the catalog does not know is accepted and dropped
    assert server.put("/v1/coordinate/update", {"Node": "ghost", "Coord": coord(1)})[0] == 200
    assert [e["Node"] for e in server.get("/v1/coordinate/nodes")[2]] == ["n1"]
    before = server.state()
    bad = coord(0.1)
    bad["Vec"] = [0.1, 0.2]
    assert server.put("/v1/coordinate/update", {"Node": "n1", "Coord": bad}) == (
        500,
        b"incompatible coordinate",
    )
    assert server.put("/v1/coordinate/update", {"Node": "n1"}) == (500, b"invalid coordinate")
    status, out = server.put("/v1/coordinate/update", {"Node": "n1", "Coord": {"Vec": "x"}})
    assert status == 400 and out.startswith(b"Request decode failed: json: cannot unmarshal")
    assert server.put("/v1/coordinate/update?dc=dc2", {"Node": "n1", "Coord": coord(1)}) == (
        500,
        b"No path to datacenter",
    )
    assert server.state() == before
    # blocking on the coordinate table
    elapsed, got, _ = blocking_get(server, f"/v1/coordinate/nodes?index={idx}&wait=100ms")
    assert got == idx and elapsed >= 0.09


def test_coordinate_datacenters_lists_this_dcs_servers(server: Server) -> None:
    status, headers, body = server.request("GET", "/v1/coordinate/datacenters")
    assert status == 200 and "x-consul-index" not in headers
    [dc] = json.loads(body)
    assert dc["Datacenter"] == "dc1" and dc["AreaID"] == "wan"
    # servers only, not those that left
    assert [c["Node"] for c in dc["Coordinates"]] == ["me"]
    assert set(dc["Coordinates"][0]) == {"Node", "Segment", "Coord"}


# =========================================================================== status, clients


def test_status_and_datacenters_on_a_server(server: Server) -> None:
    status, headers, body = server.request("GET", "/v1/status/leader")
    assert (status, json.loads(body)) == (200, "127.0.0.1:8300")
    assert "x-consul-index" not in headers
    assert json.loads(server.request("GET", "/v1/status/peers")[2]) == ["127.0.0.1:8300"]
    assert json.loads(server.request("GET", "/v1/catalog/datacenters")[2]) == ["dc1"]
    assert server.request("GET", "/v1/status/leader?dc=dc2")[::2] == (500, b"No path to datacenter")
    assert server.request("GET", "/v1/status/leader?stale&consistent")[0] == 400


def test_agents_without_a_catalog_server() -> None:
    client = Server(FakeAgent(catalog=False, server=False))
    try:
        for path in (
            "/v1/catalog/nodes",
            "/v1/health/service/web",
            "/v1/status/leader",
            "/v1/status/peers",
            "/v1/catalog/datacenters",
            "/v1/coordinate/datacenters",
        ):
            assert client.request("GET", path)[::2] == (500, b"No known Consul servers"), path
        assert client.put("/v1/catalog/register", {"Node": "n", "Address": "a"}) == (
            500,
            b"No known Consul servers",
        )
        # coordinates come from the agent's own gossip until server RPC exists
        status, headers, body = client.request("GET", "/v1/coordinate/nodes")
        assert status == 200 and headers["x-consul-index"] == "1"
        assert [e["Node"] for e in json.loads(body)] == ["gone", "me"]
        assert client.request("GET", "/v1/coordinate/node/nobody")[0] == 404
    finally:
        client.close()
    waiting = Server(FakeAgent(catalog=False, server=True))  # a server before its leader
    try:
        assert waiting.request("GET", "/v1/status/leader")[::2] == (200, b'""')
        assert waiting.request("GET", "/v1/status/peers")[::2] == (200, b"null")
        assert waiting.request("GET", "/v1/catalog/datacenters")[::2] == (200, b'["dc1"]')
    finally:
        waiting.close()


# =========================================================================== (b) py-consul


@pytest.fixture(scope="module")
def dev_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """A real ``gossamer agent -dev``: (HTTP port, server port). Stopped by PID."""
    http_port, serf_port, server_port = free_port(), free_port(), free_port()
    log_path = tmp_path_factory.mktemp("dev-agent") / "agent.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gossamer",
                "agent",
                "-dev",
                "-node=n1",
                "-bind=127.0.0.1",
                f"-http-port={http_port}",
                f"-serf-lan-port={serf_port}",
                f"-server-port={server_port}",
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        import consul

        c = consul.Consul(host="127.0.0.1", port=http_port, connections_timeout=5)

        def up() -> bool:
            return any(n["Node"] == "n1" for n in c.catalog.nodes()[1])

        try:
            wait_for(up, 20.0, what="the -dev agent to register itself")
        except TimeoutError:
            pytest.fail(log_path.read_text(errors="replace")[-3000:])
        yield http_port, server_port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.mark.integration
def test_py_consul_against_a_dev_agent(dev_agent: tuple[int, int]) -> None:
    import consul

    http_port, server_port = dev_agent
    c = consul.Consul(host="127.0.0.1", port=http_port, connections_timeout=10)
    assert c.status.leader() == f"127.0.0.1:{server_port}"
    assert c.status.peers() == [f"127.0.0.1:{server_port}"]
    assert c.catalog.datacenters() == ["dc1"]

    assert c.catalog.register(
        "n2",
        "10.0.0.2",
        service={"Service": "web", "ID": "web1", "Port": 80, "Tags": ["v1"]},
        check={"CheckID": "web1-ok", "Name": "web", "Status": "passing", "ServiceID": "web1"},
    )
    assert c.catalog.register(
        "n3",
        "10.0.0.3",
        service={"Service": "web", "ID": "web2", "Port": 80},
        check={"CheckID": "web2-bad", "Name": "web", "Status": "critical", "ServiceID": "web2"},
    )
    index, nodes = c.catalog.nodes()
    assert index.isdigit() and {"n1", "n2", "n3"} <= {n["Node"] for n in nodes}
    _, services = c.catalog.services()
    assert services["web"] == ["v1"] and services["consul"] == []
    _, rows = c.catalog.service("web")
    assert sorted(r["ServiceID"] for r in rows) == ["web1", "web2"]
    _, rows = c.catalog.service("web", tag="v1")
    assert [r["ServiceID"] for r in rows] == ["web1"]
    _, node = c.catalog.node("n2")
    assert node["Services"]["web1"]["Port"] == 80
    assert c.catalog.node("ghost")[1] is None

    _, passing = c.health.service("web", passing=True)
    assert [e["Service"]["ID"] for e in passing] == ["web1"]
    _, everything = c.health.service("web")
    assert len(everything) == 2
    _, checks = c.health.state("any")
    ids = {(ch["Node"], ch["CheckID"]) for ch in checks}
    assert {("n1", "serfHealth"), ("n2", "web1-ok"), ("n3", "web2-bad")} <= ids
    _, critical = c.health.state("critical")
    assert [ch["CheckID"] for ch in critical] == ["web2-bad"]

    wire = coord(0.002)
    assert c.coordinate.update("n2", wire)
    _, coords = c.coordinate.nodes()
    assert {"Node": "n2", "Segment": "", "Coord": wire} in coords
    dcs = c.coordinate.datacenters()
    assert dcs[0]["Datacenter"] == "dc1" and dcs[0]["AreaID"] == "wan"

    # blocking: nothing changes, so the same index comes back after the wait
    index, _ = c.catalog.nodes()
    again, _ = c.catalog.nodes(index=index, wait="50ms")
    assert again == index

    assert c.catalog.deregister("n3", service_id="web2")
    assert [r["ServiceID"] for r in c.catalog.service("web")[1]] == ["web1"]
    assert c.catalog.deregister("n3")
    assert "n3" not in {n["Node"] for n in c.catalog.nodes()[1]}
    with pytest.raises(consul.ConsulException):
        c.catalog.register("n4", "10.0.0.4", dc="dc2")
    with pytest.raises(consul.ConsulException):
        c.catalog.nodes(dc="dc2")


# =========================================================================== (c) fuzz

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def bodies_strategy(junk: bool) -> st.SearchStrategy[Any]:
    """Register bodies: well-typed values (``junk=False``) exercise the validation and the
    store; with ``junk`` any field may hold any JSON and unknown keys appear."""

    def typed(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        if not junk:
            return strategy
        return st.integers(0, 9).flatmap(lambda i: json_values if i == 0 else strategy)

    def optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
        if not junk:
            fields = {k: v for k, v in fields.items() if k not in ("Nope", "Bogus", "node_meta")}
        return st.fixed_dictionaries({}, optional={k: typed(v) for k, v in fields.items()})

    words = st.sampled_from(["web", "db", "", "a b", "consul-x", "x"]) | st.text(max_size=6)
    upstreams = st.lists(
        optional(
            DestinationName=words,
            DestinationType=st.sampled_from(["", "service", "prepared_query", "bad"]),
            LocalBindPort=st.integers(-1, 70000),
            local_bind_port=st.integers(0, 70000),
            Datacenter=st.sampled_from(["", "dc2"]),
        ),
        max_size=3,
    )
    proxies = optional(
        DestinationServiceName=words,
        destination_service_name=words,
        Mode=st.sampled_from(["", "transparent"]),
        Upstreams=upstreams,
        Expose=optional(Paths=st.lists(optional(Path=words, ListenerPort=st.integers(-1, 70000)))),
        TransparentProxy=optional(OutboundListenerPort=st.integers(0, 70000)),
        Config=st.dictionaries(st.text(max_size=5), json_values, max_size=3),
    )
    services = optional(
        ID=words,
        Service=words,
        Tags=st.lists(words, max_size=3),
        Address=st.sampled_from(["", "0.0.0.0", "::", "10.2.2.2"]),
        Meta=st.dictionaries(words, st.text(max_size=5), max_size=3),
        Port=st.integers(-5, 70000),
        Weights=optional(Passing=st.integers(-2, 70000), Warning=st.integers(-2, 70000)),
        Kind=st.sampled_from(["", "connect-proxy", "mesh-gateway", "ingress-gateway", "odd"]),
        Proxy=proxies,
        Connect=optional(
            Native=st.booleans(), SidecarService=optional(ID=words, Port=st.integers())
        ),
        TaggedAddresses=st.dictionaries(words, optional(Address=words, Port=st.integers(0, 9))),
        EnableTagOverride=st.booleans(),
        SocketPath=words,
        Nope=json_values,
    )
    checks = optional(
        Node=st.sampled_from(["f1", "F1", "other", ""]),
        CheckID=words,
        Name=words,
        Status=st.sampled_from(["passing", "warning", "critical", "", "bogus", "PASSING"]),
        ServiceID=st.sampled_from(["web", "db", "", "zz"]),
        Notes=words,
        Output=words,
        Definition=optional(
            HTTP=words,
            TCP=words,
            Interval=st.sampled_from(["10s", "0", "x", "-1s"]) | st.integers(-10, 10**12),
            TTL=st.sampled_from(["30s", "1h", "bad"]),
            ScriptArgs=st.lists(words, max_size=2),
            Header=st.dictionaries(words, st.lists(words, max_size=2), max_size=2),
        ),
        Nope=json_values,
    )
    body = optional(
        Node=st.sampled_from(["f1", "F1", "f2", ""]) | st.text(max_size=5),
        node=st.sampled_from(["f1", "f3"]),
        Address=st.sampled_from(["10.1.1.1", ""]),
        address=st.sampled_from(["10.1.1.3"]),
        ID=st.sampled_from(
            [
                "",
                "40e4a748-2192-161a-0510-9bf59fe950b5",
                "40e4a748-2192-161a-0510-9bf59fe950bz",
                "x",
            ]
        )
        | st.uuids().map(str),
        Datacenter=st.sampled_from(["", "dc1", "dc2"]),
        TaggedAddresses=st.dictionaries(words, words, max_size=2),
        NodeMeta=st.dictionaries(words, words, max_size=2),
        node_meta=st.dictionaries(words, words, max_size=2),
        Service=services,
        service=services,
        Check=checks,
        Checks=st.lists(checks | st.none(), max_size=3),
        SkipNodeUpdate=st.booleans(),
        PeerName=st.sampled_from(["", "p"]),
        Token=words,
        Locality=optional(Region=words, Zone=words),
        Bogus=json_values,
    )
    if junk:
        return body

    def complete(node: str, b: dict[str, Any]) -> dict[str, Any]:
        drop = ("Node", "node", "Address", "address", "PeerName", "service")
        return {"Node": node, "Address": "10.1.1.1"} | {k: v for k, v in b.items() if k not in drop}

    return st.builds(complete, st.sampled_from(["f1", "F1", "f2"]), body)


bodies = st.one_of(json_values, bodies_strategy(junk=True), bodies_strategy(junk=False))


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[Server]:
    s = Server()
    try:
        s.register(web("base", Tags=["a"]))
        yield s
    finally:
        s.close()


def assert_consul_shaped(status: int, body: bytes) -> None:
    text = body.decode(errors="replace")
    assert status in (200, 400, 404, 500), (status, text)
    assert not TRACEBACK_LIKE.search(text), text


@settings(
    max_examples=300,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
def test_fuzzed_register_bodies(fuzz_server: Server, body: Any) -> None:
    before = fuzz_server.state()
    status, out = fuzz_server.put("/v1/catalog/register", json.dumps(body).encode())
    assert_consul_shaped(status, out)
    if status == 200:
        assert out == b"true"
        node = body.get("Node") if isinstance(body, dict) else None
        if isinstance(node, str) and node:
            s, _, got = fuzz_server.request("GET", "/v1/catalog/node/" + urllib.parse.quote(node))
            assert s == 200 and json.loads(got) is not None
        for path in ("/v1/catalog/services", "/v1/health/state/any", "/v1/catalog/nodes"):
            assert fuzz_server.request("GET", path)[0] == 200
    else:
        assert fuzz_server.state() == before


READ_PATHS = [
    "/v1/catalog/nodes",
    "/v1/catalog/services",
    "/v1/catalog/service/web",
    "/v1/catalog/node/base",
    "/v1/catalog/node-services/base",
    "/v1/health/node/base",
    "/v1/health/checks/web",
    "/v1/health/service/web",
    "/v1/health/state/any",
    "/v1/coordinate/nodes",
    "/v1/coordinate/node/base",
    "/v1/status/leader",
    "/v1/catalog/datacenters",
]
param_values = st.one_of(
    st.text(max_size=10),
    st.sampled_from(["", "1", "0", "true", "_agent", "base", "a:b", "dc1", "dc2", "1ms", "x"]),
)
params = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "near",
                "tag",
                "node-meta",
                "passing",
                "filter",
                "dc",
                "stale",
                "consistent",
                "segment",
                "pretty",
                "ns",
                "cached",
                "wait",
            ]
        ),
        param_values,
    ),
    max_size=5,
)


@settings(
    max_examples=300,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from(READ_PATHS),
    query=params,
    index=st.sampled_from([None, "1", "abc", "-1", "18446744073709551616"]),
)
def test_fuzzed_read_queries(
    fuzz_server: Server, path: str, query: list[tuple[str, str]], index: str | None
) -> None:
    pairs = list(query)
    if index is not None:
        # the first value of a parameter counts: a wait given first keeps a block short
        pairs = [("wait", "1ms"), ("index", index), *pairs]
    qs = urllib.parse.urlencode(pairs)
    status, _, body = fuzz_server.request("GET", f"{path}?{qs}" if qs else path)
    assert_consul_shaped(status, body)
    if status == 200:
        json.loads(body)
    if status == 500:
        assert body in (b"No path to datacenter",), body
