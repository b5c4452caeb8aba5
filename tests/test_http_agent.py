"""The /v1/agent service, check, maintenance, metrics and reload endpoints over real
sockets on 127.0.0.1: an HTTPServer on port 0 whose agent holds a real CatalogServer and a
real LocalAgent, driven by py-consul and by raw requests (Consul's agent_endpoint.go)."""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import consul
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog import http_agent
from catalog.aio import HTTPServer, Request
from catalog.checks import SchedulerConfig
from catalog.localagent import LocalAgent
from catalog.server import CatalogServer
from gossamer.config import AgentConfig

Check = consul.Check
T = TypeVar("T")
NODE = "n1"
NODE_ID = "11111111-2222-3333-4444-555555555555"


class FakeAgent:
    """What the handlers reach as ``srv.agent``: config, a catalog server, ``local``."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.node_id = NODE_ID
        self.catalog = CatalogServer("dc1", "127.0.0.1:8300")
        self.local = LocalAgent(
            config,
            NODE_ID,
            "127.0.0.1",
            lambda: self.catalog,
            rng=random.Random(9),
            scheduler_config=SchedulerConfig(min_interval_s=0.1),
        )


class Server:
    """The HTTP server and the agent on an event loop in a thread."""

    def __init__(self, enable_script_checks: bool = False) -> None:
        cfg = AgentConfig(
            node_name=NODE,
            data_dir="/tmp/unused",
            server=True,
            dev=True,
            enable_script_checks=enable_script_checks,
        )
        self.agent = FakeAgent(cfg)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.srv = HTTPServer(self.agent, "127.0.0.1", 0)  # type: ignore[arg-type]
        http_agent.register(self.srv)

        async def start() -> None:
            await self.agent.catalog.start()
            await self.agent.local.start()
            await self.srv.start()

        self.call(start())
        self.port = self.srv.bound_port
        self.c = consul.Consul(host="127.0.0.1", port=self.port)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(15)

    def on_loop(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        return self.call(run())

    def close(self) -> None:
        self.c.http.session.close()  # no kept-alive connections left for close() to cancel

        async def stop() -> None:
            await self.srv.close()
            await self.agent.local.close()
            await self.agent.catalog.close()

        self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body))
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            conn.request(method, path, body=data, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def catalog_service(self, sid: str) -> dict[str, Any] | None:
        return self.on_loop(lambda: self.agent.catalog.store.node_service(NODE, sid))

    def catalog_check(self, cid: str) -> dict[str, Any] | None:
        return self.on_loop(lambda: self.agent.catalog.store.check(NODE, cid))

    def store_index(self) -> int:
        return self.on_loop(lambda: self.agent.catalog.store.index)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.close()


def eventually(cond: Callable[[], bool], limit_s: float = 5.0) -> bool:
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# --------------------------------------------------------------------------- py-consul


def test_py_consul_service_with_ttl_check_goes_critical_after_its_ttl(server: Server) -> None:
    c = server.c
    assert c.agent.service.register("foo", check=Check.ttl("100ms")) is True
    # Consul's handler syncs before answering: the catalog has it already
    assert server.catalog_service("foo") is not None
    assert server.catalog_check("service:foo") is not None
    assert c.agent.check.ttl_pass("service:foo", notes="ok") is True
    assert c.agent.checks()["service:foo"]["Status"] == "passing"
    t0 = time.monotonic()
    assert eventually(lambda: c.agent.checks()["service:foo"]["Status"] == "critical")
    assert time.monotonic() - t0 < 3.0
    out = c.agent.checks()["service:foo"]["Output"]
    assert out == "TTL expired (last output before timeout follows): ok"
    # a status change reaches the catalog by itself
    assert eventually(lambda: (server.catalog_check("service:foo") or {})["Status"] == "critical")


def test_py_consul_agent_checks_flow(server: Server) -> None:
    """py-consul's test_agent_checks, without the parts that need a real Consul."""
    c = server.c

    def status(cid: str) -> tuple[str, str]:
        ch = c.agent.checks()[cid]
        return ch["Status"], ch["Output"]

    c.agent.check.register("check", Check.ttl("1s"), notes="foo")
    assert c.agent.checks()["check"]["Notes"] == "foo"
    assert c.agent.check.deregister("check") is True
    assert c.agent.checks() == {}
    assert c.agent.check.register("ttl_check", Check.ttl("100ms")) is True
    assert c.agent.check.ttl_warn("ttl_check") is True
    assert status("ttl_check")[0] == "warning"
    assert c.agent.check.ttl_warn("ttl_check", notes="its not quite right") is True
    assert status("ttl_check") == ("warning", "its not quite right")
    assert c.agent.check.ttl_fail("ttl_check", notes="something went boink!") is True
    assert status("ttl_check") == ("critical", "something went boink!")
    assert c.agent.check.ttl_pass("ttl_check", notes="all hunky dory!") is True
    assert status("ttl_check") == ("passing", "all hunky dory!")
    assert eventually(lambda: status("ttl_check")[0] == "critical")
    assert c.agent.check.deregister("ttl_check") is True
    assert eventually(lambda: server.catalog_check("ttl_check") is None)
    # a check naming an unknown service: 404, which py-consul turns into False
    assert c.agent.check.register("foo", Check.ttl("100ms"), service_id="foo1") is False
    assert c.agent.checks() == {}


