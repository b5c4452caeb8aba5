"""Blocking-query wake-ups: which waiting reads a change can affect.

A read (:class:`catalog.store.Read`) names the watch keys its answer depends on; each
applied command names the keys it touched (:meth:`catalog.store.StateStore.take_changes`).
:class:`WatchHub` joins the two. It is sans-IO: a waiter is any hashable object (the
asyncio driver uses futures) and :meth:`fire` only returns the waiters to wake.

KV listings watch ``("kvprefix", p)``; a change to key ``k`` is a ``("kv", k)`` change,
which wakes exact-key readers of ``k`` and prefix readers of every prefix of ``k``
(``len(k) + 1`` dictionary lookups, whatever the number of waiters), so a thousand
watchers on one prefix cost one lookup per write, and a watcher of ``app/`` is not woken
by a write to ``other/``.

Waking is a hint, never an answer: the woken read runs again and compares indexes, so a
spurious wake-up costs a read and a lost one is impossible as long as every change
touches its keys (the store's rule 5).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

from catalog.store import WatchKey

__all__ = ["WatchHub"]

W = TypeVar("W", bound=Hashable)


class WatchHub(Generic[W]):
    def __init__(self) -> None:
        self._by_key: dict[WatchKey, dict[W, None]] = {}

    def __len__(self) -> int:
        """Number of (key, waiter) registrations."""
        return sum(len(v) for v in self._by_key.values())

    def add(self, waiter: W, keys: Iterable[WatchKey]) -> None:
        for key in keys:
            self._by_key.setdefault(key, {})[waiter] = None

    def discard(self, waiter: W, keys: Iterable[WatchKey]) -> None:
        for key in keys:
            waiters = self._by_key.get(key)
            if waiters is not None:
                waiters.pop(waiter, None)
                if not waiters:
                    del self._by_key[key]

    def fire_all(self) -> list[W]:
        """Every waiter (to release them all at shutdown)."""
        out: dict[W, None] = {}
        for waiters in self._by_key.values():
            out.update(waiters)
        return list(out)

    def fire(self, changed: Iterable[WatchKey]) -> list[W]:
        """The waiters a change to ``changed`` may affect, each once, in registration
        order per key. They stay registered; the driver discards them when they return."""
        out: dict[W, None] = {}
        by_key = self._by_key
        for key in changed:
            waiters = by_key.get(key)
            if waiters:
                out.update(waiters)
            if key[0] == "kv":
                k = key[1]
                for i in range(len(k) + 1):
                    waiters = by_key.get(("kvprefix", k[:i]))
                    if waiters:
                        out.update(waiters)
        return list(out)
