"""Go's Duration.String and ParseDuration, as Consul echoes durations back (a session's
TTL "20s") and parses them from users (?wait=10s, "LockDelay": "0.001s")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossamer.duration import format_duration, parse_duration_ns


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (1_000_000, "1ms"),
        (15_000_000, "15ms"),
        (1_500_000_000, "1.5s"),
        (20 * 10**9, "20s"),
        (90 * 10**9, "1m30s"),
        (3600 * 10**9, "1h0m0s"),
        (86400 * 10**9, "24h0m0s"),
        (-(2 * 10**9), "-2s"),
        (3723_004_005_006, "1h2m3.004005006s"),
    ],
)
def test_format_matches_go(ns: int, text: str) -> None:
    assert format_duration(ns) == text


@given(st.integers(-(1 << 62), 1 << 62))
def test_format_then_parse_round_trips(ns: int) -> None:
    assert parse_duration_ns(format_duration(ns)) == ns
