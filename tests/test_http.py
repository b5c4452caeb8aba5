"""The HTTP API server over real sockets on 127.0.0.1 with a fake agent behind it: Consul's
shapes and errors, HTTP/1.1 edge cases, and fuzzed requests that must never crash the
server or reach the agent."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog import aio as http
from gossamer.config import AgentConfig
from swim.coordinate import Coordinate
from swim.events import KeyOp, KeyOperationCompleted, Member, MemberStatus

K1 = base64.b64encode(bytes(range(16))).decode()


def member(name: str, status: MemberStatus = MemberStatus.ALIVE) -> Member:
    return Member(name, "127.0.0.1", 8301, {"role": "node", "dc": "dc1"}, status, 1, 5, 2, 2, 5, 5)


class FakeAgent:
    def __init__(self) -> None:
        self.config = AgentConfig(node_name="me", data_dir="/tmp/x")
        self.node_id = "11111111-2222-3333-4444-555555555555"
        self.calls: list[tuple[Any, ...]] = []
        self.key_result = KeyOperationCompleted(1, 2, 2, 0, {}, {K1: 2}, {K1: 2})
        self.events: list[dict[str, Any]] = []
        self.new_event = asyncio.Event()

    def lan_members(self) -> list[Member]:
        return [member("me"), member("other", MemberStatus.FAILED)]

    def local_member(self) -> Member:
        return member("me")

    def stats(self) -> dict[str, dict[str, str]]:
        return {"serf_lan": {"members": "2"}}

    def lan_coordinate(self) -> Coordinate | None:
        return Coordinate.origin(8)

    def lan_coordinates(self) -> dict[str, Coordinate]:
        return {"me": Coordinate.origin(8)}

    async def join_lan(self, address: str) -> tuple[int, str | None]:
        self.calls.append(("join", address))
        if address.startswith("bad"):
            return 0, "1 error occurred:\n\t* Failed to join bad: refused\n\n"
        return 1, None

    async def leave(self) -> str | None:
        self.calls.append(("leave",))
        return None

    async def force_leave(self, node: str, prune: bool) -> str | None:
        self.calls.append(("force-leave", node, prune))
        return None

    async def keyring(self, op: KeyOp, key: bytes, relay_factor: int) -> KeyOperationCompleted:
        self.calls.append(("keyring", op, key, relay_factor))
        return self.key_result

    async def fire_event(
        self, name: str, payload: bytes, node: str = "", service: str = "", tag: str = ""
    ) -> tuple[dict[str, Any] | None, str | None]:
        self.calls.append(("event", name, payload))
        if not name:
            return None, "User event name cannot be blank"
        ev = {
            "ID": str(uuid.uuid4()),
            "Name": name,
            "Payload": payload,
            "NodeFilter": node,
            "ServiceFilter": service,
            "TagFilter": tag,
            "Version": 1,
            "LTime": 0,
        }
        self.events.append(ev)
        self.new_event.set()
        return ev, None

    async def wait_event(self, timeout_s: float) -> None:
        self.new_event = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.new_event.wait(), timeout_s)

    def event_list(self, name: str = "") -> list[dict[str, Any]]:
        return [e for e in self.events if not name or e["Name"] == name]


class Server:
    """An HTTPServer on its own event loop thread, so tests can use blocking sockets."""

    def __init__(self) -> None:
        import threading

        self.agent = FakeAgent()
        self.loop = asyncio.new_event_loop()
        self.srv = http.HTTPServer(self.agent, "127.0.0.1", 0)  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.srv.start(), self.loop).result(10)
        self.port = self.srv.bound_port

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.srv.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def raw(self, data: bytes, timeout_s: float = 5.0) -> bytes:
        """Send bytes, read until the server closes or goes quiet."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            out = b""
            try:
                while chunk := s.recv(65536):
                    out += chunk
            except TimeoutError:
                pass
            return out

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.close()


def test_members_and_self_use_consul_field_names(server: Server) -> None:
    status, headers, body = server.request("GET", "/v1/agent/members")
    assert status == 200 and headers["content-type"] == "application/json"
    assert headers["x-consul-default-acl-policy"] == "allow"
    ms = json.loads(body)
    assert [m["Name"] for m in ms] == ["me", "other"]
    assert ms[1]["Status"] == 4
    assert set(ms[0]) == {
        "Name",
        "Addr",
        "Port",
        "Tags",
        "Status",
        "ProtocolMin",
        "ProtocolMax",
        "ProtocolCur",
        "DelegateMin",
        "DelegateMax",
        "DelegateCur",
    }
    _, _, body = server.request("GET", "/v1/agent/self")
    me = json.loads(body)
    assert set(me) == {"Member", "xDS", "Stats", "Config", "Coord", "DebugConfig", "Meta"}
    assert me["Member"] == ms[0]
    assert set(me["Coord"]) == {"Vec", "Error", "Adjustment", "Height"}
    _, _, body = server.request("GET", "/v1/agent/members?wan=1")
    assert json.loads(body) == []
    _, _, body = server.request("GET", "/v1/agent/members?pretty")
    assert body.startswith(b"[\n  {")


