"""HTTP plumbing shared by the log clients: retries with backoff, capped answers, two kinds of failure.

A log is either unavailable (it cannot be reached, times out or sheds load: retried, then
`LogUnavailableError`) or it answered something no honest log answers (`LogProtocolError`, never
retried: asking again would only fetch the same nonsense).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp
import orjson
import structlog
from yarl import URL

from monitor.tlog.errors import LogProtocolError, LogUnavailableError, UnexpectedStatusError

T = TypeVar("T")

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
RESPONSE_BUDGET_BYTES = 96 * 1024 * 1024
MAX_RETRY_AFTER = 300.0
HTTP_OK = 200
HTTP_NOT_FOUND = 404
HTTP_TOO_MANY_REQUESTS = 429
SERVER_ERRORS = range(500, 600)

Observer = Callable[[str, float, str | None], None]
"""`observe(endpoint, seconds, failure)` once per attempt; `failure` is None for an answer, else one of
FAILURES (what a fetch-error counter is labelled with)."""
FAILURES = ("timeout", "connection", "http_429", "http_5xx", "protocol", "memory_budget")
Params = Mapping[str, str | int]

_DELTA_SECONDS = re.compile(r"[0-9]+")

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; `max_attempts=None` retries forever."""

    max_attempts: int | None = 8
    base_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1, or None for no limit")
        if self.base_delay < 0 or self.max_delay < 0 or self.factor < 1:
            raise ValueError("delays must be >= 0 and factor >= 1")

    def allows_another_attempt(self, attempts_made: int) -> bool:
        return self.max_attempts is None or attempts_made < self.max_attempts

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based).

        A server's Retry-After is a floor (capped at MAX_RETRY_AFTER, so a hostile value cannot
        park the monitor for days).
        """
        try:
            ceiling = min(self.max_delay, self.base_delay * self.factor ** max(attempt - 1, 0))
        except OverflowError:
            ceiling = self.max_delay
        wait = random.uniform(0.0, ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, MAX_RETRY_AFTER))
        return wait


def parse_retry_after(value: str | None) -> float | None:
    """A Retry-After header (delta-seconds or HTTP-date) as seconds from now; None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class ByteBudget:
    """Bytes of answers being read at the same time, across every log of the process.

    A cap per answer alone lets eight endless answers in flight take eight caps of memory; with the
    budget, an answer that would exceed what is left fails (and is retried later, like a timeout), so
    hostile or broken logs cannot grow memory beyond the budget however many requests are in flight.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        return True

    def give(self, size: int) -> None:
        self.used -= size


SHARED_BUDGET = ByteBudget(RESPONSE_BUDGET_BYTES)


class AdaptiveLimit:
    """Requests in flight to one log: additive increase, multiplicative decrease (as TCP does).

    At most `ceiling` (the configured concurrency). A 429 halves the limit (not below 1; one halving
    per `cooldown` seconds, so a burst of 429s answered together counts once); every `limit`
    successes in a row grow it back by one. A public log that sheds load is never hammered, and one
    that recovers gets its full concurrency back within a few hundred requests.
    """

    def __init__(self, ceiling: int, *, cooldown: float = 1.0) -> None:
        if ceiling < 1:
            raise ValueError("concurrency must be at least 1")
        self.ceiling = ceiling
        self.limit = ceiling
        self.cooldown = cooldown
        self.in_flight = 0
        self._successes = 0
        self._halved_at = -cooldown
        self._waiting: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> AdaptiveLimit:
        if self.in_flight < self.limit and not self._waiting:
            self.in_flight += 1
            return self
        # Hundreds of requests may wait for a slot: each freed slot is handed to the first waiter
        # alone (first come, first served), rather than waking them all to compete for it.
        granted = asyncio.get_running_loop().create_future()
        self._waiting.append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():  # handed a slot, cancelled before using it
                self.in_flight -= 1
                self._hand_over()
            raise
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.in_flight -= 1
        self._hand_over()

    def _hand_over(self) -> None:
        """Free slots to the waiters in order (a waiter that gave up is skipped)."""
        while self._waiting and self.in_flight < self.limit:
            granted = self._waiting.popleft()
            if not granted.done():
                self.in_flight += 1
                granted.set_result(None)

    def throttled(self) -> None:
        now = time.monotonic()
        if now - self._halved_at >= self.cooldown:
            self.limit = max(1, self.limit // 2)
            self._halved_at = now
        self._successes = 0

    def succeeded(self) -> None:
        self._successes += 1
        if self._successes >= self.limit and self.limit < self.ceiling:
            self.limit += 1
            self._successes = 0
            self._hand_over()


class _TransientError(Exception):
    """One attempt failed in a way that another attempt may not (internal to the retry loop)."""

    def __init__(
        self, cause: str, failure: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(cause)
        self.failure = failure
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    endpoint: str
    shown_url: str
    params: Params | None = None
    body: bytes | None = None
    """A POST's JSON, encoded once for every attempt (by orjson: aiohttp's json.dumps cost ~35 µs a
    retrieve request)."""
    absent_on_404: bool = False


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class HttpFetcher:
    """GET/POST against one log's base URL, with retries, a timeout and a size cap per attempt.

    `observe(endpoint, seconds, failure)` is called once per HTTP attempt, whatever its outcome.
    Answers are read within `budget`, shared by every fetcher of the process. At most `concurrency`
    attempts are in flight, fewer while the log answers 429 (AdaptiveLimit).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        retry: RetryPolicy,
        timeout: float = 30,
        observe: Observer | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        budget: ByteBudget = SHARED_BUDGET,
        concurrency: int = 8,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        parsed = URL(base_url)
        if parsed.user is not None or parsed.password is not None:
            # URLs end up in logs and error messages: credentials belong in the session.
            raise ValueError("the log URL must not carry credentials; configure them on the session")
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._retry = retry
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._observe = observe
        self._max_response_bytes = max_response_bytes
        self._budget = budget
        self.limit = AdaptiveLimit(concurrency)
        self._headers = dict(headers or {})  # never shown: they may hold a token
        self._json_headers = {**self._headers, "Content-Type": "application/json"}

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def retry(self) -> RetryPolicy:
        return self._retry

    def url_for(self, path: str, params: Params | None = None) -> str:
        """The full URL of a request, as shown in logs and errors."""
        url = URL(self._base_url + path)
        return str(url.with_query(params) if params else url)

    async def get(self, path: str, params: Params | None = None, *, endpoint: str) -> bytes | None:
        """The body of a 200 answer, or None for 404."""
        request = _Request("GET", path, endpoint, self.url_for(path, params), params=params, absent_on_404=True)
        return await self._with_retries(request)

    async def post_json(self, path: str, payload: Any, *, endpoint: str) -> bytes:
        """POST `payload` as JSON; the body of the 200 answer (a 404 here is a protocol error)."""
        body = orjson.dumps(payload)
        answer = await self._with_retries(_Request("POST", path, endpoint, self.url_for(path), body=body))
        assert answer is not None, "absent_on_404 is off for POST"
        return answer

    async def _with_retries(self, request: _Request) -> bytes | None:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(request)
            except _TransientError as exc:
                if not self._retry.allows_another_attempt(attempt):
                    raise LogUnavailableError(request.shown_url, f"{exc} (gave up after {attempt} attempts)") from exc
                delay = self._retry.delay(attempt, exc.retry_after)
                log.bind(url=request.shown_url, endpoint=request.endpoint).debug(
                    "log_request_retry", status=exc.status, error=str(exc), attempt=attempt, delay=round(delay, 3)
                )
                await asyncio.sleep(delay)

    async def _attempt(self, request: _Request) -> bytes | None:
        async with self.limit:
            answer = await self._timed_attempt(request)
        self.limit.succeeded()
        return answer

    async def _timed_attempt(self, request: _Request) -> bytes | None:
        started = time.perf_counter()
        failure: str | None = "protocol"
        try:
            async with self._session.request(
                request.method,
                self._base_url + request.path,
                params=request.params,
                data=request.body,
                headers=self._headers if request.body is None else self._json_headers,
                timeout=self._timeout,
                allow_redirects=False,
                raise_for_status=False,
            ) as response:
                answer = await self._read_answer(request, response)
                failure = None
                return answer
        except _TransientError as exc:
            failure = exc.failure
            if failure == "http_429":
                self.limit.throttled()
            raise
        except TimeoutError as exc:
            failure = "timeout"
            raise _TransientError(_describe(exc), failure) from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            failure = "connection"
            raise _TransientError(_describe(exc), failure) from exc
        except aiohttp.ClientError as exc:
            raise LogProtocolError(request.shown_url, f"invalid HTTP answer: {_describe(exc)}") from exc
        finally:
            if self._observe is not None:
                self._observe(request.endpoint, time.perf_counter() - started, failure)

    async def _read_answer(self, request: _Request, response: aiohttp.ClientResponse) -> bytes | None:
        status = response.status
        if status == HTTP_OK:
            return await self._read_capped(request, response)
        if status == HTTP_NOT_FOUND and request.absent_on_404:
            return None
        if status == HTTP_TOO_MANY_REQUESTS or status in SERVER_ERRORS:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            failure = "http_429" if status == HTTP_TOO_MANY_REQUESTS else "http_5xx"
            raise _TransientError(f"HTTP {status}", failure, status=status, retry_after=retry_after)
        raise UnexpectedStatusError(request.shown_url, status)

    async def _read_capped(self, request: _Request, response: aiohttp.ClientResponse) -> bytes:
        limit = self._max_response_bytes
        declared = response.content_length
        if declared is not None and declared > limit:
            raise LogProtocolError(request.shown_url, f"answer of {declared} bytes exceeds the {limit}-byte cap")
        chunks: list[bytes] = []
        received = 0
        try:
            async for chunk in response.content.iter_any():
                if received + len(chunk) > limit:
                    raise LogProtocolError(request.shown_url, f"answer exceeds the {limit}-byte cap")
                if not self._budget.take(len(chunk)):
                    raise _TransientError("the answers in flight exceed the memory budget", "memory_budget")
                received += len(chunk)
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            self._budget.give(received)


async def gather_or_cancel(coroutines: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run concurrently, results in order; the first failure cancels the rest and propagates as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coroutine) for coroutine in coroutines]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]
