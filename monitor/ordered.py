"""Fetch in parallel, commit in order.

    keys ──► fetch(k1) fetch(k2) fetch(k3)      up to `depth` at once, while the results fetched and
                │         │         │           not yet consumed weigh less than `held_limit`
                ▼         ▼         ▼
             consume(k1) → consume(k2) → ...    strictly in key order, one at a time

The head of the line is always fetched, whatever the weight held, so a single heavy result cannot
stall the line; the limit only stops fetching ahead. A fetch still in flight counts as heavy as the
heaviest result seen so far (before the first result, the line fills up to `depth`). The first
failure (of a fetch or a consume) cancels everything in flight and propagates as itself; `stop()`
returning True ends the line before the next consume (the one under way finishes). Keys are drawn
lazily, so an endless or enormous key range costs nothing until it is reached.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
R = TypeVar("R")


class OrderedFetcher(Generic[K, R]):
    def __init__(
        self,
        fetch: Callable[[K], Awaitable[R]],
        *,
        depth: int,
        weight: Callable[[R], int] = lambda _result: 0,
        held_limit: int | None = None,
    ) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self.fetch = fetch
        self.depth = depth
        self.weight = weight
        self.held_limit = held_limit
        self._heaviest = 0

    async def run(
        self,
        keys: Iterable[K],
        consume: Callable[[K, R], Awaitable[None]],
        stop: Callable[[], bool] = lambda: False,
    ) -> int:
        """Consume the result of every key in order; returns how many were consumed."""
        remaining = iter(keys)
        pending: deque[tuple[K, asyncio.Task[R]]] = deque()
        consumed = 0
        try:
            while True:
                self._fetch_ahead(remaining, pending)
                if not pending or stop():
                    return consumed
                key, task = pending.popleft()
                result = await task
                self._heaviest = max(self._heaviest, self.weight(result))
                await consume(key, result)
                consumed += 1
        finally:
            for _, task in pending:
                task.cancel()
            for _, task in pending:
                with contextlib.suppress(BaseException):
                    await task

    def _fetch_ahead(self, remaining: Iterator[K], pending: deque[tuple[K, asyncio.Task[R]]]) -> None:
        while len(pending) < self.depth and (not pending or self._room(pending)):
            key = next(remaining, _END)
            if key is _END:
                return
            pending.append((key, asyncio.create_task(self.fetch(key))))  # type: ignore[arg-type]

    def _room(self, pending: deque[tuple[K, asyncio.Task[R]]]) -> bool:
        if self.held_limit is None:
            return True
        held = sum(self._weight_of(task) for _, task in pending)
        return held < self.held_limit

    def _weight_of(self, task: asyncio.Task[R]) -> int:
        if not task.done():
            return self._heaviest
        if task.cancelled() or task.exception() is not None:
            return 0
        return self.weight(task.result())


_END = object()
