"""Tests for swim.lzw: Go compress/lzw (LSB, literal width 8) compatibility.

Ground truth, strongest first: captured serf packets (reference memberlist-wire.md §11, V3
and V7), vectors from Go's own lzw tests, and a slow textbook model of the rules in the
reference §3 that the optimised module is compared against.
"""

from __future__ import annotations

import hashlib
import random

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swim.lzw import LZWError, compress, decompress

CLEAR = 256
EOF = 257

# --- captured vectors (reference §11) -------------------------------------------------

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
V7 = bytes.fromhex(
    "0982a4416c676f00a3427566da00d2000d0c22a5e44d1a37c34a397943a6cc9c00acaacc2923670a9d3074"
    "ca3029e3a69900268748052143460ea93f0000045895c4cd983072dc604cf3c64d00524dca5c54f52f1029"
    "396fd8941145460c292761da9421254667185250dec8a1d3ecc382521631960130caca1c37a602141020a0"
    "c05843aa8ad8e148870995344a039852cb760e37010080e9ddcbb7afdfbf80030b1e4cb8b0e1c388132b5e"
    "ccb8b1e3c790234b9e4cb9b2e5cb884bb9855b66e546337472b6692a670e245551ea50ccb3392eabac74ea"
    "cc69edd067d38b000202"
)


def _compress_frame_buf(packet: bytes) -> bytes:
    assert packet[0] == 0x09  # memberlist compressMsg
    frame = msgpack.unpackb(packet[1:], raw=True)
    assert frame[b"Algo"] == 0
    buf = frame[b"Buf"]
    assert isinstance(buf, bytes)
    return buf


def test_v3_gossip_packet() -> None:
    assert V3[0] == 0x0C  # CRC header, 4 CRC bytes follow
    buf = _compress_frame_buf(V3[5:])
    assert len(buf) == 160
    inflated = decompress(buf)
    assert len(inflated) == 176
    # compound of 3 parts (78, 70, 20): V2's two alives, then serf's join user message
    assert inflated[:8] == bytes.fromhex("0703004e00460014")
    v2_parts = V2[5 + 6 :]
    assert len(v2_parts) == 78 + 70
    user = bytes.fromhex("080182a54c54696d6501a44e6f6465a462657461")
    assert inflated[8:] == v2_parts + user
    assert compress(inflated) == buf  # byte-for-byte what serf (go1.19) produced


def test_v7_push_pull_stream() -> None:
    buf = _compress_frame_buf(V7)
    assert len(buf) == 210
    inflated = decompress(buf)
    assert len(inflated) == 695
    assert inflated.startswith(bytes.fromhex("0683a44a6f696ec3"))
    header = bytes.fromhex("83a44a6f696ec3a54e6f64657301ac5573657253746174654c656ecd024c")
    assert inflated[1 : 1 + len(header)] == header  # Join, Nodes 1, UserStateLen 588
    node = inflated[1 + len(header) : -588]
    assert b"\xa4Addr\xa4\x7f\x00\x00\x01" in node
    assert b"\xa4Meta\xaa\xff\x81\xa4role\xa2db" in node
    assert b"\xa4Name\xa4beta" in node
    assert b"\xa3Vsn\xa6\x01\x05\x02\x02\x05\x05" in node
    user_state = inflated[-588:]
    assert user_state[:2] == b"\x02\x86"
    assert b"\xa6Events\xdc\x02\x00" + b"\xc0" * 512 in user_state
    assert user_state.endswith(b"\x81\xa4beta\x00")
    assert compress(inflated) == buf


# --- Go's own test vectors --------------------------------------------------------------

TOBE = b"TOBEORNOTTOBEORTOBEORNOT"


def test_go_reader_vectors_without_leading_clear() -> None:
    # src/compress/lzw/reader_test.go (made by pre-1.17 writers: no leading clear code)
    assert decompress(b"\x01\x01") == b""
    tobe = bytes.fromhex("549e0829f2448a932754041234b8b0e0c1840101")
    assert decompress(tobe) == TOBE
    gif = bytes.fromhex("0051fc1b2870a0c1830101")
    assert decompress(gif) == b"\x28\xff\xff\xff\x28" + b"\xff" * 10
    with pytest.raises(LZWError):
        decompress(tobe[:11])  # Go: io.ErrUnexpectedEOF


