"""The linearizability checker (sim/linearizability.py): hand-written histories from the
literature, agreement with a brute-force reference on small random histories, generated
linearizable histories (and the same with one impossible read injected), and one long
history at the scale issue 5's Raft runs will produce.

Rule numbers refer to the module docstring.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.linearizability import KINDS, UNDETERMINED, History, Op, check

# --------------------------------------------------------------------------- builders


def put(c: str, k: str, v: bytes, call: float, ret: float | None, ok: bool = True) -> Op:
    return Op(c, "put", k, v, None, call, ret, None if ret is None else ok, None)


def get(c: str, k: str, r: bytes | None, call: float, ret: float | None) -> Op:
    return Op(c, "get", k, None, None, call, ret, None, r)


def delete(c: str, k: str, call: float, ret: float | None, ok: bool = True) -> Op:
    return Op(c, "delete", k, None, None, call, ret, None if ret is None else ok, None)


def cas(
    c: str,
    k: str,
    v: bytes,
    expect: bytes | None,
    call: float,
    ret: float | None,
    ok: bool | None,
) -> Op:
    """``expect=None``: create only (Consul's ``?cas=0``); otherwise the value read."""
    index = 0 if expect is None else 7  # the ModifyIndex itself plays no part (rule 3)
    return Op(c, "cas", k, v, index, call, ret, ok, None, expect)


def assert_linearizable(history: Sequence[Op]) -> None:
    res = check(history)
    assert res.ok, res.explanation
    assert not res.undetermined


def assert_violation(history: Sequence[Op], key: str = "x") -> str:
    res = check(history)
    assert not res.ok and not res.undetermined, res.explanation
    assert res.key == key
    return res.explanation


# --------------------------------------------------------------------------- literature


def test_empty_and_sequential_histories_are_linearizable() -> None:
    assert_linearizable([])
    assert_linearizable(
        [
            get("a", "x", None, 0, 1),
            put("a", "x", b"1", 2, 3),
            get("b", "x", b"1", 4, 5),
            put("b", "x", b"2", 6, 7),
            get("a", "x", b"2", 8, 9),
        ]
    )


@pytest.mark.parametrize("seen", [(b"1", b"1"), (b"2", b"2"), (b"1", b"2"), (b"2", b"1")])
def test_overlapping_writes_may_be_read_in_either_order(seen: tuple[bytes, bytes]) -> None:
    """Two overlapping writes and two sequential reads inside their span: the reads may
    see either value, the same one twice, or one then the other."""
    writes = [put("a", "x", b"1", 0, 10), put("b", "x", b"2", 1, 9)]
    assert_linearizable([*writes, get("c", "x", seen[0], 2, 3), get("d", "x", seen[1], 4, 5)])


def test_flip_flop_between_two_overlapping_writes_is_not_linearizable() -> None:
    """Reads that see 1, then 2, then 1 again would need one write to take effect twice."""
    writes = [put("a", "x", b"1", 0, 10), put("b", "x", b"2", 1, 9)]
    reads = [get("c", "x", b"1", 2, 3), get("c", "x", b"2", 4, 5), get("c", "x", b"1", 6, 7)]
    assert_violation([*writes, *reads])


def test_stale_read_after_a_completed_write_is_not_linearizable() -> None:
    text = assert_violation(
        [put("a", "x", b"1", 0, 1), put("a", "x", b"2", 2, 3), get("b", "x", b"1", 4, 5)]
    )
    assert "#2 b get -> b'1' [4, 5]: needs the key to hold b'1'" in text


def test_new_then_old_value_across_non_overlapping_reads_is_not_linearizable() -> None:
    """The classic non-atomic register: a write overlaps two reads; the first sees the new
    value, the second (after the first returned) the old one."""
    history = [
        put("a", "x", b"old", 0, 1),
        put("b", "x", b"new", 2, 10),
        get("c", "x", b"new", 3, 4),
        get("d", "x", b"old", 5, 6),
    ]
    assert_violation(history)
    # The same reads overlapping each other are fine: the second may be ordered first.
    assert_linearizable([*history[:3], get("d", "x", b"old", 3.5, 6)])


def test_a_write_with_no_answer_may_take_effect_later() -> None:
    """A timed-out write (rule 4) may be seen by reads long after its call, in any order
    with later completed writes, or never."""
    assert_linearizable(
        [put("a", "x", b"1", 0, 1), put("b", "x", b"2", 2, None), get("c", "x", b"2", 50, 51)]
    )
    assert_linearizable(
        [put("a", "x", b"1", 0, 1), put("b", "x", b"2", 2, None), get("c", "x", b"1", 50, 51)]
    )
    # Seen, then not seen any more: a completed write overwrote it in between.
    assert_linearizable(
        [
            put("b", "x", b"2", 2, None),
            get("c", "x", b"2", 3, 4),
            put("a", "x", b"3", 5, 6),
            get("c", "x", b"3", 7, 8),
        ]
    )


def test_a_write_with_no_answer_cannot_be_read_before_its_call() -> None:
    text = assert_violation(
        [put("a", "x", b"1", 0, 1), get("c", "x", b"2", 2, 3), put("b", "x", b"2", 4, None)]
    )
    assert "#1 c get -> b'2'" in text


def test_a_write_with_no_answer_takes_effect_at_most_once() -> None:
    assert_violation(
        [
            put("b", "x", b"2", 0, None),
            get("c", "x", b"2", 1, 2),
            put("a", "x", b"3", 3, 4),
            get("c", "x", b"2", 5, 6),
        ]
    )


def test_a_refused_write_did_not_take_effect() -> None:
    assert_violation([put("a", "x", b"1", 0, 1, ok=False), get("b", "x", b"1", 2, 3)])
    assert_linearizable([put("a", "x", b"1", 0, 1, ok=False), get("b", "x", None, 2, 3)])


def test_a_read_with_no_answer_constrains_nothing() -> None:
    assert_linearizable([put("a", "x", b"1", 0, 1), get("b", "x", b"zzz", 2, None)])


def test_equal_instants_are_concurrent() -> None:
    """Rule 1: a read called at the very instant a write returned may precede it."""
    assert_linearizable([put("a", "x", b"1", 0, 1), get("b", "x", None, 1, 2)])
    assert_violation([put("a", "x", b"1", 0, 1), get("b", "x", None, 1.001, 2)])


def test_create_only_cas() -> None:
    """``?cas=0``: succeeds iff the key is absent (Consul's kvsSetCASTxn)."""
    assert_linearizable([cas("a", "x", b"1", None, 0, 1, ok=True), get("b", "x", b"1", 2, 3)])
    # Two clients race to create: exactly one may win.
    assert_linearizable(
        [cas("a", "x", b"1", None, 0, 2, ok=True), cas("b", "x", b"2", None, 1, 3, ok=False)]
    )
    assert_violation(
        [cas("a", "x", b"1", None, 0, 2, ok=True), cas("b", "x", b"2", None, 1, 3, ok=True)]
    )
    # Refused on an absent key with nothing racing it: the comparison could not fail.
    assert_violation([cas("a", "x", b"1", None, 0, 1, ok=False)])
    # After a delete, the key may be created again.
    assert_linearizable(
        [
            put("a", "x", b"1", 0, 1),
            delete("a", "x", 2, 3),
            cas("b", "x", b"2", None, 4, 5, ok=True),
        ]
    )


def test_cas_on_the_value_read() -> None:
    """``?cas=N`` with N the ModifyIndex read with value v succeeds iff the key still
    holds the entry written as v (rule 3)."""
    base = [put("a", "x", b"1", 0, 1), get("b", "x", b"1", 2, 3)]
    assert_linearizable([*base, cas("b", "x", b"2", b"1", 4, 5, ok=True)])
    # A write in between, finished before the cas started: the cas must fail...
    between = put("c", "x", b"9", 3.5, 3.8)
    assert_linearizable([*base, between, cas("b", "x", b"2", b"1", 4, 5, ok=False)])
    assert_violation([*base, between, cas("b", "x", b"2", b"1", 4, 5, ok=True)])
    # ... and with nothing in between it cannot fail.
    assert_violation([*base, cas("b", "x", b"2", b"1", 4, 5, ok=False)])
    # A failed cas writes nothing.
    assert_violation(
        [*base, between, cas("b", "x", b"2", b"1", 4, 5, ok=False), get("b", "x", b"2", 6, 7)]
    )
    # A cas on an absent key fails whatever it expects.
    assert_linearizable([cas("b", "x", b"2", b"1", 0, 1, ok=False)])
    assert_violation([cas("b", "x", b"2", b"1", 0, 1, ok=True)])


def test_cas_with_no_answer() -> None:
    """Placed, an unanswered cas takes effect only if its comparison holds (rule 4)."""
    base = [put("a", "x", b"1", 0, 1)]
    assert_linearizable(
        [*base, cas("b", "x", b"2", b"1", 2, None, None), get("c", "x", b"2", 9, 10)]
    )
    assert_linearizable(
        [*base, cas("b", "x", b"2", b"1", 2, None, None), get("c", "x", b"1", 9, 10)]
    )
    # Its comparison can never hold, so its value cannot appear.
    assert_violation([*base, cas("b", "x", b"2", b"0", 2, None, None), get("c", "x", b"2", 9, 10)])
    assert_violation([*base, cas("b", "x", b"2", None, 2, None, None), get("c", "x", b"2", 9, 10)])


def test_delete() -> None:
    assert_linearizable(
        [put("a", "x", b"1", 0, 1), delete("b", "x", 2, 3), get("c", "x", None, 4, 5)]
    )
    assert_violation([put("a", "x", b"1", 0, 1), delete("b", "x", 2, 3), get("c", "x", b"1", 4, 5)])
    assert_violation([put("a", "x", b"1", 0, 1), get("c", "x", None, 2, 3)])
    # Deleting an absent key succeeds (Consul answers true) and changes nothing.
    assert_linearizable(
        [delete("b", "x", 0, 1), put("a", "x", b"1", 2, 3), get("c", "x", b"1", 4, 5)]
    )
    # A delete with no answer may have happened, or not.
    for seen in (None, b"1"):
        assert_linearizable(
            [put("a", "x", b"1", 0, 1), delete("b", "x", 2, None), get("c", "x", seen, 4, 5)]
        )


def test_keys_are_checked_apart_and_the_first_failing_key_is_named() -> None:
    """Rule 2: x alone is fine and y alone is fine, however their ops interleave; the
    verdict names the first failing key in sorted order."""
    good_x = [put("a", "x", b"1", 0, 1), get("b", "x", b"1", 2, 3)]
    bad = [put("a", "k", b"1", 0, 1), put("a", "k", b"2", 2, 3), get("b", "k", b"1", 4, 5)]
    assert_linearizable(good_x)
    res = check(
        [*good_x, *[replace(op, key="z") for op in bad], *[replace(op, key="y") for op in bad]]
    )
    assert not res.ok and res.key == "y"
    assert all(op.key == "y" for op in res.ops)


def test_explanation_cuts_the_shortest_failing_prefix() -> None:
    """Rule 8: the stale read at t=4..5 is the violation; the hundred ops after it are not
    part of the explanation."""
    history = [put("a", "x", b"1", 0, 1), put("a", "x", b"2", 2, 3), get("b", "x", b"1", 4, 5)]
    history += [put("a", "x", f"w{i}".encode(), 10 + 2 * i, 11 + 2 * i) for i in range(100)]
    res = check(history)
    assert not res.ok and not res.undetermined
    assert res.ops == tuple(history[:3])
    assert "Shortest failing prefix: 3 of its 103 ops, cut at t=5" in res.explanation


def test_the_cut_drops_what_is_known_to_have_changed_nothing() -> None:
    """A refused write still running at the cut did not take effect: the cut at the
    read's return already fails."""
    history = [
        put("a", "x", b"1", 0, 1),
        put("b", "x", b"2", 2, 100, ok=False),
        get("c", "x", b"2", 3, 4),
    ]
    res = check(history)
    assert not res.ok and not res.undetermined
    assert "cut at t=4" in res.explanation
    assert res.ops == (history[0], history[2])


def test_budget_exhausted_is_undetermined_not_a_violation() -> None:
    """Rule 7: ten concurrent writes and a read need more than five states."""
    history = [put(f"c{i}", "x", f"{i}".encode(), 0, 10) for i in range(10)]
    history.append(get("r", "x", b"3", 11, 12))
    res = check(history, max_states=5)
    assert not res.ok and res.undetermined
    assert res.explanation.startswith(UNDETERMINED)
    assert res.states_explored == 5
    assert check(history).ok


def test_unobserved_writes_with_no_answer_cost_nothing() -> None:
    """Rule 5: forty crashed writers whose values nobody read would otherwise make the
    search try subsets of them before every read."""
    history = [put(f"c{i}", "x", f"lost{i}".encode(), 0, None) for i in range(40)]
    history += [put("a", "x", b"1", 1, 2)]
    history += [get("b", "x", b"1", 3 + i, 3.5 + i) for i in range(20)]
    res = check(history)
    assert res.ok
    assert res.states_explored <= 21


@pytest.mark.parametrize(
    "history",
    [
        # A refused cas sees that the key no longer holds what it expected.
        [
            put("a", "x", b"1", 0, 1),
            put("b", "x", b"lost", 2, None),
            cas("c", "x", b"2", b"1", 3, 4, ok=False),
        ],
        # A create-only cas sees that the key is absent.
        [
            put("a", "x", b"1", 0, 1),
            delete("b", "x", 2, None),
            cas("c", "x", b"2", None, 3, 4, ok=True),
        ],
        # A read sees "absent".
        [put("a", "x", b"1", 0, 1), delete("b", "x", 2, None), get("c", "x", None, 3, 4)],
    ],
)
def test_writes_with_no_answer_observed_without_their_value(history: list[Op]) -> None:
    """Rule 5 keeps an unanswered write whose effect another op can see even though
    nobody read its value: each history here is linearizable only through it."""
    assert_linearizable(history)
    assert_violation([op for op in history if op.ret is not None])


def test_malformed_histories_are_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        check([Op("a", "incr", "x", None, None, 0, 1, True, None)])
    with pytest.raises(ValueError, match="before its call"):
        check([put("a", "x", b"1", 2, 1)])
    with pytest.raises(ValueError, match="ok=True or ok=False"):
        check([Op("a", "put", "x", b"1", None, 0, 1, None, None)])
    with pytest.raises(ValueError, match="expect_value"):
        check([Op("a", "cas", "x", b"1", 5, 0, 1, True, None)])
    # A value a cas names, written twice: ModifyIndex cannot be recovered (rule 3).
    with pytest.raises(ValueError, match="unique"):
        check(
            [
                put("a", "x", b"1", 0, 1),
                put("a", "x", b"1", 2, 3),
                cas("b", "x", b"2", b"1", 4, 5, ok=False),
            ]
        )
    # Written twice but named by no cas: harmless.
    assert_linearizable([put("a", "x", b"1", 0, 1), put("a", "x", b"1", 2, 3)])


# --------------------------------------------------------------------------- recorder


def test_history_records_answers_and_pending_ops() -> None:
    h = History()
    w = h.invoke("a", "put", "x", b"1", now=0.0)
    r = h.invoke("b", "get", "x", now=0.5)
    lost = h.invoke("c", "put", "x", b"2", now=0.6)
    err = h.invoke("c", "delete", "x", now=0.7)
    h.complete(w, 1.0, ok=True)
    h.complete(r, 2.0, result=b"1", index=12)
    h.complete(err, 2.5, ok=None)  # an error answer: outcome unknown
    failed_read = h.invoke("d", "get", "x", now=2.6)
    h.complete(failed_read, 2.7, ok=False)  # an error answer: nothing read
    ops = h.ops()
    assert [op.ret for op in ops] == [1.0, 2.0, None, None, None]
    assert ops[lost].ok is None and ops[err].ok is None
    assert ops[r].result == b"1"
    with pytest.raises(ValueError, match="twice"):
        h.complete(w, 3.0, ok=True)
    assert_linearizable(ops)


def test_history_translates_cas_indexes_from_the_clients_reads() -> None:
    h = History()
    h.complete(h.invoke("a", "put", "x", b"1", now=0), 1, ok=True)
    h.complete(h.invoke("b", "get", "x", now=2), 3, result=b"1", index=40)
    c = h.invoke("b", "cas", "x", b"2", 40, now=4)
    h.complete(c, 5, ok=True)
    assert h.ops()[c].expect_value == b"1"
    assert_linearizable(h.ops())
    # Client a never read x at index 40, and nobody read it at 41.
    with pytest.raises(ValueError, match="never read"):
        h.invoke("a", "cas", "x", b"3", 40, now=6)
    with pytest.raises(ValueError, match="never read"):
        h.invoke("b", "cas", "x", b"3", 41, now=6)
    # Create-only needs no read.
    h.complete(h.invoke("a", "cas", "y", b"1", 0, now=7), 8, ok=True)
    assert_linearizable(h.ops())


# --------------------------------------------------------------------------- reference


def _brute_force(history: Sequence[Op]) -> bool:
    """Linearizability by enumeration, straight from the definitions (Herlihy & Wing):
    some order of a subset of the ops that contains every answered op, respects real
    time (a before b when a.ret < b.call) and is legal for a register per key."""
    answered = [op for op in history if op.ret is not None]
    optional = [op for op in history if op.ret is None and op.kind != "get"]
    for k in range(len(optional) + 1):
        for extra in itertools.combinations(optional, k):
            chosen = answered + list(extra)
            for order in itertools.permutations(chosen):
                if _respects_real_time(order) and _legal(order):
                    return True
    return False


def _respects_real_time(order: Sequence[Op]) -> bool:
    for i, later in enumerate(order):
        for earlier in order[i + 1 :]:
            if earlier.ret is not None and earlier.ret < later.call:
                return False
    return True


def _legal(order: Sequence[Op]) -> bool:
    state: dict[str, bytes | None] = {}
    for op in order:
        cur = state.get(op.key)
        if op.kind == "get":
            if cur != op.result:
                return False
        elif op.kind == "put":
            if op.ok is not False:
                state[op.key] = op.value
        elif op.kind == "delete":
            if op.ok is not False:
                state[op.key] = None
        else:
            holds = cur == (op.expect_value if op.expect else None)
            if op.ok is False:
                if holds:
                    return False
            elif not holds:
                return False
            else:
                state[op.key] = op.value
    return True


@st.composite
def small_histories(draw: st.DrawFn) -> list[Op]:
    """Up to six arbitrary ops on two keys, most of them not linearizable. Each write has
    its own value (rule 3); reads and cas comparisons pick among all of them."""
    n = draw(st.integers(1, 6))
    values = [f"v{i}".encode() for i in range(n)]
    ops = []
    for i in range(n):
        kind = draw(st.sampled_from(KINDS))
        key = draw(st.sampled_from(["x", "y"]))
        call = draw(st.integers(0, 6))
        ret = None if draw(st.integers(0, 3)) == 0 else call + draw(st.integers(0, 4))
        ok = None if ret is None else draw(st.booleans())
        match kind:
            case "get":
                res = draw(st.sampled_from([None, *values]))
                ops.append(Op("c", "get", key, None, None, call, ret, None, res))
            case "put" | "delete":
                v = values[i] if kind == "put" else None
                ops.append(Op("c", kind, key, v, None, call, ret, ok, None))
            case _:
                exp = draw(st.sampled_from([None, *values]))
                ops.append(
                    Op(
                        "c",
                        "cas",
                        key,
                        values[i],
                        0 if exp is None else 1,
                        call,
                        ret,
                        ok,
                        None,
                        exp,
                    )
                )
    return ops


@settings(max_examples=4000 if os.environ.get("GOSSAMER_SLOW") == "1" else 400)
@given(small_histories())
def test_agrees_with_brute_force_on_small_histories(history: list[Op]) -> None:
    res = check(history)
    assert not res.undetermined
    assert res.ok == _brute_force(history), res.explanation


# --------------------------------------------------------------------------- generated


@dataclass
class _Planned:
    client: str
    kind: str
    key: str
    call: float
    point: float
    """The real linearization point (inside [call, ret])."""
    ret: float | None
    effect: bool
    """For an op with no answer: whether it reached the store."""


def generate(
    rng: random.Random,
    n_ops: int,
    n_clients: int,
    n_keys: int,
    lost_rate: float = 0.05,
    widen: float = 1.0,
) -> list[Op]:
    """A linearizable history by construction: clients issue ops one after another; each
    op takes effect at a real instant inside its [call, ret] (widened by up to ``widen``
    seconds each side), and reads and cas outcomes come from applying the ops in the order
    of those instants. An op with no answer (``lost_rate``) takes effect or not, possibly
    after its client moved on. A cas expects the value its client last read."""
    clients = [f"c{i}" for i in range(n_clients)]
    keys = [f"k{i}" for i in range(n_keys)]
    free = {c: rng.uniform(0, 1) for c in clients}
    plan: list[_Planned] = []
    for _ in range(n_ops):
        c = min(clients, key=lambda x: (free[x], x))
        call = free[c]
        kind = rng.choices(KINDS, weights=(4, 3, 2, 1))[0]
        key = rng.choice(keys)
        if rng.random() < lost_rate:
            point = call + rng.uniform(0, 3)
            plan.append(_Planned(c, kind, key, call, point, None, rng.random() < 0.5))
            free[c] = call + 2 + rng.uniform(0, 0.5)
        else:
            point = call + rng.uniform(0, 1)
            ret = point + rng.uniform(0, 1)
            plan.append(
                _Planned(
                    c,
                    kind,
                    key,
                    max(0.0, call - rng.uniform(0, widen)),
                    point,
                    ret + rng.uniform(0, widen),
                    True,
                )
            )
            free[c] = ret + rng.uniform(0, 0.3)
    state: dict[str, bytes | None] = {}
    last_read: dict[tuple[str, str], bytes | None] = {}
    ops: list[Op | None] = [None] * len(plan)
    for i in sorted(range(len(plan)), key=lambda j: plan[j].point):
        p = plan[i]
        cur = state.get(p.key)
        value = f"{p.client}.{i}".encode()
        answered = p.ret is not None
        ok = True if answered else None
        match p.kind:
            case "get":
                seen = cur if answered else None
                ops[i] = Op(p.client, "get", p.key, None, None, p.call, p.ret, None, seen)
                if answered:
                    last_read[p.client, p.key] = cur
                continue
            case "put":
                if p.effect:
                    state[p.key] = value
                ops[i] = Op(p.client, "put", p.key, value, None, p.call, p.ret, ok, None)
            case "delete":
                if p.effect:
                    state[p.key] = None
                ops[i] = Op(p.client, "delete", p.key, None, None, p.call, p.ret, ok, None)
            case _:
                exp = last_read.get((p.client, p.key))
                holds = cur == exp
                if p.effect and holds:
                    state[p.key] = value
                if answered:
                    ok = holds
                ops[i] = Op(
                    p.client, "cas", p.key, value, 0 if exp is None else 5, p.call, p.ret, ok,
                    None, exp,
                )  # fmt: skip
    done = [op for op in ops if op is not None]
    assert len(done) == len(plan)
    return done


def _impossible(history: list[Op], i: int, rng: random.Random) -> bytes:
    """A value read ``i`` cannot have seen in any linearization (not merely one that was
    not current in the generated run, which another order might make current):

    * stale: written by an answered op W, overwritten by an answered write W2 with W
      before W2 and W2 before the read in real time (values are unique per write);
    * future: written by an op called after the read returned;
    * otherwise a value nobody wrote.
    """
    read = history[i]
    assert read.ret is not None
    writers = [op for op in history if op.key == read.key and op.kind != "get"]
    done = [op for op in writers if op.ret is not None and op.ok]
    choices: list[bytes] = []
    for w in done:
        if w.value is None:
            continue
        if any(
            w2.ret is not None and w.ret is not None and w.ret < w2.call and w2.ret < read.call
            for w2 in done
        ):
            choices.append(w.value)
    choices += [w.value for w in writers if w.value is not None and w.call > read.ret]
    return rng.choice(choices) if choices else b"never-written"


@settings(max_examples=150)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_ops=st.integers(1, 60),
    n_clients=st.integers(1, 5),
    n_keys=st.integers(1, 3),
    widen=st.sampled_from([0.0, 0.5, 2.0]),
)
def test_generated_histories_are_linearizable_until_one_read_is_falsified(
    seed: int, n_ops: int, n_clients: int, n_keys: int, widen: float
) -> None:
    rng = random.Random(seed)
    history = generate(rng, n_ops, n_clients, n_keys, widen=widen)
    assert_linearizable(history)

    reads = [i for i, op in enumerate(history) if op.kind == "get" and op.ret is not None]
    if not reads:
        return
    i = rng.choice(reads)
    bad = replace(history[i], result=_impossible(history, i, rng))
    falsified = [*history[:i], bad, *history[i + 1 :]]
    res = check(falsified)
    assert not res.ok and not res.undetermined, res.explanation
    assert res.key == bad.key
    # Any failing prefix must hold the falsified read, answered: without it, the prefix
    # is a prefix of a linearizable history.
    assert bad in res.ops


