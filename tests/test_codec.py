"""Tests for swim.codec: memberlist messages, compound, CRC, compress, sealing and opening.

Ground truth, strongest first: the serf 0.9.4 bytes captured in
shared/reference/memberlist-wire.md §11 (V1-V9), then Go's msgpack conventions (§1), then
properties (hypothesis round trips). Section numbers below refer to that file.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swim import codec, lzw
from swim.codec import (
    Ack,
    Alive,
    Compress,
    Dead,
    DecodeError,
    ErrResp,
    IndirectPing,
    Message,
    MsgType,
    Nack,
    Ping,
    PushNodeState,
    PushPull,
    Suspect,
    User,
    decode_message,
    make_compound,
    open_packet,
    open_stream,
    seal_packet,
    seal_stream,
    split_compound,
    stream_frame_length,
    user_stream_body,
)
from swim.keyring import Keyring, encrypted_length
from swim.memberlist import ip_bytes

PROPS = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""Reproducible property runs: the same examples on every machine and every run."""

LOCAL = b"\x7f\x00\x00\x01"
VSN = bytes.fromhex("010502020505")
KEY = bytes(range(16))

# --------------------------------------------------------------------------- §11 vectors

V1_PING = bytes.fromhex(
    "0085a44e6f6465a670796e6f6465a55365714e6f3caa536f7572636541646472a47f000001aa536f757263"
    "654e6f6465a5616c706861aa536f75726365506f7274cd1f0a"
)
V1_PY_ACK = bytes.fromhex("0282a55365714e6f3ca75061796c6f6164a0")
V2 = bytes.fromhex(
    "0cf6d09f5b0702004e00460486a441646472a47f000001ab496e6361726e6174696f6e01a44d657461b1ff"
    "82a4726f6c65a3776562a26463a27831a44e6f6465a5616c706861a4506f7274cd1f0aa356736ea6010502"
    "0205050486a441646472a47f000001ab496e6361726e6174696f6e01a44d657461aaff81a4726f6c65a264"
    "62a44e6f6465a462657461a4506f7274cd1f0ba356736ea6010502020505"
)
V3 = bytes.fromhex(
    "0c03a5abff0982a4416c676f00a3427566da00a0000f0c00e0048011001408182215840c1939a4fe000010"
    "6055123763c2c87113864e9a376e02906a52864e9858ff049192f3864d995177ca881145668c283c314839"
    "7943a64ca9306ce0a009430aca1b39749a7d5030caca1c37a602141020a04001850c1d429448d122468d1c"
    "3d821449d2a4aa7f8156b62c43538c4e9e6548892949d42852a50b9a3e8d3ab56a01040104956242254d9b"
    "322277f6944b3720"
)
V3_SERF_JOIN = bytes.fromhex("080182a54c54696d6501a44e6f6465a462657461")
V4 = bytes.fromhex(
    "0cf6140c940702004300250085a44e6f6465a670796e6f6465a55365714e6f52aa536f7572636541646472"
    "a47f000001aa536f757263654e6f6465a462657461aa536f75726365506f7274cd1f0b0383a446726f6da4"
    "62657461ab496e6361726e6174696f6e01a44e6f6465a670796e6f6465"
)
V5_INDIRECT = bytes.fromhex(
    "0188a44e61636bc3a44e6f6465a670796e6f6465a4506f7274cd1f0ea55365714e6f44aa536f7572636541"
    "646472a47f000001aa536f757263654e6f6465a5616c706861aa536f75726365506f7274cd1f0aa6546172"
    "676574a47f000001"
)
V5_NACK = bytes.fromhex("0b81a55365714e6f44")
V6_LEAVE = bytes.fromhex("0c5f65ec70080083a54c54696d6506a44e6f6465a462657461a55072756e65c2")
V6_DEAD = bytes.fromhex(
    "0c033f28320583a446726f6da462657461ab496e6361726e6174696f6e01a44e6f6465a462657461"
)
V7 = bytes.fromhex(
    "0982a4416c676f00a3427566da00d2000d0c22a5e44d1a37c34a397943a6cc9c00acaacc2923670a9d3074"
    "ca3029e3a69900268748052143460ea93f0000045895c4cd983072dc604cf3c64d00524dca5c54f52f1029"
    "396fd8941145460c292761da9421254667185250dec8a1d3ecc382521631960130caca1c37a602141020a0"
    "c05843aa8ad8e148870995344a039852cb760e37010080e9ddcbb7afdfbf80030b1e4cb8b0e1c388132b5e"
    "ccb8b1e3c790234b9e4cb9b2e5cb884bb9855b66e546337472b6692a670e245551ea50ccb3392eabac74ea"
    "cc69edd067d38b000202"
)
V8 = bytes.fromhex(
    "0683a44a6f696ec3a54e6f64657301ac5573657253746174654c656e0087a441646472a47f000001ab496e"
    "6361726e6174696f6e01a44d657461a0a44e616d65a9706c61696e6e6f6465a4506f7274cd1f20a5537461"
    "746500a356736ea6010502020505"
)
V9 = bytes.fromhex(
    "0151708aba7bb7f9eb31562786a6a5b932fa01e84b17135983f4f2cbbe21234238acb5ec5b47d66b5862bc"
    "68d46724a9d9d7aab4143e24b928e5f01637e4b0189989a44a442e06436a59be95f48242096e548fe1625c"
    "4d4563aea61fbbe91739"
)
V9_PLAIN = bytes.fromhex(
    "0085a44e6f6465a57079656e63a55365714e6f02aa536f7572636541646472a47f000001aa536f75726365"
    "4e6f6465a567616d6d61aa536f75726365506f7274cd1f14"
)