def test_py_consul_service_shapes_and_multi_check_ids(server: Server) -> None:
    c = server.c
    assert c.agent.service.register("foo", address="10.10.10.1", port=8080, tags=["a"]) is True
    svc = c.agent.services()["foo"]
    assert svc == {
        "ID": "foo",
        "Service": "foo",
        "Tags": ["a"],
        "Meta": {},
        "Port": 8080,
        "Address": "10.10.10.1",
        "TaggedAddresses": {
            "lan_ipv4": {"Address": "10.10.10.1", "Port": 8080},
            "wan_ipv4": {"Address": "10.10.10.1", "Port": 8080},
        },
        "Weights": {"Passing": 1, "Warning": 1},
        "EnableTagOverride": False,
        "Datacenter": "dc1",
    }
    tagged = {"lan": {"address": "10.10.10.1", "port": 8080}, "wan": {"address": "192.168.1.1"}}
    c.agent.service.register("foo_tagged", tagged_addresses=tagged, enable_tag_override=True)
    s = c.agent.services()["foo_tagged"]
    assert s["TaggedAddresses"] == {
        "lan": {"Address": "10.10.10.1", "Port": 8080},
        "wan": {"Address": "192.168.1.1", "Port": 0},
    }
    assert s["EnableTagOverride"] is True
    url = f"http://127.0.0.1:{server.port}/v1/agent/services"
    c.agent.service.register(
        "foo1",
        check=Check.http(url, "1s"),
        extra_checks=[Check.http(url, "2s"), Check.ttl("10s")],
    )
    ids = sorted(k for k in c.agent.checks() if k.startswith("service:foo1"))
    assert ids == ["service:foo1:1", "service:foo1:2", "service:foo1:3"]
    assert c.agent.checks()["service:foo1:1"]["Interval"] == "1s"
    assert c.agent.service.deregister("foo") is True
    assert "foo" not in c.agent.services()
    assert server.catalog_service("foo") is None


def test_http_check_probes_the_agent_itself(server: Server) -> None:
    c = server.c
    url = f"http://127.0.0.1:{server.port}/v1/agent/checks"
    c.agent.service.register("web", check=Check.http(url, "100ms"))
    assert eventually(lambda: c.agent.checks()["service:web"]["Status"] == "passing")
    out = c.agent.checks()["service:web"]["Output"]
    assert out.startswith(f"HTTP GET {url}: 200 OK Output: {{")
    missing = f"http://127.0.0.1:{server.port}/nope"
    c.agent.check.register("gone", Check.http(missing, "100ms"))
    assert eventually(lambda: c.agent.checks()["gone"]["Output"] != "")
    assert c.agent.checks()["gone"]["Output"] == (
        f"HTTP GET {missing}: 404 Not Found Output: 404 page not found\n"
    )
    assert eventually(lambda: (server.catalog_check("gone") or {}).get("Status") == "critical")


