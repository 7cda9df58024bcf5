"""The tail's shell around the pure core (tailcore.py): one cycle of one log, with all its I/O.

Per log, per shard (a row of `logs`), each cycle:

1. open the shard's newest checkpoint: signature by a trust-root key of this log, origin; only then is
   its size kept, as what the log announces (a v1 log's JSON treeSize must agree with it). Then prove
   it consistent with the last verified one and store it as the verified head. A failure of the log
   is `log_inconsistent`: the alert is raised and that shard's cursor stops until an operator resets it.
2. read the entries [next, verified size) in chunks, fetched in parallel and committed in index order
   (ordered.py); each chunk's leaf hashes are folded into the shard's compact range and the chunk is
   proven to be a prefix of the verified tree BEFORE it is handed on and the cursor moves with it.
3. hand the proven chunk to the `BatchHandler`, which records what the chunk produced (signings,
   certificates, errors, alerts) in a batch; the batch is stored with the cursor moved over it in one
   transaction. Proven chunks are committed together, up to COMMIT_CHUNKS of them or COMMIT_SECONDS
   after the first. The CPU work (decoding, judging) starts as soon as a chunk is fetched, in
   parallel with the proof and commit of those before it; nothing of it is stored before the proof.

Everything a log sends is judged by tailcore; this module only moves bytes and rows. It raises what
it cannot handle (the log is unreachable, misbehaves, the database is down): supervisor.py decides
what happens next.

Shards: a v1 log lists its retired shards in `inactiveShards`. A shard that was active and turns
inactive is read to its final size and marked retired; a new active shard is followed from 0.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from monitor import tailcore
from monitor.alerting import AlertRaiser
from monitor.analyser import AnalysedChunk
from monitor.config import CtLogSettings, LogSettings
from monitor.contract import AlertKind, LogKind, LogState
from monitor.metrics import Metrics
from monitor.ordered import OrderedFetcher
from monitor.progress import LogProgress
from monitor.store.models import AlertRow, LogRow
from monitor.store.repository import Batch, CursorStopped, Store, VerifiedCheckpoint
from monitor.tailcore import CheckpointUnusable, LogInconsistent, ShardState, VerifiedHead
from monitor.tlog.ct_source import CtKeyed
from monitor.tlog.errors import LogProtocolError
from monitor.tlog.http import gather_or_cancel
from monitor.tlog.merkle import CompactRange
from monitor.tlog.note import Checkpoint, NoteError, NoteVerifier, open_checkpoint, verifier_for_key
from monitor.tlog.source import FetchedBundles, KeptEntries, LogSource, RetrievedChunk, ShardHead, SourceEntry
from monitor.tlog.witness import WitnessVerdict, evaluate
from monitor.trust import LogKey, TrustRoot

log = structlog.get_logger(__name__)

CHUNK_SIZE = 1024  # a multiple of 256: tiles logs serve entries in bundles of 256
PREFETCH_CHUNKS = 10
"""Chunks fetched and analysed ahead of the one being committed: enough that a tiles log 50 ms away
always has a full `concurrency` of entry bundles asked (4 a chunk), even while the chunks at the
head of the line wait for their analysis (200k entries 50 ms away: 7.9% faster than with five, 5
pairs; docs/DECISIONS.md). A tiles chunk ahead holds about 3 MiB, of a 200 MB budget (with
ten: 172-174 MiB for the daemon and its decode process, 158-159 with five)."""
CT_PREFETCH_CHUNKS = 4
"""A CT chunk weighs more in the daemon while it is fetched (its entries' chains, and their pickles
for the decode process): one less ahead (a 200k-entry CT catch-up's peak RSS, daemon and decode
process: 183 MiB with four; docs/DECISIONS.md)."""
HELD_BYTES = 48 * 1024 * 1024
"""Fetched entries waiting for their turn to commit: no chunk is fetched ahead beyond this."""
COMMIT_CHUNKS = 4
COMMIT_SECONDS = 0.5
"""Proven chunks are committed together, up to COMMIT_CHUNKS of them, or as soon as one is proven
COMMIT_SECONDS after the first (a slow log's alerts wait no longer). Every statement of a commit
costs CPU whatever its rows (bench/bench_commit.py, 10 signings a chunk: 4.6 ms a chunk committed
alone, 2.05 ms in fours on SQLite; 4.0 and 1.6 ms on PostgreSQL)."""


@dataclass
class Shard:
    """A followed shard: where it is stored, what an operator sees, and its state as a core value."""

    id: int
    url: str
    api: str
    origin: str
    status: LogState
    state: ShardState
    last_checkpoint_at: datetime | None = None

    @classmethod
    def of(cls, row: LogRow) -> Shard:
        return cls(row.id, row.url, row.api, row.origin, LogState(row.state), state_of(row), row.last_checkpoint_at)


def body_bytes(entries: Sequence[SourceEntry]) -> int:
    if isinstance(entries, KeptEntries):
        return entries.body_bytes
    return sum(len(entry.body) for entry in entries)


def check_named_leaves(url: str, chunk: AnalysedChunk) -> None:
    """Raise LogProtocolError if a Rekor v1 entry's uuid does not name its body's leaf hash, as its
    analysis found (the body is hashed once, there: hashing it in the daemon too cost 7% of a v1
    catch-up)."""
    if chunk.misnamed is not None:
        raise LogProtocolError(url, f"entry {chunk.misnamed}: its uuid does not end with the leaf hash of its body")


def fold(compact: CompactRange, chunk: AnalysedChunk) -> CompactRange:
    """The compact range with the chunk's leaves folded in, as the subtrees its analysis made."""
    return tailcore.fold_subtrees(compact, chunk.subtrees, len(chunk.entries))


def count_batch(
    metrics: Metrics | None, log_url: str, entries: int, batch: Batch, new_alerts: Sequence[AlertRow], seconds: float
) -> None:
    """The metrics of a committed batch of `entries` entries."""
    if metrics is None:
        return
    metrics.batch_duration.observe(seconds)
    metrics.entries_processed.labels(log=log_url).inc(entries)
    for error in batch.errors:
        metrics.entry_errors.labels(log=log_url, reason=error.reason).inc()
    for item in batch.signings:
        metrics.signings.labels(verdict=item.signing.verdict).inc()
    for issued in batch.certificates:
        metrics.certificates.labels(verdict=issued.certificate.verdict).inc()
    for alert in new_alerts:
        metrics.alert_raised(alert.kind, alert.severity)


def state_of(row: LogRow) -> ShardState:
    local = row.next_index - row.shard_offset
    compact = CompactRange.from_bytes(local, row.compact_range) if local == 0 or row.compact_range else None
    verified = (
        VerifiedHead(row.verified_size, bytes.fromhex(row.verified_root), row.last_checkpoint or "")
        if row.verified_root is not None
        else None
    )
    return ShardState(row.tree_id, row.shard_offset, local, compact, verified, row.tree_size, row.retired)


class BatchHandler(Protocol):
    """Turns a chunk of entries into rows: analysed when fetched, recorded once proven."""

    async def analyse(
        self, entries: Sequence[SourceEntry] | RetrievedChunk | FetchedBundles, first: int
    ) -> AnalysedChunk:
        """`first`: the tree index of the first entry in its shard (the leaves' place in the tree)."""
        ...

    def record(self, shard: Shard, entries: Sequence[SourceEntry], analysis: Any, batch: Batch) -> None:
        """Add what the proven chunk produced to `batch` (the tail commits it with the cursor)."""
        ...


@dataclass
class ProvenChunks:
    """Chunks proven to be a prefix of the verified tree and recorded, committed together (one
    batch, the cursor moving over all of them)."""

    batch: Batch
    compact: CompactRange
    entries: int
    chunks: int = 1
    started: float = field(default_factory=time.monotonic)

    def add(self, batch: Batch, compact: CompactRange, entries: int) -> None:
        """The next chunk (its batch recorded whole: a chunk that fails to record adds nothing)."""
        self.batch.absorb(batch)
        self.compact = compact
        self.entries += entries
        self.chunks += 1

    def due(self) -> bool:
        return self.chunks >= COMMIT_CHUNKS or time.monotonic() - self.started >= COMMIT_SECONDS


@dataclass(frozen=True)
class FetchedChunk:
    analysed: AnalysedChunk
    size_bytes: int
    prefix_proof: Sequence[bytes]
    """Consistency proof from the chunk's end to the verified tree: unverified until its turn."""


@dataclass
class CycleResult:
    entries: int = 0
    inconsistent: bool = False
    unwitnessed: bool = False
    """The newest checkpoint misses the witness quorum, or a policy witness's cosignature failed."""
    lagging: bool = False
    """Entries announced by a verified checkpoint remain unread after the cycle."""
    standby: bool = False
    """Another replica holds the log's lock and tails it."""


@dataclass
class LogFollower:
    """Follows one log (every shard from the configured start on), whichever API it speaks."""

    settings: LogSettings | CtLogSettings
    trust: TrustRoot
    store: Store
    source: LogSource
    handler: BatchHandler
    alerts: AlertRaiser
    metrics: Metrics | None = None
    chunk_size: int = CHUNK_SIZE
    on_progress: Callable[[], None] = lambda: None
    progress: LogProgress | None = None
    shards: list[Shard] = field(default_factory=list)
    unwitnessed: bool = False
    """Set by the cycle when the newest checkpoint was not witnessed enough (see `_witnessed_enough`)."""
    witness_alerts_open: bool = True
    """Whether witness conditions may be alerted and unresolved (unknown after a start: assume so)."""
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on shutdown: the chunk being committed is finished, no new one is started."""

    def __post_init__(self) -> None:
        self.log = log.bind(log_url=self.url)

    @property
    def url(self) -> str:
        return self.settings.url

    # one cycle --------------------------------------------------------------------------------

    async def cycle(self) -> CycleResult:
        """Verify the newest checkpoint of every followed shard and catch up to it."""
        if not await self.store.hold_log_lock(self.url):
            self.log.debug("log_tailed_by_another_replica")
            return CycleResult(standby=True)
        heads = await self.source.heads()
        result = CycleResult()
        self.unwitnessed = False
        try:
            self.shards = await self._shards_to_follow(heads)
        except LogInconsistent as exc:  # the very first checkpoint does not verify: nothing to stop yet
            await self.alerts.log_inconsistent(self.url, self._origin(heads[-1].tree_id), self.source.api, None, exc)
            return CycleResult(inconsistent=True)
        by_tree = {head.tree_id: head for head in heads}
        for shard in self.shards:
            if shard.status is LogState.INCONSISTENT:
                result.inconsistent = True
                continue
            if shard.state.retired:
                continue
            try:
                result.entries += await self._follow_shard(shard, by_tree.get(shard.state.tree_id))
            except LogInconsistent as exc:
                await self._stop_shard(shard, exc)
                result.inconsistent = True
            except CursorStopped:  # gossip found it inconsistent meanwhile, and alerted
                shard.status = LogState.INCONSISTENT
                result.inconsistent = True
            except CheckpointUnusable as exc:
                raise LogProtocolError(self.url, exc.detail) from exc
            result.lagging |= shard.state.lag > 0
        result.unwitnessed = self.unwitnessed
        return result

    async def _follow_shard(self, shard: Shard, head: ShardHead | None) -> int:
        if head is None:
            raise LogInconsistent("shard_vanished", f"shard {shard.state.tree_id} is no longer listed by the log")
        if head.offset != shard.state.offset:
            raise LogInconsistent(
                "shard_moved", f"shard {shard.state.tree_id} starts at {head.offset}, was {shard.state.offset}"
            )
        checkpoint = await self.verify_checkpoint(shard, head)
        if shard.state.verified is None:
            return 0  # no checkpoint accepted yet (its witnesses do not meet the policy): nothing to read
        started = time.monotonic()
        count = await self.catch_up(shard, head)
        bound = self.log.bind(tree_id=shard.state.tree_id, size=checkpoint.size)
        if count:
            seconds = time.monotonic() - started
            bound.info(
                "caught_up",
                entries=count,
                next_index=shard.state.next_global,
                seconds=round(seconds, 3),
                rate=round(count / seconds, 1) if seconds else None,
            )
        if not head.active and shard.state.retired:
            bound.info("shard_retired", final_size=checkpoint.size)
        return count

    async def _stop_shard(self, shard: Shard, exc: LogInconsistent) -> None:
        await self.alerts.log_inconsistent(self.url, shard.origin, shard.api, shard, exc)
        shard.status = LogState.INCONSISTENT

    # checkpoints ------------------------------------------------------------------------------

    def _keys(self) -> list[LogKey]:
        now = datetime.now(UTC)
        keys = [key for key in self.trust.keys_for(self.url, self.settings.origin) if key.validity.start <= now]
        if not keys:
            raise LogInconsistent("no_trusted_key", f"the trust root ({self.trust.source}) has no key for {self.url}")
        return keys

    def _verifiers(self) -> list[NoteVerifier]:
        # Rekor v1 names its checkpoint key after a server flag, not its URL: match by key id alone.
        by_key_id_only = self.source.api == "v1"
        return [verifier_for_key(key.name, key.spki_der, any_name=by_key_id_only) for key in self._keys()]

    def _origin(self, tree_id: str) -> str:
        return self.source.origin(tree_id, self.settings.origin)

    @property
    def prefetch_chunks(self) -> int:
        return PREFETCH_CHUNKS if self.kind is LogKind.REKOR else CT_PREFETCH_CHUNKS

    @property
    def kind(self) -> LogKind:
        return LogKind.CT if isinstance(self.source, CtKeyed) else LogKind.REKOR

    def open_note(self, note: str, tree_id: str) -> Checkpoint:
        """A checkpoint whose signature and origin verified (its consistency is checked apart). A CT
        log's tree head is checked by its source, against its trust-root key valid at its time."""
        try:
            if isinstance(self.source, CtKeyed):
                checkpoint = self.source.open_checkpoint(note)
            else:
                matches = self.source.origin_matcher(tree_id, self.settings.origin)
                checkpoint = open_checkpoint(note, self._verifiers(), origin=matches)
        except NoteError as exc:
            raise LogInconsistent("bad_checkpoint", f"shard {tree_id}: {exc}") from exc
        tailcore.check_size(checkpoint)
        return checkpoint

    async def verify_checkpoint(self, shard: Shard, head: ShardHead) -> Checkpoint:
        """Verify the shard's newest checkpoint against its verified head, and store it."""
        try:
            checkpoint = self.open_note(head.signed_note, head.tree_id)
            if head.claimed_size is not None and head.claimed_size != checkpoint.size:
                raise LogProtocolError(
                    self.url, f"shard {head.tree_id}: treeSize {head.claimed_size} is not its checkpoint's size"
                )
            announced = tailcore.announce(shard.state, checkpoint)
            witnessing = self._witness_verdict(checkpoint)
            if witnessing is not None and not await self._witnessed_enough(shard, checkpoint, witnessing, announced):
                return checkpoint  # refused or not yet witnessed: entries past the accepted checkpoint wait
            needed = tailcore.append_only_proof(shard.state, checkpoint)
            proof = await self.source.consistency_proof(needed.first, needed.last, head.tree_id) if needed else ()
            accepted = tailcore.accept(announced, checkpoint, proof)
        except LogInconsistent:
            self._count_checkpoint("failed")
            raise
        cosigners = None if witnessing is None else tuple((c.name, c.timestamp) for c in witnessing.cosigners)
        verified = VerifiedCheckpoint(
            checkpoint.size, checkpoint.root_hash, checkpoint.note, checkpoint.origin, cosigners
        )
        await self.store.save_checkpoint(shard.id, verified, accepted.announced)
        shard.state, shard.origin = accepted, checkpoint.origin
        shard.last_checkpoint_at = datetime.now(UTC)
        self._count_checkpoint("ok")
        if witnessing is not None and witnessing.satisfied:
            await self._witnessed(witnessing)
        self.publish()
        return checkpoint

    # witnesses --------------------------------------------------------------------------------

    def _witness_verdict(self, checkpoint: Checkpoint) -> WitnessVerdict | None:
        policy = self.settings.parsed_witness_policy
        return None if policy is None else evaluate(policy, checkpoint.note, datetime.now(UTC))

    async def _witnessed_enough(
        self, shard: Shard, checkpoint: Checkpoint, verdict: WitnessVerdict, announced: ShardState
    ) -> bool:
        """Whether to accept a checkpoint under the log's witness policy (FORMATS.md §6, DESIGN
        "Rules"): a policy witness's failed cosignature refuses it (witness_invalid); one that misses
        the quorum is refused in `enforce` mode and read in `alert` mode (checkpoint_unwitnessed,
        once per episode). A refused checkpoint's size is still announced: it shows as lag."""
        if verdict.invalid:
            self.unwitnessed = self.witness_alerts_open = True
            await self.alerts.raise_condition(
                AlertKind.WITNESS_INVALID,
                self.url,
                shard.origin,
                shard.api,
                f"checkpoint {checkpoint.size} of {self.url} carries an invalid cosignature by "
                f"{', '.join(verdict.invalid)}: refused",
                witnesses=list(verdict.invalid),
                size=checkpoint.size,
                note=checkpoint.note,
            )
            await self._announce_only(shard, announced)
            return False
        if verdict.satisfied:
            return True
        self.unwitnessed = self.witness_alerts_open = True
        cosigned = ", ".join(c.name for c in verdict.cosigners) or "no policy witness"
        await self.alerts.raise_condition(
            AlertKind.CHECKPOINT_UNWITNESSED,
            self.url,
            shard.origin,
            shard.api,
            f"checkpoint {checkpoint.size} of {self.url} misses its witness quorum (cosigned by {cosigned})",
            size=checkpoint.size,
            cosigners=[c.name for c in verdict.cosigners],
            missing=list(verdict.missing),
            mode=self.settings.witness_mode,
        )
        if self.settings.witness_mode == "alert":
            return True
        await self._announce_only(shard, announced)
        return False

    async def _announce_only(self, shard: Shard, announced: ShardState) -> None:
        if announced.announced != shard.state.announced:
            await self.store.set_announced(shard.id, announced.announced)
        shard.state = announced
        self.publish()

    async def _witnessed(self, verdict: WitnessVerdict) -> None:
        """A checkpoint met the quorum: its cosignatures are exported, open witness conditions end."""
        if self.metrics is not None:
            for cosigner in verdict.cosigners:
                self.metrics.cosignature_timestamp.labels(log=self.url, witness=cosigner.name).set(cosigner.timestamp)
        if self.witness_alerts_open and not verdict.invalid:
            await self.alerts.resolve(AlertKind.CHECKPOINT_UNWITNESSED, self.url)
            await self.alerts.resolve(AlertKind.WITNESS_INVALID, self.url)
            self.witness_alerts_open = False

    def _count_checkpoint(self, result: str) -> None:
        if self.metrics:
            self.metrics.checkpoint_verifications.labels(log=self.url, result=result).inc()

    def publish(self) -> None:
        states = [shard.state for shard in self.shards]
        if self.progress is not None and states:
            self.progress.update(
                max(state.next_global for state in states), max(state.offset + state.announced for state in states)
            )
        if self.metrics is not None:
            checked = [shard.last_checkpoint_at for shard in self.shards if shard.last_checkpoint_at]
            self.metrics.publish_log(self.url, states, max(checked, default=None))

    # starting points --------------------------------------------------------------------------

    async def _shards_to_follow(self, heads: list[ShardHead]) -> list[Shard]:
        """The stored shards, plus shards that appeared since (or the first start)."""
        rows = await self.store.logs(self.url)
        if not rows:
            return [Shard.of(await self._add_row(head, start)) for head, start in self._first_start(heads)]
        newest = max(row.shard_offset for row in rows)
        known = {row.tree_id for row in rows}
        for head in heads:
            if head.tree_id not in known and head.offset > newest:
                self.log.info("shard_discovered", tree_id=head.tree_id, offset=head.offset)
                rows.append(await self._add_row(head, 0))
        return [Shard.of(row) for row in rows]

    def _first_start(self, heads: list[ShardHead]) -> list[tuple[ShardHead, int]]:
        start = self.settings.start
        if start == "head":
            active = heads[-1]
            return [(active, self.open_note(active.signed_note, active.tree_id).size)]
        for position, head in enumerate(heads):
            if head.active or start < head.offset + (head.claimed_size or 0):
                return [(head, max(start - head.offset, 0)), *((later, 0) for later in heads[position + 1 :])]
        raise AssertionError("the active shard always matches")

    async def _add_row(self, head: ShardHead, local_start: int) -> LogRow:
        row = LogRow(
            url=self.url,
            api=self.source.api,
            kind=self.kind,
            origin=self._origin(head.tree_id),
            tree_id=head.tree_id,
            shard_offset=head.offset,
            next_index=head.offset + local_start,
            compact_range=b"",
            tree_size=0,
            verified_size=0,
        )
        return await self.store.add_log(row)

    # reading entries --------------------------------------------------------------------------

    async def _bootstrap(self, shard: Shard, head: ShardHead) -> CompactRange:
        """The compact range of [0, next) from the inclusion proof of leaf next-1 (a start mid-log)."""
        state = shard.state
        assert state.verified is not None
        if state.next == 0:
            return CompactRange()
        proof = await self.source.bootstrap_proof(state.next - 1, head, state.verified.size)
        size, root = state.verified.size, state.verified.root
        if proof.tree_size > size:  # a v1 server proves against its newest tree: verify that one first
            newer = self.open_note(proof.checkpoint or "", state.tree_id)
            if newer.size != proof.tree_size:
                raise LogProtocolError(self.url, "an inclusion proof and its checkpoint disagree on the size")
            needed = tailcore.append_only_proof(state, newer)
            consistency = (
                await self.source.consistency_proof(needed.first, needed.last, state.tree_id) if needed else ()
            )
            tailcore.accept(state, newer, consistency)
            size, root = newer.size, newer.root_hash
        elif proof.tree_size < size:
            raise LogProtocolError(self.url, f"inclusion proof for an older tree ({proof.tree_size}); retrying")
        return tailcore.bootstrap(state, proof.leaf_hash, proof.hashes, size, root)

    async def catch_up(self, shard: Shard, head: ShardHead) -> int:
        """Read, verify and commit every entry up to the verified head; returns how many."""
        verified = shard.state.verified
        assert verified is not None
        final = not head.active
        if shard.state.compact is None:
            if shard.state.next > verified.size:
                return 0  # a configured start beyond the log's end: wait for the log to reach it
            compact = await self._bootstrap(shard, head)
            await self._move_cursor(shard, compact, retired=final and compact.size == verified.size)
        start = shard.state.next
        if start >= verified.size:
            if final and not shard.state.retired:
                assert shard.state.compact is not None
                await self._move_cursor(shard, shard.state.compact, retired=True)
            return 0

        async def fetch(bounds: tuple[int, int]) -> FetchedChunk:
            first, end = head.offset + bounds[0], head.offset + bounds[1]
            # The proof that the chunk is a prefix of the verified tree is fetched with it (one round
            # trip less per chunk); it is checked when the chunk's turn comes, as if fetched then.
            proof = self._prefix_proof(shard.state.tree_id, bounds[1], verified.size)
            entries, proof_hashes = await gather_or_cancel(
                [self.source.entries(first, end, head, verified.size), proof]
            )
            analysed = await self.handler.analyse(entries, bounds[0])
            return FetchedChunk(analysed, body_bytes(analysed.entries), proof_hashes)

        proven: ProvenChunks | None = None

        async def consume(_bounds: tuple[int, int], chunk: FetchedChunk) -> None:
            nonlocal proven
            check_named_leaves(self.url, chunk.analysed)
            compact = proven.compact if proven is not None else shard.state.compact
            assert compact is not None
            compact = fold(compact, chunk.analysed)
            tailcore.prove_prefix(shard.state.tree_id, compact, verified, chunk.prefix_proof)
            batch = self._batch(shard, compact, retired=final and compact.size == verified.size)
            entries = chunk.analysed.entries
            self.handler.record(shard, entries, chunk.analysed.analysis, batch)
            if proven is None:
                proven = ProvenChunks(batch, compact, len(entries))
            else:
                proven.add(batch, compact, len(entries))
            if proven.due():
                done, proven = proven, None
                await self._commit(shard, done)

        fetcher = OrderedFetcher(
            fetch, depth=self.prefetch_chunks, weight=lambda chunk: chunk.size_bytes, held_limit=HELD_BYTES
        )
        bounds = tailcore.chunk_bounds(start, verified.size, self.chunk_size)
        try:
            await fetcher.run(bounds, consume, self.stopping.is_set)
        except Exception:
            if proven is not None:
                await self._commit_before_failing(shard, proven)
            raise
        if proven is not None:
            await self._commit(shard, proven)
        return shard.state.next - start

    async def _prefix_proof(self, tree_id: str, end: int, size: int) -> Sequence[bytes]:
        """The consistency proof from the tree of `end` leaves to the verified one (none at its end)."""
        return () if end >= size else await self.source.consistency_proof(end, size, tree_id)

    @staticmethod
    def _batch(shard: Shard, compact: CompactRange, *, retired: bool) -> Batch:
        """An empty batch moving the cursor from where the shard is to the end of `compact`."""
        return Batch(
            log_id=shard.id,
            expected_next=shard.state.next_global,
            next_index=shard.state.offset + compact.size,
            compact_range=compact.to_bytes(),
            retired=retired,
        )

    async def _move_cursor(self, shard: Shard, compact: CompactRange, *, retired: bool) -> None:
        """Commit a move of the cursor that reads no entry (a bootstrap, a shard retired at its end)."""
        await self._commit(shard, ProvenChunks(self._batch(shard, compact, retired=retired), compact, entries=0))

    async def _commit(self, shard: Shard, proven: ProvenChunks) -> None:
        """Store the batch with the cursor, then move the shard's state with it."""
        started = time.perf_counter()
        batch = proven.batch
        batch.read_rate = self.progress.rate if self.progress is not None else None
        new_alerts = await self.store.commit_batch(batch, self.alerts.sinks)
        count_batch(self.metrics, self.url, proven.entries, batch, new_alerts, time.perf_counter() - started)
        shard.state = tailcore.advance(shard.state, proven.compact, retired=batch.retired)
        self.on_progress()
        self.publish()

    async def _commit_before_failing(self, shard: Shard, proven: ProvenChunks) -> None:
        """The chunks proven before a failure are kept (as if each had been committed alone), unless
        committing fails too: the failure being raised says what to do."""
        try:
            await self._commit(shard, proven)
        except Exception as exc:
            self.log.warning(
                "proven_chunks_not_committed", entries=proven.entries, error=f"{type(exc).__name__}: {exc}"
            )
