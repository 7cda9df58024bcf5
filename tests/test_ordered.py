"""Fetch in parallel, commit in order: order, bounds, failure and stop."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from monitor.ordered import OrderedFetcher


class Recorder:
    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.started: list[int] = []
        self.consumed: list[int] = []

    async def fetch(self, key: int) -> int:
        self.started.append(key)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(random.uniform(0, 0.005))  # finish out of order
            return key * 10
        finally:
            self.in_flight -= 1

    async def consume(self, key: int, result: int) -> None:
        assert result == key * 10
        self.consumed.append(key)


async def test_results_are_consumed_in_key_order_with_at_most_depth_in_flight() -> None:
    seen = Recorder()
    consumed = await OrderedFetcher(seen.fetch, depth=4).run(range(50), seen.consume)
    assert consumed == 50 and seen.consumed == list(range(50))
    assert 1 < seen.most_in_flight <= 4


async def test_keys_are_drawn_lazily_from_an_endless_range() -> None:
    seen = Recorder()
    await OrderedFetcher(seen.fetch, depth=3).run(itertools.count(), seen.consume, stop=lambda: len(seen.consumed) >= 5)
    assert seen.consumed == [0, 1, 2, 3, 4]
    assert max(seen.started) <= 7, "no more than depth keys beyond what was consumed"


async def test_the_held_limit_stops_fetching_ahead_but_never_the_head() -> None:
    seen = Recorder()
    pending_at_start: dict[int, int] = {}

    async def fetch(key: int) -> int:
        pending_at_start[key] = seen.in_flight
        return await seen.fetch(key)

    fetcher = OrderedFetcher(fetch, depth=8, weight=lambda result: 1_000, held_limit=1)
    assert await fetcher.run(range(30), seen.consume) == 30
    assert seen.consumed == list(range(30))
    assert all(pending_at_start[key] == 0 for key in range(8, 30)), "once results weigh, only the head is fetched"


async def test_a_failed_fetch_cancels_the_rest_and_raises_itself() -> None:
    finished: list[int] = []

    async def fetch(key: int) -> int:
        if key == 3:
            raise LookupError("entry 3 is missing")
        await asyncio.sleep(0.05 if key > 3 else 0)
        finished.append(key)
        return key

    consumed: list[int] = []

    async def consume(key: int, _result: int) -> None:
        consumed.append(key)

    with pytest.raises(LookupError, match="entry 3"):
        await OrderedFetcher(fetch, depth=4).run(range(10), consume)
    await asyncio.sleep(0.1)
    assert consumed == [0, 1, 2], "nothing after the failure is consumed"
    assert max(finished) < 3, "what was in flight is cancelled"


async def test_a_failed_consume_propagates_and_cancels_the_fetches_ahead() -> None:
    seen = Recorder()

    async def consume(key: int, result: int) -> None:
        if key == 2:
            raise RuntimeError("database down")
        await seen.consume(key, result)

    with pytest.raises(RuntimeError, match="database down"):
        await OrderedFetcher(seen.fetch, depth=3).run(range(10), consume)
    await asyncio.sleep(0.02)
    assert seen.consumed == [0, 1] and seen.in_flight == 0
