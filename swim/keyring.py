"""Gossip encryption: memberlist's keyring and AES-GCM envelope (ML/keyring.go, ML/security.go).

Rules (shared/reference/memberlist-wire.md §4):

1. Keys are 16, 24 or 32 bytes (AES-128/192/256). The keyring is an ordered list whose
   first entry is the primary key: we encrypt with the primary only and try every key to
   decrypt, which is what lets a rotation proceed member by member.
2. Envelope = ``vsn(1) | nonce(12) | ciphertext+tag(16)``. Version 0 PKCS#7-pads the
   plaintext to 16 bytes before sealing; version 1 does not. We accept both and send 1.
3. UDP packets are sealed with empty additional data; TCP frames with the 5-byte frame
   header ``0a | uint32 BE length`` as additional data.
4. Removing the primary key is refused, as is using a key that is not installed.

The nonce comes from an injected entropy function, so the simulator stays deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gossamer.core import Entropy

__all__ = [
    "ENCRYPT_OVERHEAD_V1",
    "Keyring",
    "KeyringError",
    "decrypt",
    "encrypt",
    "encrypted_length",
]

VERSION_SIZE = 1
NONCE_SIZE = 12
TAG_SIZE = 16
BLOCK_SIZE = 16
ENCRYPT_OVERHEAD_V1 = VERSION_SIZE + NONCE_SIZE + TAG_SIZE  # 29
ENCRYPT_OVERHEAD_V0 = ENCRYPT_OVERHEAD_V1 + BLOCK_SIZE  # 45


class KeyringError(ValueError):
    """A key operation the keyring refuses (bad size, unknown key, removing the primary)."""


class DecryptError(ValueError):
    """No installed key opens this envelope, or it is malformed."""


def validate_key(key: bytes) -> None:
    if len(key) not in (16, 24, 32):
        raise KeyringError("key size must be 16, 24 or 32 bytes")


class Keyring:
    """Ordered keys, primary first. Each key keeps its AESGCM object (building one costs more
    than a seal of a small packet)."""

    __slots__ = ("_ciphers", "_keys")

    def __init__(self, keys: Iterable[bytes] = (), primary: bytes | None = None) -> None:
        self._keys: list[bytes] = []
        self._ciphers: dict[bytes, AESGCM] = {}
        keys = list(keys)
        if keys and primary is None:
            primary = keys[0]
        if primary is not None:
            self.add_key(primary)
            for k in keys:
                self.add_key(k)

    @property
    def keys(self) -> list[bytes]:
        return list(self._keys)

    @property
    def primary(self) -> bytes | None:
        return self._keys[0] if self._keys else None

    def __len__(self) -> int:
        return len(self._keys)

    def add_key(self, key: bytes) -> None:
        validate_key(key)
        if key in self._keys:
            return
        self._keys.append(key)
        self._ciphers[key] = AESGCM(key)

    def use_key(self, key: bytes) -> None:
        if key not in self._keys:
            raise KeyringError("Requested key is not in the keyring")
        self._keys.remove(key)
        self._keys.insert(0, key)

    def remove_key(self, key: bytes) -> None:
        if self._keys and key == self._keys[0]:
            raise KeyringError("Removing the primary key is not allowed")
        if key in self._keys:
            self._keys.remove(key)
            del self._ciphers[key]

    def cipher(self, key: bytes) -> AESGCM:
        return self._ciphers[key]

    def ciphers(self) -> list[AESGCM]:
        return [self._ciphers[k] for k in self._keys]


def encrypted_length(vsn: int, n: int) -> int:
    if vsn >= 1:
        return VERSION_SIZE + NONCE_SIZE + n + TAG_SIZE
    return VERSION_SIZE + NONCE_SIZE + n + (BLOCK_SIZE - n % BLOCK_SIZE) + TAG_SIZE


def encrypt(
    keyring: Keyring, plain: bytes, aad: bytes | None, entropy: Entropy, vsn: int = 1
) -> bytes:
    """Seal ``plain`` with the primary key."""
    primary = keyring.primary
    if primary is None:
        raise KeyringError("keyring is empty")
    nonce = entropy(NONCE_SIZE)
    if len(nonce) != NONCE_SIZE:
        raise ValueError("entropy returned the wrong number of bytes")
    if vsn == 0:
        pad = BLOCK_SIZE - len(plain) % BLOCK_SIZE
        plain = plain + bytes([pad]) * pad
    elif vsn != 1:
        raise ValueError(f"unsupported encryption version {vsn}")
    return bytes([vsn]) + nonce + keyring.cipher(primary).encrypt(nonce, plain, aad or None)


def decrypt(keyring: Keyring, msg: bytes, aad: bytes | None) -> bytes:
    """Open an envelope with any installed key; DecryptError if none can."""
    if not msg:
        raise DecryptError("Cannot decrypt empty payload")
    vsn = msg[0]
    if vsn > 1:
        raise DecryptError(f"Unsupported encryption version {vsn}")
    if len(msg) < encrypted_length(vsn, 0):
        raise DecryptError(f"Payload is too small to decrypt: {len(msg)}")
    nonce = msg[VERSION_SIZE : VERSION_SIZE + NONCE_SIZE]
    body = msg[VERSION_SIZE + NONCE_SIZE :]
    for cipher in keyring.ciphers():
        try:
            plain = cipher.decrypt(nonce, body, aad or None)
        except InvalidTag:
            continue
        if vsn == 0:
            if not plain:
                raise DecryptError("empty padded payload")
            pad = plain[-1]
            if not 1 <= pad <= BLOCK_SIZE or pad > len(plain):
                raise DecryptError("bad PKCS#7 padding")
            plain = plain[:-pad]
        return plain
    raise DecryptError("No installed keys could decrypt the message")
