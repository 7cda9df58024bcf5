"""Gossip: comparing our verified checkpoints with what others were shown (FORMATS.md §7).

A log can show one history to one monitor and another to the rest (a split view); each view verifies
on its own, so only comparing notes exposes it. Every `gossip.interval`, each source is asked:

- peers: other rekorwatch instances, `GET {url}/api/v1/checkpoints` (their newest verified checkpoint
  of every log), with their bearer token;
- distributors: the transparency-dev distributor API, `GET {url}/distributor/v0/logs/<log id>/
  checkpoint.1` for each log we follow (log id = hex SHA-256("o:" ‖ origin)).

Each foreign checkpoint is matched to one of our logs by its origin, never by URL. Then:
1. its signature must be the log's (the follower opens it as it opens the log's own): an unsigned or
   badly signed one proves nothing and is only logged and counted (`unverifiable`);
2. against our newest verified checkpoint: the same size with another root is a split view; a smaller
   one must be proven consistent with ours, a larger one ours with it, by proofs fetched from the log.
   A proof that fails between two validly signed checkpoints is proof the log showed two histories.
A split view is `log_inconsistent` with reason `split_view`, both notes as evidence, and that log's
cursor stops. Every observation is a `gossip_observations` row and a `gossip_checks_total{source,
result}` count. A source that is down is retried with backoff, and never alerts by itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp
import structlog

from monitor.alerting import AlertRaiser
from monitor.config import GossipPeer, GossipSettings
from monitor.contract import GossipResult
from monitor.metrics import Metrics
from monitor.pipeline import LogFollower, Shard
from monitor.store.models import GossipObservationRow, LogRow, utcnow
from monitor.store.repository import Store
from monitor.supervisor import describe, sleep_unless
from monitor.tailcore import LogInconsistent
from monitor.tlog.errors import LogProtocolError, LogUnavailableError
from monitor.tlog.http import HttpFetcher, RetryPolicy
from monitor.tlog.merkle import ProofError, verify_consistency
from monitor.tlog.note import Checkpoint, NoteError, origin_log_id, parse_checkpoint_body, split_note

log = structlog.get_logger(__name__)

GOSSIP_RETRY = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=10.0)
MAX_CHECKPOINTS = 1000
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class GossipSource(Protocol):
    name: str

    async def checkpoints(self, origins: Sequence[str]) -> list[str]:
        """Signed notes this source holds for (some of) these origins; raises on failure."""
        ...


class PeerSource:
    """Another rekorwatch: its /api/v1/checkpoints."""

    def __init__(self, peer: GossipPeer, session: aiohttp.ClientSession) -> None:
        self.name = peer.url
        headers = {"Authorization": f"Bearer {peer.token.get_secret_value()}"} if peer.token else {}
        self._http = HttpFetcher(
            session, peer.url, retry=GOSSIP_RETRY, max_response_bytes=MAX_ANSWER_BYTES, headers=headers
        )

    async def checkpoints(self, origins: Sequence[str]) -> list[str]:
        raw = await self._http.get("/api/v1/checkpoints", endpoint="checkpoints")
        if raw is None:
            raise LogProtocolError(self.name, "no /api/v1/checkpoints (404)")
        try:
            items = json.loads(raw)["items"]
            notes = [item["note"] for item in items[:MAX_CHECKPOINTS] if isinstance(item.get("note"), str)]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LogProtocolError(self.name, f"not a checkpoints answer: {type(exc).__name__}") from None
        return notes


class DistributorSource:
    """A transparency-dev distributor: the checkpoint of each of our logs cosigned by 1+ witnesses."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.name = url
        self._http = HttpFetcher(session, url, retry=GOSSIP_RETRY, max_response_bytes=MAX_ANSWER_BYTES)

    async def checkpoints(self, origins: Sequence[str]) -> list[str]:
        notes = []
        for origin in origins:
            path = f"/distributor/v0/logs/{origin_log_id(origin)}/checkpoint.1"
            raw = await self._http.get(path, endpoint="distributor")
            if raw is not None:  # 404: the distributor has no (witnessed) checkpoint of that log
                notes.append(raw.decode("utf-8", "replace"))
        return notes


@dataclass(frozen=True)
class Comparison:
    result: GossipResult
    origin: str
    checkpoint: Checkpoint | None = None
    detail: str | None = None


def note_origin(note: str) -> str | None:
    """The origin a note claims (its first line), unverified: only used to find which log to ask."""
    try:
        body, _ = split_note(note)
        return parse_checkpoint_body(body)[0]
    except NoteError:
        return None