def test_py_consul_maintenance(server: Server) -> None:
    c = server.c
    c.agent.service.register("foo", check=Check.ttl("100ms"))
    c.agent.service.maintenance("foo", "true", "test")
    checks = c.agent.checks()
    assert checks["_service_maintenance:foo"]["Notes"] == "test"
    assert checks["_service_maintenance:foo"]["Status"] == "critical"
    assert server.catalog_check("_service_maintenance:foo") is not None
    c.agent.service.maintenance("foo", "false")
    assert "_service_maintenance:foo" not in c.agent.checks()
    assert server.catalog_check("_service_maintenance:foo") is None
    c.agent.maintenance("true", "test")
    assert c.agent.checks()["_node_maintenance"]["Notes"] == "test"
    c.agent.maintenance(False)
    assert "_node_maintenance" not in c.agent.checks()
    status, _, body = server.request("PUT", "/v1/agent/service/maintenance/nope?enable=true")
    assert (status, body) == (404, b'No service registered with ID "nope"')
    status, _, body = server.request("PUT", "/v1/agent/maintenance")
    assert (status, body) == (400, b"Missing value for enable")
    status, _, body = server.request("PUT", "/v1/agent/maintenance?enable=maybe")
    assert (status, body) == (400, b'Invalid value for enable: "maybe"')
    status, _, body = server.request("PUT", "/v1/agent/service/maintenance/?enable=true")
    assert (status, body) == (400, b"Missing service ID")


def test_replace_existing_checks(server: Server) -> None:
    c = server.c
    c.agent.service.register("web", check=Check.ttl("10s"), extra_checks=[Check.ttl("10s")])
    c.agent.check.register("extra", Check.ttl("10s"), service_id="web")
    assert len(c.agent.checks()) == 3
    c.agent.service.register("web", check=Check.ttl("10s"), replace_existing_checks=True)
    assert list(c.agent.checks()) == ["service:web"]
    assert eventually(lambda: server.catalog_check("extra") is None)


def test_script_checks_need_enable_script_checks() -> None:
    s = Server(enable_script_checks=True)
    try:
        c = s.c
        script = Check.script([sys.executable, "-c", "print('fine')"], "100ms")
        assert c.agent.check.register("script_check", script) is True
        assert eventually(lambda: c.agent.checks()["script_check"]["Status"] == "passing")
        assert c.agent.checks()["script_check"]["Output"] == "fine\n"
    finally:
        s.close()


# --------------------------------------------------------------------------- raw HTTP


def test_single_service_with_content_hash_and_hash_blocking(server: Server) -> None:
    server.c.agent.service.register("web", port=80)
    status, headers, body = server.request("GET", "/v1/agent/service/web")
    assert status == 200
    svc = json.loads(body)
    assert list(svc) == [
        "ID",
        "Service",
        "Tags",
        "Meta",
        "Port",
        "Address",
        "Weights",
        "EnableTagOverride",
        "ContentHash",
        "Datacenter",
    ]
    h = svc["ContentHash"]
    assert headers["x-consul-contenthash"] == h
    status, _, body = server.request("GET", "/v1/agent/service/nope")
    assert (status, body) == (404, b"unknown service ID: nope")
    # a stale hash answers at once; the current one blocks until the wait runs out
    t0 = time.monotonic()
    status, _, _ = server.request("GET", "/v1/agent/service/web?hash=stale&wait=5s")
    assert status == 200 and time.monotonic() - t0 < 2.0
    t0 = time.monotonic()
    status, _, body = server.request("GET", f"/v1/agent/service/web?hash={h}&wait=300ms")
    assert status == 200 and json.loads(body)["ContentHash"] == h
    assert 0.25 < time.monotonic() - t0 < 5.0

    # ... or until the service changes
    def change() -> None:
        time.sleep(0.2)
        server.c.agent.service.register("web", port=81)

    t = threading.Thread(target=change)
    t.start()
    t0 = time.monotonic()
    status, _, body = server.request("GET", f"/v1/agent/service/web?hash={h}&wait=10s")
    t.join(10)
    assert status == 200 and json.loads(body)["Port"] == 81
    assert time.monotonic() - t0 < 5.0
    status, _, body = server.request("GET", f"/v1/agent/service/web?hash={h}&wait=bad")
    assert (status, body) == (400, b"Invalid wait time")


