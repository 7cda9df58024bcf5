"""The bounded LRU mapping behind every cache (chain results, Codefresh builds, tiles, node hashes)."""

from __future__ import annotations

import pytest

from monitor.lru import LruCache


def test_the_least_recently_used_item_goes_first() -> None:
    cache: LruCache[str, int] = LruCache(2)
    assert cache.put("a", 1) == 1
    cache.put("b", 2)
    assert cache.get("a") == 1  # now the most recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (1, None, 3, 2)


def test_putting_a_key_again_replaces_it_as_the_most_recently_used() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (10, None, 3)


def test_discard_forgets_a_key_only_while_it_holds_that_value() -> None:
    first, second = object(), object()
    cache: LruCache[str, object] = LruCache(4)
    cache.put("k", first)
    cache.put("k", second)
    cache.discard("k", first)
    assert cache.get("k") is second
    cache.discard("k", second)
    assert cache.get("k") is None


def test_a_cache_of_capacity_0_keeps_nothing_and_a_negative_one_is_refused() -> None:
    off: LruCache[str, int] = LruCache(0)
    assert off.put("a", 1) == 1
    assert (off.get("a"), len(off)) == (None, 0)
    with pytest.raises(ValueError):
        LruCache(-1)
