"""A linearizability checker for recorded KV client histories: Wing & Gong's backtracking
search with Lowe's memoization (the "WGL" algorithm of Knossos and porcupine), run one key
at a time.

References: J. M. Wing and C. Gong, "Testing and verifying concurrent objects" (J. Parallel
Distrib. Comput., 1993); G. Lowe, "Testing for linearizability" (Concurrency Computat.:
Pract. Exper., 2017), the just-in-time search with a cache of configurations;
A. Horn and D. Kroening, "Faster linearizability checking via P-compositionality" (FORTE
2015). The model is Consul's KV store (agent/consul/state/kvs.go, ``kvsSetTxn``,
``kvsDeleteTxn``, ``kvsSetCASTxn``): set, get, delete, and check-and-set on ModifyIndex.

Rules:

1. Real time: op a precedes op b when ``a.ret < b.call``. Equal instants are concurrent,
   the choice that never reports a correct system: on a discrete virtual clock a request
   sent at the instant another was answered may still have been ordered before it.
2. Keys are independent registers, so a history is linearizable iff each key's
   sub-history is (P-compositionality, Horn & Kroening). Keys are checked in sorted
   order; the first that fails is reported. Every key starts absent.
3. The model state of a key is its current value, ``bytes`` or ``None`` (absent).
   ModifyIndex is modelled by the identity of the write that produced the entry, and
   that write by the value it wrote: a cas with ``expect > 0`` carries ``expect_value``,
   the value the client read together with ModifyIndex ``expect`` (:meth:`History.invoke`
   translates from the client's own reads), and succeeds iff the key holds exactly that
   value. This is Consul's comparison as long as no other write could have produced the
   same value, so a value that a cas names must be written by at most one op of its key
   (checked: ``ValueError``). ``expect == 0`` is Consul's create-only cas: it succeeds iff
   the key is absent. The number ``expect`` itself plays no further part. With the
   written value as the version, a separate write counter would add nothing but states.
4. Outcomes. A get that returned is legal iff the key holds ``result``; a get with no
   answer is dropped (it changed nothing). A put or delete acknowledged (``ok=True``)
   takes effect; refused (``ok=False``) it did not, and is dropped. A cas with
   ``ok=True`` requires its comparison to hold and then writes; with ``ok=False`` Consul
   answered ``false``: the comparison failed at its linearization point, nothing written.
   An op with no answer (``ret=None``) may take effect at any point after its call, or
   never: it has no return event, so it never blocks the search, and the search succeeds
   once every answered op is placed. Placed, it takes effect (a cas only if its
   comparison holds, since a cas that failed is indistinguishable from one never placed).
5. An unanswered write whose effect nothing can observe is dropped before the search
   (this keeps m crashed clients from multiplying the states by up to 2^m): a put or cas
   writing v when no get read v, no cas expects v and no cas of the key was refused; a
   delete when no get read "absent" and the key has no cas. Proof sketch: in any legal
   order, the ops between that write and the next one all see its effect; none of them
   can be one that observes it, so removing the write leaves the order legal.
6. The search (Wing & Gong, with Lowe's cache): call and return events in time order,
   in a doubly linked list. From the head, the first call whose op the model accepts,
   in a configuration (set of placed ops, state) not seen before, is placed: its events
   are unlinked and the search restarts from the head. Reaching a return event means
   that op cannot be placed before it returns: undo the last placement and try the next
   call after it. The cache of configurations (the placed ops and the state packed into
   one int) prunes every subtree explored before. Reads first (a partial-order
   reduction): when an op that changes nothing (a get, a refused cas) is legal in a
   configuration, it is placed next with no alternative tried, since any successful
   order from there can be rearranged to place it first: it was called before every
   unplaced op returned, and it changes no state. Without this, k concurrent writes
   around a read cost up to 2^k.
7. Budget: a configuration newly cached counts as one state explored. Past
   ``max_states`` the verdict is ``undetermined`` (``ok=False``, ``undetermined=True``),
   never a violation. Explaining a violation may use up to ``max_states`` more.
8. Explanation of a violation: the shortest failing prefix of the key's history, cut at
   the return of an op (writes still running at the cut count as unanswered; reads and
   refused writes among them are dropped, as known to have changed nothing). The cut
   relaxes the history, so failure is monotone in the cut and a binary search finds the
   first. Then the deepest partial linearization the search reached in that prefix, and
   why no remaining op can be placed next.

The module is pure: no clock, no randomness, no I/O; the same history gives the same
verdict, count and text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["KINDS", "History", "Op", "Result", "check"]

KINDS: Final = ("get", "put", "cas", "delete")

EXPLAIN_OPS_MAX: Final = 40
"""Ops listed per section of an explanation; the rest are counted."""

VALUE_REPR_MAX: Final = 24
"""Characters of a value's repr shown in an explanation."""

