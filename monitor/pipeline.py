"""The tailer: follow a log, prove it append-only, read every entry, commit in index order.

Per log, per shard (a row of `logs`), each cycle:

1. verify the newest checkpoint: signature by a trust-root key of this log, origin, then
   consistency with the last verified one (RFC 6962 proof). Any failure is `log_inconsistent`:
   the alert is raised and that shard's cursor stops for good.
2. read the entries [next_index, checkpoint size) in parallel, fold their leaf hashes into the
   shard's compact range (certspotter's collapsed tree) in index order, and prove each chunk is a
   prefix of the verified tree (consistency proof from the chunk's end, or the root itself at the
   checkpoint's size) BEFORE the chunk is handed on and the cursor moves with it.
3. hand the verified chunk to the `BatchHandler`, which stores what the chunk produced and moves
   the cursor in the same transaction (the store's `commit_batch`). Its CPU work (decoding and
   judging) starts as soon as a chunk is fetched, in parallel with the commit of the previous one;
   nothing of it is stored before the chunk is proven.

Shards: a v1 log lists its retired shards in `inactiveShards`. A shard that was active and turns
inactive is read to its final size and marked retired; a new active shard is followed from 0.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from monitor.config import LogSettings
from monitor.errors import ReasonedError
from monitor.metrics import Metrics
from monitor.store.models import LogRow
from monitor.store.repository import Batch, NewAlert, Store, VerifiedCheckpoint, alert_payload
from monitor.tlog.http import LogProtocolError, LogUnavailableError
from monitor.tlog.merkle import CompactRange, ProofError, verify_consistency
from monitor.tlog.note import Checkpoint, NoteError, NoteVerifier, open_checkpoint, verifier_for_key
from monitor.tlog.source import LogSource, ShardHead, SourceEntry, log_name
from monitor.trust import TrustRoot

log = structlog.get_logger(__name__)

CHUNK_SIZE = 1024  # a multiple of 256: tiles logs serve entries in bundles of 256
PREFETCH_CHUNKS = 3


class LogInconsistent(ReasonedError):
    """The log broke its append-only promise (or signed with a key it should not have)."""


class BatchHandler(Protocol):
    """Turns a verified chunk of entries into stored rows, committed with the cursor."""

    async def analyse(self, entries: Sequence[SourceEntry]) -> Any: ...

    async def commit(self, row: LogRow, entries: Sequence[SourceEntry], analysis: Any, batch: Batch) -> None: ...


@dataclass(frozen=True)
class FetchedChunk:
    entries: Sequence[SourceEntry]
    analysis: Any


@dataclass
class CycleResult:
    entries: int = 0
    inconsistent: bool = False
    lagging: bool = False
    """Entries announced by a verified checkpoint remain unread after the cycle."""
    standby: bool = False
    """Another replica holds the log's lock and tails it."""


