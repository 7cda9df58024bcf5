"""A bounded mapping that forgets its least recently used item first.

Every cache of the daemon and its decode process is one (chain results, Codefresh builds, hash
tiles and the node hashes computed from them): whatever a log or an API sends, none grows past its
capacity. Lean on purpose: the decode process imports it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """At most `capacity` items (0: none, a cache turned off), none of them None (`get` says None
    for a missing one)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("an LRU cache cannot hold fewer than 0 items")
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> V | None:
        """The item kept under `key`, now the most recently used; None if there is none."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> V:
        """Keep `value` under `key` as the most recently used, forgetting the least recently used
        item beyond the capacity; returns `value`."""
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return value

    def discard(self, key: K, value: V) -> None:
        """Forget `key` if it still holds `value` (not one put there since)."""
        if self._items.get(key) is value:
            del self._items[key]
