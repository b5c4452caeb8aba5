"""Tests for swim.messages: Serf 0.9.4's own messages inside memberlist user messages.

Byte-exact where shared/reference/memberlist-wire.md §11 has serf's bytes (V3's join, V6's
leave, V7's push/pull user state), Go struct key order (§1, §7.2) everywhere else, then
hypothesis round trips for every message.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swim import codec
from swim import messages as sm
from swim.codec import DecodeError
from swim.messages import (
    ConflictMember,
    Join,
    KeyRequest,
    KeyResponse,
    Leave,
    PushPullState,
    Query,
    QueryResponse,
    Relay,
    SerfType,
    UserEvent,
    decode_filter,
    decode_serf,
    decode_tags,
    encode_filter_nodes,
    encode_filter_tag,
    encode_tags,
)

PROPS = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

LOCAL = b"\x7f\x00\x00\x01"
VSN = bytes.fromhex("010502020505")
U64 = 2**64 - 1

# §11: the user-message parts of V3 and V6 (after memberlist's 08 byte)
V3_JOIN = bytes.fromhex("0182a54c54696d6501a44e6f6465a462657461")
V6_LEAVE = bytes.fromhex("0083a54c54696d6506a44e6f6465a462657461a55072756e65c2")
V7 = bytes.fromhex(
    "0982a4416c676f00a3427566da00d2000d0c22a5e44d1a37c34a397943a6cc9c00acaacc2923670a9d3074"
    "ca3029e3a69900268748052143460ea93f0000045895c4cd983072dc604cf3c64d00524dca5c54f52f1029"
    "396fd8941145460c292761da9421254667185250dec8a1d3ecc382521631960130caca1c37a602141020a0"
    "c05843aa8ad8e148870995344a039852cb760e37010080e9ddcbb7afdfbf80030b1e4cb8b0e1c388132b5e"
    "ccb8b1e3c790234b9e4cb9b2e5cb884bb9855b66e546337472b6692a670e245551ea50ccb3392eabac74ea"
    "cc69edd067d38b000202"
)


def wire_keys(body: bytes) -> list[bytes]:
    up = msgpack.Unpacker(raw=True, strict_map_key=False)
    up.feed(body)
    m = up.unpack()
    assert isinstance(m, dict)
    return list(m)


def sample_query(**kw: Any) -> Query:
    fields: dict[str, Any] = {
        "ltime": 3,
        "id": 77,
        "addr": LOCAL,
        "port": 7946,
        "source_node": "alpha",
        "filters": (),
        "flags": sm.QUERY_FLAG_ACK,
        "relay_factor": 0,
        "timeout_ns": 2_000_000_000,
        "name": "deploy",
        "payload": b"v1",
    }
    fields.update(kw)
    return Query(**fields)


# --------------------------------------------------------------------------- captured bytes


def test_v3_serf_join_byte_for_byte() -> None:
    assert decode_serf(V3_JOIN) == Join(ltime=1, node="beta")
    assert Join(1, "beta").encode() == V3_JOIN


def test_v6_serf_leave_byte_for_byte() -> None:
    assert decode_serf(V6_LEAVE) == Leave(ltime=6, node="beta", prune=False)
    assert Leave(6, "beta").encode() == V6_LEAVE


def test_v7_user_state_layout() -> None:
    pp = codec.open_stream(V7, None)
    assert isinstance(pp, codec.PushPull)
    state = pp.user_state
    assert len(state) == 588
    decoded = decode_serf(state)
    expected = PushPullState(
        ltime=1,
        status_ltimes={"beta": 0},
        left_members=(),
        event_ltime=1,
        events=(None,) * 512,
        query_ltime=1,
    )
    assert decoded == expected
    assert expected.encode() == state
    # the layout of §7.4: type 02, a 6-entry map, EventBuffer slots as dc 0200 + c0 x 512
    head = b"\x02\x86\xaaEventLTime\x01\xa6Events\xdc\x02\x00"
    assert state.startswith(head)
    assert state[len(head) : len(head) + 512] == b"\xc0" * 512
    tail = b"\xa5LTime\x01\xabLeftMembers\x90\xaaQueryLTime\x01\xacStatusLTimes\x81\xa4beta\x00"
    assert state[len(head) + 512 :] == tail


def test_user_state_with_events_left_members_and_statuses() -> None:
    st_ = PushPullState(
        ltime=9,
        status_ltimes={"b": 2, "a": 7},
        left_members=("gone",),
        event_ltime=4,
        events=(None, (3, (("deploy", b"v1"), ("deploy", b""))), None),
        query_ltime=2,
    )
    raw = st_.encode()
    assert decode_serf(raw) == st_
    m = msgpack.unpackb(raw[1:], raw=True)
    assert m[b"Events"][1] == {
        b"Events": [{b"Name": b"deploy", b"Payload": b"v1"}, {b"Name": b"deploy", b"Payload": b""}],
        b"LTime": 3,
    }
    assert wire_keys(codec.pack(m[b"Events"][1])) == [b"Events", b"LTime"]
    assert list(m[b"StatusLTimes"]) == [b"a", b"b"]  # sorted for determinism
    assert m[b"LeftMembers"] == [b"gone"]


# --------------------------------------------------------------------------- Go struct order


@pytest.mark.parametrize(
    ("msg", "keys"),
    [
        (Leave(1, "n", True), ["LTime", "Node", "Prune"]),
        (Join(1, "n"), ["LTime", "Node"]),
        (UserEvent(1, "e", b"p", True), ["CC", "LTime", "Name", "Payload"]),
        (
            sample_query(),
            [
                "Addr",
                "Filters",
                "Flags",
                "ID",
                "LTime",
                "Name",
                "Payload",
                "Port",
                "RelayFactor",
                "SourceNode",
                "Timeout",
            ],
        ),
        (QueryResponse(1, 2, "n", 0, b"x"), ["Flags", "From", "ID", "LTime", "Payload"]),
        (
            ConflictMember("n", LOCAL, 1, {"a": "b"}, 1, VSN),
            [
                "Addr",
                "DelegateCur",
                "DelegateMax",
                "DelegateMin",
                "Name",
                "Port",
                "ProtocolCur",
                "ProtocolMax",
                "ProtocolMin",
                "Status",
                "Tags",
            ],
        ),
        (KeyRequest(bytes(16)), ["Key"]),
        (KeyResponse(True, "", ("k",), "k"), ["Keys", "Message", "PrimaryKey", "Result"]),
        (
            PushPullState(1, {}, (), 1, (), 1),
            ["EventLTime", "Events", "LTime", "LeftMembers", "QueryLTime", "StatusLTimes"],
        ),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, list) else "",
)
def test_struct_keys_in_go_order(msg: sm.SerfMessage, keys: list[str]) -> None:
    raw = msg.encode()
    assert raw[0] == msg.TYPE
    assert wire_keys(raw[1:]) == [k.encode() for k in keys]


def test_query_encoding_details() -> None:
    raw = sample_query().encode()
    assert b"\xa7Filters\xc0" in raw  # nil [][]byte
    assert b"\xa7Timeout\xce\x77\x35\x94\x00" in raw  # int64 nanoseconds
    assert b"\xa4Addr\xa4\x7f\x00\x00\x01" in raw
    assert b"\xa4Port\xcd\x1f\x0a" in raw
    f = (encode_filter_nodes(("a", "b")), encode_filter_tag("role", "^web$"))
    raw = sample_query(filters=f).encode()
    assert b"\xa7Filters\x92\xa6\x00\x92\xa1a\xa1b" in raw
    assert decode_serf(raw) == sample_query(filters=f)
    # a negative timeout is a valid Go time.Duration
    assert decode_serf(sample_query(timeout_ns=-5).encode()) == sample_query(timeout_ns=-5)


def test_nil_and_empty_fields() -> None:
    assert b"\xa7Payload\xc0" in QueryResponse(1, 2, "n", 1, b"").encode()
    assert decode_serf(QueryResponse(1, 2, "n", 1, b"").encode()) == QueryResponse(
        1, 2, "n", 1, b""
    )
    assert b"\xa4Keys\xc0" in KeyResponse(False, "no", (), "").encode()
    assert decode_serf(KeyResponse(False, "no", (), "").encode()) == KeyResponse(
        False, "no", (), ""
    )


def test_nil_body_is_a_zero_struct_as_in_go() -> None:
    # serf answers _serf_conflict about a member it does not know with 06 c0 (a nil *Member);
    # go-msgpack 0.5.5 decodes nil into a struct as its zero value, so Serf counts the vote.
    zero = decode_serf(b"\x06\xc0")
    assert zero == ConflictMember("", b"", 0, {}, 0, bytes(6))
    assert decode_serf(b"\x00\xc0") == Leave(0, "", False)
    assert decode_serf(b"\x07\xc0") == KeyRequest(b"")
    assert decode_serf(b"\x02\xc0") == PushPullState(0, {}, (), 0, (), 0)


def test_conflict_member_round_trip_and_vsn_fields() -> None:
    m = ConflictMember("beta", LOCAL, 7947, {"role": "db"}, 1, VSN)
    raw = m.encode()
    assert b"\xabProtocolCur\x02\xabProtocolMax\x05\xabProtocolMin\x01" in raw
    assert b"\xabDelegateCur\x05\xabDelegateMax\x05\xabDelegateMin\x02" in raw
    assert b"\xa4Tags\x81\xa4role\xa2db" in raw
    assert decode_serf(raw) == m


def test_ltime_is_uint64() -> None:
    assert decode_serf(Join(U64, "n").encode()) == Join(U64, "n")
    for body in ({"LTime": -1}, {"LTime": 1.0}, {"LTime": b"1"}, {"LTime": True}):
        with pytest.raises(DecodeError):
            decode_serf(b"\x01" + codec.pack(body))
    with pytest.raises(OverflowError):  # encoding more than 64 bits is the caller's bug
        Join(U64 + 1, "n").encode()


# --------------------------------------------------------------------------- tags


def test_decode_tags_magic_and_role() -> None:
    assert decode_tags(bytes.fromhex("ff82a4726f6c65a3776562a26463a27831")) == {
        "role": "web",
        "dc": "x1",
    }
    assert decode_tags(b"") == {"role": ""}  # Go: backwards-compatibility mode
    assert decode_tags(b"web") == {"role": "web"}
    assert decode_tags(b"\xfe\x81") == {"role": "\udcfe\udc81"}  # arbitrary bytes kept
    assert decode_tags(b"\x80\xff") == {"role": "\udc80\udcff"}
    assert decode_tags(b"\xff") == {}  # Go logs the decode error and returns no tags
    assert decode_tags(b"\xff\xc0") == {}
    assert decode_tags(b"\xff\x80") == {}
    assert decode_tags(b"\xff\x92\x01\x02") == {}
    assert decode_tags(b"\xff\x81\xa1a\x01") == {}
    assert decode_tags(b"\xff\x81\xa1a\xa1b\xff\xff") == {"a": "b"}  # trailing bytes ignored


def test_encode_tags() -> None:
    assert encode_tags({}) == b"\xff\x80"
    assert encode_tags({"role": "web", "dc": "x1"}) == bytes.fromhex(
        "ff82a26463a27831a4726f6c65a3776562"
    )  # keys sorted (Go's map order is random; any order decodes the same)
    long = {"k" * 40: "v" * 300}
    raw = encode_tags(long)
    assert raw[1:5] == b"\x81\xda\x00\x28" and b"\xd9" not in raw[:5]
    assert decode_tags(raw) == long


# --------------------------------------------------------------------------- filters


def test_filters_round_trip_and_errors() -> None:
    assert encode_filter_nodes(("a", "bb")) == b"\x00\x92\xa1a\xa2bb"
    assert decode_filter(encode_filter_nodes(("a", "bb"))) == ("nodes", ("a", "bb"))
    assert decode_filter(encode_filter_nodes(())) == ("nodes", ())
    assert encode_filter_tag("role", "^web") == b"\x01\x82\xa4Expr\xa4^web\xa3Tag\xa4role"
    assert decode_filter(encode_filter_tag("role", "^web")) == ("tag", ("role", "^web"))
    assert decode_filter(b"\x00\xc0") == ("nodes", ())
    for bad in (b"", b"\x02\x90", b"\x00", b"\x00\x91\x01", b"\x00\x81\xa1a\xa1b", b"\x01\x90"):
        with pytest.raises(DecodeError):
            decode_filter(bad)


# --------------------------------------------------------------------------- relay


def test_relay_encoding() -> None:
    inner = QueryResponse(1, 2, "n", 0, b"x").encode()
    relay = Relay(LOCAL, 7946, "alpha", inner)
    raw = relay.encode()
    assert raw[0] == SerfType.RELAY
    header = b"\x82\xa8DestAddr\x83\xa2IP\xa4\x7f\x00\x00\x01\xa4Port\xcd\x1f\x0a\xa4Zone\xa0"
    assert raw[1:].startswith(header + b"\xa8DestName\xa5alpha")
    assert raw.endswith(inner)
    assert decode_serf(raw) == relay
    v6 = Relay(bytes(15) + b"\x01", 1, "", inner)
    assert decode_serf(v6.encode()) == v6


@pytest.mark.parametrize(
    "header",
    [
        None,
        [],
        {"DestAddr": None},
        {"DestAddr": {"IP": b"\x01\x02\x03", "Port": 1}},
        {"DestAddr": {"IP": LOCAL, "Port": 0}},
        {"DestAddr": {"IP": LOCAL, "Port": 65536}},
        {"DestAddr": {"IP": LOCAL, "Port": "1"}},
        {"DestAddr": {"IP": LOCAL, "Port": 1}, "DestName": 5},
    ],
)
def test_relay_rejects_bad_headers(header: Any) -> None:
    with pytest.raises(DecodeError):
        decode_serf(b"\x09" + codec.pack(header) + b"\x01\x80")


def test_relay_needs_an_inner_message() -> None:
    with pytest.raises(DecodeError, match="nothing to relay"):
        decode_serf(Relay(LOCAL, 1, "n", b"").encode())
    with pytest.raises(DecodeError):
        decode_serf(b"\x09\x82\xa8DestAddr")  # truncated header


# --------------------------------------------------------------------------- decode errors


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x0a\x80",  # unknown type
        b"\xff",
        b"\x00",  # missing body
        b"\x00\x90",  # array, not a map
        b"\x00\x81\xa4Node\x01",
        b"\x00\x81\xa5Prune\x01",
        b"\x03\x81\xa2CC\xa1x",
        b"\x04\x81\xa7Filters\xa1x",
        b"\x04\x81\xa7Filters\x91\x01",
        b"\x04\x81\xa2ID\xcf\x00\x00\x00\x01\x00\x00\x00\x00",
        b"\x04\x81\xabRelayFactor\xcd\x01\x00",
        b"\x04\x81\xa7Timeout\xcf\xff\xff\xff\xff\xff\xff\xff\xff",
        b"\x05\x81\xa5Flags\xff",
        b"\x06\x81\xa4Tags\x90",
        b"\x06\x81\xa4Tags\x81\xa1a\x01",
        b"\x06\x81\xabProtocolMin\xcd\x01\x00",
        b"\x07\x81\xa3Key\x01",
        b"\x08\x81\xa4Keys\x91\x01",
        b"\x08\x81\xa4Keys\xa1x",
        b"\x02\x81\xacStatusLTimes\x90\x01",
        b"\x02\x81\xacStatusLTimes\x81\x01\x01",
        b"\x02\x81\xacStatusLTimes\x81\xa1a\xff",
        b"\x02\x81\xa6Events\xa1x",
        b"\x02\x81\xa6Events\x80",  # an empty map is not an empty list
        b"\x02\x81\xa6Events\x00",
        b"\x02\x81\xa6Events\x91\x81\xa6Events\x80",
        b"\x02\x81\xacStatusLTimes\x90",
        b"\x02\x81\xacStatusLTimes\xc2",
        b"\x02\x81\xa6Events\x91\x01",
        b"\x02\x81\xa6Events\x91\x81\xa6Events\xa1x",
        b"\x02\x81\xa6Events\x91\x81\xa6Events\x91\x01",
        b"\x02\x81\xa6Events\x91\x81\xa5LTime\xff",
        b"\x02\x81\xabLeftMembers\x91\x01",
    ],
)
def test_decode_serf_rejects(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_serf(raw)


def test_push_pull_state_bounds() -> None:
    def state(**kw: Any) -> bytes:
        m: dict[str, Any] = {"EventLTime": 1, "Events": None, "LTime": 1, "QueryLTime": 1}
        m.update(kw)
        return b"\x02" + codec.pack(m)

    n = sm.MEMBERS_MAX + 1
    with pytest.raises(DecodeError, match="LeftMembers"):
        decode_serf(state(LeftMembers=[b""] * n))
    with pytest.raises(DecodeError, match="StatusLTimes"):
        decode_serf(state(StatusLTimes={str(i): 0 for i in range(n)}))
    with pytest.raises(DecodeError, match="slots"):
        decode_serf(state(Events=[None] * (sm.EVENT_SLOTS_MAX + 1)))
    one = {"Name": b"e", "Payload": b""}
    many = [{"Events": [one] * (sm.EVENTS_MAX // 2), "LTime": i} for i in range(2)]
    ok = decode_serf(state(Events=many))
    assert isinstance(ok, PushPullState) and sum(len(e[1]) for e in ok.events if e) == sm.EVENTS_MAX
    many[1]["Events"] = [one] * (sm.EVENTS_MAX // 2 + 1)
    with pytest.raises(DecodeError, match="user events"):
        decode_serf(state(Events=many))
    # and these are still well above what a Serf agent sends
    assert sm.EVENT_SLOTS_MAX >= 512 and sm.MEMBERS_MAX >= 100_000


# --------------------------------------------------------------------------- properties

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, U64)
i64 = st.integers(-(2**63), 2**63 - 1)
names = st.one_of(
    st.text(max_size=30),
    st.binary(max_size=30).map(lambda b: b.decode("utf-8", "surrogateescape")),
)
blobs = st.binary(max_size=200)
ips = st.sampled_from([LOCAL, b"\x0a\x00\x00\x02", bytes(15) + b"\x01"])
tag_maps = st.dictionaries(names, names, max_size=5)
filters = st.one_of(
    st.lists(names, max_size=4).map(lambda n: encode_filter_nodes(tuple(n))),
    st.tuples(names, names).map(lambda t: encode_filter_tag(*t)),
    blobs,
)
events = st.one_of(
    st.none(),
    st.tuples(u64, st.lists(st.tuples(names, blobs), max_size=3).map(tuple)),
)

serf_messages: st.SearchStrategy[sm.SerfMessage] = st.one_of(
    st.builds(Leave, u64, names, st.booleans()),
    st.builds(Join, u64, names),
    st.builds(UserEvent, u64, names, blobs, st.booleans()),
    st.builds(
        Query,
        ltime=u64,
        id=u32,
        addr=st.one_of(st.just(b""), ips),
        port=u16,
        source_node=names,
        filters=st.lists(filters, max_size=3).map(tuple),
        flags=u32,
        relay_factor=u8,
        timeout_ns=i64,
        name=names,
        payload=blobs,
    ),
    st.builds(QueryResponse, u64, u32, names, u32, blobs),
    st.builds(
        ConflictMember,
        names,
        st.one_of(st.just(b""), ips),
        u16,
        tag_maps,
        st.integers(0, 4),
        st.binary(min_size=6, max_size=6),
    ),
    st.builds(KeyRequest, st.binary(max_size=32)),
    st.builds(KeyResponse, st.booleans(), names, st.lists(names, max_size=4).map(tuple), names),
    st.builds(
        PushPullState,
        ltime=u64,
        status_ltimes=st.dictionaries(names, u64, max_size=5),
        left_members=st.lists(names, max_size=4).map(tuple),
        event_ltime=u64,
        events=st.lists(events, max_size=8).map(tuple),
        query_ltime=u64,
    ),
)


@PROPS
@given(serf_messages)
def test_every_serf_message_round_trips(msg: sm.SerfMessage) -> None:
    raw = msg.encode()
    assert raw[0] == msg.TYPE
    back = decode_serf(raw)
    assert back == msg
    assert back.encode() == raw
    keys = wire_keys(raw[1:])
    assert keys == sorted(keys)


@PROPS
@given(ips, st.integers(1, 0xFFFF), names, serf_messages)
def test_relay_round_trips(ip: bytes, port: int, name: str, inner: sm.SerfMessage) -> None:
    relay = Relay(ip, port, name, inner.encode())
    assert decode_serf(relay.encode()) == relay


@PROPS
@given(tag_maps)
def test_tags_round_trip(tags: dict[str, str]) -> None:
    meta = encode_tags(tags)
    assert meta[0] == 0xFF
    assert decode_tags(meta) == tags


@PROPS
@given(st.binary(max_size=100).filter(lambda b: not b.startswith(b"\xff")))
def test_meta_without_magic_is_the_role(meta: bytes) -> None:
    assert decode_tags(meta) == {"role": meta.decode("utf-8", "surrogateescape")}


@PROPS
@given(st.lists(names, max_size=5).map(tuple), names, names)
def test_filters_round_trip(nodes: tuple[str, ...], tag: str, expr: str) -> None:
    assert decode_filter(encode_filter_nodes(nodes)) == ("nodes", nodes)
    assert decode_filter(encode_filter_tag(tag, expr)) == ("tag", (tag, expr))
