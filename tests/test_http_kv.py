"""/v1/kv, /v1/txn and /v1/session against Consul's behaviour (catalog/http_kv.py).

Three layers:

* in-process: an :class:`catalog.aio.HTTPServer` on 127.0.0.1 (port 0) whose agent holds a
  real :class:`catalog.server.CatalogServer`, driven with raw HTTP from the test thread;
  the server runs on its own event-loop thread so tests can block;
* py-consul, Consul's Python client, against a real ``gossamer agent -dev`` process;
* a hypothesis fuzz of query strings and bodies: no escaped exception, only Consul's
  status codes, and a refused request leaves the store as it was.

Expected texts are Consul's (agent/kvs_endpoint.go, agent/txn_endpoint.go,
agent/session_endpoint.go, agent/consul/session_endpoint.go).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog import commands as C
from catalog import http_kv
from catalog.aio import HTTPServer
from catalog.server import CatalogServer, SessionTimers
from gossamer.cluster import GossamerAgent, cluster, free_port, wait_for
from gossamer.config import AgentConfig

DIR_ENTRY_KEYS = ["LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"]
SESSION_KEYS = [
    "ID",
    "Name",
    "Node",
    "LockDelay",
    "Behavior",
    "TTL",
    "NodeChecks",
    "ServiceChecks",
    "CreateIndex",
    "ModifyIndex",
]
S = 1_000_000_000


# --------------------------------------------------------------------------- harness


class FakeClock:
    """Wall-clock seconds the test moves by hand (CatalogServer's ``clock=``)."""

    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


class FakeAgent:
    """What the endpoints need of the agent: its config and its catalog server."""

    def __init__(self, catalog: CatalogServer) -> None:
        self.config = AgentConfig(node_name="n1", data_dir="/nonexistent")
        self.node_id = "8a7c2f0e-5b1d-4c3e-9f2a-0d6b7e8f9a01"
        self.catalog = catalog


class Harness:
    """An HTTPServer with the KV/txn/session routes and a real CatalogServer on an event
    loop in a thread; node ``n1`` is registered with ``serfHealth`` passing."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.catalog = CatalogServer("dc1", "127.0.0.1:8300", clock=clock or time.time)
        self.agent = FakeAgent(self.catalog)
        self.http = HTTPServer(self.agent, "127.0.0.1", 0)  # type: ignore[arg-type]
        http_kv.register(self.http)
        self.call(self.catalog.start())
        self.call(self.http.start())
        self.port = self.http.bound_port
        self.register_node("n1")

    def call(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def register_node(self, node: str, status: str = "passing", extra: str = "") -> None:
        checks = [{"CheckID": "serfHealth", "Name": "Serf Health Status", "Status": status}]
        if extra:
            checks.append({"CheckID": extra, "Name": extra, "Status": "passing"})
        self.call(self.catalog.write(C.register(0.0, node, "127.0.0.1", checks=checks)))

    def close(self) -> None:
        self.call(self.http.close())
        self.call(self.catalog.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float = 10.0,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            data = body.encode() if isinstance(body, str) else body
            conn.request(method, path, body=data, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        data = None if body is None else json.dumps(body)
        status, _, out = self.request(method, path, data)
        assert status == expect, (status, out)
        return json.loads(out) if out else None

    def snapshot(self, with_index: bool = True) -> bytes:
        """The store's durable state, encoded on the loop thread (no write can interleave).
        ``with_index=False`` leaves out the log index, which a command the store refused
        still consumes (as a Raft entry would)."""

        async def snap() -> bytes:
            s = self.catalog.store.snapshot()
            if not with_index:
                s = {k: v for k, v in s.items() if k != "Index"}
            return bytes(msgpack.packb(s))

        out: bytes = self.call(snap())
        return out

    def session(self, body: Any = None) -> str:
        sid: str = self.json("PUT", "/v1/session/create", body)["ID"]
        return sid


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def hc() -> Iterator[tuple[Harness, FakeClock]]:
    clock = FakeClock()
    harness = Harness(clock)
    try:
        yield harness, clock
    finally:
        harness.close()


def index_of(headers: dict[str, str]) -> int:
    value = int(headers["x-consul-index"])
    assert value > 0
    return value


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --------------------------------------------------------------------------- KV


def test_kv_put_get_shape_and_headers(h: Harness) -> None:
    status, headers, body = h.request("PUT", "/v1/kv/app/config?flags=42", b"hello")
    assert (status, body) == (200, b"true")
    assert headers["content-type"] == "application/json"
    status, headers, body = h.request("GET", "/v1/kv/app/config")
    assert status == 200 and headers["content-type"] == "application/json"
    [ent] = json.loads(body)
    assert list(ent) == DIR_ENTRY_KEYS  # no Session: omitempty
    assert ent["Key"] == "app/config" and ent["Flags"] == 42 and ent["LockIndex"] == 0
    assert base64.b64decode(ent["Value"]) == b"hello"
    assert ent["CreateIndex"] == ent["ModifyIndex"] == index_of(headers)
    assert headers["x-consul-knownleader"] == "true"
    assert headers["x-consul-lastcontact"] == "0"
    # an update keeps CreateIndex, moves ModifyIndex, resets flags to 0 when not given
    assert h.request("PUT", "/v1/kv/app/config", b"")[2] == b"true"
    [ent2] = h.json("GET", "/v1/kv/app/config")
    assert ent2["Value"] is None and ent2["Flags"] == 0
    assert ent2["CreateIndex"] == ent["CreateIndex"] < ent2["ModifyIndex"]


def test_kv_missing_key_is_404_with_index_never_zero(h: Harness) -> None:
    status, headers, body = h.request("GET", "/v1/kv/nope")
    assert (status, body) == (404, b"")
    assert index_of(headers) >= 1
    status, headers, body = h.request("GET", "/v1/kv/nope/?recurse")
    assert (status, body) == (404, b"")
    index_of(headers)
    status, headers, body = h.request("GET", "/v1/kv/nope/?keys")
    assert (status, body) == (404, b"")
    # the key list of the root is [] rather than 404 (KVSGetKeys)
    status, headers, body = h.request("GET", "/v1/kv/?keys")
    assert (status, json.loads(body)) == (200, [])
    index_of(headers)


def test_kv_cas_create_only_and_stale_index(h: Harness) -> None:
    assert h.request("PUT", "/v1/kv/c?cas=0", b"1")[2] == b"true"
    assert h.request("PUT", "/v1/kv/c?cas=0", b"2")[2] == b"false"  # create-only
    [ent] = h.json("GET", "/v1/kv/c")
    mod = ent["ModifyIndex"]
    assert h.request("PUT", f"/v1/kv/c?cas={mod + 100}", b"3")[::2] == (200, b"false")
    assert h.request("PUT", f"/v1/kv/c?cas={mod}&flags=7", b"4")[2] == b"true"
    [ent] = h.json("GET", "/v1/kv/c")
    assert base64.b64decode(ent["Value"]) == b"4" and ent["Flags"] == 7
    # delete with cas: a stale index is false, the right one deletes, a missing key is true
    assert h.request("DELETE", f"/v1/kv/c?cas={mod}")[2] == b"false"
    assert h.request("DELETE", f"/v1/kv/c?cas={ent['ModifyIndex']}")[2] == b"true"
    assert h.request("GET", "/v1/kv/c")[0] == 404
    assert h.request("DELETE", "/v1/kv/c?cas=5")[2] == b"true"
    assert h.request("DELETE", "/v1/kv/c")[2] == b"true"


def test_kv_recurse_is_sorted_and_keys_fold_at_the_separator(h: Harness) -> None:
    for key in ["web/b", "web/a/x", "web/a/y", "web", "web/c/d/e", "web0", "other/z"]:
        assert h.request("PUT", f"/v1/kv/{key}", key.encode())[0] == 200
    status, headers, body = h.request("GET", "/v1/kv/web?recurse")
    assert status == 200
    got = [e["Key"] for e in json.loads(body)]
    assert got == ["web", "web/a/x", "web/a/y", "web/b", "web/c/d/e", "web0"]
    assert index_of(headers) == max(e["ModifyIndex"] for e in json.loads(body))
    assert h.json("GET", "/v1/kv/web/?keys") == ["web/a/x", "web/a/y", "web/b", "web/c/d/e"]
    assert h.json("GET", "/v1/kv/web/?keys&separator=/") == ["web/a/", "web/b", "web/c/"]
    # the historic spelling, and the right spelling winning over it
    assert h.json("GET", "/v1/kv/web/?keys&seperator=/") == ["web/a/", "web/b", "web/c/"]
    # "separator=b" wins over "seperator=/": every "web…" key folds at its first "b"
    assert h.json("GET", "/v1/kv/?keys&seperator=/&separator=b") == ["other/z", "web"]
    assert h.json("GET", "/v1/kv/?keys&separator=/") == ["other/", "web", "web/", "web0"]
    # a recursive delete removes the tree and nothing beside it
    assert h.request("DELETE", "/v1/kv/web/?recurse")[2] == b"true"
    assert h.json("GET", "/v1/kv/?keys") == ["other/z", "web", "web0"]
    # an empty key with recurse deletes everything
    assert h.request("DELETE", "/v1/kv/?recurse")[2] == b"true"
    assert h.json("GET", "/v1/kv/?keys") == []


def test_kv_raw_returns_the_bytes_with_consuls_headers(h: Harness) -> None:
    value = bytes(range(256))
    h.request("PUT", "/v1/kv/bin", value)
    status, headers, body = h.request("GET", "/v1/kv/bin?raw")
    assert (status, body) == (200, value)
    assert headers["content-type"] == "text/plain"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"] == "sandbox"
    index_of(headers)
    h.request("PUT", "/v1/kv/empty", b"")
    assert h.request("GET", "/v1/kv/empty?raw")[::2] == (200, b"")
    # raw applies to a single key only
    status, _, body = h.request("GET", "/v1/kv/bin?raw&recurse")
    assert status == 200 and json.loads(body)[0]["Key"] == "bin"


def test_kv_bad_requests_change_nothing(h: Harness) -> None:
    h.request("PUT", "/v1/kv/keep", b"v")
    before = h.snapshot()
    cases: list[tuple[str, str, bytes | None, int, bytes]] = [
        ("GET", "/v1/kv/", None, 400, b"Missing key name"),
        ("PUT", "/v1/kv/", b"x", 400, b"Missing key name"),
        ("DELETE", "/v1/kv/", None, 400, b"Missing key name"),
        (
            "PUT",
            "/v1/kv/k?cas=1&acquire=s",
            b"x",
            400,
            b"Conflicting flags: acquire=s&cas=1\n",
        ),
        (
            "PUT",
            "/v1/kv/k?acquire=a&release=b",
            b"x",
            400,
            b"Conflicting flags: acquire=a&release=b\n",
        ),
        ("DELETE", "/v1/kv/k?recurse&cas=1", None, 400, b"Conflicting flags: cas=1&recurse=\n"),
        (
            "PUT",
            "/v1/kv/k?flags=abc",
            b"x",
            400,
            b'strconv.ParseUint: parsing "abc": invalid syntax',
        ),
        ("PUT", "/v1/kv/k?flags=-1", b"x", 400, b'strconv.ParseUint: parsing "-1": invalid syntax'),
        (
            "PUT",
            "/v1/kv/k?cas=18446744073709551616",
            b"x",
            400,
            b'strconv.ParseUint: parsing "18446744073709551616": value out of range',
        ),
        ("DELETE", "/v1/kv/k?cas=", None, 400, b'strconv.ParseUint: parsing "": invalid syntax'),
        ("GET", "/v1/kv/k?wait=forever", None, 400, b"Invalid wait time"),
        ("GET", "/v1/kv/k?index=-3", None, 400, b"Invalid index"),
        (
            "GET",
            "/v1/kv/k?stale&consistent",
            None,
            400,
            b"Cannot specify ?stale with ?consistent, conflicting semantics.",
        ),
        ("GET", "/v1/kv/keep?dc=other", None, 500, b"No path to datacenter"),
        ("PUT", "/v1/kv/keep?dc=other", b"x", 500, b"No path to datacenter"),
        ("DELETE", "/v1/kv/keep?dc=other", None, 500, b"No path to datacenter"),
        ("POST", "/v1/kv/keep", b"x", 405, b"method POST not allowed"),
    ]
    for method, path, body, status, text in cases:
        got = h.request(method, path, body)
        assert (got[0], got[2]) == (status, text), (method, path)
        assert "traceback" not in got[2].decode(errors="replace").lower()
    big = b"x" * (512 * 1024 + 1)
    status, _, body = h.request("PUT", "/v1/kv/big", big)
    assert status == 413
    assert body == (
        b"Request body(524289 bytes) too large, max size: 524288 bytes. See "
        b"https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size."
    )
    assert h.request("PUT", "/v1/kv/big", b"x" * 512 * 1024)[2] == b"true"  # at the limit
    h.request("DELETE", "/v1/kv/big")
    after = h.snapshot(with_index=False)
    assert msgpack.unpackb(after)["KV"] == msgpack.unpackb(before)["KV"]
    # the requests refused with 4xx/5xx wrote nothing at all (only the two big writes did)
    assert msgpack.unpackb(h.snapshot())["Index"] == msgpack.unpackb(before)["Index"] + 2


# --------------------------------------------------------------------------- sessions


def test_session_create_defaults_and_shape(h: Harness) -> None:
    status, headers, body = h.request("PUT", "/v1/session/create", b"")  # py-consul: empty body
    assert status == 200 and headers["content-type"] == "application/json"
    created = json.loads(body)
    assert list(created) == ["ID"]
    sid = created["ID"]
    status, headers, body = h.request("GET", f"/v1/session/info/{sid}")
    assert status == 200
    [sess] = json.loads(body)
    assert list(sess) == SESSION_KEYS
    assert sess["ID"] == sid and sess["Node"] == "n1" and sess["Name"] == ""
    assert sess["NodeChecks"] == ["serfHealth"] and sess["ServiceChecks"] is None
    assert sess["LockDelay"] == 15 * S and sess["Behavior"] == "release" and sess["TTL"] == ""
    assert sess["CreateIndex"] == sess["ModifyIndex"] == index_of(headers)


def test_session_create_decodes_like_consul(h: Harness) -> None:
    # py-consul's lower-case keys; "checks": [] empties the node checks
    sid = h.session(
        {
            "name": "lock",
            "node": "n1",
            "checks": [],
            "lockdelay": "0.001s",
            "behavior": "delete",
            "ttl": "20s",
        }
    )
    [sess] = h.json("GET", f"/v1/session/info/{sid}")
    assert sess["Name"] == "lock" and sess["Behavior"] == "delete" and sess["TTL"] == "20s"
    assert sess["NodeChecks"] == [] and sess["LockDelay"] == 1_000_000
    # a small number is seconds, a big one nanoseconds; an unknown field is ignored
    sid = h.session({"LockDelay": 5, "Bogus": 1})
    assert h.json("GET", f"/v1/session/info/{sid}")[0]["LockDelay"] == 5 * S
    sid = h.session({"LockDelay": 2 * S})
    assert h.json("GET", f"/v1/session/info/{sid}")[0]["LockDelay"] == 2 * S
    # deprecated Checks beside the default NodeChecks: bound to both
    h.register_node("n1", extra="app")
    sid = h.session({"Checks": ["app"]})
    assert h.json("GET", f"/v1/session/info/{sid}")[0]["NodeChecks"] == ["app", "serfHealth"]
    sid = h.session({"NodeChecks": ["app"], "ServiceChecks": None})
    assert h.json("GET", f"/v1/session/info/{sid}")[0]["NodeChecks"] == ["app"]
    # the session dies with a check it is bound to
    h.call(
        h.catalog.write(
            C.register(
                0.0,
                "n1",
                "127.0.0.1",
                checks=[{"CheckID": "app", "Name": "app", "Status": "critical"}],
            )
        )
    )
    assert h.json("GET", f"/v1/session/info/{sid}") == []


def test_session_create_errors(h: Harness) -> None:
    h.register_node("sick", status="critical")
    before = h.snapshot()
    cases: list[tuple[str, bytes, int, bytes | None]] = [
        (
            "",
            b'{"TTL": "5s"}',
            500,
            b"Invalid Session TTL '5000000000', must be between [10s=24h0m0s]",
        ),
        (
            "",
            b'{"TTL": "25h"}',
            500,
            b"Invalid Session TTL '90000000000000', must be between [10s=24h0m0s]",
        ),
        ("", b'{"TTL": "x"}', 500, b"Session TTL 'x' invalid: time: invalid duration \"x\""),
        ("", b'{"Behavior": "keep"}', 500, b"Invalid Behavior setting 'keep'"),
        ("", b'{"Node": ""}', 500, b"Must provide Node"),
        (
            "",
            b'{"LockDelay": "soon"}',
            400,
            b'Request decode failed: time: invalid duration "soon"',
        ),
        (
            "",
            b"[1]",
            400,
            b"Request decode failed: json: cannot unmarshal array into Go value "
            b"of type structs.Session",
        ),
        ("", b"{", 400, None),
        ("", b"   ", 400, b"Request decode failed: EOF"),
        ("", b'{"Name": 3}', 400, None),
        ("?dc=dc2", b"", 500, b"No path to datacenter"),
    ]
    for query, body, status, text in cases:
        got = h.request("PUT", f"/v1/session/create{query}", body)
        assert got[0] == status, (body, got)
        if text is not None:
            assert got[2] == text, (body, got)
        else:
            assert got[2].startswith(b"Request decode failed: ")
    assert h.snapshot() == before  # nothing reached the log
    # refused by the store: 500 with its message, the state unchanged
    for body, text in (
        (b'{"Node": "ghost"}', b"Missing node registration"),
        (b'{"Node": "sick"}', b"Check 'serfHealth' is in critical state"),
        (b'{"NodeChecks": ["nope"]}', b"Missing check 'nope' registration"),
    ):
        status, _, out = h.request("PUT", "/v1/session/create", body)
        assert status == 500 and out.startswith(text), out
    assert h.snapshot(with_index=False) == h.snapshot(with_index=False)
    assert msgpack.unpackb(h.snapshot(with_index=False)) == {
        k: v for k, v in msgpack.unpackb(before).items() if k != "Index"
    }


def test_session_info_list_node_renew_destroy(h: Harness) -> None:
    status, headers, body = h.request("GET", "/v1/session/info/unknown")
    assert (status, json.loads(body)) == (200, [])
    index_of(headers)
    assert h.json("GET", "/v1/session/list") == []
    status, _, body = h.request("PUT", "/v1/session/renew/unknown")
    assert (status, body) == (404, b"Session id 'unknown' not found")
    a = h.session({"Name": "a", "TTL": "20s"})
    h.register_node("n2")
    b = h.session({"Node": "n2"})
    listed = h.json("GET", "/v1/session/list")
    assert sorted(s["ID"] for s in listed) == sorted([a, b])
    assert [s["ID"] for s in h.json("GET", "/v1/session/node/n2")] == [b]
    assert [s["ID"] for s in h.json("GET", "/v1/session/node/N1")] == [a]  # case-insensitive
    assert h.json("GET", "/v1/session/node/nobody") == []
    renewed = h.json("PUT", f"/v1/session/renew/{a}")
    assert [s["ID"] for s in renewed] == [a] and renewed[0]["TTL"] == "20s"
    assert list(renewed[0]) == SESSION_KEYS
    # destroying an unknown session writes nothing and is true
    before = h.snapshot()
    assert h.request("PUT", "/v1/session/destroy/unknown")[::2] == (200, b"true")
    assert h.snapshot() == before
    assert h.request("PUT", f"/v1/session/destroy/{a}")[::2] == (200, b"true")
    assert h.json("GET", f"/v1/session/info/{a}") == []
    for method, path, text in (
        ("PUT", "/v1/session/destroy/", b"Missing session"),
        ("PUT", "/v1/session/renew/", b"Missing session"),
        ("GET", "/v1/session/info/", b"Missing session"),
        ("GET", "/v1/session/node/", b"Missing node name"),
    ):
        assert h.request(method, path)[::2] == (400, text), path
    for method, path in (
        ("GET", "/v1/session/list?dc=dc2"),
        ("GET", f"/v1/session/info/{b}?dc=dc2"),
        ("GET", "/v1/session/node/n2?dc=dc2"),
        ("PUT", f"/v1/session/destroy/{b}?dc=dc2"),
        ("PUT", f"/v1/session/renew/{b}?dc=dc2"),
    ):
        assert h.request(method, path)[::2] == (500, b"No path to datacenter"), path
    assert h.request("GET", "/v1/session/create")[0] == 405


# --------------------------------------------------------------------------- locks


def test_lock_acquire_release_and_lock_delay(hc: tuple[Harness, FakeClock]) -> None:
    h, clock = hc
    s1 = h.session({"LockDelay": "0.001s"})
    s2 = h.session()
    assert h.request("PUT", f"/v1/kv/lock?acquire={s1}", b"me")[2] == b"true"
    [ent] = h.json("GET", "/v1/kv/lock")
    assert ent["Session"] == s1 and ent["LockIndex"] == 1
    assert list(ent) == [*DIR_ENTRY_KEYS[:4], "Session", *DIR_ENTRY_KEYS[4:]]
    assert [s["ID"] for s in h.json("GET", "/v1/session/list")] == sorted([s1, s2])
    assert h.request("PUT", f"/v1/kv/lock?acquire={s2}", b"you")[2] == b"false"
    assert h.request("PUT", f"/v1/kv/lock?release={s2}")[2] == b"false"
    assert h.request("PUT", f"/v1/kv/lock?acquire={s1}", b"again")[2] == b"true"  # re-acquire
    assert h.json("GET", "/v1/kv/lock")[0]["LockIndex"] == 1
    assert h.request("PUT", f"/v1/kv/lock?release={s1}")[2] == b"true"
    [ent] = h.json("GET", "/v1/kv/lock")
    assert "Session" not in ent and ent["LockIndex"] == 1
    # a destroyed holder leaves the key locked out for its lock delay (1 ms here)
    assert h.request("PUT", f"/v1/kv/lock?acquire={s1}")[2] == b"true"
    h.request("PUT", f"/v1/session/destroy/{s1}")
    assert "Session" not in h.json("GET", "/v1/kv/lock")[0]
    before = h.snapshot()
    assert h.request("PUT", f"/v1/kv/lock?acquire={s2}")[2] == b"false"
    assert h.snapshot() == before  # refused before the log, like kvsPreApply
    clock.t += 0.002
    assert h.request("PUT", f"/v1/kv/lock?acquire={s2}")[2] == b"true"
    assert h.json("GET", "/v1/kv/lock")[0]["LockIndex"] == 3
    # the default 15 s delay
    h.request("PUT", f"/v1/session/destroy/{s2}")
    s3 = h.session()
    assert h.request("PUT", f"/v1/kv/lock?acquire={s3}")[2] == b"false"
    clock.t += 14.9
    assert h.request("PUT", f"/v1/kv/lock?acquire={s3}")[2] == b"false"
    clock.t += 0.2
    assert h.request("PUT", f"/v1/kv/lock?acquire={s3}")[2] == b"true"


def test_lock_with_an_unknown_session_is_a_server_error(h: Harness) -> None:
    before = h.snapshot(with_index=False)
    status, _, body = h.request("PUT", "/v1/kv/k?acquire=nope", b"x")
    assert (status, body) == (500, b'invalid session "nope"')
    status, _, body = h.request("PUT", "/v1/kv/k?acquire=", b"x")
    assert (status, body) == (500, b"missing session")
    assert h.snapshot(with_index=False) == before
    assert h.request("PUT", "/v1/kv/k?release=nope", b"x")[2] == b"false"


def test_lock_delay_is_capped_at_60s(hc: tuple[Harness, FakeClock]) -> None:
    h, clock = hc
    s1 = h.session({"LockDelay": "10m"})
    assert h.json("GET", f"/v1/session/info/{s1}")[0]["LockDelay"] == 600 * S  # echoed as given
    s2 = h.session()
    assert h.request("PUT", f"/v1/kv/k?acquire={s1}")[2] == b"true"
    h.request("PUT", f"/v1/session/destroy/{s1}")
    clock.t += 61
    assert h.request("PUT", f"/v1/kv/k?acquire={s2}")[2] == b"true"


def test_session_behavior_delete_deletes_held_keys(h: Harness) -> None:
    sid = h.session({"behavior": "delete", "lockdelay": 0})
    keep = h.session()
    assert h.request("PUT", f"/v1/kv/eph/a?acquire={sid}", b"1")[2] == b"true"
    assert h.request("PUT", f"/v1/kv/eph/b?acquire={keep}", b"2")[2] == b"true"
    h.request("PUT", f"/v1/session/destroy/{sid}")
    assert h.request("GET", "/v1/kv/eph/a")[0] == 404
    assert h.json("GET", "/v1/kv/eph/b")[0]["Session"] == keep


def test_session_timers_expire_at_twice_the_ttl() -> None:
    t = SessionTimers()
    t.reset("a", 10.0, now=100.0)
    t.reset("b", 15.0, now=100.0)
    assert t.next_deadline() == 120.0
    assert t.expired(119.9) == []
    t.reset("a", 10.0, now=115.0)  # a renewal pushes a's deadline to 135
    assert t.next_deadline() == 130.0  # b's
    assert t.expired(131.0) == ["b"]
    assert t.expired(134.9) == []
    assert t.expired(135.0) == ["a"]
    assert len(t) == 0 and t.next_deadline() is None
    t.reset("c", 10.0, now=0.0)
    t.cancel("c")
    assert t.expired(1e9) == []


def test_ttl_session_expires_and_its_locks_go(hc: tuple[Harness, FakeClock]) -> None:
    """A session with TTL 10s dies 20s (2 x TTL) after its last renewal; with
    behavior=delete its keys go with it. The clock is the server's injected clock."""
    h, clock = hc
    sid = h.session({"TTL": "10s", "Behavior": "delete", "LockDelay": 0})
    assert h.request("PUT", f"/v1/kv/ttl?acquire={sid}", b"x")[2] == b"true"

    def poke() -> None:
        async def wake() -> None:
            h.catalog._poke()  # the driver rereads its (injected) clock

        h.call(wake())

    clock.t += 15
    assert h.json("PUT", f"/v1/session/renew/{sid}")[0]["ID"] == sid
    clock.t += 15  # 15 s after the renewal: alive
    poke()
    time.sleep(0.05)
    assert h.json("GET", f"/v1/session/info/{sid}") != []
    clock.t += 6  # 21 s after the renewal: expired
    poke()
    wait_for(lambda: h.json("GET", f"/v1/session/info/{sid}") == [], 5.0, what="TTL expiry")
    assert h.request("GET", "/v1/kv/ttl")[0] == 404


# --------------------------------------------------------------------------- txn


def txn_body(*ops: dict[str, Any]) -> str:
    return json.dumps([{"KV": op} for op in ops])


def test_txn_applies_all_and_answers_in_consuls_shape(h: Harness) -> None:
    h.request("PUT", "/v1/kv/t/old", b"o")
    body = txn_body(
        {"Verb": "set", "Key": "t/a", "Value": b64(b"1"), "Flags": 3},
        {"verb": "set", "key": "t/b", "value": b64(b"2")},  # case-insensitive
        {"Verb": "delete", "Key": "t/old"},
        {"Verb": "get", "Key": "t/a"},
    )
    status, headers, out = h.request("PUT", "/v1/txn", body)
    assert status == 200 and headers["content-type"] == "application/json", out
    res = json.loads(out)
    assert list(res) == ["Results", "Errors"] and res["Errors"] is None
    kvs = [r["KV"] for r in res["Results"]]
    assert [list(r) for r in res["Results"]] == [["KV"]] * 3
    assert [k["Key"] for k in kvs] == ["t/a", "t/b", "t/a"]
    assert kvs[0]["Value"] is None and kvs[0]["Flags"] == 3  # values blanked except for get
    assert base64.b64decode(kvs[2]["Value"]) == b"1"
    assert list(kvs[0]) == DIR_ENTRY_KEYS
    assert h.json("GET", "/v1/kv/t/?keys") == ["t/a", "t/b"]
    # get-tree returns the values
    res = h.json("PUT", "/v1/txn", json.loads(txn_body({"Verb": "get-tree", "Key": "t/"})))
    assert [base64.b64decode(r["KV"]["Value"]) for r in res["Results"]] == [b"1", b"2"]
    # a transaction without results has null Results; an empty one too
    assert h.json("PUT", "/v1/txn", [{"KV": {"Verb": "delete", "Key": "t/zz"}}]) == {
        "Results": None,
        "Errors": None,
    }
    assert h.json("PUT", "/v1/txn", []) == {"Results": None, "Errors": None}
    status, _, out = h.request("PUT", "/v1/txn", "null")
    assert (status, json.loads(out)) == (200, {"Results": None, "Errors": None})


def test_txn_failure_is_409_and_applies_nothing(h: Harness) -> None:
    h.request("PUT", "/v1/kv/t/x", b"x")
    [ent] = h.json("GET", "/v1/kv/t/x")
    before = h.snapshot(with_index=False)
    body = txn_body(
        {"Verb": "set", "Key": "t/new", "Value": b64(b"n")},
        {"Verb": "cas", "Key": "t/x", "Value": b64(b"y"), "Index": ent["ModifyIndex"] + 9},
        {"Verb": "delete", "Key": "t/x"},
        {"Verb": "check-not-exists", "Key": "t/x"},
    )
    status, headers, out = h.request("PUT", "/v1/txn", body)
    assert status == 409 and headers["content-type"] == "application/json"
    assert json.loads(out) == {
        "Results": None,
        "Errors": [{"OpIndex": 1, "What": 'failed to set key "t/x", index is stale'}],
    }
    assert h.snapshot(with_index=False) == before  # not half applied
    assert h.request("GET", "/v1/kv/t/new")[0] == 404
    # preCheck errors are reported for every operation and nothing reaches the log
    full = h.snapshot()
    status, _, out = h.request(
        "PUT",
        "/v1/txn",
        txn_body({"Verb": "set", "Key": ""}, {"Verb": "get", "Key": "t/x"}, {"Verb": "get"}),
    )
    assert (status, json.loads(out)) == (
        409,
        {
            "Results": None,
            "Errors": [
                {"OpIndex": 0, "What": "Must provide key"},
                {"OpIndex": 2, "What": "Must provide key"},
            ],
        },
    )
    assert h.snapshot() == full
    status, _, out = h.request("PUT", "/v1/txn", txn_body({"Verb": "nope", "Key": "k"}))
    assert status == 409 and json.loads(out)["Errors"][0]["What"] == 'unknown KV verb "nope"'


def test_txn_lock_and_lock_delay_precheck(hc: tuple[Harness, FakeClock]) -> None:
    h, clock = hc
    sid = h.session()
    res = h.json(
        "PUT", "/v1/txn", json.loads(txn_body({"Verb": "lock", "Key": "L", "Session": sid}))
    )
    assert res["Results"][0]["KV"]["Session"] == sid
    h.request("PUT", f"/v1/session/destroy/{sid}")
    other = h.session()
    status, _, out = h.request(
        "PUT", "/v1/txn", txn_body({"Verb": "lock", "Key": "L", "Session": other})
    )
    assert status == 409
    assert json.loads(out)["Errors"] == [
        {"OpIndex": 0, "What": 'failed to lock key "L" due to lock delay'}
    ]
    clock.t += 16
    status, _, _ = h.request(
        "PUT", "/v1/txn", txn_body({"Verb": "lock", "Key": "L", "Session": other})
    )
    assert status == 200


def test_txn_bad_bodies_are_refused_before_anything_is_written(h: Harness) -> None:
    before = h.snapshot()
    too_many = json.dumps([{"KV": {"Verb": "get", "Key": f"k{i}"}} for i in range(129)])
    cases: list[tuple[bytes | str, int, bytes | None]] = [
        (b"", 400, b"Failed to parse body: EOF"),
        (b"{", 400, None),
        (
            b"{}",
            400,
            b"Failed to parse body: json: cannot unmarshal object into Go value of type api.TxnOps",
        ),
        (
            b"[1]",
            400,
            b"Failed to parse body: json: cannot unmarshal number into Go value of type api.TxnOp",
        ),
        (
            '[{"KV": {"Verb": "set", "Key": "a", "Value": "!!"}}]',
            400,
            b"Failed to parse body: illegal base64 data at input byte 0",
        ),
        (
            '[{"KV": {"Verb": "set", "Key": "a", "Bogus": 1}}]',
            400,
            b'Failed to parse body: json: unknown field "Bogus"',
        ),
        ('[{"KV": {"Verb": "set", "Key": "a", "Flags": -1}}]', 400, None),
        ('[{"KV": {"Verb": "set", "Key": "a", "Index": 1.5}}]', 400, None),
        ('[{"KV": {"Verb": 7, "Key": "a"}}]', 400, None),
        (
            '[{"KV": {"Verb": "set", "Key": "a"}}, {"Node": {"Verb": "set"}}]',
            400,
            b"gossamer supports only KV operations in /v1/txn so far; operation 1 is a Node "
            b"operation",
        ),
        (too_many, 413, b"Transaction contains too many operations (129 > 128)"),
        (
            b"x" * (512 * 1024 + 1),
            413,
            b"Request body(524289 bytes) too large, max size: "
            b"524288 bytes. See https://www.consul.io/docs/agent/config/config-files"
            b"#txn_max_req_len.",
        ),
    ]
    for body, status, text in cases:
        got = h.request("PUT", "/v1/txn", body)
        assert got[0] == status, (body[:80], got)
        if text is not None:
            assert got[2] == text, got
        else:
            assert got[2].startswith(b"Failed to parse body: "), got
    assert h.request("PUT", "/v1/txn?dc=dc2", "[]")[::2] == (500, b"No path to datacenter")
    assert h.request("GET", "/v1/txn")[0] == 405
    assert h.snapshot() == before


# --------------------------------------------------------------------------- blocking


def test_blocking_kv_get_returns_on_a_write_and_on_timeout(h: Harness) -> None:
    h.request("PUT", "/v1/kv/watch/me", b"1")
    _, headers, _ = h.request("GET", "/v1/kv/watch/me")
    idx = index_of(headers)
    out: dict[str, Any] = {}

    def blocked() -> None:
        t0 = time.monotonic()
        out["resp"] = h.request("GET", f"/v1/kv/watch/me?index={idx}&wait=5s", timeout_s=15)
        out["took"] = time.monotonic() - t0

    th = threading.Thread(target=blocked)
    th.start()
    time.sleep(0.2)
    assert "resp" not in out  # still blocked
    h.request("PUT", "/v1/kv/watch/me", b"2")
    th.join(10)
    status, headers, body = out["resp"]
    assert status == 200 and index_of(headers) > idx and out["took"] < 4.0
    assert base64.b64decode(json.loads(body)[0]["Value"]) == b"2"
    # an unrelated write does not wake a watcher, and the wait runs out with the same index
    idx = index_of(headers)
    t0 = time.monotonic()
    h.request("PUT", "/v1/kv/elsewhere", b"x")
    status, headers, _ = h.request("GET", f"/v1/kv/watch/me?index={idx}&wait=50ms")
    took = time.monotonic() - t0
    assert status == 200 and index_of(headers) == idx and 0.05 <= took < 2.0
    # a listing blocks on its prefix, a missing key on its own creation
    _, headers, _ = h.request("GET", "/v1/kv/watch/?recurse")
    lidx = index_of(headers)
    _, headers, _ = h.request("GET", "/v1/kv/watch/new")
    nidx = index_of(headers)

    def blocked_list() -> None:
        out["list"] = h.request("GET", f"/v1/kv/watch/?recurse&index={lidx}&wait=5s")
        out["new"] = h.request("GET", f"/v1/kv/watch/new?index={nidx}&wait=5s")

    th = threading.Thread(target=blocked_list)
    th.start()
    time.sleep(0.2)
    h.request("PUT", "/v1/kv/watch/new", b"n")
    th.join(10)
    assert index_of(out["list"][1]) > lidx and len(json.loads(out["list"][2])) == 2
    assert out["new"][0] == 200


def test_blocking_session_list(h: Harness) -> None:
    _, headers, _ = h.request("GET", "/v1/session/list")
    idx = index_of(headers)
    out: dict[str, Any] = {}
    th = threading.Thread(
        target=lambda: out.update(r=h.request("GET", f"/v1/session/list?index={idx}&wait=5s"))
    )
    th.start()
    time.sleep(0.2)
    sid = h.session()
    th.join(10)
    status, headers, body = out["r"]
    assert status == 200 and index_of(headers) > idx
    assert [s["ID"] for s in json.loads(body)] == [sid]


# --------------------------------------------------------------------------- helpers


def test_go_texts() -> None:
    assert http_kv.go_quote('a"b\\c\n\x00é\u2028') == '"a\\"b\\\\c\\n\\x00é\\u2028"'
    assert http_kv.go_parse_uint("0") == 0
    assert http_kv.go_parse_uint("18446744073709551615") == (1 << 64) - 1
    for text, why in (("", "invalid syntax"), ("+1", "invalid syntax"), ("1_0", "invalid syntax")):
        with pytest.raises(ValueError, match=why):
            http_kv.go_parse_uint(text)
    with pytest.raises(ValueError, match="value out of range"):
        http_kv.go_parse_uint("99999999999999999999x")


# --------------------------------------------------------------------------- fuzz

_ALLOWED_STATUS = {200, 400, 404, 405, 409, 413, 500}
_QUERY_NAMES = [
    "recurse",
    "keys",
    "separator",
    "raw",
    "flags",
    "cas",
    "acquire",
    "release",
    "index",
    "wait",
    "dc",
    "stale",
    "consistent",
]
_query = st.lists(
    st.tuples(
        st.sampled_from(_QUERY_NAMES),
        st.one_of(
            st.just(""),
            st.integers(-5, 1 << 65).map(str),
            st.sampled_from(["dc1", "dc2", "1s", "50ms", "-1", "abc", "%zz", "true"]),
            st.text(max_size=8),
        ),
    ),
    max_size=4,
)
_json_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 64), 1 << 64)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_kv_op = st.fixed_dictionaries(
    {},
    optional={
        "Verb": st.sampled_from([*C.TXN_KV_VERBS, "bogus", ""]) | _json_value,
        "Key": st.sampled_from(["", "a", "a/b", "z"]) | _json_value,
        "Value": st.binary(max_size=8).map(b64) | _json_value,
        "Flags": st.integers(-1, 1 << 64) | _json_value,
        "Index": st.integers(-1, 50) | _json_value,
        "Session": st.text(max_size=4) | _json_value,
    },
)
_txn = st.lists(st.one_of(st.fixed_dictionaries({"KV": _kv_op}), _json_value), max_size=5).map(
    json.dumps
)
_session_body = st.one_of(
    st.just(""),
    st.fixed_dictionaries(
        {},
        optional={
            "Name": _json_value,
            "Node": st.sampled_from(["n1", "ghost", ""]) | _json_value,
            "LockDelay": st.sampled_from(["0.001s", "15s", "x", "1h"]) | _json_value,
            "Behavior": st.sampled_from(["release", "delete", "x"]) | _json_value,
            "TTL": st.sampled_from(["", "0s", "10s", "5s", "x"]) | _json_value,
            "Checks": _json_value,
            "NodeChecks": _json_value,
            "ServiceChecks": _json_value,
        },
    ).map(json.dumps),
    _json_value.map(json.dumps),
    st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
)