class LogFollower:
    """Follows one log (every shard from the configured start on), whichever API it speaks."""

    def __init__(
        self,
        settings: LogSettings,
        trust: TrustRoot,
        store: Store,
        source: LogSource,
        handler: BatchHandler,
        *,
        chunk_size: int = CHUNK_SIZE,
        metrics: Metrics | None = None,
        sinks: Sequence[tuple[str, str]] = (),
    ):
        self.url = settings.url
        self.start = settings.start
        self.trust = trust
        self.store = store
        self.source = source
        self.handler = handler
        self.chunk_size = chunk_size
        self.metrics = metrics
        self.sinks = sinks
        self.rows: list[LogRow] = []
        self.stopping = asyncio.Event()
        """Set on shutdown: the chunk in flight is committed, no new one is started."""
        self.log = log.bind(log_url=self.url)

    # keys and checkpoints ---------------------------------------------------------------------

    def _verifiers(self) -> list[NoteVerifier]:
        now = datetime.now(UTC)
        keys = [key for key in self.trust.log_keys_for_url(self.url) if key.validity.start <= now]
        if not keys:
            raise LogInconsistent("no_trusted_key", f"the trust root ({self.trust.source}) has no key for {self.url}")
        return [verifier_for_key(key.name, key.spki_der) for key in keys]

    def open_note(self, note: str, tree_id: str) -> Checkpoint:
        try:
            return open_checkpoint(note, self._verifiers(), origin=self.source.origin(tree_id))
        except NoteError as exc:
            raise LogInconsistent("bad_checkpoint", f"shard {tree_id}: {exc}") from exc

    async def verify_checkpoint(self, row: LogRow, head: ShardHead) -> Checkpoint:
        """Verify the shard's newest checkpoint against the stored one, and store it."""
        if head.size_hint != row.tree_size:  # what the log announces, verified or not: for lag
            await self.store.set_tree_size(row.id, head.size_hint)
            row.tree_size = head.size_hint
        try:
            checkpoint = self.open_note(head.signed_note, head.tree_id)
            if row.verified_root is not None:
                await self._prove_append_only(row, checkpoint)
        except LogInconsistent:
            self._count_checkpoint("failed")
            raise
        await self.store.save_checkpoint(
            row.id, VerifiedCheckpoint(checkpoint.size, checkpoint.root_hash, checkpoint.note)
        )
        row.verified_size, row.verified_root = checkpoint.size, checkpoint.root_hash.hex()
        row.last_checkpoint_at = datetime.now(UTC)
        self._count_checkpoint("ok")
        self.publish_gauges()
        return checkpoint

    def _count_checkpoint(self, result: str) -> None:
        if self.metrics:
            self.metrics.checkpoint_verifications.labels(log=self.url, result=result).inc()

    def publish_gauges(self) -> None:
        """The log's global sizes, from its shard rows as they stand."""
        if self.metrics is None or not self.rows:
            return
        tree_size = max(row.shard_offset + row.tree_size for row in self.rows)
        lag = sum(max(row.shard_offset + row.tree_size - row.next_index, 0) for row in self.rows if not row.retired)
        m = self.metrics
        m.log_tree_size.labels(log=self.url).set(tree_size)
        m.log_verified_size.labels(log=self.url).set(max(row.shard_offset + row.verified_size for row in self.rows))
        m.log_next_index.labels(log=self.url).set(max(row.next_index for row in self.rows))
        m.log_lag_entries.labels(log=self.url).set(lag)
        checked = [row.last_checkpoint_at for row in self.rows if row.last_checkpoint_at]
        if checked:
            m.log_last_checkpoint.labels(log=self.url).set(max(checked).timestamp())

    async def _prove_append_only(self, row: LogRow, checkpoint: Checkpoint) -> None:
        old_size, old_root = row.verified_size, bytes.fromhex(row.verified_root or "")
        if checkpoint.size < old_size:
            raise LogInconsistent("tree_shrank", f"shard {row.tree_id}: size {checkpoint.size} < verified {old_size}")
        if checkpoint.size == old_size:
            if checkpoint.root_hash != old_root:
                raise LogInconsistent("root_changed", f"shard {row.tree_id}: size {old_size} has another root")
            return
        proof = await self.source.consistency_proof(old_size, checkpoint.size, row.tree_id)
        try:
            verify_consistency(old_size, checkpoint.size, proof, old_root, checkpoint.root_hash)
        except ProofError as exc:
            raise LogInconsistent(
                "consistency_failed", f"shard {row.tree_id}: {old_size} -> {checkpoint.size}: {exc}"
            ) from exc

    # starting points --------------------------------------------------------------------------

    async def rows_to_follow(self, heads: list[ShardHead]) -> list[LogRow]:
        """The stored shard rows, plus rows for shards that appeared since (or for the first start)."""
        rows = await self.store.logs(self.url)
        if not rows:
            return [await self._add_row(head, start) for head, start in self._first_start(heads)]
        newest = max(row.shard_offset for row in rows)
        known = {row.tree_id for row in rows}
        for head in heads:
            if head.tree_id not in known and head.offset > newest:
                self.log.info("shard_discovered", tree_id=head.tree_id, offset=head.offset)
                rows.append(await self._add_row(head, 0))
        return rows

    def _first_start(self, heads: list[ShardHead]) -> list[tuple[ShardHead, int]]:
        if self.start == "head":
            return [(heads[-1], heads[-1].size_hint)]
        start = int(self.start)
        for position, head in enumerate(heads):
            if head.active or start < head.offset + head.size_hint:
                local = max(start - head.offset, 0)
                return [(head, local), *((later, 0) for later in heads[position + 1 :])]
        raise AssertionError("the active shard always matches")

    async def _add_row(self, head: ShardHead, local_start: int) -> LogRow:
        row = LogRow(
            url=self.url,
            api=self.source.api,
            origin=self.source.origin(head.tree_id),
            tree_id=head.tree_id,
            shard_offset=head.offset,
            next_index=head.offset + local_start,
            compact_range=b"",
            tree_size=0,
            verified_size=0,
        )
        return await self.store.add_log(row)

    # reading entries --------------------------------------------------------------------------

    async def bootstrap_range(self, row: LogRow, head: ShardHead, checkpoint: Checkpoint) -> CompactRange:
        """The compact range of [0, next) from the inclusion proof of leaf next-1 (a start mid-log)."""
        local = row.shard_next
        if local == 0:
            return CompactRange()
        proof = await self.source.bootstrap_proof(local - 1, head, checkpoint.size)
        size, root = checkpoint.size, checkpoint.root_hash
        if proof.tree_size > checkpoint.size:
            newer = self.open_note(proof.checkpoint or "", row.tree_id)
            if newer.size != proof.tree_size:
                raise LogProtocolError(self.url, "an inclusion proof and its checkpoint disagree on the size")
            await self._prove_append_only(row, newer)
            size, root = newer.size, newer.root_hash
        elif proof.tree_size < checkpoint.size:
            raise LogProtocolError(self.url, f"inclusion proof for an older tree ({proof.tree_size}); retrying")
        try:
            return CompactRange.from_inclusion_proof(proof.leaf_hash, local - 1, size, proof.hashes, root)
        except ProofError as exc:
            raise LogInconsistent("inclusion_failed", f"leaf {local - 1} of shard {row.tree_id!r}: {exc}") from exc

    def compact_range(self, row: LogRow) -> CompactRange | None:
        if row.shard_next > 0 and not row.compact_range:
            return None
        return CompactRange.from_bytes(row.shard_next, row.compact_range)

    async def catch_up(self, row: LogRow, head: ShardHead, checkpoint: Checkpoint) -> int:
        """Read, verify and commit every entry up to the checkpoint; returns how many."""
        final = not head.active
        target = checkpoint.size
        start = row.shard_next
        compact = self.compact_range(row)
        if compact is None:
            if start > target:
                return 0  # a configured start beyond the log's end: wait for the log to reach it
            compact = await self.bootstrap_range(row, head, checkpoint)
        if start >= target:
            if final and start == target and not row.retired:
                batch = self._batch(row, row.next_index, compact, retired=True)
                await self.handler.commit(row, [], await self.handler.analyse([]), batch)
                row.retired = True
            return 0
        bounds = [(b, min(b + self.chunk_size, target)) for b in range(start, target, self.chunk_size)]
        pending: deque[asyncio.Task[FetchedChunk]] = deque()
        chunks = iter(bounds)
        try:
            for _ in range(PREFETCH_CHUNKS):
                self._prefetch(pending, chunks, head, target)
            for begin, end in bounds:
                if self.stopping.is_set():
                    return begin - start
                chunk = await pending.popleft()
                self._prefetch(pending, chunks, head, target)
                compact.extend(entry.leaf_hash for entry in chunk.entries)
                await self._prove_prefix(row, compact, checkpoint)
                batch = self._batch(row, row.shard_offset + end, compact, retired=final and end == target)
                await self.handler.commit(row, chunk.entries, chunk.analysis, batch)
                row.next_index, row.compact_range = batch.next_index, batch.compact_range
                self.publish_gauges()
        finally:
            for task in pending:
                task.cancel()
        return target - start

    @staticmethod
    def _batch(row: LogRow, next_index: int, compact: CompactRange, *, retired: bool) -> Batch:
        return Batch(
            log_id=row.id,
            expected_next=row.next_index,
            next_index=next_index,
            compact_range=compact.to_bytes(),
            retired=retired,
        )

    def _prefetch(
        self,
        pending: deque[asyncio.Task[FetchedChunk]],
        chunks: Iterator[tuple[int, int]],
        head: ShardHead,
        tree_size: int,
    ) -> None:
        bounds = next(chunks, None)
        if bounds is not None:
            first, end = head.offset + bounds[0], head.offset + bounds[1]
            pending.append(asyncio.create_task(self._fetch_and_analyse(first, end, head, tree_size)))

    async def _fetch_and_analyse(self, first: int, end: int, head: ShardHead, tree_size: int) -> FetchedChunk:
        entries = await self.source.entries(first, end, head, tree_size)
        return FetchedChunk(entries, await self.handler.analyse(entries))

    async def _prove_prefix(self, row: LogRow, compact: CompactRange, checkpoint: Checkpoint) -> None:
        """The entries read so far, [0, compact.size), are exactly the start of the verified tree."""
        if compact.size == checkpoint.size:
            if compact.root() != checkpoint.root_hash:
                raise LogInconsistent("entries_mismatch", f"shard {row.tree_id}: entries do not hash to the root")
            return
        proof = await self.source.consistency_proof(compact.size, checkpoint.size, row.tree_id)
        try:
            verify_consistency(compact.size, checkpoint.size, proof, compact.root(), checkpoint.root_hash)
        except ProofError as exc:
            raise LogInconsistent(
                "entries_mismatch", f"shard {row.tree_id}: entries before {compact.size} are not in the tree: {exc}"
            ) from exc

    # one cycle --------------------------------------------------------------------------------

    async def cycle(self) -> CycleResult:
        """Verify the newest checkpoint of every followed shard and catch up to it."""
        if not await self.store.hold_log_lock(self.url):
            self.log.debug("log_tailed_by_another_replica")
            return CycleResult(standby=True)
        heads = await self.source.heads()
        result = CycleResult()
        self.rows = await self.rows_to_follow(heads)
        for row in self.rows:
            if row.state == "inconsistent":
                result.inconsistent = True
                continue
            if row.retired:
                continue
            try:
                result.entries += await self._follow_shard(row, {head.tree_id: head for head in heads})
                result.lagging |= row.shard_next < row.verified_size
            except LogInconsistent as exc:
                await self._record_inconsistency(row, exc)
                result.inconsistent = True
        return result

    async def _follow_shard(self, row: LogRow, heads: dict[str, ShardHead]) -> int:
        head = heads.get(row.tree_id)
        if head is None:
            raise LogInconsistent("shard_vanished", f"shard {row.tree_id} is no longer listed by the log")
        if head.offset != row.shard_offset:
            raise LogInconsistent("shard_moved", f"shard {row.tree_id} starts at {head.offset}, was {row.shard_offset}")
        checkpoint = await self.verify_checkpoint(row, head)
        bound = self.log.bind(tree_id=row.tree_id, size=checkpoint.size)
        count = await self.catch_up(row, head, checkpoint)
        if count:
            bound.info("caught_up", entries=count, next_index=row.next_index)
        if not head.active and row.retired:
            bound.info("shard_retired", final_size=checkpoint.size)
        return count

    async def _record_inconsistency(self, row: LogRow, exc: LogInconsistent) -> None:
        self.log.error("log_inconsistent", tree_id=row.tree_id, reason=exc.reason, detail=exc.detail)
        alert = NewAlert(
            dedup_key=f"log_inconsistent:{self.url}:{row.tree_id}:{exc.reason}:{row.verified_size}",
            kind="log_inconsistent",
            severity="critical",
            summary=f"log {self.url} (shard {row.tree_id}) is inconsistent: {exc.detail}",
            payload=alert_payload(row.url, row.origin, reason=exc.reason, detail=exc.detail, tree_id=row.tree_id),
            log_id=row.id,
        )
        await self.store.mark_inconsistent(row.id, exc.detail, alert, self.sinks)
        row.state = "inconsistent"