UNDETERMINED: Final = "undetermined: search budget exhausted"


@dataclass(frozen=True, slots=True)
class Op:
    """One client operation as recorded. Times are seconds on one clock (virtual time in
    the simulator). See the module rules for what each outcome means."""

    client: str
    kind: str
    """``"get"``, ``"put"``, ``"cas"`` or ``"delete"``."""
    key: str
    value: bytes | None
    """put and cas: the value written; None otherwise."""
    expect: int | None
    """cas: the ModifyIndex expected, as Consul's ``?cas=``; 0 = create only."""
    call: float
    """Invocation time."""
    ret: float | None
    """Completion time; None = no answer: it may take effect at any time after ``call``,
    or never."""
    ok: bool | None
    """put/cas/delete: acknowledged (True), refused or cas comparison failed (False),
    unknown (None, exactly when ``ret`` is None). Ignored for get."""
    result: Any
    """get: the value read (bytes) or None if absent."""
    expect_value: bytes | None = None
    """cas with ``expect > 0``: the value the client read with ModifyIndex ``expect``;
    :meth:`History.invoke` fills it in from the client's reads (rule 3)."""


@dataclass
class Result:
    """A verdict. ``ok=False`` with ``undetermined=False`` is a proven violation."""

    ok: bool
    key: str | None
    """The first key (sorted) whose sub-history is not linearizable, or the key being
    searched when the budget ran out."""
    explanation: str
    states_explored: int
    undetermined: bool = False
    """The budget ran out before a verdict: neither linearizable nor a violation."""
    ops: tuple[Op, ...] = ()
    """A violation's shortest failing prefix of that key's history (rule 8)."""


# --------------------------------------------------------------------------- the model

_NONE: Final = 0
"""need: the op is legal in every state."""
_EQ: Final = 1
"""need: the key must hold ``arg``."""
_NE: Final = 2
"""need: the key must not hold ``arg``."""


@dataclass(frozen=True, slots=True)
class _KOp:
    """An op of one key's sub-history as the search sees it (rule 4), values interned
    to small ints (0 = absent)."""

    index: int
    """Position in the history passed to :func:`check`."""
    call: float
    ret: float | None
    """None: unanswered, optional (rule 4)."""
    need: int
    arg: int
    writes: bool
    new: int


def _validate(i: int, op: Op) -> None:
    where = f"op #{i} ({op.client} {op.kind} {op.key!r})"
    if op.kind not in KINDS:
        raise ValueError(f"{where}: kind must be one of {KINDS}")
    if op.ret is not None and op.ret < op.call:
        raise ValueError(f"{where}: returns at {op.ret} before its call at {op.call}")
    if op.kind in ("put", "cas") and not isinstance(op.value, bytes):
        raise ValueError(f"{where}: needs a bytes value")
    if op.kind in ("get", "delete") and op.value is not None:
        raise ValueError(f"{where}: takes no value")
    if op.kind == "cas":
        if op.expect is None or op.expect < 0:
            raise ValueError(f"{where}: needs expect >= 0")
        if op.expect > 0 and not isinstance(op.expect_value, bytes):
            raise ValueError(f"{where}: expect > 0 needs the expect_value read with it")
    elif op.expect is not None or op.expect_value is not None:
        raise ValueError(f"{where}: only a cas takes expect")
    if op.kind != "get":
        if op.ret is None and op.ok is not None:
            raise ValueError(f"{where}: an op with no answer has ok=None")
        if op.ret is not None and op.ok is None:
            raise ValueError(f"{where}: an answered write needs ok=True or ok=False")
    elif op.ret is not None and op.result is not None and not isinstance(op.result, bytes):
        raise ValueError(f"{where}: a get's result is bytes or None")


def _expected(op: Op) -> bytes | None:
    """What a cas compares the key with: None (absent) for create-only."""
    return op.expect_value if op.expect else None