ALPHA_META = bytes.fromhex("ff82a4726f6c65a3776562a26463a27831")
BETA_META = bytes.fromhex("ff81a4726f6c65a26462")
V2_ALPHA = Alive(1, "alpha", LOCAL, 7946, ALPHA_META, VSN)
V2_BETA = Alive(1, "beta", LOCAL, 7947, BETA_META, VSN)


def fixed(nonce: bytes) -> Callable[[int], bytes]:
    """An entropy function that always returns ``nonce`` (for byte-exact encryption)."""

    def entropy(n: int) -> bytes:
        assert n == len(nonce)
        return nonce

    return entropy


def wire_keys(body: bytes) -> list[bytes]:
    """The map keys of one msgpack body in wire order (msgpack keeps insertion order)."""
    up = msgpack.Unpacker(raw=True, strict_map_key=False)
    up.feed(body)
    m = up.unpack()  # the first value only: a push/pull header is followed by more
    assert isinstance(m, dict)
    return list(m)


def compress_buf(packet: bytes) -> bytes:
    frame = msgpack.unpackb(packet[1:], raw=True)
    assert packet[0] == MsgType.COMPRESS and frame[b"Algo"] == 0
    buf = frame[b"Buf"]
    assert isinstance(buf, bytes)
    return buf


# --------------------------------------------------------------------------- V1-V9


def test_v1_ping_decodes_and_reencodes_byte_for_byte() -> None:
    msg = decode_message(V1_PING)
    assert msg == Ping(
        seq_no=60, node="pynode", source_addr=LOCAL, source_port=7946, source_node="alpha"
    )
    assert msg.encode() == V1_PING
    assert len(V1_PING) == 68
    # a plain probe ping carries no CRC and is not compressed (shorter as it is)
    assert seal_packet(msg.encode(), compress=True, crc=False, keyring=None, entropy=None) == (
        V1_PING
    )
    opened = open_packet(V1_PING, None)
    assert opened.messages == [V1_PING] and not opened.dropped and not opened.had_crc


def test_v1_python_ack_decodes_and_our_ack_is_go_ordered() -> None:
    # The captured ack came from the Python fake node, which wrote SeqNo before Payload.
    # serf accepted it (Go's decoder does not care about key order), but Go itself writes
    # keys sorted (§1), so our encoder puts Payload first: same map, Go's order.
    msg = decode_message(V1_PY_ACK)
    assert msg == Ack(seq_no=60, payload=b"")
    ours = Ack(60, b"").encode()
    assert ours == bytes.fromhex("0282a75061796c6f6164a0a55365714e6f3c")
    assert msgpack.unpackb(ours[1:], raw=True) == msgpack.unpackb(V1_PY_ACK[1:], raw=True)
    assert wire_keys(ours[1:]) == [b"Payload", b"SeqNo"]
    # Go's own ack for a probe: Payload nil -> c0
    assert Ack(60, None).encode() == bytes.fromhex("0282a75061796c6f6164c0a55365714e6f3c")
    assert decode_message(Ack(60, None).encode()) == Ack(60, b"")


def test_v2_gossip_alives_with_crc_over_compound() -> None:
    opened = open_packet(V2, None)
    assert opened.had_crc and not opened.dropped
    assert [len(m) for m in opened.messages] == [78, 70]
    assert [decode_message(m) for m in opened.messages] == [V2_ALPHA, V2_BETA]
    assert struct.unpack(">I", V2[1:5])[0] == 0xF6D09F5B == zlib.crc32(V2[5:])
    compound = make_compound([V2_ALPHA.encode(), V2_BETA.encode()])
    assert compound == V2[5:]
    assert codec.add_crc(compound) == V2
    # memberlist's order: compress only when shorter (not here), then CRC
    assert seal_packet(compound, compress=True, crc=True, keyring=None, entropy=None) == V2
    assert len(V2) == 159


def test_v3_compressed_gossip_with_serf_join() -> None:
    opened = open_packet(V3, None)
    assert opened.had_crc and not opened.dropped
    assert opened.messages == [V2_ALPHA.encode(), V2_BETA.encode(), V3_SERF_JOIN]
    assert decode_message(V3_SERF_JOIN) == User(V3_SERF_JOIN[1:])
    buf = compress_buf(V3[5:])
    assert len(buf) == 160 and len(lzw.decompress(buf)) == 176
    # our sender makes the same bytes: compound, compressed (shorter), CRC over it all
    sealed = seal_packet(
        make_compound(opened.messages), compress=True, crc=True, keyring=None, entropy=None
    )
    assert sealed == V3
    assert len(V3) == 180


def test_v4_buddy_probe_ping_and_suspect() -> None:
    opened = open_packet(V4, None)
    assert opened.had_crc and not opened.dropped
    ping, suspect = (decode_message(m) for m in opened.messages)
    assert ping == Ping(82, "pynode", LOCAL, 7947, "beta")
    assert suspect == Suspect(incarnation=1, node="pynode", from_="beta")
    compound = make_compound([ping.encode(), suspect.encode()])
    assert seal_packet(compound, compress=True, crc=True, keyring=None, entropy=None) == V4
    assert len(V4) == 115


def test_v5_indirect_ping_and_nack() -> None:
    ind = decode_message(V5_INDIRECT)
    assert ind == IndirectPing(
        seq_no=68,
        target=LOCAL,
        port=7950,
        node="pynode",
        nack=True,
        source_addr=LOCAL,
        source_port=7946,
        source_node="alpha",
    )
    assert ind.encode() == V5_INDIRECT
    assert decode_message(V5_NACK) == Nack(68)
    assert Nack(68).encode() == V5_NACK