@dataclass
class Gossip:
    settings: GossipSettings
    store: Store
    alerts: AlertRaiser
    followers: Callable[[], Mapping[str, LogFollower]]
    """The logs followed now (a trust refresh may add some)."""
    sources: Sequence[GossipSource]
    metrics: Metrics | None = None

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.round()
            await sleep_unless(stop, self.settings.interval)

    async def round(self) -> list[Comparison]:
        """Ask every source once and compare what each shows with our checkpoints."""
        followed = self.followers()
        ours = {row.origin: row for row in await self.store.logs() if row.verified_root and row.url in followed}
        compared: list[Comparison] = []
        for source in self.sources:
            try:
                notes = await source.checkpoints(sorted(ours))
            except (LogUnavailableError, LogProtocolError, aiohttp.ClientError) as exc:
                self._count(source.name, GossipResult.ERROR)
                log.info("gossip_source_failed", source=source.name, error=describe(exc))
                continue
            for note in notes:
                comparison = await self.compare(source.name, note, ours)
                if comparison is not None:
                    compared.append(comparison)
        return compared

    async def compare(self, source: str, note: str, ours: dict[str, LogRow]) -> Comparison | None:
        origin = note_origin(note)
        row = ours.get(origin or "")
        if origin is None or row is None:
            return None  # not a log we follow
        comparison = await self._compare_with(row, note, origin)
        await self._record(source, note, comparison)
        if comparison.result is GossipResult.SPLIT_VIEW:
            await self._stop_log(row, note, source, comparison)
        return comparison

    async def _compare_with(self, row: LogRow, note: str, origin: str) -> Comparison:
        follower = self.followers()[row.url]
        try:
            theirs = follower.open_note(note, row.tree_id)
        except LogInconsistent as exc:
            return Comparison(GossipResult.UNVERIFIABLE, origin, detail=exc.detail)
        ours_size, ours_root = row.verified_size, bytes.fromhex(row.verified_root or "")
        if theirs.size == ours_size:
            if theirs.root_hash == ours_root:
                return Comparison(GossipResult.CONSISTENT, origin, theirs)
            return Comparison(GossipResult.SPLIT_VIEW, origin, theirs, f"size {ours_size} has two roots")
        (small, small_root), (large, large_root) = sorted([(theirs.size, theirs.root_hash), (ours_size, ours_root)])
        try:
            proof = await follower.source.consistency_proof(small, large, row.tree_id)
        except (LogUnavailableError, LogProtocolError) as exc:
            return Comparison(GossipResult.ERROR, origin, theirs, f"no proof {small} -> {large}: {describe(exc)}")
        try:
            verify_consistency(small, large, proof, small_root, large_root)
        except ProofError as exc:
            return Comparison(GossipResult.SPLIT_VIEW, origin, theirs, f"{small} -> {large} do not agree: {exc}")
        return Comparison(GossipResult.CONSISTENT, origin, theirs)

    async def _record(self, source: str, note: str, comparison: Comparison) -> None:
        self._count(source, comparison.result)
        checkpoint = comparison.checkpoint
        row = GossipObservationRow(
            source=source,
            origin=comparison.origin,
            tree_size=checkpoint.size if checkpoint else None,
            root_hash=checkpoint.root_hash.hex() if checkpoint else None,
            note=note,
            observed_at=utcnow(),
            result=comparison.result,
            detail=comparison.detail,
        )
        async with self.store.sessions.begin() as session:
            session.add(row)
        if comparison.result is not GossipResult.CONSISTENT:
            log.warning(
                "gossip_observation",
                source=source,
                origin=comparison.origin,
                result=comparison.result,
                detail=comparison.detail,
            )

    async def _stop_log(self, row: LogRow, note: str, source: str, comparison: Comparison) -> None:
        exc = LogInconsistent("split_view", f"{source} was shown another history: {comparison.detail}")
        evidence = {"ours": row.last_checkpoint, "theirs": note, "source": source}
        await self.alerts.log_inconsistent(row.url, row.origin, row.api, Shard.of(row), exc, evidence=evidence)

    def _count(self, source: str, result: GossipResult) -> None:
        if self.metrics is not None:
            self.metrics.gossip_checks.labels(source=source, result=result).inc()


def gossip_sources(settings: GossipSettings, session: aiohttp.ClientSession) -> list[GossipSource]:
    peers: Iterable[GossipSource] = (PeerSource(peer, session) for peer in settings.peers)
    distributors: Iterable[GossipSource] = (DistributorSource(url, session) for url in settings.distributors)
    return [*peers, *distributors]