def _check_unique(key: str, items: list[tuple[int, Op]]) -> None:
    """Rule 3: a value a cas names identifies one write."""
    named: dict[bytes, int] = {}
    for _, op in items:
        if op.kind == "cas" and op.expect and op.expect_value is not None:
            named[op.expect_value] = 0
    if not named:
        return
    for i, op in items:
        if op.kind in ("put", "cas") and op.ok is not False and op.value in named:
            assert op.value is not None
            named[op.value] += 1
            if named[op.value] > 1:
                raise ValueError(
                    f"key {key!r}: value {op.value!r} is named by a cas and written by more "
                    f"than one op (the second is #{i}); written values must be unique per "
                    "key for ModifyIndex to be recovered from them"
                )


def _cut(items: list[tuple[int, Op]], t: float | None) -> list[tuple[int, Op]]:
    """Rule 8: the key's history as seen at time ``t`` (None = the whole of it)."""
    if t is None:
        return items
    out: list[tuple[int, Op]] = []
    for i, op in items:
        if op.call > t:
            continue
        if op.ret is not None and op.ret > t:
            if op.kind == "get" or op.ok is False:
                continue  # running at the cut, and known to have changed nothing
            op = Op(op.client, op.kind, op.key, op.value, op.expect, op.call, None, None,
                    None, op.expect_value)  # fmt: skip
        out.append((i, op))
    return out


def _compile(items: list[tuple[int, Op]]) -> tuple[list[_KOp], list[bytes | None]]:
    """Rules 4 and 5: drop what cannot matter, intern values, encode each op's step.
    Returns the ops and the values by id."""
    kept: list[tuple[int, Op]] = []
    for i, op in items:
        if op.ret is None and op.kind == "get":
            continue
        if op.ok is False and op.kind in ("put", "delete"):
            continue
        kept.append((i, op))
    read: dict[bytes | None, int] = {}
    expected: dict[bytes | None, int] = {}
    has_cas = refused_cas = False
    for _, op in kept:
        if op.kind == "get":
            read[op.result] = 0
        elif op.kind == "cas":
            has_cas = True
            refused_cas = refused_cas or op.ok is False
            expected[_expected(op)] = 0
    ids: dict[bytes | None, int] = {None: 0}
    out: list[_KOp] = []
    for i, op in kept:
        if op.ret is None:
            if op.kind == "delete" and None not in read and not has_cas:
                continue
            unseen = op.value not in read and op.value not in expected and not refused_cas
            if op.kind != "delete" and unseen:
                continue
        match op.kind:
            case "get":
                arg = ids.setdefault(op.result, len(ids))
                out.append(_KOp(i, op.call, op.ret, _EQ, arg, False, 0))
            case "put":
                new = ids.setdefault(op.value, len(ids))
                out.append(_KOp(i, op.call, op.ret, _NONE, 0, True, new))
            case "delete":
                out.append(_KOp(i, op.call, op.ret, _NONE, 0, True, 0))
            case "cas":
                arg = ids.setdefault(_expected(op), len(ids))
                new = ids.setdefault(op.value, len(ids))
                if op.ok is False:
                    out.append(_KOp(i, op.call, op.ret, _NE, arg, False, 0))
                else:
                    out.append(_KOp(i, op.call, op.ret, _EQ, arg, True, new))
            case _:
                raise AssertionError(op.kind)
    return out, list(ids)


def _legal(kop: _KOp, state: int) -> bool:
    if kop.need == _EQ:
        return state == kop.arg
    if kop.need == _NE:
        return state != kop.arg
    return True


# --------------------------------------------------------------------------- the search


@dataclass
class _Search:
    """The outcome of one WGL search over one key's ops."""

    ok: bool
    undetermined: bool
    states: int
    deepest: list[int] = field(default_factory=list)
    """Explain mode, on failure: positions (in the op list) of the deepest partial
    linearization, in order."""
    deepest_state: int = 0
    blocker: int = -1
    """The op whose return stopped the search at its deepest point."""
    candidates: list[int] = field(default_factory=list)
    """The unplaced ops called before the blocker returned, at the deepest point."""


