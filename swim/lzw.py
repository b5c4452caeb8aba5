"""LZW as Go's ``compress/lzw`` does it, LSB bit order, literal width 8.

HashiCorp memberlist compresses packets and push/pull streams (``compress`` message,
Algo 0) with ``lzw.NewWriter(buf, lzw.LSB, 8)``; this module produces the same bytes as
Go 1.19's writer (Serf 0.9.4 on Debian) and reads what that writer, or an older one, makes.
Ported from Go's ``src/compress/lzw/writer.go`` and ``src/compress/lzw/reader.go``:

1. Codes 0-255 are literal bytes, 256 is clear, 257 is EOF, dictionary entries start at 258;
   codes are 9 to 12 bits wide and packed least-significant-bit first.
2. A counter ``hi`` starts at 257 with width 9 (and is reset so by a clear). After every
   non-clear code written or read, ``hi += 1``, and if ``hi == 1 << width`` and width < 12,
   ``width += 1``. Clear codes themselves do not advance ``hi``.
3. Decoder: every code after the first (since the start or a clear) defines entry ``hi``
   (before the increment) = previous string + first byte of the current string; when the
   code equals ``hi`` it is the KwKwK case (previous + its own first byte). At width 12 with
   ``hi`` reaching 4096 the decoder stops defining entries until the next clear.
4. Encoder: greedy longest match; when ``hi`` reaches 4095 it emits a clear (at the current
   width, 12) and starts over. ``Close`` writes the pending code, then EOF, then the last
   partial byte zero-padded.
5. Since Go 1.17 the writer begins every stream with a clear code (also for empty input);
   older writers did not, and the decoder accepts both. Bytes after EOF are ignored; a
   stream that ends before EOF is Go's ``io.ErrUnexpectedEOF``, here :class:`LZWError`.
"""

from __future__ import annotations

__all__ = ["LZWError", "compress", "decompress"]

_CLEAR = 256
_EOF = 257
_MAX_WIDTH = 12

# Encoder tables hold codes multiplied by 256, so a dictionary key (prefix_code << 8 | byte)
# is a plain addition on the hot path; `_LIT256[b]` is literal b in that form.
_LIT256: tuple[int, ...] = tuple(i << 8 for i in range(256))
_HI_START = _EOF << 8  # hi, times 256, after a reset
_FIRST_LIMIT = 512 << 8  # times 256: the hi at which the width first grows
_OUT_OF_CODES = 4095 << 8  # times 256: Go's maxCode, the hi that forces a clear
_FLUSH_BITS = 48
_FLUSH_MASK = (1 << _FLUSH_BITS) - 1

# Decoder template: literal expansions, then slots for 256..4095 (filled per stream).
_DECODE_TABLE: tuple[bytes, ...] = tuple(bytes((i,)) for i in range(256)) + (b"",) * 3840


class LZWError(ValueError):
    """Malformed LZW input: an invalid code, no EOF code, or too much output."""


def compress(data: bytes) -> bytes:
    """Compress ``data`` exactly as Go 1.19's ``lzw.NewWriter(w, lzw.LSB, 8)`` would."""
    if not data:
        # Go's Close writes the starting clear code that Write never did, then EOF.
        return (_CLEAR | _EOF << 9).to_bytes(3, "little")
    out = bytearray()
    # Bit accumulator, kept shifted left by 8 (codes travel as code * 256): the real
    # pending bits are acc >> 8 and there are nbits of them. It starts with the clear code.
    acc = _CLEAR << 8
    nbits = 9
    width = 9
    hv = _HI_START
    limit = _FIRST_LIMIT  # next hv at which the width grows (or, at width 12, codes run out)
    table: dict[int, int] = {}
    get = table.get
    lit = _LIT256
    it = iter(data)
    base = lit[next(it)]  # the pending code, times 256
    for x in it:
        key = base + x
        hit = get(key)
        if hit is not None:
            base = hit
            continue
        acc |= base << nbits
        nbits += width
        if nbits >= _FLUSH_BITS:
            out += (acc >> 8 & _FLUSH_MASK).to_bytes(6, "little")
            acc = acc >> _FLUSH_BITS & ~0xFF
            nbits -= _FLUSH_BITS
        base = lit[x]
        hv += 256
        if hv == limit:
            if width == _MAX_WIDTH:
                # hi == 4095: write a clear at width 12, reset, and do not add `key`.
                acc |= _CLEAR << (nbits + 8)
                nbits += _MAX_WIDTH
                width = 9
                hv = _HI_START
                limit = _FIRST_LIMIT
                table.clear()
                continue
            width += 1
            limit = _OUT_OF_CODES if width == _MAX_WIDTH else limit << 1
        table[key] = hv
    # Close: write the pending code, then incHi (which may write a clear), then EOF.
    acc |= base << nbits
    nbits += width
    hv += 256
    if hv == limit:
        if width == _MAX_WIDTH:
            acc |= _CLEAR << (nbits + 8)
            nbits += _MAX_WIDTH
            width = 9
        else:
            width += 1
    acc >>= 8
    acc |= _EOF << nbits
    nbits += width
    out += acc.to_bytes((nbits + 7) >> 3, "little")  # last byte zero-padded
    return bytes(out)


def decompress(data: bytes, max_out: int = 20 * 1024 * 1024) -> bytes:
    """Inflate a Go LSB/8 LZW stream up to its EOF code; anything after EOF is ignored.

    Raises :class:`LZWError` on an invalid code, on a stream that ends before its EOF code,
    and when the output would exceed ``max_out`` bytes.
    """
    n = len(data)
    table = list(_DECODE_TABLE)
    out = bytearray()
    frombytes = int.from_bytes
    acc = 0  # bit accumulator, refilled 56 bits at a time
    nacc = 0
    p = 0
    width = 9
    mask = 511
    hi = _EOF
    overflow = 512
    last: bytes | None = None  # expansion of the previous code; None after clear / when full
    while True:
        if nacc < width:
            acc |= frombytes(data[p : p + 7], "little") << nacc
            p += 7
            nacc += 56
            if p > n:
                nacc -= (p - n) << 3
                p = n
                if nacc < width:
                    raise LZWError("lzw: unexpected end of data (no EOF code)")
        code = acc & mask
        acc >>= width
        nacc -= width
        if code < _CLEAR:
            s = table[code]
            if last is not None:
                table[hi] = last + s
        elif code < hi:
            if code == _CLEAR:
                width = 9
                mask = 511
                hi = _EOF
                overflow = 512
                last = None
                continue
            if code == _EOF:
                break
            s = table[code]
            if last is not None:
                table[hi] = last + s[:1]
            if len(out) > max_out:
                raise LZWError(f"lzw: output exceeds {max_out} bytes")
        elif code == hi:
            if code == _EOF:
                break
            if last is None:
                # Only when the table is full (hi stuck at 4095): entry 4095 exists.
                s = table[code]
            else:
                s = last + last[:1]  # KwKwK
                table[hi] = s
            if len(out) > max_out:
                raise LZWError(f"lzw: output exceeds {max_out} bytes")
        else:
            raise LZWError(f"lzw: invalid code {code} (hi is {hi})")
        out += s
        last = s
        hi += 1
        if hi == overflow:
            if width == _MAX_WIDTH:
                # Table full: stop defining entries until a clear (Go undoes the hi++).
                last = None
                hi -= 1
            else:
                width += 1
                overflow <<= 1
                mask = overflow - 1
    if len(out) > max_out:
        raise LZWError(f"lzw: output exceeds {max_out} bytes")
    return bytes(out)