class Backoff:
    """Delays between failed cycles: doubling from the poll interval up to a cap, reset on success."""

    def __init__(self, base: float, cap: float = 300.0):
        self.base = base
        self.cap = cap
        self.failures = 0

    def failed(self) -> float:
        self.failures += 1
        return min(self.cap, self.base * 2 ** (self.failures - 1))

    def succeeded(self) -> None:
        self.failures = 0


class StallWatch:
    """`log_stalled` when a log makes no progress for 5 x poll_interval: no cycle succeeded, or
    entries wait to be read and none was. One alert per stall (its start is in the dedup key)."""

    FACTOR = 5

    def __init__(self, follower: LogFollower, poll_interval: float):
        self.follower = follower
        self.limit = self.FACTOR * poll_interval
        self.progress_at = time.monotonic()
        self.stalled_since = datetime.now(UTC)
        self.alerted = False

    def progressed(self) -> None:
        self.progress_at = time.monotonic()
        self.stalled_since = datetime.now(UTC)
        self.alerted = False

    async def check(self) -> None:
        idle = time.monotonic() - self.progress_at
        if self.alerted or idle < self.limit:
            return
        self.alerted = True
        url = self.follower.url
        since = self.stalled_since.isoformat(timespec="seconds")
        self.follower.log.warning("log_stalled", idle_seconds=round(idle))
        await self.follower.store.raise_alert(
            NewAlert(
                dedup_key=f"log_stalled:{url}:{since}",
                kind="log_stalled",
                severity="warning",
                summary=f"log {url} made no progress for {idle:.0f}s (since {since})",
                payload=alert_payload(url, log_name(url), since=since),
            ),
            self.follower.sinks,
        )


async def follow_forever(follower: LogFollower, poll_interval: float, stop: asyncio.Event) -> None:
    """Cycle until `stop`; an unreachable log is reported once per backoff step, never skipped."""
    backoff = Backoff(poll_interval)
    stall = StallWatch(follower, poll_interval)
    follower.stopping = stop
    while not stop.is_set():
        delay = poll_interval
        try:
            result = await follower.cycle()
            if backoff.failures:
                follower.log.info("log_reachable_again")
                await follower.store.mark_reachability(follower.url, "ok", None)
            backoff.succeeded()
            if result.entries or not result.lagging or result.standby:
                stall.progressed()
            if result.entries:
                delay = 0  # more may have arrived while we were catching up
        except (LogUnavailableError, LogProtocolError) as exc:
            delay = backoff.failed()
            follower.log.warning("log_unreachable", error=str(exc)[:300], retry_in=round(delay, 1))
            await follower.store.mark_reachability(follower.url, "unreachable", str(exc)[:500])
        await stall.check()
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except TimeoutError:
            pass