def _search(kops: list[_KOp], budget: int, explain: bool) -> _Search:
    """Rule 6. ``budget`` bounds the configurations cached (rule 7)."""
    n = len(kops)
    events: list[tuple[float, int, int]] = []
    for p, k in enumerate(kops):
        events.append((k.call, 0, p))
        if k.ret is not None:
            events.append((k.ret, 1, p))
    events.sort()  # calls before returns at one instant: rule 1
    m = len(events)
    # Events are 1..m; 0 is the head, m + 1 the tail, which reads as a return.
    head = 0
    ev_op = [0] * (m + 2)
    ev_call = [False] * (m + 2)
    ret_ev = [-1] * n
    for e, (_, is_ret, p) in enumerate(events, start=1):
        ev_op[e] = p
        ev_call[e] = not is_ret
        if is_ret:
            ret_ev[p] = e
    nxt = list(range(1, m + 3))
    prv = list(range(-1, m + 1))
    need = [k.need for k in kops]
    arg = [k.arg for k in kops]
    writes = [k.writes for k in kops]
    new = [k.new for k in kops]

    # The set of placed ops is two bitsets: answered ops numbered in call order, and
    # unanswered ones apart. Answered ops are placed roughly in call order, so the cache
    # keys the answered set by its lowest unplaced op and the bits above it, which keeps
    # a key near the width of the concurrency window instead of the length of the
    # history (a 10,000-op key would otherwise cost a kilobyte a configuration).
    answered = sorted((k.call, p) for p, k in enumerate(kops) if k.ret is not None)
    unanswered = [p for p, k in enumerate(kops) if k.ret is None]
    is_answered = [False] * n
    bit = [0] * n
    for j, (_, p) in enumerate(answered):
        is_answered[p], bit[p] = True, 1 << j
    for j, p in enumerate(unanswered):
        bit[p] = 1 << j
    width_u = len(unanswered)
    width_low = len(answered).bit_length()
    width_state = (max((max(k.arg, k.new) for k in kops), default=0) + 1).bit_length()

    remaining = len(answered)
    cache: set[int] = set()
    # (call event placed, state, answered bits, unanswered bits before it, forced)
    stack: list[tuple[int, int, int, int, bool]] = []
    done_a = done_u = 0
    state = 0
    states = 0
    out = _Search(ok=False, undetermined=False, states=0)
    best = -1
    e = head
    fresh = True  # at a configuration not scanned yet
    while remaining:
        place = -1
        forced = False
        fail = False
        if fresh:
            fresh = False
            # Rule 6, reads first: a read-only op legal here can go next in some
            # successful order if any exists, so it is placed with no alternative.
            c = nxt[head]
            while ev_call[c]:
                p = ev_op[c]
                if not writes[p] and (state == arg[p]) == (need[p] == _EQ):
                    place, forced = c, True
                    break
                c = nxt[c]
            if place < 0:
                e = nxt[head]
                continue
        elif not ev_call[e]:
            # A return (or the tail, unreachable while a return remains): its op cannot
            # be placed before it returns, given what was placed so far.
            fail = True
            if explain and len(stack) > best:
                best = len(stack)
                out.deepest = [ev_op[c] for c, *_ in stack]
                out.deepest_state = state
                out.blocker = ev_op[e]
                out.candidates = []
                c = nxt[head]
                while c != e:
                    out.candidates.append(ev_op[c])
                    c = nxt[c]
        else:
            p = ev_op[e]
            nd = need[p]
            if nd == _NONE or (state == arg[p]) == (nd == _EQ):
                place = e
            else:
                e = nxt[e]
                continue
        if place >= 0:
            p = ev_op[place]
            ns = new[p] if writes[p] else state
            na, nu = (done_a | bit[p], done_u) if is_answered[p] else (done_a, done_u | bit[p])
            low = ((na + 1) & ~na).bit_length() - 1
            conf = (((((na >> low) << width_u | nu) << width_low) | low) << width_state) | ns
            if conf in cache:
                # Explored before and failed (configurations on the current path have
                # fewer ops placed). A forced op's failure is its configuration's.
                if not forced:
                    e = nxt[e]
                    continue
                fail = True
            else:
                states += 1
                if states > budget:
                    out.undetermined = True
                    out.states = budget
                    return out
                cache.add(conf)
                stack.append((place, state, done_a, done_u, forced))
                done_a, done_u, state = na, nu, ns
                nxt[prv[place]] = nxt[place]
                prv[nxt[place]] = prv[place]
                r = ret_ev[p]
                if r >= 0:
                    nxt[prv[r]] = nxt[r]
                    prv[nxt[r]] = prv[r]
                    remaining -= 1
                fresh = True
                continue
        assert fail
        # Undo placements up to the last one that had alternatives, and try the next.
        while True:
            if not stack:
                out.states = states
                return out
            e, state, done_a, done_u, forced = stack.pop()
            r = ret_ev[ev_op[e]]
            if r >= 0:
                nxt[prv[r]] = r
                prv[nxt[r]] = r
                remaining += 1
            nxt[prv[e]] = e
            prv[nxt[e]] = e
            if not forced:
                break
        e = nxt[e]
    out.ok = True
    out.states = states
    return out