def test_v6_serf_leave_then_graceful_dead() -> None:
    opened = open_packet(V6_LEAVE, None)
    assert opened.had_crc and opened.messages == [V6_LEAVE[5:]]
    assert opened.messages[0][:2] == b"\x08\x00"  # user message, Serf leave
    assert len(V6_LEAVE) == 32
    opened = open_packet(V6_DEAD, None)
    dead = decode_message(opened.messages[0])
    assert dead == Dead(incarnation=1, node="beta", from_="beta")  # From == Node: a leave
    assert seal_packet(dead.encode(), compress=True, crc=True, keyring=None, entropy=None) == (
        V6_DEAD
    )


def test_v7_compressed_push_pull_stream() -> None:
    assert stream_frame_length(V7) == len(V7) == 225
    assert stream_frame_length(V7 + b"\x00garbage") == 225
    buf = compress_buf(V7)
    assert len(buf) == 210 and len(lzw.decompress(buf)) == 695
    pp = open_stream(V7, None)
    assert isinstance(pp, PushPull)
    assert pp.join is True
    assert pp.nodes == (PushNodeState("beta", LOCAL, 7947, BETA_META, 1, 0, VSN),)
    assert len(pp.user_state) == 588 and pp.user_state[:2] == b"\x02\x86"
    assert pp.encode()[:31] == bytes.fromhex(
        "0683a44a6f696ec3a54e6f64657301ac5573657253746174654c656ecd024c"
    )
    # Serf compresses every stream; our encoder and LZW reproduce serf's frame exactly
    assert seal_stream(pp.encode(), compress=True, keyring=None, entropy=None) == V7


def test_v8_plain_push_pull_accepted_by_serf() -> None:
    assert stream_frame_length(V8) == len(V8) == 100
    pp = open_stream(V8, None)
    assert pp == PushPull(
        join=True,
        nodes=(PushNodeState("plainnode", LOCAL, 7968, b"", 1, 0, VSN),),
        user_state=b"",
    )
    assert pp.encode() == V8
    assert seal_stream(pp.encode(), compress=False, keyring=None, entropy=None) == V8


def test_v9_encrypted_ping() -> None:
    ring = Keyring([KEY])
    opened = open_packet(V9, ring)
    assert opened.messages == [V9_PLAIN] and not opened.dropped
    assert decode_message(V9_PLAIN) == Ping(2, "pyenc", LOCAL, 7956, "gamma")
    # vsn 1 | 12-byte nonce | ciphertext+tag, no padding: 1 + 12 + 67 + 16
    assert V9[0] == 1 and len(V9) == 1 + 12 + len(V9_PLAIN) + 16 == 96
    nonce = V9[1:13]
    assert seal_packet(V9_PLAIN, compress=True, crc=False, keyring=ring, entropy=fixed(nonce)) == (
        V9
    )


def test_v9_wrong_key_and_missing_key() -> None:
    wrong = Keyring([bytes(16)])
    assert open_packet(V9, wrong).messages == []
    assert open_packet(V9, wrong).dropped == [
        "decrypt: No installed keys could decrypt the message"
    ]
    # GossipVerifyIncoming=false: an undecryptable packet is taken as plaintext
    assert open_packet(V9, wrong, verify_incoming=False).messages == [V9]
    # with encryption configured, plaintext is dropped
    assert open_packet(V1_PING, Keyring([KEY])).messages == []
    assert open_packet(V1_PING, Keyring([KEY]), verify_incoming=False).messages == [V1_PING]


def test_seal_packet_layout_with_fixed_entropy_round_trips() -> None:
    ring = Keyring([KEY])
    nonce = bytes(range(100, 112))
    msg = make_compound([V2_ALPHA.encode(), V2_BETA.encode()])
    sealed = seal_packet(msg, compress=False, crc=True, keyring=ring, entropy=fixed(nonce))
    assert sealed[0] == 1 and sealed[1:13] == nonce
    assert len(sealed) == 1 + 12 + 5 + len(msg) + 16
    assert AESGCM(KEY).decrypt(nonce, sealed[13:], None) == codec.add_crc(msg)
    opened = open_packet(sealed, ring)
    assert opened.had_crc and opened.messages == [V2_ALPHA.encode(), V2_BETA.encode()]


def _v0_envelope(key: bytes, nonce: bytes, plain: bytes, aad: bytes | None) -> bytes:
    """Protocol-1 senders' envelope (§4): PKCS#7 pad to 16, then GCM; version byte 0."""
    pad = 16 - len(plain) % 16
    return b"\x00" + nonce + AESGCM(key).encrypt(nonce, plain + bytes([pad]) * pad, aad)


@pytest.mark.parametrize("plain", [V9_PLAIN, V9_PLAIN[:64], Nack(1).encode()])
def test_version_0_padded_packet_is_accepted(plain: bytes) -> None:
    nonce = bytes(range(12))
    blob = _v0_envelope(KEY, nonce, plain, None)
    assert len(blob) == encrypted_length(0, len(plain))
    assert open_packet(blob, Keyring([KEY])).messages == [plain]


def test_version_0_padded_stream_is_accepted() -> None:
    plain = seal_stream(V8, compress=True, keyring=None, entropy=None)
    pad = 16 - len(plain) % 16
    length = 1 + 12 + len(plain) + pad + 16
    header = struct.pack(">BI", MsgType.ENCRYPT, length)
    frame = header + _v0_envelope(KEY, bytes(12), plain, header)
    assert stream_frame_length(frame) == len(frame)
    assert open_stream(frame, Keyring([KEY])) == decode_message(V8)


