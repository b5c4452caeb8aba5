"""Server RPC without processes: the message codec (federation/rpc.py) round-trips and
raises only RPCError on any bytes; the bootstrap decision (federation/bootstrap.py) follows
Consul's maybeBootstrap; and the routing table (gossamer/rpc.py) sends exactly the
server endpoints to servers."""

from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.aio import Request
from federation import rpc
from federation.bootstrap import alive_servers, bootstrap_plan, server_meta
from gossamer.rpc import call_timeout, is_server_path
from swim.events import Member, MemberStatus

TEXT = st.text(max_size=30)
PAIRS = st.lists(st.tuples(TEXT, TEXT), max_size=5).map(tuple)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | TEXT | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
HOPS = st.integers(0, rpc.HOPS_MAX)


@st.composite
def messages(draw: st.DrawFn) -> rpc.Message:
    kind = draw(st.sampled_from(["freq", "fresp", "areq", "aresp", "qreq", "qresp"]))
    if kind == "freq":
        return rpc.ForwardRequest(
            draw(st.sampled_from(["GET", "PUT", "DELETE", "POST"])),
            "/v1/" + draw(TEXT),
            draw(PAIRS),
            draw(PAIRS),
            draw(st.binary(max_size=64)),
            draw(TEXT),
            draw(HOPS),
        )
    if kind == "fresp":
        return rpc.ForwardResponse(draw(st.integers(100, 599)), draw(PAIRS), draw(st.binary()))
    if kind == "areq":
        return rpc.ApplyRequest(draw(st.dictionaries(TEXT, VALUES, max_size=4)), draw(HOPS))
    if kind == "aresp":
        return rpc.ApplyResponse(draw(VALUES), draw(TEXT), draw(TEXT), draw(VALUES))
    if kind == "qreq":
        return rpc.QueryRequest(
            "q" + draw(TEXT), tuple(draw(st.lists(VALUES, max_size=3))), draw(HOPS)
        )
    return rpc.QueryResponse(draw(st.integers(0, (1 << 64) - 1)), draw(VALUES), draw(TEXT))


@settings(max_examples=300, deadline=None)
@given(messages())
def test_round_trip(m: rpc.Message) -> None:
    assert rpc.decode(rpc.encode(m)) == m


