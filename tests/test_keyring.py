"""Tests for swim.keyring: memberlist's keyring semantics (ML/keyring.go) and the AES-GCM
envelope (ML/security.go), shared/reference/memberlist-wire.md §4."""

from __future__ import annotations

import contextlib
import random

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swim.keyring import (
    ENCRYPT_OVERHEAD_V0,
    ENCRYPT_OVERHEAD_V1,
    DecryptError,
    Keyring,
    KeyringError,
    decrypt,
    encrypt,
    encrypted_length,
    validate_key,
)

PROPS = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

K1, K2, K3 = bytes(range(16)), b"\x02" * 24, b"\x03" * 32
V9 = bytes.fromhex(
    "0151708aba7bb7f9eb31562786a6a5b932fa01e84b17135983f4f2cbbe21234238acb5ec5b47d66b5862bc"
    "68d46724a9d9d7aab4143e24b928e5f01637e4b0189989a44a442e06436a59be95f48242096e548fe1625c"
    "4d4563aea61fbbe91739"
)
V9_PLAIN = bytes.fromhex(
    "0085a44e6f6465a57079656e63a55365714e6f02aa536f7572636541646472a47f000001aa536f75726365"
    "4e6f6465a567616d6d61aa536f75726365506f7274cd1f14"
)


def entropy(seed: int = 0) -> random.Random:
    return random.Random(seed)


# --------------------------------------------------------------------------- keyring


@pytest.mark.parametrize("size", [16, 24, 32])
def test_valid_key_sizes(size: int) -> None:
    validate_key(bytes(size))
    assert Keyring([bytes(size)]).primary == bytes(size)


@pytest.mark.parametrize("size", [0, 1, 15, 17, 23, 31, 33, 64])
def test_invalid_key_sizes_are_refused(size: int) -> None:
    with pytest.raises(KeyringError, match="16, 24 or 32"):
        Keyring([bytes(size)])
    ring = Keyring([K1])
    with pytest.raises(KeyringError):
        ring.add_key(bytes(size))
    assert ring.keys == [K1]


def test_empty_keyring() -> None:
    ring = Keyring()
    assert len(ring) == 0 and ring.primary is None and ring.keys == []
    with pytest.raises(KeyringError, match="empty"):
        encrypt(ring, b"x", None, entropy().randbytes)
    with pytest.raises(DecryptError):
        decrypt(ring, encrypt(Keyring([K1]), b"x", None, entropy().randbytes), None)
    ring.remove_key(K1)  # nothing to remove: a no-op, as in Go
    ring.add_key(K1)  # the first key added becomes the primary
    assert ring.primary == K1


def test_construction_order_is_primary_first() -> None:
    assert Keyring([K1, K2, K3]).keys == [K1, K2, K3]
    assert Keyring([K1, K2, K3], primary=K2).keys == [K2, K1, K3]
    assert Keyring([K1], primary=K3).keys == [K3, K1]
    assert Keyring([], primary=K2).keys == [K2]
    assert Keyring([K1, K1, K2]).keys == [K1, K2]


def test_add_key_appends_and_duplicates_are_a_no_op() -> None:
    ring = Keyring([K1])
    ring.add_key(K2)
    ring.add_key(K3)
    ring.add_key(K2)
    ring.add_key(K1)
    assert ring.keys == [K1, K2, K3] and ring.primary == K1 and len(ring) == 3


def test_use_key() -> None:
    ring = Keyring([K1, K2, K3])
    ring.use_key(K3)
    assert ring.keys == [K3, K1, K2]  # Go installKeys: new primary, then the rest in order
    ring.use_key(K3)
    assert ring.keys == [K3, K1, K2]
    ring.use_key(K1)
    assert ring.keys == [K1, K3, K2]
    with pytest.raises(KeyringError, match="not in the keyring"):
        ring.use_key(b"\x09" * 16)
    assert ring.keys == [K1, K3, K2]


