"""The Codefresh builds API client: one `BuildsClient` per watched account that has an API key.

Invariants:
- The key is sent only as `Authorization: <key>` (raw, as the Codefresh CLI does) to the account's
  own `builds_api_url`, never through a redirect (redirects are not followed); it is kept as a
  SecretStr and scrubbed from every reason this module writes, so it appears in no log, error,
  repr or answer.
- At most `per_second` requests per account start in any second, retries included: every attempt
  waits for the next slot of the account's `RequestSpacing`, which all callers share.
- 429, 5xx, timeouts and network errors are retried with jittered exponential backoff, never sooner
  than the server's Retry-After; a Retry-After beyond `max_wait` is not waited for in-process but
  returned in `Unavailable.retry_after`, for the caller to schedule.
- Answers are capped at `max_answer_bytes` and parsed tolerantly (`model.parse_build`); the first
  unexpected shape of each account is logged once, and a refused key once, never per signing.
- Found builds that have finished and 404s are cached by workflow id (bounded LRU); a running
  build (its `finished` may still change) and failures are never cached.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
import structlog
from pydantic import SecretStr

from monitor.alerts.secrets import scrub
from monitor.codefresh_api.model import (
    BuildAnswer,
    Found,
    NotFound,
    Unauthorized,
    Unavailable,
    is_workflow_id,
    parse_build,
)
from monitor.config import WatchSettings
from monitor.lru import LruCache
from monitor.tlog.http import (
    HTTP_NOT_FOUND,
    HTTP_OK,
    HTTP_TOO_MANY_REQUESTS,
    SERVER_ERRORS,
    RetryPolicy,
    parse_retry_after,
)

log = structlog.get_logger(__name__)

REQUESTS_PER_SECOND = 5.0
DEFAULT_RETRY = RetryPolicy(max_attempts=4, base_delay=0.5, factor=2.0, max_delay=10.0)
DEFAULT_TIMEOUT = 15.0
DEFAULT_MAX_WAIT = 30.0
DEFAULT_CACHE_SIZE = 4096
MAX_ANSWER_BYTES = 8 * 1024 * 1024
REFUSED = (401, 403)


class RequestSpacing:
    """Request starts at least 1/per_second apart: each caller takes the next free slot in turn."""

    def __init__(self, per_second: float) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self._interval = 1.0 / per_second
        self._next_slot = 0.0

    async def wait(self) -> None:
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


@dataclass(frozen=True)
class _Transient:
    """An attempt that another attempt may fix."""

    cause: str
    retry_after: float | None = None


@dataclass(frozen=True)
class ClientOptions:
    retry: RetryPolicy = DEFAULT_RETRY
    timeout: float = DEFAULT_TIMEOUT  # seconds per attempt
    per_second: float = REQUESTS_PER_SECOND
    max_wait: float = DEFAULT_MAX_WAIT  # the longest Retry-After waited for in-process
    cache_size: int = DEFAULT_CACHE_SIZE
    max_answer_bytes: int = MAX_ANSWER_BYTES


class BuildsClient:
    """`get_build(workflow_id)` against one account's builds API."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        account_id: str,
        api_url: str,
        api_key: SecretStr,
        options: ClientOptions = ClientOptions(),
    ) -> None:
        self.account_id = account_id
        self.api_url = api_url.rstrip("/")
        self._session = session
        self._key = api_key
        self._options = options
        self._timeout = aiohttp.ClientTimeout(total=options.timeout)
        self._spacing = RequestSpacing(options.per_second)
        self._cache: LruCache[str, BuildAnswer] = LruCache(options.cache_size)
        self._log = log.bind(account_id=account_id, api_url=self.api_url)
        self._shape_reported = False
        self._refusal_reported = False

    def __repr__(self) -> str:
        return f"BuildsClient(account_id={self.account_id!r}, api_url={self.api_url!r})"

    async def get_build(self, workflow_id: str) -> BuildAnswer:
        """The API's answer about one build; never raises for anything the API or network does."""
        if not is_workflow_id(workflow_id):
            raise ValueError("not a workflow id (letters, digits, '_' and '-', at most 64)")
        cached = self._cache.get(workflow_id)
        if cached is not None:
            return cached
        answer = await self._with_retries(workflow_id)
        if isinstance(answer, NotFound) or (isinstance(answer, Found) and answer.build.finished is not None):
            self._cache.put(workflow_id, answer)
        return answer

    async def _with_retries(self, workflow_id: str) -> BuildAnswer:
        attempt = 0
        while True:
            attempt += 1
            outcome = await self._attempt(workflow_id)
            if not isinstance(outcome, _Transient):
                return outcome
            if outcome.retry_after is not None and outcome.retry_after > self._options.max_wait:
                return Unavailable(f"{outcome.cause}, retry after {outcome.retry_after:.0f}s", outcome.retry_after)
            if not self._options.retry.allows_another_attempt(attempt):
                return Unavailable(f"{outcome.cause} (gave up after {attempt} attempts)", outcome.retry_after)
            delay = self._options.retry.delay(attempt, outcome.retry_after)
            self._log.debug(
                "codefresh_api_retry",
                workflow_id=workflow_id,
                error=outcome.cause,
                attempt=attempt,
                delay=round(delay, 3),
            )
            await asyncio.sleep(delay)

    async def _attempt(self, workflow_id: str) -> BuildAnswer | _Transient:
        await self._spacing.wait()
        try:
            async with self._session.get(
                f"{self.api_url}/api/builds/{workflow_id}",
                headers={"Authorization": self._key.get_secret_value(), "Accept": "application/json"},
                timeout=self._timeout,
                allow_redirects=False,
                raise_for_status=False,
            ) as response:
                return await self._read_answer(workflow_id, response)
        except TimeoutError:
            return _Transient("timed out")
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            return _Transient(self._describe(exc))
        except aiohttp.ClientError as exc:
            return Unavailable(f"invalid HTTP answer: {self._describe(exc)}")

    async def _read_answer(self, workflow_id: str, response: aiohttp.ClientResponse) -> BuildAnswer | _Transient:
        status = response.status
        if status == HTTP_OK:
            body = await self._read_capped(response)
            return body if isinstance(body, Unavailable) else self._build_or_unavailable(workflow_id, body)
        if status == HTTP_NOT_FOUND:
            return NotFound()
        if status in REFUSED:
            self._report_refusal(status)
            return Unauthorized(status)
        if status == HTTP_TOO_MANY_REQUESTS or status in SERVER_ERRORS:
            return _Transient(f"HTTP {status}", parse_retry_after(response.headers.get("Retry-After")))
        return Unavailable(f"unexpected HTTP status {status}")

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes | Unavailable:
        limit = self._options.max_answer_bytes
        if response.content_length is not None and response.content_length > limit:
            return Unavailable(f"answer of {response.content_length} bytes exceeds the {limit}-byte cap")
        chunks: list[bytes] = []
        received = 0
        async for chunk in response.content.iter_any():
            received += len(chunk)
            if received > limit:
                return Unavailable(f"answer exceeds the {limit}-byte cap")
            chunks.append(chunk)
        return b"".join(chunks)

    def _build_or_unavailable(self, workflow_id: str, body: bytes) -> BuildAnswer:
        parsed = parse_build(body)
        if parsed.problems:
            self._report_shape(parsed.problems)
        if parsed.build is None:
            return Unavailable(f"unexpected answer: {parsed.problems[0]}")
        if parsed.build.id is not None and parsed.build.id != workflow_id:
            return Unavailable("unexpected answer: it describes another build than the one asked for")
        return Found(parsed.build)

    def _report_shape(self, problems: tuple[str, ...]) -> None:
        if not self._shape_reported:
            self._shape_reported = True
            self._log.warning("codefresh_build_answer_unexpected", problems=list(problems), note="logged once")

    def _report_refusal(self, status: int) -> None:
        if not self._refusal_reported:
            self._refusal_reported = True
            self._log.error("codefresh_api_key_refused", status=status, note="logged once; builds stay unchecked")

    def _describe(self, exc: BaseException) -> str:
        text = str(exc)
        described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        return scrub(described, (self._key.get_secret_value(),))


class BuildsClients:
    """The `BuildsClient` of each watched account with an api_key, keyed by (account id, platform URL)."""

    def __init__(
        self,
        watch: WatchSettings,
        session: aiohttp.ClientSession,
        options: ClientOptions = ClientOptions(),
    ) -> None:
        self._clients: dict[tuple[str, str], BuildsClient] = {}
        for account in watch.codefresh:
            key = (account.account_id, account.platform_url)
            if account.api_key is not None and key not in self._clients:
                self._clients[key] = BuildsClient(
                    session,
                    account_id=account.account_id,
                    api_url=account.builds_api_url,
                    api_key=account.api_key,
                    options=options,
                )

    def client_for(self, account_id: str, platform_url: str) -> BuildsClient | None:
        return self._clients.get((account_id, platform_url.rstrip("/")))