def test_go117_writer_vectors() -> None:
    # Go >= 1.17 writes a clear code first, also for empty input (Close writes it then).
    assert compress(b"") == b"\x00\x03\x02"
    assert compress(TOBE) == b"\x00\xa9<\x11R\xe4\x89\x14'O\xa8\x08$hpa\xc1\x83\t\x03\x02"
    assert decompress(b"\x00\x03\x02") == b""


def test_go_no_longer_saving_prior_expansions() -> None:
    # Go's TestNoLongerSavingPriorExpansions: 3839 zero codes take hi to 4095 at width 12,
    # then code 4095 (an existing entry, not KwKwK any more), then EOF.
    data = bytes(5406) + b"\x80\xff\x0f\x08"
    out = decompress(data)
    assert out == bytes(3839 + 2)


# --- a slow model of the reference §3 rules -------------------------------------------


def _pack(codes: list[tuple[int, int]]) -> bytes:
    acc = 0
    pos = 0
    for code, width in codes:
        assert 0 <= code < 1 << width
        acc |= code << pos
        pos += width
    return acc.to_bytes((pos + 7) // 8, "little")


def model_codes(data: bytes, leading_clear: bool = True) -> list[tuple[int, int]]:
    """Textbook LZW with Go's writer rules, as (code, width) pairs."""
    codes: list[tuple[int, int]] = []
    width = 9
    if leading_clear:
        codes.append((CLEAR, width))
    hi = EOF

    def bump() -> bool:
        nonlocal hi, width
        hi += 1
        if hi == 1 << width and width < 12:
            width += 1
        if hi == 4095:
            codes.append((CLEAR, width))
            hi, width = EOF, 9
            return True
        return False

    if data:
        d: dict[bytes, int] = {bytes([i]): i for i in range(256)}
        w = data[:1]
        for b in data[1:]:
            wb = w + bytes([b])
            if wb in d:
                w = wb
                continue
            codes.append((d[w], width))
            w = bytes([b])
            if bump():
                d = {bytes([i]): i for i in range(256)}
            else:
                d[wb] = hi
        codes.append((d[w], width))
        bump()
    codes.append((EOF, width))
    return codes


def model_compress(data: bytes, leading_clear: bool = True) -> bytes:
    return _pack(model_codes(data, leading_clear))


def parse_codes(stream: bytes) -> list[tuple[int, int]]:
    """The code sequence of a valid stream, up to and including EOF (reader width rules)."""
    v = int.from_bytes(stream, "little")
    pos, width, hi = 0, 9, EOF
    out: list[tuple[int, int]] = []
    while True:
        code = (v >> pos) & ((1 << width) - 1)
        pos += width
        out.append((code, width))
        if code == EOF:
            return out
        if code == CLEAR:
            width, hi = 9, EOF
            continue
        hi += 1
        if hi == 1 << width and width < 12:
            width += 1
        hi = min(hi, 4095)


def _low_entropy(seed: int, n: int, alphabet: int) -> bytes:
    rnd = random.Random(seed)
    out = bytearray()
    while len(out) < n:
        if rnd.random() < 0.7 and len(out) > 64:
            start = len(out) - rnd.randrange(32, 64)
            out += out[start : start + rnd.randrange(4, 32)]
        else:
            out.append(rnd.randrange(alphabet))
    return bytes(out[:n])


def test_model_agrees_on_vectors() -> None:
    for packet in (V3[5:], V7):
        buf = _compress_frame_buf(packet)
        assert model_compress(decompress(buf)) == buf
    assert model_compress(TOBE, leading_clear=False) == bytes.fromhex(
        "549e0829f2448a932754041234b8b0e0c1840101"
    )


# --- round trips ------------------------------------------------------------------------


def test_empty_and_single() -> None:
    assert decompress(compress(b"")) == b""
    for b in (b"\x00", b"\xff", b"ab", b"aaa"):
        assert decompress(compress(b)) == b
        assert compress(b) == model_compress(b)


@given(st.binary(max_size=3000))
@settings(max_examples=300, deadline=None)
def test_roundtrip_random(data: bytes) -> None:
    c = compress(data)
    assert c == model_compress(data)
    assert decompress(c) == data


@given(
    st.integers(0, 2**32),
    st.integers(5000, 40000),
    st.sampled_from([1, 2, 3, 4, 16, 256]),
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_roundtrip_long_with_resets(seed: int, n: int, alphabet: int) -> None:
    data = random.Random(seed).randbytes(n)
    if alphabet < 256:
        data = bytes(b % alphabet for b in data)
    c = compress(data)
    assert decompress(c) == data
    assert c == model_compress(data)
    codes = parse_codes(c)
    assert codes[0] == (CLEAR, 9)
    if len(codes) > 4096:
        assert codes.count((CLEAR, 12)) >= 1  # the writer's out-of-codes clear


@given(st.binary(max_size=2000))
@settings(max_examples=200, deadline=None)
def test_decoder_accepts_streams_without_leading_clear(data: bytes) -> None:
    old = model_compress(data, leading_clear=False)
    assert decompress(old) == data


def test_100kb_low_entropy_hits_width_12_and_clear() -> None:
    data = _low_entropy(1, 100_000, 40)
    c = compress(data)
    assert len(c) < len(data) // 2
    assert decompress(c) == data
    codes = parse_codes(c)
    assert max(w for _, w in codes) == 12
    clears = [i for i, (code, w) in enumerate(codes) if code == CLEAR]
    assert clears[0] == 0 and len(clears) >= 3
    assert all(codes[i][1] == 12 for i in clears[1:])
    assert c == model_compress(data)


def test_close_writes_clear_when_last_code_runs_out() -> None:
    # Incompressible data whose final pending code is the one that takes hi to 4095:
    # Close's incHi then writes a clear (width 12) and EOF goes out at width 9.
    base = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(200))
    data = base[:3958]
    c = compress(data)
    codes = parse_codes(c)
    assert codes[-2:] == [(CLEAR, 12), (EOF, 9)]
    assert c == model_compress(data)
    assert decompress(c) == data


def test_data_after_eof_is_ignored() -> None:
    c = compress(b"hello hello hello")
    assert decompress(c + b"\xff\x00garbage") == b"hello hello hello"


def test_bytes_like_input() -> None:
    c = compress(b"abcabcabcabc")
    # The API is typed `bytes`; other bytes-like objects work too (not promised).
    assert decompress(bytearray(c)) == b"abcabcabcabc"  # type: ignore[arg-type]
    assert decompress(memoryview(c)) == b"abcabcabcabc"  # type: ignore[arg-type]
    assert compress(bytearray(b"abcabcabcabc")) == c  # type: ignore[arg-type]


# --- malformed input --------------------------------------------------------------------


def test_every_proper_prefix_is_truncated() -> None:
    c = compress(_low_entropy(2, 3000, 20))
    for k in range(len(c)):
        with pytest.raises(LZWError):
            decompress(c[:k])


def test_invalid_codes() -> None:
    with pytest.raises(LZWError):
        decompress(_pack([(258, 9), (EOF, 9)]))  # nothing defined yet
    with pytest.raises(LZWError):
        decompress(_pack([(CLEAR, 9), (65, 9), (259, 9), (EOF, 9)]))  # hi is 258
    with pytest.raises(LZWError):
        decompress(_pack([(65, 9), (CLEAR, 9), (258, 9), (EOF, 9)]))  # clear forgot 258
    # KwKwK: code == hi right after a literal is valid
    assert decompress(_pack([(65, 9), (258, 9), (EOF, 9)])) == b"AAA"


def test_max_out_bound() -> None:
    data = bytes(1_000_000)
    c = compress(data)
    assert len(c) < 3000
    assert decompress(c) == data
    assert decompress(c, max_out=len(data)) == data
    with pytest.raises(LZWError):
        decompress(c, max_out=len(data) - 1)
    with pytest.raises(LZWError):
        decompress(c, max_out=100_000)
    lit = compress(bytes(range(256)))  # literals only
    assert decompress(lit, max_out=256) == bytes(range(256))
    with pytest.raises(LZWError):
        decompress(lit, max_out=255)


def _check_garbage(data: bytes, max_out: int) -> None:
    try:
        out = decompress(data, max_out=max_out)
    except LZWError:
        return
    assert isinstance(out, bytes)
    assert len(out) <= max_out


@given(st.binary(max_size=4000), st.sampled_from([0, 10, 1000, 1 << 20]))
@settings(max_examples=500, deadline=None)
def test_garbage_never_crashes(data: bytes, max_out: int) -> None:
    _check_garbage(data, max_out)


@given(
    st.binary(min_size=1, max_size=3000),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8),
    st.sampled_from([50, 5000, 1 << 20]),
)
@settings(max_examples=300, deadline=None)
def test_mutated_streams_never_crash(
    data: bytes, edits: list[tuple[int, int]], max_out: int
) -> None:
    c = bytearray(compress(data))
    for where, value in edits:
        c[where % len(c)] = value
    _check_garbage(bytes(c), max_out)
    _check_garbage(bytes(c[: len(c) // 2]), max_out)