def test_remove_key() -> None:
    ring = Keyring([K1, K2, K3])
    with pytest.raises(KeyringError, match="primary key is not allowed"):
        ring.remove_key(K1)
    ring.remove_key(b"\x09" * 16)  # unknown: a no-op, as in Go
    ring.remove_key(K2)
    assert ring.keys == [K1, K3]
    ring.remove_key(K2)
    assert ring.keys == [K1, K3]
    ring.use_key(K3)
    ring.remove_key(K1)
    assert ring.keys == [K3]
    with pytest.raises(KeyringError):
        ring.remove_key(K3)


def test_keys_property_is_a_copy() -> None:
    ring = Keyring([K1, K2])
    keys = ring.keys
    keys.clear()
    assert ring.keys == [K1, K2]


def test_rotation_member_by_member() -> None:
    # install new key everywhere, use it, remove the old one: traffic flows at every step
    old, new = K1, K3
    a, b = Keyring([old]), Keyring([old])
    a.add_key(new)
    msg = encrypt(b, b"hello", None, entropy().randbytes)
    assert decrypt(a, msg, None) == b"hello"
    b.add_key(new)
    a.use_key(new)
    assert decrypt(b, encrypt(a, b"from a", None, entropy().randbytes), None) == b"from a"
    assert decrypt(a, encrypt(b, b"from b", None, entropy().randbytes), None) == b"from b"
    b.use_key(new)
    a.remove_key(old)
    b.remove_key(old)
    assert decrypt(a, encrypt(b, b"done", None, entropy().randbytes), None) == b"done"
    with pytest.raises(DecryptError):
        decrypt(a, encrypt(Keyring([old]), b"stale", None, entropy().randbytes), None)


# --------------------------------------------------------------------------- envelope


def test_overheads() -> None:
    assert ENCRYPT_OVERHEAD_V1 == 29 and ENCRYPT_OVERHEAD_V0 == 45
    assert encrypted_length(1, 0) == 29 and encrypted_length(1, 67) == 96
    assert encrypted_length(0, 0) == 45 and encrypted_length(0, 15) == 45
    assert encrypted_length(0, 16) == 61


def test_v9_vector() -> None:
    ring = Keyring([K1])
    assert decrypt(ring, V9, None) == V9_PLAIN
    assert decrypt(ring, V9, b"") == V9_PLAIN  # nil and empty additional data are the same
    nonce = V9[1:13]
    assert encrypt(ring, V9_PLAIN, None, lambda n: nonce) == V9
    with pytest.raises(DecryptError):
        decrypt(ring, V9, b"\x0a\x00\x00\x00\x60")


def test_envelope_layout_v1_and_v0() -> None:
    nonce = bytes(range(12))
    ring = Keyring([K1])
    v1 = encrypt(ring, b"abc", None, lambda n: nonce)
    assert v1[0] == 1 and v1[1:13] == nonce and len(v1) == encrypted_length(1, 3)
    assert AESGCM(K1).decrypt(nonce, v1[13:], None) == b"abc"
    v0 = encrypt(ring, b"abc", None, lambda n: nonce, vsn=0)
    assert v0[0] == 0 and len(v0) == encrypted_length(0, 3)
    assert AESGCM(K1).decrypt(nonce, v0[13:], None) == b"abc" + b"\x0d" * 13  # PKCS#7
    assert decrypt(ring, v0, None) == b"abc"
    full = encrypt(ring, b"x" * 16, None, lambda n: nonce, vsn=0)
    assert AESGCM(K1).decrypt(nonce, full[13:], None) == b"x" * 16 + b"\x10" * 16
    assert decrypt(ring, full, None) == b"x" * 16
    with pytest.raises(ValueError, match="version"):
        encrypt(ring, b"x", None, lambda n: nonce, vsn=2)
    with pytest.raises(ValueError, match="wrong number"):
        encrypt(ring, b"x", None, lambda n: bytes(11))


