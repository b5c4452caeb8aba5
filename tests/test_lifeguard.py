"""Lifeguard and SWIM formulas, as table tests against memberlist 0.2.2's own Go test cases;
then gossamer's additions to Lifeguard, driven through the core contract.

Sources: ML/util_test.go (TestSuspicionTimeout, TestRetransmitLimit, TestPushPullScale),
ML/suspicion_test.go (TestSuspicion_remainingSuspicionTime, TestSuspicion_Timer, _ZeroK,
_Immediate), ML/awareness_test.go (TestAwareness). Go durations are integers, so results
are compared after rounding to the nanosecond (or millisecond where Go floors to ms).

The additions (not in memberlist): a suspicion timer that fires late is held for a grace
period instead of declaring the member dead (local health awareness, Lifeguard §IV-A), and
a stale suspicion about ourselves is answered with our current ``alive``. Those tests feed a
single :class:`~swim.memberlist.Memberlist` its inputs at explicit times, with nothing
in between: a gap between two inputs is the process not running.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossamer.core import Event, TimerExpired
from swim import codec
from swim.awareness import Awareness
from swim.codec import NodeState
from swim.config import SwimConfig, push_pull_scale, retransmit_limit, suspicion_timeout
from swim.events import Address, PacketReceived, SendPacket
from swim.memberlist import Memberlist, ip_bytes
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


# --------------------------------------------------------------------------- late timers


def test_suspicion_lateness_is_measured_from_the_earliest_deadline_armed() -> None:
    """A confirmation that comes in after the armed deadline had passed (the owner was not
    running) re-arms the timer at once, as memberlist does; ``late_s`` still measures from
    the deadline that was missed, not from the re-armed one."""
    s = Suspicion("a", 2, 4.0, 24.0, 10.0)
    assert s.deadline == 34.0
    assert s.late_s(34.0) == 0.0
    assert s.confirm("b", 12.0) is True  # on time: the deadline moves earlier
    assert s.deadline == pytest.approx(12.0 + remaining_suspicion_time(1, 2, 2.0, 4.0, 24.0))
    due = s.deadline
    assert s.late_s(due + 0.5) == pytest.approx(0.5)
    assert s.confirm("c", due + 10.0) is True  # late: fires now, but it is 10 s late
    assert s.deadline == pytest.approx(due + 10.0)
    assert s.late_s(due + 10.0) == pytest.approx(10.0)


def test_suspicion_hold_is_a_floor_that_confirmations_cannot_undercut() -> None:
    s = Suspicion("a", 2, 4.0, 24.0, 0.0)
    s.hold(40.0)
    assert s.deadline == 40.0 and s.late_s(40.0) == 0.0
    assert s.confirm("b", 31.0) is True
    assert s.confirm("c", 32.0) is True  # all k confirmations: memberlist would fire now
    assert s.deadline == 40.0


_CFG = SwimConfig.lan().replace(stagger=False, push_pull_interval_s=0.0)
_VSN = bytes((1, 5, 2, 0, 0, 0))
_N = 6  # us and five others: k = suspicion_mult - 2 = 2, min 4 s, max 24 s
_LO = suspicion_timeout(_CFG.suspicion_mult, _N, _CFG.probe_interval_s)
_HI = _CFG.suspicion_max_timeout_mult * _LO


def _addr(i: int) -> Address:
    return (f"10.0.0.{i + 1}", 7946)


def _alive(i: int, incarnation: int = 1) -> bytes:
    a = _addr(i)
    return codec.Alive(incarnation, f"m{i}", ip_bytes(a[0]), a[1], b"", _VSN).encode()


class _Driven:
    """One memberlist core, m0, fed by hand. Every other member is prompt: a ping is acked
    at the instant it is sent. So nothing can go wrong but time: the gaps between inputs,
    during which the core is not running (stalled, starved, paused)."""

    def __init__(self, cfg: SwimConfig = _CFG) -> None:
        rng = random.Random(7)
        a = _addr(0)
        self.ml = Memberlist(
            name="m0", addr=a[0], port=a[1], config=cfg, rng=rng, entropy=rng.randbytes
        )
        self.ml.start(0.0)
        self.sent: list[tuple[float, Address, codec.Message]] = []
        for i in range(1, _N):
            self.packet(0.0, _alive(i), i)
        assert self.ml.num_nodes() == _N

    def packet(self, now: float, data: bytes, frm: int, answer: bool = True) -> None:
        self.input(now, PacketReceived(data, _addr(frm)), answer)

    def input(self, now: float, event: Event, answer: bool = True) -> None:
        """Handle one input at ``now``; with ``answer``, ack every ping it sends at once."""
        pending: list[tuple[Event, Address | None]] = [(event, None)]
        while pending:
            ev, _ = pending.pop(0)
            self.ml.handle(now, ev)
            for eff in self.ml.take_effects():
                if not isinstance(eff, SendPacket):
                    continue
                for raw in codec.open_packet(eff.data, None).messages:
                    if raw[0] == codec.MsgType.USER:
                        continue
                    m = codec.decode_message(raw)
                    self.sent.append((now, eff.addr, m))
                    if answer and isinstance(m, codec.Ping):
                        ack = codec.Ack(m.seq_no, None).encode()
                        pending.append((PacketReceived(ack, eff.addr), eff.addr))

    def suspect(self, now: float, node: str, frm: int, incarnation: int = 1) -> None:
        self.packet(now, codec.Suspect(incarnation, node, f"m{frm}").encode(), frm)

    def state(self, node: str) -> NodeState:
        return self.ml.nodes[node].state

    def gossiped(self, kind: type, node: str, since: float = 0.0) -> list[codec.Message]:
        return [m for t, _, m in self.sent if t >= since and isinstance(m, kind) and m.node == node]


def _suspected_then_asleep() -> tuple[_Driven, float]:
    """m0 suspects m5 at t = 5 (timer: start + max = 29 s), then runs nothing until 10 s past
    that deadline."""
    d = _Driven()
    d.suspect(5.0, "m5", 1)
    assert d.state("m5") == NodeState.SUSPECT
    deadline = d.ml.suspicions["m5"].deadline
    assert deadline == pytest.approx(5.0 + _HI)
    return d, deadline + 10.0


def test_a_suspicion_timer_that_fires_late_holds_the_verdict_and_costs_health() -> None:
    """Lifeguard §IV-A, extended to timers: a suspicion timer that runs more than a probe
    interval after its deadline means this process was not running while the suspicion
    ran. It does not declare the member dead then: it holds the suspicion for the minimum
    suspicion timeout, gossips it again (so the suspect can hear it and refute), and adds 1
    to its own health score."""
    d, wake = _suspected_then_asleep()
    assert d.ml.awareness.score == 0
    d.input(wake, TimerExpired(), answer=False)
    assert d.state("m5") == NodeState.SUSPECT
    assert d.ml.suspicions["m5"].deadline == pytest.approx(wake + _LO)
    assert d.ml.awareness.score == 1
    assert d.ml.stats["suspicions_late"] == 1
    d.input(wake + 0.5, TimerExpired())  # a gossip round: the suspicion goes out again
    again = d.gossiped(codec.Suspect, "m5", since=wake)
    assert again and all(m.from_ == "m0" and m.incarnation == 1 for m in again)
    assert not d.gossiped(codec.Dead, "m5")


def test_a_refutation_that_arrives_within_the_grace_keeps_the_member_alive() -> None:
    """The refutation reaches us behind the late timer (next in the socket backlog, or once
    the re-gossiped suspicion reached the suspect): the member stays alive, and nobody is
    ever told it died."""
    d, wake = _suspected_then_asleep()
    d.input(wake, TimerExpired())
    assert d.state("m5") == NodeState.SUSPECT
    d.packet(wake + 1.0, _alive(5, incarnation=2), 5)
    assert d.state("m5") == NodeState.ALIVE
    assert "m5" not in d.ml.suspicions
    d.input(wake + _LO + 1.0, TimerExpired())
    assert d.state("m5") == NodeState.ALIVE
    assert "msg_dead" not in d.ml.stats
    assert not d.gossiped(codec.Dead, "m5")


def test_without_a_refutation_the_member_is_declared_dead_when_the_grace_ends() -> None:
    d, wake = _suspected_then_asleep()
    d.input(wake, TimerExpired())
    d.input(wake + _LO - 0.01, TimerExpired())
    assert d.state("m5") == NodeState.SUSPECT
    d.input(wake + _LO + 0.01, TimerExpired())
    assert d.state("m5") == NodeState.DEAD
    d.input(wake + _LO + 0.5, TimerExpired())
    deads = d.gossiped(codec.Dead, "m5")
    assert deads and deads[0].from_ == "m0"
    assert d.ml.stats["suspicions_late"] == 1  # the grace timer fired on time


def test_a_late_confirmation_does_not_hide_that_the_timer_is_late() -> None:
    """The first input after the gap is a confirmation from another member: memberlist
    re-arms the (already expired) timer at once, and it runs at the end of that very input.
    It is still late — measured from the deadline that was missed — so it is held."""
    d, wake = _suspected_then_asleep()
    d.suspect(wake, "m5", 2, incarnation=1)
    assert d.state("m5") == NodeState.SUSPECT
    assert d.ml.suspicions["m5"].deadline == pytest.approx(wake + _LO)
    # nor can more confirmations in the backlog cut the grace short
    d.suspect(wake, "m5", 3, incarnation=1)
    assert d.state("m5") == NodeState.SUSPECT


def test_one_wake_up_costs_one_health_point_however_many_timers_it_finds_late() -> None:
    d = _Driven()
    d.suspect(5.0, "m5", 1)
    d.suspect(5.0, "m4", 1)
    wake = d.ml.suspicions["m5"].deadline + 10.0
    d.input(wake, TimerExpired(), answer=False)
    assert [d.state("m4"), d.state("m5")] == [NodeState.SUSPECT] * 2
    assert d.ml.stats["suspicions_late"] == 2
    assert d.ml.awareness.score == 1


@pytest.mark.parametrize("late_s", [0.0, 0.5, _CFG.probe_interval_s])
def test_a_timer_late_by_at_most_a_probe_interval_declares_as_memberlist_does(
    late_s: float,
) -> None:
    d, _ = _suspected_then_asleep()
    deadline = d.ml.suspicions["m5"].deadline
    d.input(deadline + late_s, TimerExpired())
    assert d.state("m5") == NodeState.DEAD
    assert "suspicions_late" not in d.ml.stats


def test_without_lifeguard_awareness_a_late_timer_declares_at_once() -> None:
    """Lifeguard off is memberlist's behaviour: the verdict stands however late it is."""
    d = _Driven(_CFG.replace(lifeguard_awareness=False))
    d.suspect(5.0, "m5", 1)
    wake = d.ml.suspicions["m5"].deadline + 10.0
    d.input(wake, TimerExpired())
    assert d.state("m5") == NodeState.DEAD
    assert d.ml.awareness.score == 0


