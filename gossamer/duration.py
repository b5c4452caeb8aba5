"""Go's ``time.Duration`` text: ``ParseDuration`` and ``Duration.String``.

Consul speaks durations in Go's format everywhere a user types one (``?wait=10s``,
``"TTL": "20s"``, ``"LockDelay": "0.001s"``, ``-retry-interval=30s``) and echoes them back
the same way (a session's ``TTL``), so both directions must match Go exactly.
Parsing is linear in the input (two anchored, non-backtracking patterns), so it is safe
on network input.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["format_duration", "go_quote", "parse_duration", "parse_duration_ns"]

_INT64_MAX = (1 << 63) - 1
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_NUMBER = re.compile(r"([0-9]*)(?:\.([0-9]*))?")
_UNIT = re.compile(r"[^0-9.]*")


_GO_QUOTE_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    '"': '\\"',
    "\\": "\\\\",
}


def go_quote(text: str) -> str:
    """Go's ``%q`` / ``strconv.Quote``, which Go's error messages (these among them) use."""
    out = ['"']
    for ch in text:
        if ch in _GO_QUOTE_ESCAPES:
            out.append(_GO_QUOTE_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def parse_duration_ns(text: str) -> int:
    """Nanoseconds in a Go duration string; ValueError with Go's message otherwise."""
    quoted = go_quote(text)
    rest = text
    negative = False
    if rest[:1] in ("+", "-"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(f"time: invalid duration {quoted}")
    total = 0
    while rest:
        number = _NUMBER.match(rest)
        assert number is not None  # the pattern matches the empty string
        whole, fraction = number.group(1), number.group(2)
        if not whole and not fraction:
            raise ValueError(f"time: invalid duration {quoted}")
        if len(whole) > 30 or (fraction and len(fraction) > 30):
            raise ValueError(f"time: invalid duration {quoted}")
        rest = rest[number.end() :]
        unit_match = _UNIT.match(rest)
        assert unit_match is not None
        unit = unit_match.group(0)
        if not unit:
            raise ValueError(f"time: missing unit in duration {quoted}")
        if unit not in _UNIT_NS:
            raise ValueError(f"time: unknown unit {go_quote(unit)} in duration {quoted}")
        rest = rest[len(unit) :]
        value = Fraction(int(whole or "0"))
        if fraction:
            value += Fraction(int(fraction), 10 ** len(fraction))
        total += int(value * _UNIT_NS[unit])
        if total > _INT64_MAX:
            raise ValueError(f"time: invalid duration {quoted}")
    return -total if negative else total


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string (``30s``, ``500ms``, ``1m30s``, ``0.001s``)."""
    return parse_duration_ns(text) / 1e9


def format_duration(ns: int) -> str:
    """Go's ``Duration.String``: ``20s``, ``1m30s``, ``1h0m0s``, ``15ms``, ``1.5µs``, ``0s``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("\u00b5s", 1_000), ("ns", 1)):
            if u >= size:
                return sign + _frac(u, size) + unit
    secs = _frac(u % 60_000_000_000, 1_000_000_000) + "s"
    mins = u // 60_000_000_000
    if mins == 0:
        return sign + secs
    hours, mins = divmod(mins, 60)
    if hours == 0:
        return f"{sign}{mins}m{secs}"
    return f"{sign}{hours}h{mins}m{secs}"


def _frac(value: int, size: int) -> str:
    whole, rem = divmod(value, size)
    if rem == 0:
        return str(whole)
    digits = str(rem).rjust(len(str(size)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"