SAMPLES = [
    rpc.encode(
        rpc.ForwardRequest(
            "PUT", "/v1/kv/a", (("cas", "0"), ("dc", "dc1")), (("x", "y"),), b"v", "c1", 1
        )
    ),
    rpc.encode(rpc.ForwardResponse(200, (("X-Consul-Index", "7"),), b"true")),
    rpc.encode(rpc.ApplyRequest({"Op": "kv", "Key": "k", "Value": b"v"}, 1)),
    rpc.encode(rpc.ApplyResponse(None, "op 0: stale", "txn", [[0, "stale"]])),
    rpc.encode(rpc.QueryRequest("node_state", ("c1",), 1)),
    rpc.encode(rpc.QueryResponse(9, [{}, {}], "")),
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        if op == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            del b[rng.randrange(len(b)) :]
        elif op == 2:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        elif b:
            b[rng.randrange(len(b))] = rng.choice([0xDC, 0xDD, 0xDE, 0xDF, 0xC4, 0xC6, 0xDB, 0xC1])
    return bytes(b)


@settings(max_examples=1500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_rpc_error(data: bytes) -> None:
    try:
        m = rpc.decode(data)
    except rpc.RPCError:
        return
    assert rpc.decode(rpc.encode(m)) == m


@pytest.mark.parametrize("seed", range(6))
def test_mutated_traffic_raises_only_rpc_error(seed: int) -> None:
    rng = random.Random(seed)
    failed = 0
    for _ in range(2000):
        data = mutate(rng, rng.choice(SAMPLES))
        try:
            m = rpc.decode(data)
        except rpc.RPCError:
            failed += 1
            continue
        assert rpc.decode(rpc.encode(m)) == m
    assert failed > 0  # the mutations do reach the error paths


def test_shape_errors_and_limits() -> None:
    for raw, text in (
        ([2, 1], "unsupported RPC version"),
        ([1, 1, "GET", "/p", [], [], b"", "n", rpc.HOPS_MAX + 1], "hops"),
        ([1, 1, "G" * 17, "/p", [], [], b"", "n", 0], "method"),
        ([1, 1, "GET", "", [], [], b"", "n", 0], "path"),
        ([1, 1, "GET", "/p", [["a"]], [], b"", "n", 0], "query"),
        ([1, 2, 99, [], b""], "status"),
        ([1, 3, ["not", "a", "map"], 0], "command"),
        ([1, 5, "q", [0] * 17, 0], "args"),
        ([1, 9], "unknown message kind"),
        ({"a": 1}, "expected an array"),
    ):
        with pytest.raises(rpc.RPCError, match=text):
            rpc.decode(msgpack.packb(raw, use_bin_type=True))
    with pytest.raises(rpc.RPCError, match="over"):
        rpc.decode(b"\x00" * (rpc.MESSAGE_BYTES_MAX + 1))
    with pytest.raises(TypeError):
        rpc.encode(object())  # type: ignore[arg-type]


# ---------------------------------------------------------------------- bootstrap


def member(
    name: str,
    role: str = "consul",
    dc: str = "dc1",
    port: str = "8300",
    expect: str | None = "3",
    status: MemberStatus = MemberStatus.ALIVE,
    addr: str = "127.0.0.1",
) -> Member:
    tags = {"role": role, "dc": dc, "port": port, "id": f"id-{name}"}
    if expect is not None:
        tags["expect"] = expect
    return Member(name, addr, 8301, tags, status, 2, 5, 5, 2, 5, 5)


def test_server_meta_reads_consul_tags() -> None:
    s = server_meta(member("s1", port="8305"))
    assert s is not None and (s.id, s.address, s.expect) == ("id-s1", "127.0.0.1:8305", 3)
    v6 = server_meta(member("s2", addr="::1"))
    assert v6 is not None and v6.address == "[::1]:8300"
    assert server_meta(member("c1", role="node")) is None
    for bad in ("", "0", "70000", "x"):
        assert server_meta(member("s1", port=bad)) is None
    assert server_meta(member("s1", expect="-1")) is None


def test_only_alive_servers_of_our_datacenter_count() -> None:
    members = [
        member("s3"),
        member("s1"),
        member("s2", status=MemberStatus.FAILED),
        member("x1", dc="dc2"),
        member("c1", role="node"),
    ]
    assert [s.name for s in alive_servers(members, "dc1")] == ["s1", "s3"]


def test_bootstrap_waits_for_the_expected_servers_then_agrees_on_them() -> None:
    two = [member("s1"), member("s2")]
    plan = bootstrap_plan(two, "dc1", 3, "id-s1")
    assert not plan.ready and "waiting for 3 servers, 2 seen" in plan.reason
    three = [*two, member("s3")]
    plans = [bootstrap_plan(list(reversed(three)), "dc1", 3, f"id-s{i}") for i in (1, 2, 3)]
    assert all(p.ready for p in plans)
    # every server computes the same configuration, whatever order gossip listed them in
    assert len({tuple(s.id for s in p.servers) for p in plans}) == 1


def test_bootstrap_refuses_conflicting_expect_and_unseen_self() -> None:
    plan = bootstrap_plan([member("s1"), member("s2", expect="5"), member("s3")], "dc1", 3, "id-s1")
    assert plan.conflict and not plan.ready
    assert plan.reason == (
        "Member s2 has a conflicting expect value. All nodes should expect the same number."
    )
    plan = bootstrap_plan([member("s2"), member("s3"), member("s4")], "dc1", 3, "id-s1")
    assert not plan.ready and "own member list" in plan.reason


# ---------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    ("path", "server"),
    [
        ("/v1/kv/a/b", True),
        ("/v1/txn", True),
        ("/v1/session/create", True),
        ("/v1/catalog/nodes", True),
        ("/v1/health/service/web", True),
        ("/v1/coordinate/nodes", True),
        ("/v1/status/leader", True),
        ("/v1/operator/raft/configuration", True),
        ("/v1/operator/usage", True),
        ("/v1/txnx", False),
        ("/v1/agent/self", False),
        ("/v1/agent/service/register", False),
        ("/v1/event/fire/x", False),
        ("/v1/operator/keyring", False),
        ("/", False),
    ],
)
def test_server_paths(path: str, server: bool) -> None:
    assert is_server_path(path) is server


def test_forwarded_blocking_reads_may_take_their_whole_wait() -> None:
    def req(q: dict[str, str], method: str = "GET") -> Request:
        return Request(method, "/v1/kv/a", q, {})

    assert call_timeout(req({})) == 30.0
    assert call_timeout(req({"index": "5"})) == pytest.approx(300 * 17 / 16 + 15)
    assert call_timeout(req({"index": "5", "wait": "20s"})) == pytest.approx(20 * 17 / 16 + 15)
    assert call_timeout(req({"index": "5", "wait": "1h"})) == pytest.approx(600 * 17 / 16 + 15)
    assert call_timeout(req({"index": "5", "wait": "bogus"})) == pytest.approx(300 * 17 / 16 + 15)
    assert call_timeout(req({"index": "5"}, "PUT")) == 30.0