def test_agent_checks_shape(server: Server) -> None:
    server.c.agent.service.register("web", tags=["t"], check=Check.ttl("10s"))
    status, _, body = server.request("GET", "/v1/agent/checks")
    assert status == 200
    chk = json.loads(body)["service:web"]
    assert chk == {
        "Node": NODE,
        "CheckID": "service:web",
        "Name": "Service 'web' check",
        "Status": "critical",
        "Notes": "",
        "Output": "",
        "ServiceID": "web",
        "ServiceName": "web",
        "ServiceTags": ["t"],
        "Type": "ttl",
        "Interval": "",
        "Timeout": "",
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": 0,
        "ModifyIndex": 0,
    }


BAD_REGISTRATIONS = [
    ({"Port": 80}, 400, "Missing service name"),
    ({"Name": "x", "Address": "0.0.0.0"}, 400, "Invalid service address"),
    (
        {"Name": "x", "Weights": {"Passing": 0}},
        400,
        "Invalid Weights: Passing must be greater than 0",
    ),
    (
        {"Name": "x", "Meta": {"consul-x": "1"}},
        400,
        "Invalid Service Meta: Couldn't load metadata pair ('consul-x', '1'): "
        "Key prefix 'consul-' is reserved for internal use",
    ),
    (
        {"Name": "x", "Check": {"HTTP": "http://x"}},
        400,
        "Invalid check: Interval must be > 0 "
        "for Script, HTTP, H2PING, TCP, UDP or OSService checks",
    ),
    ({"Name": "x", "Checks": [{}]}, 400, "Invalid check: TTL must be > 0 for TTL checks"),
    (
        {"Name": "x", "Check": {"TTL": "1s", "Status": "maintenance"}},
        400,
        "Status for checks must 'passing', 'warning', 'critical'",
    ),
    (
        {"Name": "x", "Kind": "connect-proxy"},
        400,
        "Validation failed: 2 errors occurred:\n"
        "\t* Proxy.DestinationServiceName must be non-empty for Connect proxy services\n"
        "\t* Port or SocketPath must be set for a Connect proxy\n\n",
    ),
    ({"Name": 3}, 400, "Request decode failed: Name: expected a string"),
    (
        {"Name": "x", "Check": {"TTL": "soon"}},
        400,
        'Request decode failed: time: invalid duration "soon"',
    ),
    (
        {"Name": "x", "Check": {"Args": ["true"], "Interval": "1s"}},
        500,
        "Scripts are disabled on this agent from remote calls; to enable, configure "
        "'enable_script_checks' to true",
    ),
    (
        {"Name": "x", "Check": {"GRPC": "h:1", "Interval": "1s"}},
        400,
        "Invalid check: grpc checks are not supported by gossamer yet",
    ),
]


@pytest.mark.parametrize(("body", "code", "message"), BAD_REGISTRATIONS)
def test_rejected_registrations_change_nothing(
    server: Server, body: dict[str, Any], code: int, message: str
) -> None:
    before = server.store_index()
    status, headers, text = server.request("PUT", "/v1/agent/service/register", body)
    assert (status, text.decode()) == (code, message)
    assert headers["content-type"].startswith("text/plain")
    assert server.c.agent.services() == {} and server.c.agent.checks() == {}
    assert server.store_index() == before