def test_encrypted_stream_frame_layout_and_aad() -> None:
    ring = Keyring([KEY])
    nonce = bytes(range(12))
    frame = seal_stream(V8, compress=False, keyring=ring, entropy=fixed(nonce))
    length = 1 + 12 + len(V8) + 16
    header = struct.pack(">BI", 0x0A, length)
    assert frame[:5] == header and len(frame) == 5 + length and frame[5] == 1
    assert frame[6:18] == nonce
    assert AESGCM(KEY).decrypt(nonce, frame[18:], header) == V8  # AAD = the 5 header bytes
    assert stream_frame_length(frame) == len(frame)
    assert open_stream(frame, ring) == decode_message(V8)
    # the header is authenticated: the same envelope behind another header fails
    forged = struct.pack(">BI", 0x0A, length + 1) + frame[5:] + b"\x00"
    with pytest.raises(DecodeError):
        open_stream(forged, ring)


def test_stream_encryption_mismatches() -> None:
    ring = Keyring([KEY])
    sealed = seal_stream(V8, compress=True, keyring=ring, entropy=fixed(bytes(12)))
    with pytest.raises(DecodeError, match="encryption is not configured"):
        open_stream(sealed, None)
    with pytest.raises(DecodeError, match="not encrypted"):
        open_stream(V8, ring)
    assert open_stream(V8, ring, verify_incoming=False) == decode_message(V8)
    with pytest.raises(DecodeError):
        open_stream(sealed, Keyring([bytes(16)]))
    with pytest.raises(DecodeError):
        open_stream(sealed[:4], ring)


# --------------------------------------------------------------------------- §1 conventions


def test_keys_are_sorted_for_every_struct() -> None:
    full = [
        Ping(1, "n", LOCAL, 7946, "src"),
        IndirectPing(1, LOCAL, 7946, "n", True, LOCAL, 7946, "src"),
        Ack(1, b"x"),
        Nack(1),
        Suspect(1, "n", "f"),
        Dead(1, "n", "f"),
        Alive(1, "n", LOCAL, 7946, b"m", VSN),
        ErrResp("boom"),
        Compress(0, b"x"),
    ]
    for msg in full:
        keys = wire_keys(msg.encode()[1:])
        assert keys == sorted(keys), msg
    node = PushNodeState("n", LOCAL, 1, b"", 1, 0, VSN)
    keys = wire_keys(codec.pack(node.to_wire()))
    assert keys == [b"Addr", b"Incarnation", b"Meta", b"Name", b"Port", b"State", b"Vsn"]
    header = PushPull(False, (node,), b"").encode()[1:]
    assert wire_keys(header) == [b"Join", b"Nodes", b"UserStateLen"]


def test_strings_and_bytes_are_old_spec_raw() -> None:
    name = "n" * 40
    body = Ping(1, name).encode()
    assert b"\xda\x00\x28" + name.encode() in body  # 40 B string: da, never d9 (str8)
    meta = bytes(range(130))
    body = Alive(1, "x", LOCAL, 1, meta, VSN).encode()
    assert b"\xa4Meta\xda\x00\x82" + meta in body  # 130 B []byte: da 0082 [seen], never c4
    assert b"\xd9" not in Ping(1, "m" * 200).encode()[:12]
    assert Ping(1, "m" * 200).encode()[7:10] == b"\xda\x00\xc8"
    big = bytes(70000)
    assert Alive(1, "x", LOCAL, 1, big, VSN).encode().find(b"\xdb\x00\x01\x11\x70") > 0
    for t in (0xC4, 0xC5, 0xC6, 0xD9):
        assert bytes([t]) not in codec.pack([b"a" * 40, "b" * 40])


def test_ipv4_is_four_bytes_and_vsn_is_six_raw_bytes() -> None:
    assert ip_bytes("127.0.0.1") == LOCAL
    assert len(ip_bytes("::1")) == 16
    body = Alive(1, "x", ip_bytes("127.0.0.1"), 7946, b"", VSN).encode()
    assert b"\xa4Addr\xa4\x7f\x00\x00\x01" in body
    assert b"\xa3Vsn\xa6\x01\x05\x02\x02\x05\x05" in body  # raw, not an array


def test_omitempty_only_on_source_fields() -> None:
    assert wire_keys(Ping(0, "").encode()[1:]) == [b"Node", b"SeqNo"]
    assert Ping(0, "").encode() == b"\x00\x82\xa4Node\xa0\xa5SeqNo\x00"
    ind = IndirectPing(0, b"", 0, "", False)
    assert wire_keys(ind.encode()[1:]) == [b"Nack", b"Node", b"Port", b"SeqNo", b"Target"]
    # zero values elsewhere are still written
    assert wire_keys(Alive(0, "", b"", 0, b"", b"").encode()[1:]) == [
        b"Addr",
        b"Incarnation",
        b"Meta",
        b"Node",
        b"Port",
        b"Vsn",
    ]
    assert wire_keys(Suspect(0, "", "").encode()[1:]) == [b"From", b"Incarnation", b"Node"]
    # a partial source is written as far as it goes (Go omits each zero field separately)
    assert wire_keys(Ping(1, "n", source_node="me").encode()[1:]) == [
        b"Node",
        b"SeqNo",
        b"SourceNode",
    ]


def test_nil_payload_is_c0_and_empty_is_a0() -> None:
    assert Ack(7, None).encode() == b"\x02\x82\xa7Payload\xc0\xa5SeqNo\x07"
    assert Ack(7, b"").encode() == b"\x02\x82\xa7Payload\xa0\xa5SeqNo\x07"


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\xcc\x80"),
        (255, b"\xcc\xff"),
        (256, b"\xcd\x01\x00"),
        (65535, b"\xcd\xff\xff"),
        (65536, b"\xce\x00\x01\x00\x00"),
        (2**32 - 1, b"\xce\xff\xff\xff\xff"),
        (2**32, b"\xcf\x00\x00\x00\x01\x00\x00\x00\x00"),
        (-1, b"\xff"),
        (-33, b"\xd0\xdf"),
    ],
)
def test_integers_take_their_smallest_form(value: int, encoded: bytes) -> None:
    assert codec.pack(value) == encoded