def test_stream_aad() -> None:
    ring = Keyring([K2])
    header = b"\x0a\x00\x00\x00\x22"
    blob = encrypt(ring, b"12345", header, entropy().randbytes)
    assert decrypt(ring, blob, header) == b"12345"
    for wrong in (None, b"", b"\x0a\x00\x00\x00\x23"):
        with pytest.raises(DecryptError):
            decrypt(ring, blob, wrong)


def test_decrypt_with_any_installed_key() -> None:
    sender = Keyring([K2])
    receiver = Keyring([K1, K3, K2])
    blob = encrypt(sender, b"rotating", None, entropy().randbytes)
    assert decrypt(receiver, blob, None) == b"rotating"
    with pytest.raises(DecryptError, match="No installed keys"):
        decrypt(Keyring([K1, K3]), blob, None)


def _v0_by_hand(key: bytes, plain_padded: bytes) -> bytes:
    nonce = bytes(12)
    return b"\x00" + nonce + AESGCM(key).encrypt(nonce, plain_padded, None)


@pytest.mark.parametrize(
    "padded",
    [
        b"",  # GCM-valid but nothing to unpad
        b"a" * 15 + b"\x00",  # pad byte 0
        b"a" * 15 + b"\x11",  # pad byte 17
        b"\x05\x05",  # pad longer than the text
    ],
)
def test_bad_v0_padding_is_a_decrypt_error(padded: bytes) -> None:
    with pytest.raises(DecryptError):
        decrypt(Keyring([K1]), _v0_by_hand(K1, padded), None)


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x01",
        b"\x00",
        b"\x02" + bytes(40),  # unknown version
        b"\xff" + bytes(40),
        b"\x01" + bytes(27),  # one short of the v1 minimum
        b"\x00" + bytes(44),  # one short of the v0 minimum
        b"\x01" + bytes(28),  # minimum size, garbage tag
        b"\x00" + bytes(60),
    ],
)
def test_malformed_envelopes_are_decrypt_errors(blob: bytes) -> None:
    with pytest.raises(DecryptError):
        decrypt(Keyring([K1, K2]), blob, None)


def test_tampering_is_detected() -> None:
    ring = Keyring([K1])
    blob = bytearray(encrypt(ring, b"payload", None, entropy().randbytes))
    for i in range(1, len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(DecryptError):
            decrypt(ring, bytes(bad), None)
    flipped = bytearray(blob)
    flipped[0] = 0  # claim version 0: different length rules, and the tag fails anyway
    with pytest.raises(DecryptError):
        decrypt(ring, bytes(flipped), None)


# --------------------------------------------------------------------------- properties

keys = st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))


@PROPS
@given(
    st.lists(keys, min_size=1, max_size=4, unique=True),
    st.data(),
    st.binary(max_size=2000),
    st.one_of(st.none(), st.binary(min_size=1, max_size=8)),
    st.sampled_from([0, 1]),
)
def test_round_trip_with_any_installed_key(
    ring_keys: list[bytes], data: st.DataObject, plain: bytes, aad: bytes | None, vsn: int
) -> None:
    sender_key = data.draw(st.sampled_from(ring_keys))
    blob = encrypt(Keyring([sender_key]), plain, aad, random.Random(len(plain)).randbytes, vsn)
    assert len(blob) == encrypted_length(vsn, len(plain))
    assert blob[0] == vsn
    receiver = Keyring(ring_keys)
    assert decrypt(receiver, blob, aad) == plain


@PROPS
@given(st.binary(max_size=200), st.one_of(st.none(), st.binary(max_size=8)))
def test_decrypt_raises_only_decrypt_error(blob: bytes, aad: bytes | None) -> None:
    with contextlib.suppress(DecryptError):  # anything else fails the test
        decrypt(Keyring([K1, K2, K3]), blob, aad)
