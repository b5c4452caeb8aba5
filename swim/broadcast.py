"""The transmit-limited broadcast queue (ML/queue.go TransmitLimitedQueue).

Gossip is disseminated by piggybacking queued messages on outgoing packets. Rules:

1. Each message is sent at most ``retransmit_mult × ceil(log10(n + 1))`` times, which with
   fanout k reaches all n members with high probability (SWIM §4.1, epidemic spread).
2. Order of preference: fewest transmissions first, then the largest that still fits,
   then the newest. Fewest-first is what makes new information spread fastest.
3. A named message (memberlist names its messages by the node they are about) replaces
   any queued message with the same name: a newer alive about X supersedes a suspect
   about X, so stale news is never sent after fresh news.
4. The queue can be pruned to a bound, dropping the most-transmitted first; callers use
   this to bound memory when broadcasts arrive faster than they drain.

``on_finished`` callbacks fire when a message is retired (sent its last time, replaced
or pruned) — used to wait for a leave message to go out.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Callable

from swim.config import retransmit_limit

__all__ = ["BroadcastQueue"]

_Key = tuple[int, int, int]


class _Item:
    __slots__ = ("id", "live", "msg", "name", "on_finished", "transmits")

    def __init__(
        self, msg: bytes, name: str | None, id_: int, on_finished: Callable[[], None] | None
    ) -> None:
        self.msg = msg
        self.name = name
        self.id = id_
        self.transmits = 0
        self.on_finished = on_finished
        self.live = True

    def key(self) -> _Key:
        return (self.transmits, -len(self.msg), -self.id)


class _Tier:
    """The queued messages sent ``transmits`` times so far, bucketed by length.

    ``lengths`` lists the lengths that have live messages, ascending, so "the largest that
    still fits" is one bisect; each bucket is a list of ``(id, item)`` in ascending id order,
    so the newest is at its end (new messages get the highest id: they are appended).
    Replaced messages are only marked dead and skipped when they reach the end; ``live``
    counts per length say when a bucket is empty.
    """

    __slots__ = ("buckets", "count", "lengths", "live")

    def __init__(self) -> None:
        self.lengths: list[int] = []
        self.buckets: dict[int, list[tuple[int, _Item]]] = {}
        self.live: dict[int, int] = {}
        self.count = 0

    def add(self, item: _Item) -> None:
        n = len(item.msg)
        bucket = self.buckets.get(n)
        if bucket is None:
            self.buckets[n] = [(item.id, item)]
            self.live[n] = 1
            insort(self.lengths, n)
        else:
            if bucket[-1][0] < item.id:
                bucket.append((item.id, item))
            else:
                insort(bucket, (item.id, item))  # ids are unique: items never compared
            self.live[n] += 1
        self.count += 1

    def add_many(self, items: list[_Item]) -> None:
        """:meth:`add` for a batch (the messages ``get`` just sent, moving up a tier)."""
        buckets = self.buckets
        live = self.live
        for item in items:
            n = len(item.msg)
            bucket = buckets.get(n)
            entry = (item.id, item)
            if bucket is None:
                buckets[n] = [entry]
                live[n] = 1
                insort(self.lengths, n)
                continue
            if bucket[-1][0] < entry[0]:
                bucket.append(entry)
            else:
                insort(bucket, entry)  # ids are unique: items never compared
            live[n] += 1
        self.count += len(items)

    def take(self, free: int, overhead: int, out: list[_Item]) -> int:
        """Move to ``out`` what ``get`` would hand out from this tier with ``free`` bytes
        left (``limit - used - overhead``): the largest message that fits, newest first,
        again and again. Messages of one length are taken as a run (as many as fit).
        Returns the bytes left."""
        lengths = self.lengths
        buckets = self.buckets
        live = self.live
        while free > 0:
            i = bisect_right(lengths, free) - 1
            if i < 0:
                break
            n = lengths[i]
            step = n + overhead
            k = live[n]
            if step > 0:
                fit = (free - n) // step + 1
                if fit < k:
                    k = fit
            bucket = buckets[n]
            taken = 0
            while taken < k:
                item = bucket.pop()[1]
                if item.live:
                    out.append(item)
                    taken += 1
            free -= k * step
            self.count -= k
            left = live[n] - k
            if left:
                live[n] = left
            else:
                del live[n]
                del buckets[n]
                del lengths[i]
        return free

    def remove(self, item: _Item) -> None:
        """Forget a queued message (it stays in its bucket, dead, until it surfaces)."""
        item.live = False
        n = len(item.msg)
        self.count -= 1
        left = self.live[n] - 1
        if left:
            self.live[n] = left
            return
        del self.live[n]
        del self.buckets[n]
        del self.lengths[bisect_right(self.lengths, n) - 1]


class BroadcastQueue:
    """Queued messages in tiers by transmit count (a dict of :class:`_Tier`), which hands
    them out in exactly the order of memberlist's btree ordered by (transmits asc, length
    desc, id desc) at a fraction of the cost of keeping one sorted list."""

    __slots__ = ("_by_name", "_limit_for", "_next_id", "_tiers", "queued", "retransmit_mult")

    def __init__(self, retransmit_mult: int) -> None:
        self.retransmit_mult = retransmit_mult
        self._tiers: dict[int, _Tier] = {}
        self._by_name: dict[str, _Item] = {}
        self._next_id = 0
        self.queued = 0
        """How many messages are queued (``len(q)``, without a Python-level call)."""
        self._limit_for = (-1, 0)
        """(num_nodes, retransmit limit) of the last get: the limit needs a log10."""

    def __len__(self) -> int:
        return self.queued

    def queue(
        self, msg: bytes, name: str | None = None, on_finished: Callable[[], None] | None = None
    ) -> None:
        if name is not None:
            old = self._by_name.pop(name, None)
            if old is not None:
                self._remove(old)
                self._finish(old)
        self._next_id += 1
        item = _Item(msg, name, self._next_id, on_finished)
        self._add(item)
        if name is not None:
            self._by_name[name] = item

    def _add(self, item: _Item) -> None:
        tier = self._tiers.get(item.transmits)
        if tier is None:
            tier = self._tiers[item.transmits] = _Tier()
        tier.add(item)
        self.queued += 1

    def _remove(self, item: _Item) -> None:
        tier = self._tiers[item.transmits]
        tier.remove(item)
        if not tier.count:
            del self._tiers[item.transmits]
        self.queued -= 1

    def get(self, overhead: int, limit: int, num_nodes: int) -> list[bytes]:
        """Messages to piggyback, using at most ``limit`` bytes counting ``overhead`` each."""
        if not self.queued:
            return []
        n_for, transmit_limit = self._limit_for
        if n_for != num_nodes:
            transmit_limit = retransmit_limit(self.retransmit_mult, num_nodes)
            self._limit_for = (num_nodes, transmit_limit)
        tiers = self._tiers
        taken: list[_Item] = []
        free = limit - overhead
        # tiers in ascending transmit count; what is sent now rejoins the next tier after
        for transmits in sorted(tiers):
            if free <= 0:
                break
            tier = tiers[transmits]
            free = tier.take(free, overhead, taken)
            if not tier.count:
                del tiers[transmits]
        self.queued -= len(taken)
        out = []
        # what moves up, per destination tier (taken comes in ascending tier order)
        moving: dict[int, list[_Item]] = {}
        for item in taken:
            out.append(item.msg)
            t = item.transmits + 1
            if t >= transmit_limit:
                item.live = False
                if item.name is not None:
                    del self._by_name[item.name]
                self._finish(item)
            else:
                item.transmits = t
                batch = moving.get(t)
                if batch is None:
                    moving[t] = [item]
                else:
                    batch.append(item)
        for t, batch in moving.items():
            dest = tiers.get(t)
            if dest is None:
                dest = tiers[t] = _Tier()
            batch.reverse()  # oldest first: most land at the end of their new bucket
            dest.add_many(batch)
            self.queued += len(batch)
        if not self.queued:
            self._next_id = 0
        return out

    def _ordered(self) -> list[_Item]:
        """Every queued message in the queue's order (for the rare whole-queue operations)."""
        items = [
            e[1]
            for tier in self._tiers.values()
            for bucket in tier.buckets.values()
            for e in bucket
            if e[1].live
        ]
        items.sort(key=_Item.key)
        return items

    def prune(self, max_retain: int) -> int:
        """Drop the most-transmitted messages until at most ``max_retain`` remain."""
        dropped = 0
        if self.queued <= max_retain:
            return dropped
        for item in reversed(self._ordered()):
            if self.queued <= max_retain:
                break
            if not item.live:
                continue
            self._remove(item)
            if item.name is not None:
                self._by_name.pop(item.name, None)
            self._finish(item)
            dropped += 1
        return dropped

    def reset(self) -> None:
        for item in self._ordered():
            self._finish(item)
            item.live = False
        self._tiers.clear()
        self._by_name.clear()
        self.queued = 0
        self._next_id = 0

    @staticmethod
    def _finish(item: _Item) -> None:
        if item.on_finished is not None:
            cb, item.on_finished = item.on_finished, None
            cb()