# --------------------------------------------------------------------------- check


def check(history: Sequence[Op], max_states: int = 5_000_000) -> Result:
    """Is ``history`` linearizable against Consul's KV store (module rules)? Raises
    ``ValueError`` on a malformed op or an ambiguous cas (rule 3)."""
    if max_states < 1:
        raise ValueError("max_states must be positive")
    by_key: dict[str, list[tuple[int, Op]]] = {}
    for i, op in enumerate(history):
        _validate(i, op)
        by_key.setdefault(op.key, []).append((i, op))
    for key in sorted(by_key):
        _check_unique(key, by_key[key])
    explored = 0
    for key in sorted(by_key):
        items = by_key[key]
        found = _search(_compile(items)[0], max_states - explored, explain=False)
        explored += found.states
        if found.undetermined:
            return Result(
                ok=False,
                key=key,
                explanation=f"{UNDETERMINED} (key {key!r}, {max_states} states)",
                states_explored=explored,
                undetermined=True,
            )
        if not found.ok:
            text, prefix, spent = _explain(history, key, items, max_states)
            return Result(False, key, text, explored + spent, ops=prefix)
    return Result(
        ok=True,
        key=None,
        explanation=f"linearizable: {len(history)} ops on {len(by_key)} keys",
        states_explored=explored,
    )


def _explain(
    history: Sequence[Op], key: str, items: list[tuple[int, Op]], budget: int
) -> tuple[str, tuple[Op, ...], int]:
    """Rule 8. Returns the text, the failing prefix's ops (as recorded) and the states
    it cost."""
    cuts = sorted({op.ret for _, op in items if op.ret is not None})
    spent = 0
    lo, hi = 0, len(cuts) - 1  # the cut at the last return fails: it is the whole history
    exhausted = False
    while lo < hi:
        mid = (lo + hi) // 2
        probe = _search(_compile(_cut(items, cuts[mid]))[0], budget - spent, explain=False)
        spent += probe.states
        if probe.undetermined:
            exhausted = True
            break
        if probe.ok:
            lo = mid + 1
        else:
            hi = mid
    t: float | None = None if exhausted or not cuts else cuts[hi]
    prefix = _cut(items, t)
    kops, names = _compile(prefix)
    deep = _search(kops, max(budget - spent, 1), explain=True)
    spent += deep.states

    lines = [f"key {key!r} is not linearizable."]
    if len(prefix) == len(items):
        lines.append(f"Its whole history ({len(items)} ops) is needed to show it:")
    else:
        lines.append(
            f"Shortest failing prefix: {len(prefix)} of its {len(items)} ops, cut at "
            f"t={t:g} (ops running at the cut count as unanswered):"
        )
    shown = [i for i, _ in prefix]
    lines += [f"  {_fmt(i, history[i])}" for i in shown[:EXPLAIN_OPS_MAX]]
    if len(shown) > EXPLAIN_OPS_MAX:
        lines.append(f"  ... and {len(shown) - EXPLAIN_OPS_MAX} more")
    if deep.undetermined:
        lines.append("(the search budget ran out while explaining)")
    elif deep.blocker >= 0:
        placed = [kops[p].index for p in deep.deepest]
        lines.append(
            f"Deepest partial linearization ({len(placed)} ops): "
            + (", ".join(f"#{i}" for i in placed) if placed else "none")
            + f"; the key is then {_value(names[deep.deepest_state])}."
        )
        blocker = kops[deep.blocker]
        lines.append(f"No op can be placed next before #{blocker.index} returns:")
        for p in deep.candidates[:EXPLAIN_OPS_MAX]:
            k = kops[p]
            why = (
                "every order from there fails"
                if _legal(k, deep.deepest_state)
                else _refusal(k, names)
            )
            lines.append(f"  {_fmt(k.index, history[k.index])}: {why}")
        if len(deep.candidates) > EXPLAIN_OPS_MAX:
            lines.append(f"  ... and {len(deep.candidates) - EXPLAIN_OPS_MAX} more")
    return "\n".join(lines), tuple(history[i] for i in shown), spent


def _refusal(k: _KOp, names: list[bytes | None]) -> str:
    held = _value(names[k.arg])
    if k.need == _EQ:
        return f"needs the key to hold {held}"
    return f"needs the key not to hold {held}"