class _Escaped(logging.Handler):
    """Collects what the HTTP server logs when a handler raises (it must never)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def fuzz_harness() -> Iterator[tuple[Harness, _Escaped]]:
    harness = Harness()
    escaped = _Escaped()
    logger = logging.getLogger("gossamer.http")
    logger.addHandler(escaped)
    try:
        yield harness, escaped
    finally:
        logger.removeHandler(escaped)
        harness.close()


def _check_response(
    harness: Harness, escaped: _Escaped, method: str, path: str, body: str | None
) -> None:
    before = harness.snapshot()
    status, headers, out = harness.request(method, path, body)
    assert status in _ALLOWED_STATUS, (status, out)
    assert not escaped.records, escaped.records[0].getMessage()
    text = out.decode(errors="replace")
    assert "Traceback" not in text and "Error:" not in text.split(" ", 1)[0], text
    if headers.get("content-type") == "application/json":
        json.loads(out)
    if 400 <= status < 500 and status != 409:
        # refused before the log: nothing at all changed
        assert harness.snapshot() == before, (method, path, body, status, out)
    elif status == 409 or status >= 500:
        # refused by the store (a failed transaction, an invalid session): the command used
        # a log index, as a Raft entry does, and changed nothing else
        after = msgpack.unpackb(harness.snapshot())
        expected = msgpack.unpackb(before)
        del after["Index"], expected["Index"]
        assert after == expected, (method, path, body, status, out)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["GET", "PUT", "DELETE"]),
    key=st.sampled_from(["", "a", "a/b", "a/", "z%20q", "%E2%9C%93"]),
    query=_query,
    body=st.binary(max_size=16),
)
def test_fuzz_kv(
    fuzz_harness: tuple[Harness, _Escaped], method: str, key: str, query: list[Any], body: bytes
) -> None:
    from urllib.parse import urlencode

    harness, escaped = fuzz_harness
    path = f"/v1/kv/{key}"
    if any(name == "index" for name, _ in query):
        # a blocking read would hold the request for Consul's default 5 minutes; the first
        # value of a parameter is the one read, so this bounds every fuzzed wait
        query = [("wait", "10ms"), *query]
    if query:
        path += "?" + urlencode(query)
    _check_response(harness, escaped, method, path, body.decode("latin-1") if body else None)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=_txn, query=st.sampled_from(["", "?dc=dc2", "?stale", "?wait=x"]))
def test_fuzz_txn(fuzz_harness: tuple[Harness, _Escaped], body: str, query: str) -> None:
    harness, escaped = fuzz_harness
    _check_response(harness, escaped, "PUT", f"/v1/txn{query}", body)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=_session_body, query=st.sampled_from(["", "?dc=dc2", "?dc=dc1"]))
def test_fuzz_session_create(fuzz_harness: tuple[Harness, _Escaped], body: str, query: str) -> None:
    harness, escaped = fuzz_harness
    _check_response(harness, escaped, "PUT", f"/v1/session/create{query}", body or None)


# --------------------------------------------------------------------------- py-consul


@pytest.fixture(scope="module")
def dev_agent() -> Iterator[GossamerAgent]:
    with cluster() as c:
        agent = c.gossamer("n1", profile=None, extra=["-dev", f"-server-port={free_port()}"])
        yield agent


@pytest.fixture(scope="module")
def consul_client(dev_agent: GossamerAgent) -> Any:
    consul = pytest.importorskip("consul")
    client = consul.Consul(host="127.0.0.1", port=dev_agent.http_port)

    def node_registered() -> bool:
        # sessions need the agent's node (with serfHealth) in the catalog, which the leader's
        # membership reconcile writes shortly after start
        try:
            sid = client.session.create()
        except consul.ConsulException:
            return False
        client.session.destroy(sid)
        return True

    try:
        wait_for(node_registered, 20.0, 0.1, "the dev agent to register itself")
    except TimeoutError:
        pytest.fail(
            "the dev agent never registered itself in the catalog:\n" + dev_agent.log()[-3000:]
        )
    return client


@pytest.mark.integration
def test_py_consul_kv(consul_client: Any) -> None:
    import consul

    c = consul_client
    assert c.kv.put("pc/foo", "bar") is True
    index, data = c.kv.get("pc/foo")
    assert data["Value"] == b"bar" and int(index) > 0
    assert c.kv.get("pc/missing")[1] is None
    assert c.kv.put("pc/empty", None) is True
    assert c.kv.get("pc/empty")[1]["Value"] is None
    assert c.kv.put("pc/flags", "x", flags=50) is True
    assert c.kv.get("pc/flags")[1]["Flags"] == 50
    # cas
    assert c.kv.put("pc/cas", "1", cas=0) is True
    assert c.kv.put("pc/cas", "2", cas=0) is False
    mod = c.kv.get("pc/cas")[1]["ModifyIndex"]
    assert c.kv.put("pc/cas", "3", cas=mod + 1000) is False
    assert c.kv.put("pc/cas", "4", cas=mod) is True
    mod = c.kv.get("pc/cas")[1]["ModifyIndex"]
    assert c.kv.delete("pc/cas", cas=mod - 1) is False
    assert c.kv.delete("pc/cas", cas=mod) is True
    # recurse and keys
    for k in ("pc/r/b", "pc/r/a/1", "pc/r/a/2", "pc/r/c"):
        c.kv.put(k, k)
    _, entries = c.kv.get("pc/r/", recurse=True)
    assert [e["Key"] for e in entries] == ["pc/r/a/1", "pc/r/a/2", "pc/r/b", "pc/r/c"]
    assert entries[0]["Value"] == b"pc/r/a/1"
    assert c.kv.get("pc/r/", keys=True, separator="/")[1] == ["pc/r/a/", "pc/r/b", "pc/r/c"]
    assert c.kv.delete("pc/r/", recurse=True) is True
    assert c.kv.get("pc/r/", recurse=True)[1] is None
    # a blocking get that times out returns the same index
    index, _ = c.kv.get("pc/foo")
    index2, _ = c.kv.get("pc/foo", index=index, wait="20ms")
    assert index2 == index
    with pytest.raises(consul.ConsulException, match="No path to datacenter"):
        c.kv.get("pc/foo", dc="dc2")


@pytest.mark.integration
def test_py_consul_sessions_and_locks(consul_client: Any) -> None:
    import consul

    c = consul_client
    sid = c.session.create(ttl=20)
    _, info = c.session.info(sid)
    assert info["ID"] == sid and info["TTL"] == "20s"
    renewed = c.session.renew(sid)
    assert renewed["ID"] == sid and renewed["TTL"] == "20s"
    assert sid in [s["ID"] for s in c.session.list()[1]]
    assert sid in [s["ID"] for s in c.session.node("n1")[1]]
    # lock acquire / release
    other = c.session.create(lock_delay=0)
    assert c.kv.put("pc/lock", "me", acquire=sid) is True
    assert c.kv.get("pc/lock")[1]["Session"] == sid
    assert c.kv.put("pc/lock", "you", acquire=other) is False
    assert c.kv.put("pc/lock", "me", release=sid) is True
    assert "Session" not in c.kv.get("pc/lock")[1]
    with pytest.raises(consul.ConsulException):
        c.kv.put("pc/lock", "x", acquire="not-a-session")
    # behavior=delete deletes what the session holds when it is destroyed
    eph = c.session.create(behavior="delete", lock_delay=0)
    assert c.kv.put("pc/eph", "x", acquire=eph) is True
    assert c.session.destroy(eph) is True
    assert c.kv.get("pc/eph")[1] is None
    assert c.session.destroy(sid) is True
    assert c.session.info(sid)[1] is None
    with pytest.raises(consul.NotFound):
        c.session.renew(sid)
    with pytest.raises(consul.ConsulException):
        c.session.create(dc="dc2")
    c.session.destroy(other)


@pytest.mark.integration
def test_py_consul_txn(consul_client: Any) -> None:
    c = consul_client
    res = c.txn.put(
        [
            {"KV": {"Verb": "set", "Key": "pc/txn/a", "Value": b64(b"1")}},
            {"KV": {"Verb": "set", "Key": "pc/txn/b", "Value": b64(b"2")}},
            {"KV": {"Verb": "get", "Key": "pc/txn/a"}},
        ]
    )
    assert res["Errors"] is None
    assert [r["KV"]["Key"] for r in res["Results"]] == ["pc/txn/a", "pc/txn/b", "pc/txn/a"]
    assert base64.b64decode(res["Results"][2]["KV"]["Value"]) == b"1"
    assert c.kv.get("pc/txn/b")[1]["Value"] == b"2"