def test_sidecar_service_is_refused_clearly(server: Server) -> None:
    status, _, body = server.request(
        "PUT",
        "/v1/agent/service/register",
        {"name": "web", "connect": {"sidecar_service": {}}},
    )
    assert status == 400 and body.startswith(b"Invalid SidecarService: ")
    assert server.c.agent.services() == {}


def test_snake_case_and_lower_case_bodies(server: Server) -> None:
    status, _, _ = server.request(
        "PUT",
        "/v1/agent/service/register",
        {
            "name": "web",
            "id": "web-1",
            "enable_tag_override": True,
            "meta": {"v": "1"},
            "checks": [{"ttl": "10s", "deregister_critical_service_after": "10m"}],
            "weights": {"passing": 5, "warning": 2},
        },
    )
    assert status == 200
    svc = server.c.agent.services()["web-1"]
    assert svc["EnableTagOverride"] is True and svc["Meta"] == {"v": "1"}
    assert svc["Weights"] == {"Passing": 5, "Warning": 2}
    assert list(server.c.agent.checks()) == ["service:web-1"]


BAD_CHECKS = [
    ({"TTL": "1s"}, 400, "Missing check name"),
    ({"Name": "c", "TTL": "1s", "Status": "fine"}, 400, "Bad check status"),
    ({"Name": "c"}, 400, "Invalid check: TTL must be > 0 for TTL checks"),
    ({"Name": "c", "TTL": "1s", "ServiceID": "nope"}, 404, 'ServiceID "nope" does not exist'),
    ({"Name": "c", "TTL": 1.5e400}, 400, None),
]


@pytest.mark.parametrize(("body", "code", "message"), BAD_CHECKS)
def test_rejected_check_registrations(
    server: Server, body: dict[str, Any], code: int, message: str | None
) -> None:
    raw = json.dumps(body).replace("Infinity", "1e400").encode()
    status, _, text = server.request("PUT", "/v1/agent/check/register", raw)
    assert status == code
    if message is not None:
        assert text.decode() == message
    assert server.c.agent.checks() == {}


def test_check_update_and_ttl_errors(server: Server) -> None:
    server.c.agent.check.register("t", Check.ttl("10s"))
    status, _, _ = server.request(
        "PUT", "/v1/agent/check/update/t", {"Status": "warning", "Output": "o"}
    )
    assert status == 200
    assert server.c.agent.checks()["t"]["Status"] == "warning"
    assert server.c.agent.checks()["t"]["Output"] == "o"
    status, _, body = server.request("PUT", "/v1/agent/check/update/t", {"Status": "bad"})
    assert (status, body) == (400, b"Invalid check status: 'bad'")
    status, _, body = server.request("PUT", "/v1/agent/check/pass/nope")
    assert (status, body) == (500, b'CheckID "nope" does not have associated TTL')
    status, _, body = server.request("PUT", "/v1/agent/check/update/t", b"{nope")
    assert status == 400 and body.startswith(b"Request decode failed")
    status, headers, _ = server.request("GET", "/v1/agent/check/pass/t")
    assert status == 405 and headers["allow"] == "PUT"


def test_filters_on_services_and_checks(server: Server) -> None:
    server.c.agent.service.register("web", tags=["x"], check=Check.ttl("10s"))
    server.c.agent.service.register("db")
    assert set(server.c.agent.services(filter_expr='Service == "web"')) == {"web"}
    assert set(server.c.agent.services(filter_expr='"x" in Tags')) == {"web"}
    assert set(server.c.agent.checks(filter_expr="Status == `critical`")) == {"service:web"}
    status, _, _ = server.request("GET", "/v1/agent/services?filter=Service%20%3D%3D")
    assert status == 400