# --------------------------------------------------------------------------- stale suspicion


def _queued(ml: Memberlist) -> list[codec.Message]:
    """Drain the broadcast queue (one transmission of everything queued) and decode it."""
    return [codec.decode_message(b) for b in ml.broadcasts.get(2, 1 << 16, ml.num_nodes())]


def test_a_stale_suspicion_about_us_is_answered_with_our_current_alive() -> None:
    """memberlist ignores a suspect about us older than our incarnation; its holder missed
    our refutation, so we gossip our current alive again — no new incarnation, and one
    queued message however many stale suspicions arrive."""
    d = _Driven()
    d.suspect(1.0, "m0", 1, incarnation=1)  # a current one: refuted with incarnation 2
    assert d.ml.incarnation == 2 and d.ml.stats["refutes"] == 1
    d.ml.broadcasts.reset()  # the refutation has run out of retransmits
    score = d.ml.awareness.score
    for frm in (2, 3, 2):
        d.packet(2.0, codec.Suspect(1, "m0", f"m{frm}").encode(), frm, answer=False)
    assert d.ml.awareness.score == score  # answering costs no health: no new refutation
    assert d.ml.incarnation == 2 and d.ml.stats["refutes"] == 1
    assert d.ml.stats["stale_suspicions_answered"] == 3
    queued = _queued(d.ml)
    assert len(queued) == 1
    (a,) = queued
    assert isinstance(a, codec.Alive)
    assert (a.node, a.incarnation) == ("m0", 2)


def test_a_stale_suspicion_about_someone_else_is_still_ignored() -> None:
    d = _Driven()
    d.packet(1.0, _alive(5, incarnation=3), 5)
    d.ml.broadcasts.reset()
    d.suspect(2.0, "m5", 1, incarnation=2)
    assert d.state("m5") == NodeState.ALIVE
    assert _queued(d.ml) == []
