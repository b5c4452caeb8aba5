"""Lifeguard and SWIM formulas, as table tests against memberlist 0.2.2's own Go test cases.

Sources: ML/util_test.go (TestSuspicionTimeout, TestRetransmitLimit, TestPushPullScale),
ML/suspicion_test.go (TestSuspicion_remainingSuspicionTime, TestSuspicion_Timer, _ZeroK,
_Immediate), ML/awareness_test.go (TestAwareness). Go durations are integers, so results
are compared after rounding to the nanosecond (or millisecond where Go floors to ms).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swim.awareness import Awareness
from swim.config import SwimConfig, push_pull_scale, retransmit_limit, suspicion_timeout
from swim.suspicion import Suspicion, remaining_suspicion_time


def ns(seconds: float) -> int:
    return round(seconds * 1e9)


# --------------------------------------------------------------------------- suspicion timeout


@pytest.mark.parametrize(
    ("n", "expected_ms"),
    [(5, 1000), (10, 1000), (50, 1698), (100, 2000), (500, 2698), (1000, 3000)],
)
def test_suspicion_timeout_scales_with_log10_n_truncated_to_thousandths(
    n: int, expected_ms: int
) -> None:
    """ML/util_test.go TestSuspicionTimeout: suspicionTimeout(3, n, 1s) / 3."""
    assert ns(suspicion_timeout(3, n, 1.0) / 3) == expected_ms * 1_000_000


@pytest.mark.parametrize(
    ("preset", "n", "lo_s", "hi_s"),
    [
        ("lan", 3, 4.0, 24.0),  # memberlist-wire.md §6.4: "LAN n<=10: 4 s ... 24 s"
        ("lan", 10, 4.0, 24.0),
        ("wan", 10, 30.0, 180.0),
        ("local", 5, 3.0, 18.0),
    ],
)
def test_suspicion_bounds_of_the_presets(preset: str, n: int, lo_s: float, hi_s: float) -> None:
    cfg = SwimConfig.preset(preset)
    lo = suspicion_timeout(cfg.suspicion_mult, n, cfg.probe_interval_s)
    assert lo == pytest.approx(lo_s)
    assert cfg.suspicion_max_timeout_mult * lo == pytest.approx(hi_s)


def test_suspicion_timeout_is_at_least_one_scale_unit_for_tiny_clusters() -> None:
    for n in (0, 1, 2):
        assert suspicion_timeout(4, n, 1.0) == 4.0


# --------------------------------------------------------------------------- retransmit limit


@pytest.mark.parametrize(
    ("mult", "n", "expected"),
    [
        (3, 0, 0),  # ML/util_test.go TestRetransmitLimit
        (3, 1, 3),
        (3, 99, 6),
        (4, 3, 4),  # memberlist-wire.md §6.4: LAN n=3 -> 4, n=10 -> 8
        (4, 10, 8),
        (4, 9, 4),
        (4, 99, 8),
        (4, 100, 12),
    ],
)
def test_retransmit_limit_is_mult_times_ceil_log10_n_plus_1(
    mult: int, n: int, expected: int
) -> None:
    assert retransmit_limit(mult, n) == expected


# --------------------------------------------------------------------------- push/pull scale


def test_push_pull_interval_scales_above_32_nodes() -> None:
    """ML/util_test.go TestPushPullScale: x1 up to 32, x2 for 33-64, x3 for 65-128."""
    for n in range(0, 33):
        assert push_pull_scale(1.0, n) == 1.0
    for n in range(33, 65):
        assert push_pull_scale(1.0, n) == 2.0
    for n in range(65, 129):
        assert push_pull_scale(1.0, n) == 3.0
    assert push_pull_scale(30.0, 129) == 120.0


# --------------------------------------------------------------------------- remaining time


@pytest.mark.parametrize(
    ("n", "k", "elapsed_s", "expected_ms"),
    [
        (0, 3, 0.0, 30_000),
        (1, 3, 2.0, 14_000),
        (2, 3, 3.0, 4_810),
        (3, 3, 4.0, -2_000),
        (4, 3, 5.0, -3_000),
        (5, 3, 10.0, -8_000),
    ],
)
def test_remaining_suspicion_time_matches_memberlist(
    n: int, k: int, elapsed_s: float, expected_ms: int
) -> None:
    """ML/suspicion_test.go TestSuspicion_remainingSuspicionTime (min 2 s, max 30 s)."""
    got = remaining_suspicion_time(n, k, elapsed_s, 2.0, 30.0)
    assert round(got * 1000) == expected_ms
    # Go floors the timeout to whole milliseconds before subtracting the elapsed time
    assert abs(got * 1000 - round(got * 1000)) < 1e-6


@given(
    k=st.integers(min_value=1, max_value=10),
    lo=st.floats(min_value=0.1, max_value=50.0),
    mult=st.integers(min_value=1, max_value=8),
)
def test_remaining_suspicion_time_shrinks_monotonically_from_max_to_min(
    k: int, lo: float, mult: int
) -> None:
    hi = lo * mult
    prev = math.inf
    for c in range(0, k + 3):
        t = remaining_suspicion_time(c, k, 0.0, lo, hi)
        assert lo - 1e-9 <= t <= hi + 1e-9
        assert t <= prev + 1e-9
        prev = t
    assert remaining_suspicion_time(k, k, 0.0, lo, hi) == pytest.approx(lo, abs=1e-3)


# --------------------------------------------------------------------------- the suspicion timer

_K = 3
_MIN = 0.5
_MAX = 2.0


@pytest.mark.parametrize(
    ("confirmations", "expected_s", "expected_n"),
    [
        ([], _MAX, 0),
        ([("me", False), ("foo", True)], 1.25, 1),
        ([("me", False), ("foo", True), ("foo", False), ("foo", False)], 1.25, 1),
        # Go's table says 810 ms, checked with a 25 ms sleep fudge; the formula gives
        # floor(1000 × (2 - ln3/ln4 × 1.5)) = 811 ms, which is what Go's timer really runs.
        ([("me", False), ("foo", True), ("bar", True)], 0.811, 2),
        ([("me", False), ("foo", True), ("bar", True), ("baz", True)], _MIN, 3),
        ([("me", False), ("foo", True), ("bar", True), ("baz", True), ("zoo", False)], _MIN, 3),
    ],
)
def test_suspicion_timer_deadline_after_confirmations(
    confirmations: list[tuple[str, bool]], expected_s: float, expected_n: int
) -> None:
    """ML/suspicion_test.go TestSuspicion_Timer (k=3, min 500 ms, max 2 s), on virtual time:
    confirmations arrive 25 ms apart; the timer fires at start + expected whatever the
    elapsed time, a repeat from the same member or one beyond k adds nothing."""
    start = 100.0
    s = Suspicion("me", _K, _MIN, _MAX, start)
    now = start
    for who, new_info in confirmations:
        now += 0.025
        assert s.confirm(who, now) is new_info, who
    assert s.n == expected_n
    assert ns(s.deadline - start) == ns(expected_s)


def test_suspicion_timer_with_zero_k_runs_the_minimum_and_ignores_confirmations() -> None:
    """ML/suspicion_test.go TestSuspicion_Timer_ZeroK."""
    s = Suspicion("me", 0, 0.025, 30.0, 10.0)
    assert s.deadline == pytest.approx(10.025)
    assert s.confirm("foo", 10.001) is False
    assert s.deadline == pytest.approx(10.025)


def test_suspicion_timer_fires_immediately_when_a_late_confirmation_underflows() -> None:
    """ML/suspicion_test.go TestSuspicion_Timer_Immediate: remaining < 0 fires at once."""
    s = Suspicion("me", 1, 0.1, 30.0, 0.0)
    assert s.deadline == pytest.approx(30.0)
    assert s.confirm("foo", 0.2) is True
    assert s.deadline == pytest.approx(0.2)


# --------------------------------------------------------------------------- awareness


def test_awareness_score_and_scaled_timeout_table() -> None:
    """ML/awareness_test.go TestAwareness (max 8): the score is clamped to [0, 7] and the
    probe interval is multiplied by score + 1."""
    cases = [
        (0, 0, 1.0),
        (-1, 0, 1.0),
        (-10, 0, 1.0),
        (1, 1, 2.0),
        (-1, 0, 1.0),
        (10, 7, 8.0),
        (-1, 6, 7.0),
        (-1, 5, 6.0),
        (-1, 4, 5.0),
        (-1, 3, 4.0),
        (-1, 2, 3.0),
        (-1, 1, 2.0),
        (-1, 0, 1.0),
        (-1, 0, 1.0),
    ]
    a = Awareness(8)
    for i, (delta, score, timeout) in enumerate(cases):
        assert a.apply_delta(delta) == score, i
        assert a.score == score, i
        assert a.scale(1.0) == timeout, i


def test_awareness_disabled_stays_at_zero() -> None:
    a = Awareness(8, enabled=False)
    a.apply_delta(5)
    assert a.score == 0
    assert a.scale(1.0) == 1.0