def test_decoding_is_lenient_where_go_is() -> None:
    # str8 (d9) and bin (c4) accepted; unknown keys skipped; missing keys zero; trailing
    # bytes after the value ignored; a []byte sent as an array of ints accepted
    body = msgpack.packb(
        {
            "Node": "x" * 40,
            "SeqNo": 5,
            "SourceAddr": LOCAL,
            "Extra": [1, 2, {"a": None}],
        },
        use_bin_type=True,
    )
    assert b"\xd9" in body and b"\xc4" in body
    assert decode_message(b"\x00" + body + b"\xff\xff") == Ping(5, "x" * 40, LOCAL)
    assert decode_message(b"\x00\x80") == Ping(0, "")
    alive = codec.pack(
        {"Addr": list(LOCAL), "Incarnation": 2, "Node": b"n", "Port": 1, "Vsn": list(VSN)}
    )
    assert decode_message(b"\x04" + alive) == Alive(2, "n", LOCAL, 1, b"", VSN)
    # nil is zero for every kind
    nil_ping = codec.pack({"Node": None, "SeqNo": None, "SourcePort": None})
    assert decode_message(b"\x00" + nil_ping) == Ping(0, "")


@pytest.mark.parametrize(
    "body",
    [
        {"SeqNo": -1},
        {"SeqNo": 2**32},
        {"SeqNo": 1.0},
        {"SeqNo": True},
        {"SeqNo": b"1"},
        {"Node": 5},
        {"Node": [b"a"]},
        {"SourcePort": 65536},
        {"SourceAddr": 5},
        {"SourceAddr": [1, 256]},
    ],
)
def test_decoding_is_strict_where_python_would_crash_later(body: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        decode_message(b"\x00" + msgpack.packb(body, use_bin_type=False))


def test_decode_message_rejects_non_messages() -> None:
    for bad in (b"", b"\x00", b"\x00\xc1", b"\x00\x91\x01", b"\x07\x01", b"\x0c", b"\x0a", b"\xff"):
        with pytest.raises(DecodeError):
            decode_message(bad)
    assert decode_message(b"\x08") == User(b"")
    assert decode_message(b"\x0d\x81\xa5Error\xa3bad") == ErrResp("bad")
    assert decode_message(b"\x09" + codec.pack({"Algo": 0, "Buf": b"z"})) == Compress(0, b"z")


def test_names_are_arbitrary_bytes() -> None:
    raw = b"\xff\xfe-\xed\xa0\x80-\xc3"  # not UTF-8, includes an encoded surrogate
    body = b"\x05" + codec.pack({"From": raw, "Incarnation": 1, "Node": raw})
    dead = decode_message(body)
    assert isinstance(dead, Dead)
    assert dead.encode() == body


# --------------------------------------------------------------------------- compound, CRC


def test_make_and_split_compound() -> None:
    parts = [b"\x0b\x81\xa5SeqNo\x01", b"", b"x" * 300]
    c = make_compound(parts)
    assert c[:8] == b"\x07\x03\x00\x09\x00\x00\x01\x2c"
    assert split_compound(c[1:]) == (parts, 0)
    assert split_compound(c[1:-1]) == (parts[:2], 1)
    assert split_compound(c[1:9]) == ([], 3)
    with pytest.raises(DecodeError):
        split_compound(b"")
    with pytest.raises(DecodeError):
        split_compound(b"\x02\x00")  # truncated length slice
    for bad in ([], [b"x"] * 256, [bytes(65536)]):
        with pytest.raises(ValueError):
            make_compound(bad)
    make_compound([b"x"] * 255)
    make_compound([bytes(65535)])


def test_open_packet_keeps_complete_compound_parts() -> None:
    c = make_compound([Nack(1).encode(), Nack(2).encode(), Nack(3).encode()])
    opened = open_packet(c[:-1], None)
    assert opened.messages == [Nack(1).encode(), Nack(2).encode()]
    assert opened.dropped == ["compound: 1 truncated parts"]
    opened = open_packet(make_compound([b"", Nack(1).encode()]), None)
    assert opened.messages == [Nack(1).encode()] and opened.dropped == ["empty message"]


def test_crc_mismatch_drops_the_packet() -> None:
    bad = bytearray(V2)
    bad[-1] ^= 1
    assert open_packet(bytes(bad), None).dropped == ["bad checksum"]
    assert open_packet(bytes(bad), None).messages == []
    bad = bytearray(V2)
    bad[2] ^= 0x40  # the checksum itself
    assert open_packet(bytes(bad), None).dropped == ["bad checksum"]
    # fewer than 5 bytes: not a CRC frame, just an unknown message
    assert open_packet(b"\x0c\x00\x00\x00", None).messages == [b"\x0c\x00\x00\x00"]
    assert open_packet(b"", None).dropped == ["empty message"]
    assert open_packet(codec.add_crc(b""), None).dropped == ["empty message"]


def test_compress_layer_errors() -> None:
    assert codec.inflate(codec.compress_message(V1_PING)[1:]) == V1_PING
    with pytest.raises(DecodeError, match="unknown algorithm 1"):
        codec.inflate(Compress(1, lzw.compress(V1_PING)).body())
    with pytest.raises(DecodeError, match="bad LZW"):
        codec.inflate(Compress(0, b"\xff\xff\xff").body())
    with pytest.raises(DecodeError, match="empty compressed payload"):
        codec.inflate(Compress(0, lzw.compress(b"")).body())
    with pytest.raises(DecodeError, match="bad LZW"):
        codec.inflate(Compress(0, lzw.compress(bytes(5000))).body(), limit=4999)
    opened = open_packet(Compress(0, b"\x00").encode(), None)
    assert opened.messages == [] and opened.dropped[0].startswith("bad LZW")


# --------------------------------------------------------------------------- limits (rule 3)


def test_oversized_packet_is_dropped() -> None:
    big = User(bytes(codec.PACKET_BYTES_MAX)).encode()
    assert open_packet(big, None).dropped == ["packet too large"]
    ok = User(bytes(codec.PACKET_BYTES_MAX - 1)).encode()
    assert open_packet(ok, None).messages == [ok]


def test_nesting_is_bounded() -> None:
    msg = Nack(1).encode()
    for _ in range(codec.NESTING_MAX):
        msg = make_compound([msg])
    assert open_packet(msg, None).messages == [Nack(1).encode()]
    deeper = make_compound([msg])
    assert open_packet(deeper, None).dropped == ["nesting too deep"]
    wrapped = Nack(1).encode()
    for _ in range(codec.NESTING_MAX + 1):
        wrapped = codec.compress_message(wrapped)
    assert open_packet(wrapped, None).dropped == ["nesting too deep"]


def test_a_full_compound_in_a_compress_is_delivered_whole() -> None:
    # the largest thing memberlist sends: compress(compound of 255 parts), with CRC
    parts = [Nack(i).encode() for i in range(255)]
    packet = seal_packet(make_compound(parts), compress=True, crc=True, keyring=None, entropy=None)
    assert packet[5] == MsgType.COMPRESS
    opened = open_packet(packet, None)
    assert opened.messages == parts and not opened.dropped


def test_nested_compound_bomb_is_capped() -> None:
    # ~77k tiny messages in 12 kB: compress(compound(compound(compound(nack)))).
    leaf = Nack(1).encode()
    level3 = make_compound([leaf] * 255)
    level2 = make_compound([level3] * (65535 // len(level3)))
    level1 = make_compound([level2] * (codec.PACKET_INFLATE_BYTES_MAX // (len(level2) + 2)))
    packet = codec.compress_message(level1)
    assert len(packet) < 16_000
    opened = open_packet(packet, None)
    assert len(opened.messages) + len(opened.dropped) <= codec.PACKET_PARTS_MAX
    assert opened.dropped[-1] == "too many messages in one packet"
    assert set(opened.messages) == {leaf}


def test_nested_compress_bomb_shares_one_inflate_budget() -> None:
    # compress(compound(32 x compress(1 MiB))): each inner layer alone fits the per-layer
    # limit, but together they would inflate 32 MiB from 55 kB.
    inner = codec.compress_message(User(bytes(codec.PACKET_INFLATE_BYTES_MAX // 2)).encode())
    packet = codec.compress_message(make_compound([inner] * 32))
    assert len(packet) <= codec.PACKET_BYTES_MAX
    opened = open_packet(packet, None)
    assert sum(len(m) for m in opened.messages) <= codec.PACKET_INFLATE_BYTES_MAX
    assert len(opened.messages) == 1  # the first fits; the budget is gone after that
    assert all(d.startswith("bad LZW") for d in opened.dropped) and len(opened.dropped) == 31


def test_push_pull_node_count_is_bounded() -> None:
    n = codec.PUSH_PULL_NODES_MAX + 1
    body = b"\x06" + codec.pack({"Join": False, "Nodes": n, "UserStateLen": 0}) + b"\x80" * n
    with pytest.raises(DecodeError, match="out of range"):
        decode_message(body)
    frame = seal_stream(body, compress=True, keyring=None, entropy=None)
    assert len(frame) < 5000  # a few kB of LZW would otherwise be 131k node objects
    with pytest.raises(DecodeError):
        open_stream(frame, None)
    with pytest.raises(DecodeError):
        stream_frame_length(body)
    ok = PushPull(False, (PushNodeState("n", LOCAL, 1, b"", 1, 0, VSN),) * 3, b"")
    assert decode_message(ok.encode()) == ok


# --------------------------------------------------------------------------- stream framing


def _frames() -> list[bytes]:
    ring = Keyring([KEY])
    user = b"\x08" + codec.pack({"UserMsgLen": 5}) + b"hello"
    return [
        V7,
        V8,
        Ping(3, "n", LOCAL, 7946, "me").encode(),
        Ack(3, None).encode(),
        Ack(3, b"payload").encode(),
        ErrResp("Remote state is encrypted").encode(),
        codec.compress_message(V8),
        user,
        b"\x08" + codec.pack({"UserMsgLen": 0}),
        PushPull(False, (), b"").encode(),
        PushPull(True, (), b"\x02\x80").encode(),
        seal_stream(V8, compress=True, keyring=ring, entropy=fixed(bytes(12))),
        seal_stream(Ping(1, "x").encode(), compress=False, keyring=ring, entropy=fixed(bytes(12))),
    ]


@pytest.mark.parametrize("frame", _frames(), ids=lambda f: f"type{f[0]}-{len(f)}B")
def test_stream_frame_length_on_every_prefix(frame: bytes) -> None:
    for i in range(len(frame)):
        assert stream_frame_length(frame[:i]) is None, i
    assert stream_frame_length(frame) == len(frame)
    for tail in (b"\x00", b"\xff" * 7, frame):
        assert stream_frame_length(frame + tail) == len(frame)


@pytest.mark.parametrize("frame", _frames(), ids=lambda f: f"type{f[0]}-{len(f)}B")
@settings(max_examples=25, deadline=None, derandomize=True)
@given(cuts=st.lists(st.integers(min_value=1, max_value=4000), max_size=12))
def test_frame_reader_fed_in_pieces_finds_the_end_exactly_when_complete(
    frame: bytes, cuts: list[int]
) -> None:
    """What the driver does while reading a socket: any split gives the same answer as
    parsing the whole buffer, and the length appears with the frame's last byte."""
    data = frame + b"\x00trailing"
    points = sorted({c % len(data) for c in cuts} - {0})
    reader = codec.FrameReader()
    got: int | None = None
    start = end = 0
    for start, end in zip([0, *points], [*points, len(data)], strict=True):
        got = reader.feed(data[start:end])
        if got is not None:
            break
    assert got == len(frame)
    assert start < len(frame) <= end  # reported by the piece that completed the frame


@pytest.mark.parametrize(
    "frame",
    [
        b"\x07",  # compound is UDP-only
        b"\x0c\x00\x00\x00\x00",  # so is hasCrc
        b"\x01\x80",
        b"\x04\x80",
        b"\x0b\x80",
        b"\xff",
        b"\x0a" + struct.pack(">I", codec.STREAM_BYTES_MAX + 1),
        b"\x08" + codec.pack({"UserMsgLen": -1}),
        b"\x08" + codec.pack({"UserMsgLen": codec.STREAM_BYTES_MAX}),
        b"\x08" + codec.pack({"UserMsgLen": "5"}),
        b"\x08\x05",  # header not a map
        b"\x06" + codec.pack({"Join": False, "Nodes": -1, "UserStateLen": 0}),
        b"\x06" + codec.pack({"Join": False, "Nodes": 0, "UserStateLen": -1}),
        b"\x06" + codec.pack({"Join": False, "Nodes": 0, "UserStateLen": codec.STREAM_BYTES_MAX}),
        b"\x06" + codec.pack({"Join": 1, "Nodes": 0, "UserStateLen": 0}),
        b"\x00\xc1",  # never-used msgpack byte
    ],
)
def test_stream_frame_length_rejects_frames_that_can_never_be_valid(frame: bytes) -> None:
    with pytest.raises(DecodeError):
        stream_frame_length(frame)


def test_stream_frame_length_gives_up_at_the_stream_limit() -> None:
    # A frame that claims more than STREAM_BYTES_MAX: the driver reads up to the limit and
    # asks again; the answer must be a DecodeError (it used to be msgpack's BufferFull).
    huge_str = b"\x00\xdb\x7f\xff\xff\xff"
    buf = huge_str + bytes(codec.STREAM_BYTES_MAX)
    with pytest.raises(DecodeError, match="larger than limit"):
        stream_frame_length(buf)
    assert stream_frame_length(buf[: codec.STREAM_BYTES_MAX - 1]) is None
    # a complete frame followed by a long tail is still found
    assert stream_frame_length(V8 + bytes(codec.STREAM_BYTES_MAX)) == len(V8)


def test_user_stream_body() -> None:
    assert user_stream_body(codec.pack({"UserMsgLen": 3}) + b"abc") == b"abc"
    assert user_stream_body(codec.pack({"UserMsgLen": 3}) + b"abcdef") == b"abc"
    assert user_stream_body(codec.pack({"UserMsgLen": 0})) == b""
    assert user_stream_body(codec.pack({})) == b""  # missing key = 0
    for bad in (
        b"",
        codec.pack({"UserMsgLen": 4}) + b"abc",
        codec.pack({"UserMsgLen": -1}) + b"abc",
        codec.pack({"UserMsgLen": 1.5}) + b"abc",
        codec.pack([1]),
        b"\xc1",
        b"\x81",
    ):
        with pytest.raises(DecodeError):
            user_stream_body(bad)
    with pytest.raises(DecodeError):
        user_stream_body(codec.pack({"UserMsgLen": 1}) + bytes(codec.STREAM_BYTES_MAX))


def test_open_stream_rejects_wrappers_inside() -> None:
    for inner in (
        make_compound([Nack(1).encode()]),
        codec.add_crc(Nack(1).encode()),
        codec.compress_message(codec.compress_message(V8)),
    ):
        with pytest.raises(DecodeError):
            open_stream(codec.compress_message(inner), None)
    with pytest.raises(DecodeError):
        open_stream(b"", None)
    assert open_stream(ErrResp("nope").encode(), None) == ErrResp("nope")


def test_push_pull_decode_errors() -> None:
    good = PushPull(True, (PushNodeState("a", LOCAL, 1, b"", 1, 0, VSN),), b"state").encode()
    assert decode_message(good).user_state == b"state"  # type: ignore[attr-defined]
    with pytest.raises(DecodeError, match="user state"):
        decode_message(good[:-1])
    with pytest.raises(DecodeError, match="truncated"):
        decode_message(good[:40])
    with pytest.raises(DecodeError):
        decode_message(
            b"\x06" + codec.pack({"Join": False, "Nodes": 1, "UserStateLen": 0}) + b"\x01"
        )
    with pytest.raises(DecodeError):
        decode_message(b"\x06\xc1")


# --------------------------------------------------------------------------- properties

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
names = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape")),
)
ips = st.sampled_from([LOCAL, b"\x0a\x00\x00\x02", bytes(16), b"\x20\x01" + bytes(13) + b"\x01"])
blobs = st.binary(max_size=300)
vsns = st.one_of(st.just(VSN), st.binary(min_size=6, max_size=6), st.binary(max_size=8))


@st.composite
def pings(draw: st.DrawFn) -> Ping:
    return Ping(
        draw(u32),
        draw(names),
        draw(st.one_of(st.just(b""), ips)),
        draw(u16),
        draw(names),
    )


@st.composite
def indirect_pings(draw: st.DrawFn) -> IndirectPing:
    return IndirectPing(
        draw(u32),
        draw(ips),
        draw(u16),
        draw(names),
        draw(st.booleans()),
        draw(st.one_of(st.just(b""), ips)),
        draw(u16),
        draw(names),
    )


push_node_states = st.builds(
    PushNodeState,
    name=names,
    addr=ips,
    port=u16,
    meta=st.binary(max_size=512),
    incarnation=u32,
    state=st.integers(0, 3),
    vsn=vsns,
)
push_pulls = st.builds(
    PushPull,
    join=st.booleans(),
    nodes=st.lists(push_node_states, max_size=6).map(tuple),
    user_state=st.binary(max_size=700),
)
messages: st.SearchStrategy[Message] = st.one_of(
    pings(),
    indirect_pings(),
    st.builds(Ack, u32, st.one_of(st.none(), blobs)),
    st.builds(Nack, u32),
    st.builds(Suspect, u32, names, names),
    st.builds(Dead, u32, names, names),
    st.builds(Alive, u32, names, ips, u16, st.binary(max_size=512), vsns),
    st.builds(User, blobs),
    st.builds(ErrResp, names),
    st.builds(Compress, st.integers(0, 255), blobs),
    push_pulls,
)
packet_messages = messages.filter(lambda m: not isinstance(m, Compress | PushPull))
"""What travels in UDP packets (a Compress is a wrapper there, unwrapped by open_packet)."""
stream_messages = st.one_of(
    pings(), st.builds(Ack, u32, blobs), st.builds(ErrResp, names), push_pulls
)


def normal(m: Message) -> Message:
    """Decoding cannot tell nil from empty (Go cannot either): an Ack's None becomes b""."""
    if isinstance(m, Ack) and m.payload is None:
        return Ack(m.seq_no, b"")
    return m


@PROPS
@given(messages)
def test_every_message_round_trips(msg: Message) -> None:
    wire = msg.encode()
    assert wire[0] == msg.TYPE
    back = decode_message(wire)
    assert back == normal(msg)
    assert normal(back).encode() == normal(msg).encode()
    body = wire[1:]
    if not isinstance(msg, User | PushPull):
        keys = wire_keys(body)
        assert keys == sorted(keys)


@PROPS
@given(st.lists(packet_messages, min_size=1, max_size=20))
def test_compound_round_trips(msgs: list[Message]) -> None:
    parts = [m.encode() for m in msgs]
    c = make_compound(parts)
    assert split_compound(c[1:]) == (parts, 0)
    opened = open_packet(c, None)
    assert opened.messages == parts and not opened.dropped
    assert [decode_message(p) for p in opened.messages] == [normal(m) for m in msgs]


def keyrings(
    draw: Callable[[st.SearchStrategy[Any]], Any],
) -> tuple[Keyring | None, Keyring | None]:
    """(sender's, receiver's) keyrings; the receiver may hold the sender's key as non-primary."""
    kind = draw(st.sampled_from(["none", "same", "rotated"]))
    if kind == "none":
        return None, None
    sizes = st.sampled_from([16, 24, 32])
    keys = draw(
        st.lists(sizes.flatmap(lambda n: st.binary(min_size=n, max_size=n)), min_size=1, max_size=4)
    )
    sender = Keyring(keys)
    if kind == "same":
        return sender, Keyring(keys)
    other = draw(sizes.flatmap(lambda n: st.binary(min_size=n, max_size=n)))
    return sender, Keyring([other, *reversed(keys)])  # sender's primary is not theirs


@PROPS
@given(
    st.lists(packet_messages, min_size=1, max_size=8),
    st.booleans(),
    st.booleans(),
    st.data(),
)
def test_seal_and_open_packet_round_trip(
    msgs: list[Message], compress: bool, crc: bool, data: st.DataObject
) -> None:
    sender, receiver = keyrings(data.draw)
    parts = [m.encode() for m in msgs]
    msg = parts[0] if len(parts) == 1 else make_compound(parts)
    entropy = random.Random(len(msg)).randbytes
    sealed = seal_packet(msg, compress=compress, crc=crc, keyring=sender, entropy=entropy)
    if sender is not None:
        assert sealed[0] == 1 and len(sealed) >= 29
    elif crc:
        assert sealed[0] == MsgType.HAS_CRC
    opened = open_packet(sealed, receiver)
    assert opened.messages == parts and not opened.dropped
    assert opened.had_crc == crc
    if sender is not None:
        # and nobody without the key reads it
        assert open_packet(sealed, Keyring([b"\xee" * 16])).messages == []


@PROPS
@given(stream_messages, st.booleans(), st.data())
def test_seal_and_open_stream_round_trip(msg: Message, compress: bool, data: st.DataObject) -> None:
    sender, receiver = keyrings(data.draw)
    wire = msg.encode()
    frame = seal_stream(wire, compress=compress, keyring=sender, entropy=random.Random(1).randbytes)
    assert stream_frame_length(frame) == len(frame)
    assert stream_frame_length(frame + b"\x00\x01") == len(frame)
    assert stream_frame_length(frame[:-1]) is None
    assert open_stream(frame, receiver) == decode_message(wire)


@PROPS
@given(push_pulls, st.integers(0, 100))
def test_push_pull_frame_length_and_round_trip(pp: PushPull, cut: int) -> None:
    wire = pp.encode()
    assert decode_message(wire) == pp
    assert stream_frame_length(wire) == len(wire)
    cut = cut % len(wire)
    assert stream_frame_length(wire[:cut]) is None


@PROPS
@given(st.lists(blobs, min_size=0, max_size=30))
def test_split_compound_never_raises_on_prefixes(parts: list[bytes]) -> None:
    if not parts:
        return
    c = make_compound(parts)
    for i in range(1, len(c)):
        try:
            got, truncated = split_compound(c[1:i])
        except DecodeError:
            assert i < 2 + 2 * len(parts)
            continue
        assert got == parts[: len(got)] and len(got) + truncated == len(parts)