def test_metrics_json_and_prometheus(server: Server) -> None:
    server.c.agent.service.register("web", check=Check.ttl("10s"))
    m = server.c.agent.metrics()
    assert set(m) == {"Timestamp", "Gauges", "Points", "Counters", "Samples"}
    assert m["Timestamp"].endswith(" +0000 UTC")
    gauges = {(g["Name"], tuple(sorted(g["Labels"].items()))): g["Value"] for g in m["Gauges"]}
    assert gauges[("consul.agent.local.services", ())] == 1
    assert gauges[("consul.agent.local.checks", (("status", "critical"),))] == 1
    text = server.c.agent.metrics(format_prometheus=True)
    assert "consul_agent_local_services 1.0" in text
    assert 'consul_agent_local_checks{status="critical"} 1.0' in text
    assert "# TYPE consul_agent_anti_entropy_sync_total counter" in text
    assert "# TYPE consul_agent_anti_entropy_sync_ms summary" in text
    status, headers, _ = server.request(
        "GET", "/v1/agent/metrics", headers={"Accept": "application/openmetrics-text"}
    )
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")


def test_reload_answers_like_a_successful_reload(server: Server) -> None:
    assert server.c.agent.reload() is True
    status, headers, _ = server.request("GET", "/v1/agent/reload")
    assert status == 405 and headers["allow"] == "PUT"


def test_deregister_unknown_service_and_check_is_fine(server: Server) -> None:
    assert server.c.agent.service.deregister("never-was") is True
    assert server.c.agent.check.deregister("never-was") is True


# --------------------------------------------------------------------------- fuzz

KEYS = st.sampled_from(
    [
        "Name",
        "name",
        "ID",
        "Address",
        "Port",
        "Tags",
        "Meta",
        "Weights",
        "Check",
        "Checks",
        "TaggedAddresses",
        "tagged_addresses",
        "Kind",
        "Proxy",
        "Connect",
        "Locality",
        "TTL",
        "ttl",
        "Interval",
        "HTTP",
        "TCP",
        "Args",
        "Status",
        "ServiceID",
        "Timeout",
        "Header",
        "SuccessBeforePassing",
        "FailuresBeforeCritical",
        "DeregisterCriticalServiceAfter",
        "Passing",
        "Warning",
        "sidecar_service",
        "Native",
        "x",
    ]
)
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "web", "10s", "100ms", "-1s", "0.0.0.0", "passing", "bogus", "h:1"]),
    st.text(max_size=8),
)
JSON = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=6)),
    max_leaves=20,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(KEYS, JSON, max_size=8), path=st.sampled_from(["service", "check"]))
def test_fuzzed_registrations_never_crash(server: Server, body: dict[str, Any], path: str) -> None:
    async def call() -> tuple[int, dict[str, str], bytes]:
        req = Request("PUT", f"/v1/agent/{path}/register", {}, {}, json.dumps(body).encode())
        return await server.srv.handle(req)

    def snapshot() -> tuple[Any, Any]:
        la = server.agent.local
        return dict(la.services()), dict(la.checks())

    before = server.on_loop(snapshot)
    status, _, text = server.call(call())
    assert status in (200, 400, 404, 500), (status, text)
    if status == 500:
        assert text.startswith(b"Scripts are disabled"), text
    if status != 200:
        assert server.on_loop(snapshot) == before


def test_acl_endpoints_say_acls_are_disabled(server: Server) -> None:
    # py-consul's ACLDisabled: Consul answers 401 with ACLs off (agent/acl_endpoint.go)
    for method, path in (
        ("PUT", "/v1/agent/token/default"),
        ("GET", "/v1/acl/tokens"),
        ("PUT", "/v1/acl/bootstrap"),
    ):
        status, _, body = server.request(method, path)
        assert (status, body) == (401, b"ACL support disabled"), path


def test_monitor_checks_the_log_level_first(server: Server) -> None:
    status, _, body = server.request("GET", "/v1/agent/monitor?loglevel=not-a-real-level")
    assert (status, body) == (400, b"Unknown log level: not-a-real-level")
    status, _, body = server.request("GET", "/v1/agent/monitor?loglevel=debug")
    assert status == 500 and b"not supported" in body