def _value(v: bytes | None) -> str:
    if v is None:
        return "absent"
    r = repr(v)
    return r if len(r) <= VALUE_REPR_MAX else r[: VALUE_REPR_MAX - 3] + "..."


def _fmt(i: int, op: Op) -> str:
    """One op for a human: ``#3 c1 cas [4=b'a'] b'b' ok [1, 2]``."""
    match op.kind:
        case "get":
            what = "get (no answer)" if op.ret is None else f"get -> {_value(op.result)}"
        case "put":
            what = f"put {_value(op.value)}"
        case "delete":
            what = "delete"
        case "cas":
            cmp = "absent" if not op.expect else f"{op.expect}={_value(op.expect_value)}"
            what = f"cas [{cmp}] {_value(op.value)}"
        case _:
            what = op.kind
    if op.kind != "get":
        what += " " + {True: "ok", False: "refused", None: "unknown"}[op.ok]
    span = f"[{op.call:g}, {'...' if op.ret is None else f'{op.ret:g}'}]"
    return f"#{i} {op.client} {what} {span}"


# --------------------------------------------------------------------------- recorder


@dataclass
class _Record:
    client: str
    kind: str
    key: str
    value: bytes | None
    expect: int | None
    expect_value: bytes | None
    call: float
    ret: float | None = None
    ok: bool | None = None
    result: Any = None
    done: bool = False


class History:
    """Records client operations as the simulator issues and answers them.

    ``complete`` on a write with ``ok=None`` (an error answer of unknown outcome) records
    it as unanswered: a proposal left in a deposed leader's log may still commit under
    the next leader, so its effect is not bounded by the answer. Likewise a get answered
    with ``ok=False`` (an error) records no read. A cas with ``expect > 0`` is translated
    (rule 3) from the client's own earlier reads of the key: ``complete`` of a get takes
    the entry's ModifyIndex as ``index``.
    """

    def __init__(self) -> None:
        self._records: list[_Record] = []
        self._read: dict[tuple[str, str], dict[int, bytes]] = {}
        """(client, key) -> ModifyIndex -> the value the client read with it."""

    def invoke(
        self,
        client: str,
        kind: str,
        key: str,
        value: bytes | None = None,
        expect: int | None = None,
        *,
        now: float,
        expect_value: bytes | None = None,
    ) -> int:
        """An op is sent; returns its id. A cas with ``expect > 0`` and no
        ``expect_value`` takes the value this client read with ModifyIndex ``expect``."""
        if kind == "cas" and expect and expect_value is None:
            seen = self._read.get((client, key), {})
            if expect not in seen:
                raise ValueError(
                    f"{client} cas {key!r} expects ModifyIndex {expect}, but never read "
                    "the key at that index; pass expect_value"
                )
            expect_value = seen[expect]
        op_id = len(self._records)
        rec = _Record(client, kind, key, value, expect, expect_value, now)
        _validate(op_id, self._op(rec))
        self._records.append(rec)
        return op_id

    def complete(
        self,
        op_id: int,
        now: float,
        ok: bool | None = None,
        result: Any = None,
        *,
        index: int | None = None,
    ) -> None:
        """The answer to op ``op_id`` arrives. put/cas/delete: ``ok``; get: ``result``
        and, if the key existed, its ModifyIndex as ``index``."""
        rec = self._records[op_id]
        if rec.done:
            raise ValueError(f"op {op_id} completed twice")
        if now < rec.call:
            raise ValueError(f"op {op_id} completes at {now} before its call at {rec.call}")
        rec.done = True
        if rec.kind == "get":
            if ok is False:
                return
            if result is not None and not isinstance(result, bytes):
                raise ValueError(f"op {op_id}: a get's result is bytes or None")
            rec.ret, rec.result = now, result
            if index is not None and result is not None:
                self._read.setdefault((rec.client, rec.key), {})[index] = result
            return
        if ok is None:
            return
        rec.ret, rec.ok = now, ok

    def ops(self) -> list[Op]:
        """Every op invoked, in invocation order (ids are positions); those not answered
        come out with ``ret=None``."""
        return [self._op(r) for r in self._records]

    @staticmethod
    def _op(r: _Record) -> Op:
        return Op(r.client, r.kind, r.key, r.value, r.expect, r.call, r.ret, r.ok, r.result,
                  r.expect_value)  # fmt: skip