def test_generated_history_with_history_recorder_round_trips() -> None:
    """The recorder, fed a generated history's events in time order, gives back the same
    ops: what the simulator will do."""
    history = generate(random.Random(5), 200, 4, 3)
    events: list[tuple[float, int, int]] = []
    for i, op in enumerate(history):
        events.append((op.call, 0, i))
        if op.ret is not None:
            events.append((op.ret, 1, i))
    h = History()
    ids: dict[int, int] = {}
    for t, is_ret, i in sorted(events):
        op = history[i]
        if not is_ret:
            ids[i] = h.invoke(
                op.client, op.kind, op.key, op.value, op.expect, now=t,
                expect_value=op.expect_value,
            )  # fmt: skip
        else:
            h.complete(ids[i], t, ok=op.ok, result=op.result)
    back = h.ops()
    assert [back[ids[i]] for i in range(len(history))] == history
    assert check(back).ok


# --------------------------------------------------------------------------- scale


@pytest.mark.parametrize(
    ("keys", "widen"),
    [(20, 0.5), (1, 0.5)],
    ids=["20-keys", "one-key"],
)
def test_ten_thousand_ops_eight_clients(keys: int, widen: float) -> None:
    """Issue 5's scale (20 keys), and the same load on one key, where every op overlaps
    seven others: prints the wall time and the states explored (neither asserted)."""
    history = generate(random.Random(2015), 10_000, 8, keys, lost_rate=0.02, widen=widen)
    start = time.perf_counter()
    res = check(history)
    elapsed = time.perf_counter() - start
    print(
        f"\nlinearizability: 10000 ops, 8 clients, {keys} keys: {elapsed:.2f} s, "
        f"{res.states_explored} states explored"
    )
    assert res.ok, res.explanation
    # Every answered op is placed at least once, each time in a new configuration.
    assert res.states_explored >= sum(1 for op in history if op.ret is not None)
