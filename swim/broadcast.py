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

from collections.abc import Callable

from sortedcontainers import SortedList

from swim.config import retransmit_limit

__all__ = ["BroadcastQueue"]

_Key = tuple[int, int, int]


class _Item:
    __slots__ = ("id", "msg", "name", "on_finished", "transmits")

    def __init__(
        self, msg: bytes, name: str | None, id_: int, on_finished: Callable[[], None] | None
    ) -> None:
        self.msg = msg
        self.name = name
        self.id = id_
        self.transmits = 0
        self.on_finished = on_finished

    def key(self) -> _Key:
        return (self.transmits, -len(self.msg), -self.id)


class BroadcastQueue:
    __slots__ = ("_by_name", "_items", "_next_id", "retransmit_mult")

    def __init__(self, retransmit_mult: int) -> None:
        self.retransmit_mult = retransmit_mult
        self._items: SortedList = SortedList(key=_Item.key)
        self._by_name: dict[str, _Item] = {}
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._items)

    def queue(
        self, msg: bytes, name: str | None = None, on_finished: Callable[[], None] | None = None
    ) -> None:
        if name is not None:
            old = self._by_name.pop(name, None)
            if old is not None:
                self._items.remove(old)
                self._finish(old)
        self._next_id += 1
        item = _Item(msg, name, self._next_id, on_finished)
        self._items.add(item)
        if name is not None:
            self._by_name[name] = item

    def get(self, overhead: int, limit: int, num_nodes: int) -> list[bytes]:
        """Messages to piggyback, using at most ``limit`` bytes counting ``overhead`` each."""
        items = self._items
        if not items:
            return []
        transmit_limit = retransmit_limit(self.retransmit_mult, num_nodes)
        used = 0
        out: list[bytes] = []
        reinsert: list[_Item] = []
        tier = items[0].transmits
        max_tier = items[-1].transmits
        while tier <= max_tier:
            free = limit - used - overhead
            if free <= 0:
                break
            # first item of this tier whose message fits: key >= (tier, -free, -inf)
            i = items.bisect_key_left((tier, -free, -(1 << 62)))
            if i >= len(items) or items[i].transmits != tier:
                tier += 1
                continue
            item = items.pop(i)
            out.append(item.msg)
            used += overhead + len(item.msg)
            if item.transmits + 1 >= transmit_limit:
                if item.name is not None:
                    del self._by_name[item.name]
                self._finish(item)
            else:
                item.transmits += 1
                reinsert.append(item)
        for item in reinsert:
            items.add(item)
        if not items:
            self._next_id = 0
        return out

    def prune(self, max_retain: int) -> int:
        """Drop the most-transmitted messages until at most ``max_retain`` remain."""
        dropped = 0
        while len(self._items) > max_retain:
            item = self._items.pop(-1)
            if item.name is not None:
                self._by_name.pop(item.name, None)
            self._finish(item)
            dropped += 1
        return dropped

    def reset(self) -> None:
        for item in list(self._items):
            self._finish(item)
        self._items.clear()
        self._by_name.clear()
        self._next_id = 0

    @staticmethod
    def _finish(item: _Item) -> None:
        if item.on_finished is not None:
            cb, item.on_finished = item.on_finished, None
            cb()