def test_unknown_path_is_404_and_wrong_method_is_405_with_allow(server: Server) -> None:
    status, _, body = server.request("GET", "/v1/nope")
    assert (status, body) == (404, b"404 page not found\n")
    status, headers, body = server.request("DELETE", "/v1/agent/join/x")
    assert status == 405 and headers["allow"] == "PUT" and body == b"method DELETE not allowed"
    status, headers, _ = server.request("OPTIONS", "/v1/operator/keyring")
    assert status == 200 and headers["allow"] == "GET,POST,PUT,DELETE"
    assert server.agent.calls == []


def test_join_passes_the_decoded_address_and_reports_errors(server: Server) -> None:
    assert server.request("PUT", "/v1/agent/join/%5B::1%5D:8301")[0] == 200
    assert server.agent.calls == [("join", "[::1]:8301")]
    status, _, body = server.request("PUT", "/v1/agent/join/bad:1")
    assert status == 500 and b"Failed to join bad" in body
    status, _, body = server.request("PUT", "/v1/agent/join/127.0.0.1?wan=1")
    assert (status, body) == (500, b"Must be a server to join WAN cluster")


def test_force_leave_prune_flag(server: Server) -> None:
    assert server.request("PUT", "/v1/agent/force-leave/other?prune")[0] == 200
    assert server.agent.calls == [("force-leave", "other", True)]
    assert server.request("PUT", "/v1/agent/force-leave/")[0] == 400


def test_keyring_validates_input_before_touching_the_cluster(server: Server) -> None:
    bad = [
        ("POST", "/v1/operator/keyring", b'{"Key": "not base64!"}'),
        ("POST", "/v1/operator/keyring", b'{"Key": "' + base64.b64encode(b"short") + b'"}'),
        ("POST", "/v1/operator/keyring", b'{"Key": 5}'),
        ("POST", "/v1/operator/keyring", b"[1, 2"),
        ("GET", "/v1/operator/keyring?relay-factor=x", None),
        ("GET", "/v1/operator/keyring?relay-factor=6", None),
        ("PUT", "/v1/operator/keyring?local-only=1", json.dumps({"Key": K1}).encode()),
    ]
    for method, path, body in bad:
        status, _, text = server.request(method, path, body)
        assert status == 400, (method, path, text)
    assert server.agent.calls == []


def test_keyring_ops_map_to_methods_and_lowercase_keys_are_accepted(server: Server) -> None:
    for method, op in (("POST", KeyOp.INSTALL), ("PUT", KeyOp.USE), ("DELETE", KeyOp.REMOVE)):
        status, _, body = server.request(
            method, "/v1/operator/keyring?relay-factor=2", json.dumps({"key": K1}).encode()
        )
        assert (status, body) == (200, b"null")
        assert server.agent.calls[-1] == ("keyring", op, bytes(range(16)), 2)
    status, _, body = server.request("GET", "/v1/operator/keyring")
    assert status == 200
    assert json.loads(body) == [
        {
            "WAN": False,
            "Datacenter": "dc1",
            "Segment": "",
            "Messages": {},
            "Keys": {K1: 2},
            "PrimaryKeys": {K1: 2},
            "NumNodes": 2,
        }
    ]


def test_keyring_failures_are_consuls_multierror(server: Server) -> None:
    server.agent.key_result = KeyOperationCompleted(
        1,
        3,
        2,
        1,
        {"b": "Requested key is not in the keyring"},
        {},
        {},
        "1/3 nodes reported failure",
    )
    status, _, body = server.request(
        "PUT", "/v1/operator/keyring", json.dumps({"Key": K1}).encode()
    )
    assert status == 500
    assert body.decode() == (
        "2 errors occurred:\n\t* dc1 (LAN) error: 1/3 nodes reported failure\n"
        "\t* b: Requested key is not in the keyring\n\n"
    )


def test_event_fire_and_list(server: Server) -> None:
    status, _, body = server.request("PUT", "/v1/event/fire/deploy?node=web", b"v1")
    assert status == 200
    ev = json.loads(body)
    assert ev["Name"] == "deploy" and base64.b64decode(ev["Payload"]) == b"v1"
    assert ev["NodeFilter"] == "web"
    status, headers, body = server.request("GET", "/v1/event/list?name=deploy")
    assert status == 200 and int(headers["x-consul-index"]) > 1
    assert [e["ID"] for e in json.loads(body)] == [ev["ID"]]
    status, _, _ = server.request("PUT", "/v1/event/fire/x?dc=elsewhere", b"")
    assert status == 500


