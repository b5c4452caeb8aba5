"""Raft's wire codec (federation/wire.py): what decodes re-encodes to an equal message,
and any bytes at all (random, or valid traffic mutated) raise only WireError."""

from __future__ import annotations

import contextlib
import random

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.raft import (
    AppendRequest,
    AppendResponse,
    Configuration,
    Entry,
    EntryKind,
    InstallSnapshotRequest,
    InstallSnapshotResponse,
    ServerInfo,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from federation.wire import (
    BATCH_MESSAGES_MAX,
    ENTRIES_MAX,
    WIRE_VERSION,
    WireError,
    decode_batch,
    decode_message,
    encode_batch,
    encode_message,
)

U63 = st.integers(0, (1 << 63) - 1)
IDS = st.text(min_size=1, max_size=20)
COMMANDS = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
CONFIGURATIONS = st.lists(
    st.builds(ServerInfo, IDS, st.text(max_size=30), st.booleans()),
    max_size=6,
    unique_by=lambda s: s.id,
).map(lambda servers: Configuration(tuple(servers)))


@st.composite
def entry_bodies(draw: st.DrawFn) -> tuple[object, EntryKind]:
    if draw(st.booleans()):
        return draw(CONFIGURATIONS).to_wire(), EntryKind.CONFIGURATION
    return draw(COMMANDS), EntryKind.COMMAND


@st.composite
def messages(draw: st.DrawFn) -> object:
    src, dst, term = draw(IDS), draw(IDS), draw(U63)
    kind = draw(st.sampled_from(["vreq", "vresp", "areq", "aresp", "tnow", "sreq", "sresp"]))
    if kind == "sreq":
        return InstallSnapshotRequest(
            src, dst, term, draw(U63), draw(U63), draw(CONFIGURATIONS), draw(U63),
            draw(st.binary(max_size=64)), draw(st.booleans()),
        )  # fmt: skip
    if kind == "sresp":
        return InstallSnapshotResponse(src, dst, term, draw(st.booleans()), draw(U63))
    if kind == "vreq":
        return VoteRequest(
            src, dst, term, draw(U63), draw(U63), draw(st.booleans()), draw(st.booleans())
        )
    if kind == "tnow":
        return TimeoutNow(src, dst, term)
    if kind == "vresp":
        return VoteResponse(src, dst, term, draw(st.booleans()), draw(st.booleans()))
    if kind == "aresp":
        return AppendResponse(src, dst, term, draw(st.booleans()), draw(U63), draw(U63))
    prev = draw(st.integers(0, 1 << 40))
    bodies = draw(st.lists(entry_bodies(), max_size=5))
    entries = tuple(Entry(draw(U63), prev + 1 + i, c, k) for i, (c, k) in enumerate(bodies))
    return AppendRequest(src, dst, term, prev, draw(U63), entries, draw(U63), draw(U63))


@settings(max_examples=300, deadline=None)
@given(messages())
def test_round_trip(m: object) -> None:
    assert decode_message(encode_message(m)) == m  # type: ignore[arg-type]


ENTRIES = [Entry(3, 5 + i, {"Op": "kv", "Key": f"k{i}", "Value": b"v"}) for i in range(3)]
CONF = Configuration((ServerInfo("s1", "10.0.0.1:8300"), ServerInfo("s4", "", False)))
ENTRIES.append(Entry(3, 8, CONF.to_wire(), EntryKind.CONFIGURATION))
SAMPLES = [
    encode_message(VoteRequest("s1", "s2", 3, 10, 2, True)),
    encode_message(VoteRequest("s1", "s2", 3, 10, 2, False, True)),
    encode_message(VoteResponse("s2", "s1", 3, True)),
    encode_message(AppendResponse("s2", "s1", 3, False, 7, 12)),
    encode_message(AppendRequest("s1", "s2", 3, 4, 2, tuple(ENTRIES), 4, 12)),
    encode_message(TimeoutNow("s1", "s2", 3)),
    encode_message(
        InstallSnapshotRequest("s1", "s2", 3, 90, 2, CONF, 128, bytes(range(64)), False)
    ),
    encode_message(InstallSnapshotResponse("s2", "s1", 3, False, 64)),
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        if op == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            del b[rng.randrange(len(b)) :]
        elif op == 2:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        elif op == 3 and b:
            # a msgpack length/type marker written over a byte
            b[rng.randrange(len(b))] = rng.choice([0xDC, 0xDD, 0xDE, 0xDF, 0xC4, 0xC6, 0xDB, 0xC1])
        elif b:
            i = rng.randrange(len(b))
            b[i:i] = b[i : i + rng.randint(1, 8)]
    return bytes(b)


@settings(max_examples=1500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(st.binary(max_size=200) | st.integers(0, 2**32).map(lambda s: s.to_bytes(5, "big")))
def test_random_bytes_raise_only_wire_error(data: bytes) -> None:
    try:
        m = decode_message(data)
    except WireError:
        return
    assert decode_message(encode_message(m)) == m


@pytest.mark.parametrize("seed", range(8))
def test_mutated_traffic_raises_only_wire_error(seed: int) -> None:
    rng = random.Random(seed)
    decoded = 0
    for _ in range(2000):
        data = mutate(rng, rng.choice(SAMPLES))
        try:
            m = decode_message(data)
        except WireError:
            continue
        decoded += 1
        assert decode_message(encode_message(m)) == m
    assert decoded < 2000  # the mutations do reach the error paths


def test_limits_and_shape_errors() -> None:
    v = WIRE_VERSION
    too_many = msgpack.packb(
        [v, 3, "a", "b", 1, 0, 0, 0, [[1, i + 1, None, 0] for i in range(ENTRIES_MAX + 1)], 0]
    )
    for data, text in (
        (too_many, "entries: expected a list of at most"),
        (msgpack.packb([1, 1, "a", "b", 1, 0, 0, True, False]), "unsupported wire version"),
        (msgpack.packb([v, 1, "", "b", 1, 0, 0, True, False]), "src"),
        (msgpack.packb([v, 1, "a", "b", -1, 0, 0, True, False]), "term"),
        (msgpack.packb([v, 1, "a", "b", 1, 0, 0, True, 0]), "transfer"),
        (msgpack.packb([v, 5, "a", "b", 1, 0]), "unknown message kind"),
        (msgpack.packb([v, 6, "a", "b", 1, 9, 1, [["x", "", 2]], 0, b"", True]), "voter"),
        (msgpack.packb([v, 6, "a", "b", 1, 9, 1, [], 0, "text", True]), "snapshot data"),
        (msgpack.packb([v, 6, "a", "b", 1, 9, 1, [], -1, b"", True]), "offset"),
        (msgpack.packb([v, 7, "a", "b", 1, True, -5]), "next_offset"),
        (msgpack.packb([v, 3, "a", "b", 1, 5, 0, 0, [[1, 7, None, 0]], 0]), "contiguous"),
        (msgpack.packb([v, 3, "a", "b", 1, 0, 0, 0, [[1, 1, None]], 0]), "entry: expected"),
        (msgpack.packb([v, 3, "a", "b", 1, 0, 0, 0, [[1, 1, None, 2]], 0]), "entry kind"),
        (msgpack.packb([v, 3, "a", "b", 1, 0, 0, 0, [[1, 1, None, True]], 0]), "entry kind"),
        (msgpack.packb([v, 3, "a", "b", 1, 0, 0, 0, [[1, 1, [["a", "", 1]], 1]], 0]), "voter"),
        (
            msgpack.packb([v, 3, "a", "b", 1, 0, 0, 0, [[1, 1, [["a", "", True]] * 2, 1]], 0]),
            "duplicate",
        ),
        (msgpack.packb([v, 9, "a", "b", 1]), "unknown message kind"),
        (msgpack.packb({"a": 1}), "expected an array"),
    ):
        with pytest.raises(WireError, match=text):
            decode_message(data)
    with pytest.raises(TypeError):
        encode_message(object())  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.lists(messages(), min_size=1, max_size=8))
def test_batches_round_trip(ms: list[object]) -> None:
    batch = decode_batch(encode_batch([encode_message(m) for m in ms]))  # type: ignore[arg-type]
    assert [decode_message(b) for b in batch] == ms


@settings(max_examples=1000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(st.binary(max_size=200))
def test_random_bytes_as_a_batch_raise_only_wire_error(data: bytes) -> None:
    try:
        batch = decode_batch(data)
    except WireError:
        return
    assert batch and all(isinstance(b, bytes) for b in batch)


@pytest.mark.parametrize("seed", range(4))
def test_mutated_batches_raise_only_wire_error(seed: int) -> None:
    rng = random.Random(seed)
    sample = encode_batch(SAMPLES)
    refused = 0
    for _ in range(2000):
        try:
            batch = decode_batch(mutate(rng, sample))
        except WireError:
            refused += 1
            continue
        for data in batch:  # each message is then decoded on its own
            with contextlib.suppress(WireError):
                decode_message(data)
    assert refused > 0


def test_batch_limits() -> None:
    with pytest.raises(ValueError):
        encode_batch([])
    with pytest.raises(ValueError):
        encode_batch([b"x"] * (BATCH_MESSAGES_MAX + 1))
    for raw in ([], [1, 2], ["text"], {"a": b"x"}, [b"x"] * (BATCH_MESSAGES_MAX + 1)):
        with pytest.raises(WireError):
            decode_batch(msgpack.packb(raw, use_bin_type=True))
