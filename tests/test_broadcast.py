"""The transmit-limited broadcast queue (swim/broadcast.py), against ML/queue_test.go.

memberlist's tests look at the btree through ``orderedView``; ours observe the same order
through what ``get`` hands out, which is the only thing the order is for.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from swim.broadcast import BroadcastQueue
from swim.config import retransmit_limit

MSG18 = [f"{i}. this is a test.".encode() for i in range(1, 5)]


class Finished:
    def __init__(self) -> None:
        self.names: list[str] = []

    def cb(self, name: str) -> Callable[[], None]:
        return lambda: self.names.append(name)


def test_fewest_transmits_first_then_largest_then_newest() -> None:
    """ML/queue_test.go TestLimitedBroadcastLess: transmits asc, length desc, id desc."""
    q = BroadcastQueue(retransmit_mult=10)
    q.queue(b"old-10byte", name="a")
    q.queue(b"new-10byte", name="b")
    q.queue(b"twelve-bytes", name="c")
    # everything fits: order is the queue's order
    assert q.get(0, 1000, 10) == [b"twelve-bytes", b"new-10byte", b"old-10byte"]
    q.queue(b"fresh", name="d")
    # d has 0 transmits, the others 1: fresh news goes first even though it is smallest
    assert q.get(0, 1000, 10)[0] == b"fresh"


def test_named_broadcast_replaces_the_queued_one_about_the_same_node() -> None:
    """ML/queue_test.go TestTransmitLimited_Queue: a new message named like a queued one
    invalidates it (its Finished fires) and joins the queue as the newest."""
    fin = Finished()
    q = BroadcastQueue(retransmit_mult=1)
    for name in ("test", "foo", "bar"):
        q.queue(name.encode().ljust(4), name=name, on_finished=fin.cb(name))
    assert len(q) == 3
    assert q.get(0, 1000, 1) == [b"bar ", b"foo ", b"test"]  # newest first, all 4 bytes

    fin = Finished()
    q = BroadcastQueue(retransmit_mult=1)
    for name in ("test", "foo", "bar"):
        q.queue(name.encode().ljust(4), name=name, on_finished=fin.cb(name))
    q.queue(b"tst2", name="test", on_finished=fin.cb("test2"))
    assert len(q) == 3
    assert fin.names == ["test"]
    assert q.get(0, 1000, 1) == [b"tst2", b"bar ", b"foo "]


def test_get_broadcasts_respects_the_byte_limit_with_per_message_overhead() -> None:
    """ML/queue_test.go TestTransmitLimited_GetBroadcasts: 4 × 18 bytes; overhead 2 fits all
    four in 80 bytes, overhead 3 only three."""
    q = BroadcastQueue(retransmit_mult=3)
    for i, m in enumerate(MSG18):
        q.queue(m, name=f"n{i}")
    assert len(q.get(2, 80, 10)) == 4
    assert len(q.get(3, 80, 10)) == 3


def test_each_message_is_sent_at_most_the_retransmit_limit() -> None:
    """ML/queue_test.go TestTransmitLimited_GetBroadcasts_Limit: mult 1, n 10 → 2 sends each."""
    assert retransmit_limit(1, 10) == 2
    fin = Finished()
    q = BroadcastQueue(retransmit_mult=1)
    for i, m in enumerate(MSG18):
        q.queue(m, name=f"n{i}", on_finished=fin.cb(f"n{i}"))
    assert len(q.get(3, 80, 10)) == 3
    assert len(q.get(3, 80, 10)) == 3
    assert len(q.get(3, 80, 10)) == 2
    assert len(q) == 0
    assert q.get(3, 80, 10) == []
    assert sorted(fin.names) == ["n0", "n1", "n2", "n3"]


def test_the_largest_message_that_still_fits_is_chosen_within_a_tier() -> None:
    q = BroadcastQueue(retransmit_mult=4)
    q.queue(b"x" * 50, name="big")
    q.queue(b"y" * 20, name="mid")
    q.queue(b"z" * 5, name="small")
    assert q.get(0, 30, 10) == [b"y" * 20, b"z" * 5]
    assert q.get(0, 49, 10) == [b"y" * 20, b"z" * 5]  # big still never fits
    assert q.get(0, 100, 10)[0] == b"x" * 50  # fewest transmits first


def test_prune_keeps_the_least_transmitted_newest_messages() -> None:
    """ML/queue_test.go TestTransmitLimited_Prune: keep 2 of 4, the two oldest are
    finished."""
    fin = Finished()
    q = BroadcastQueue(retransmit_mult=1)
    for name, m in zip(("test", "foo", "bar", "baz"), MSG18, strict=True):
        q.queue(m, name=name, on_finished=fin.cb(name))
    assert q.prune(2) == 2
    assert len(q) == 2
    assert fin.names == ["test", "foo"]
    assert q.get(0, 1000, 10) == [MSG18[3], MSG18[2]]


def test_prune_drops_the_most_transmitted_first() -> None:
    q = BroadcastQueue(retransmit_mult=10)
    q.queue(b"sent-once", name="a")
    q.get(0, 1000, 10)
    q.queue(b"never-sent", name="b")
    q.prune(1)
    assert q.get(0, 1000, 10) == [b"never-sent"]


def test_unnamed_messages_never_replace_each_other() -> None:
    q = BroadcastQueue(retransmit_mult=1)
    q.queue(b"same")
    q.queue(b"same")
    assert len(q) == 2


def test_reset_finishes_everything() -> None:
    fin = Finished()
    q = BroadcastQueue(retransmit_mult=1)
    q.queue(b"a", name="a", on_finished=fin.cb("a"))
    q.queue(b"b", on_finished=fin.cb("b"))
    q.reset()
    assert len(q) == 0
    assert sorted(fin.names) == ["a", "b"]
    assert q.get(0, 100, 10) == []


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=30),
    n=st.integers(min_value=1, max_value=200),
    mult=st.integers(min_value=1, max_value=4),
    limit=st.integers(min_value=62, max_value=300),  # the largest message + 2 B overhead fits
)
def test_every_message_goes_out_exactly_limit_times_when_there_is_room(
    sizes: list[int], n: int, mult: int, limit: int
) -> None:
    """Invariant: nothing is sent more than retransmit_limit times, every packet respects the
    byte limit, and with enough rounds every message reaches its limit and is finished."""
    q = BroadcastQueue(mult)
    fin = Finished()
    for i, size in enumerate(sizes):
        q.queue(bytes([i]) * size, name=str(i), on_finished=fin.cb(str(i)))
    sent: dict[bytes, int] = {}
    cap = retransmit_limit(mult, n)
    for _ in range(len(sizes) * cap + 5):
        out = q.get(2, limit, n)
        assert sum(len(m) + 2 for m in out) <= limit
        assert len(out) == len(set(out))
        for m in out:
            sent[m] = sent.get(m, 0) + 1
    assert all(v == cap for v in sent.values())
    assert len(sent) == len(sizes)
    assert len(q) == 0
    assert sorted(fin.names, key=int) == [str(i) for i in range(len(sizes))]