def test_event_list_blocks_until_a_new_event_or_the_wait(server: Server) -> None:
    server.request("PUT", "/v1/event/fire/deploy", b"v1")
    _, headers, _ = server.request("GET", "/v1/event/list")
    index = headers["x-consul-index"]
    # nothing new: the wait runs out and the same index comes back
    status, headers, body = server.request("GET", f"/v1/event/list?index={index}&wait=100ms")
    assert status == 200 and headers["x-consul-index"] == index
    # a new event answers a long wait at once
    got: list[tuple[int, dict[str, str], bytes]] = []
    t = threading.Thread(
        target=lambda: got.append(server.request("GET", f"/v1/event/list?index={index}&wait=30s"))
    )
    t.start()
    for _ in range(100):  # bounded: let the request park before firing
        if server.srv.stats["requests"] >= 4:
            break
        threading.Event().wait(0.01)
    server.request("PUT", "/v1/event/fire/second", b"")
    t.join(10)
    assert got and got[0][1]["x-consul-index"] != index
    assert [e["Name"] for e in json.loads(got[0][2])] == ["deploy", "second"]
    status, _, body = server.request("GET", "/v1/event/list?index=x")
    assert (status, body) == (400, b"Invalid index")


def test_members_filter_is_go_bexpr(server: Server) -> None:
    status, _, body = server.request("GET", "/v1/agent/members?filter=Status%20%3D%3D%204")
    assert status == 200 and [m["Name"] for m in json.loads(body)] == ["other"]
    status, _, body = server.request("GET", '/v1/agent/members?filter=Tags.role%20%3D%3D%20"node"')
    assert status == 200 and len(json.loads(body)) == 2
    status, _, body = server.request("GET", "/v1/agent/members?filter=Status%20%3D%3D")
    assert status == 400 and body


def test_keep_alive_and_pipelining(server: Server) -> None:
    two = (
        b"GET /v1/agent/members HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /v1/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    out = server.raw(two)
    assert out.count(b"HTTP/1.1 200 OK") == 1 and out.count(b"HTTP/1.1 404 Not Found") == 1


def test_malformed_requests_get_400_and_oversized_ones_413_or_431(server: Server) -> None:
    assert server.raw(b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    huge_head = b"GET /v1/agent/members HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70000 + b"\r\n\r\n"
    assert server.raw(huge_head).startswith(b"HTTP/1.1 431 ")
    big = http.BODY_BYTES_MAX + 1
    head = f"PUT /v1/event/fire/x HTTP/1.1\r\nHost: x\r\nContent-Length: {big}\r\n\r\n".encode()
    assert server.raw(head + b"\0" * big).startswith(b"HTTP/1.1 413 ")
    assert server.agent.calls == []
    assert server.request("GET", "/v1/agent/members")[0] == 200


def test_a_slow_client_is_timed_out(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "READ_TIMEOUT_S", 0.2)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"PUT /v1/event/fire/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert out.startswith(b"HTTP/1.1 408 ")


VALID = [
    b"GET /v1/agent/members HTTP/1.1\r\nHost: x\r\n\r\n",
    b'PUT /v1/operator/keyring HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\n\r\n{"Key": "AA"}',
    b"PUT /v1/event/fire/n?node=a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2\r\nhi\r\n0\r\n\r\n",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    base = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 2))
        i = draw(st.integers(0, max(0, len(base) - 1)))
        if op == 0 and base:
            base[i] = draw(st.integers(0, 255))
        elif op == 1:
            base[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del base[i : i + draw(st.integers(1, 8))]
    return bytes(base)


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.close()


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.one_of(st.binary(max_size=300), mutated()))
def test_fuzzed_requests_get_well_formed_answers_and_never_reach_the_agent_unvalidated(
    fuzz_server: Server, data: bytes
) -> None:
    out = fuzz_server.raw(data, timeout_s=2.0)
    if out:
        assert out.startswith(b"HTTP/1.1 "), out[:80]
        code = int(out[9:12])
        assert 100 <= code < 600
        assert b"Traceback" not in out
    for call in fuzz_server.agent.calls:
        if call[0] == "keyring":
            assert len(call[2]) in (0, 16, 24, 32)
    fuzz_server.agent.calls.clear()
    assert fuzz_server.request("GET", "/v1/agent/members")[0] == 200
