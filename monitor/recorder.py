"""Verified entries -> signings, alerts and entry errors, committed with the cursor in one transaction.

This is the `BatchHandler` of the daemon: the tail hands it each chunk of entries to decode and judge
off the event loop as soon as it is fetched, then each chunk proven to be in the log, in index
order, to record what it produced in a batch; the tail stores the batch together with the cursor
(`Store.commit_batch`), so a crash at any point loses nothing and repeats nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from monitor.analyser import AnalysedChunk, ChunkAnalyser, Outcome
from monitor.analysis import EntryAnalysis, Finding, with_integrated_times
from monitor.codefresh_api import build_check_target
from monitor.config import WatchSettings
from monitor.contract import AlertKind, Severity, entry_undecodable_key, signing_key
from monitor.errors import INTERNAL_ERROR, ReasonedError
from monitor.identity import SigningIdentity
from monitor.store.models import BuildCheckRow, NewSigning, utcnow
from monitor.store.repository import Batch, EntryError, NewAlert, SignedAlert, alert_payload
from monitor.tlog.errors import LogProtocolError
from monitor.tlog.rekor_v1_entries import RekorEntry, first_misnamed
from monitor.tlog.source import FetchedBundles, KeptEntries, RetrievedChunk, SourceEntry

if TYPE_CHECKING:
    from monitor.pipeline import Shard

log = structlog.get_logger(__name__)


@dataclass
class SigningRecorder:
    """Shared by every log of the daemon: it keeps no per-log state."""

    analyser: ChunkAnalyser
    watch: WatchSettings

    async def analyse(self, entries: RetrievedChunk | FetchedBundles, first: int) -> AnalysedChunk:
        """Decode and judge a chunk (off the event loop): {position: outcome} of the entries that
        yield signings or cannot be decoded. Its leaves are hashed and folded into subtrees there
        too. A tiles chunk's bundles are split there, a v1 chunk's answers read there; only the
        entries with outcomes come back."""
        if isinstance(entries, FetchedBundles):
            return await self._analyse_bundles(entries, first)
        return await self._analyse_answers(entries, first)

    async def _analyse_answers(self, chunk: RetrievedChunk, first: int) -> AnalysedChunk:
        answer = await self.analyser.analyse_answers(chunk.answers, hash_from=first)
        if answer.refused is not None:
            raise LogProtocolError(chunk.url, answer.refused)
        if answer.missing:
            return await self._analyse_read(await chunk.read_again(), first)
        kept = KeptEntries(len(chunk.wanted), answer.kept)
        return AnalysedChunk(kept, answer.outcomes, answer.subtrees, answer.misnamed)

    async def _analyse_read(self, entries: list[RekorEntry], first: int) -> AnalysedChunk:
        """A v1 chunk read here (its answers lacked entries): its bodies analysed and hashed in the
        decode process, each uuid's leaf hash checked against theirs; the SETs of the entries with
        findings checked here (a rare path: the decode process gets bodies only)."""
        answer = await self.analyser.analyse([entry.body for entry in entries], hash_from=first)
        outcomes = with_integrated_times(answer.outcomes, entries, self.analyser.judges.timestamps)
        return AnalysedChunk(entries, outcomes, answer.subtrees, first_misnamed(entries, answer.leaf_hashes))

    async def _analyse_bundles(self, chunk: FetchedBundles, first: int) -> AnalysedChunk:
        answer = await self.analyser.analyse_bundles(chunk.bundles, hash_from=first)
        if answer.refused is not None:
            raise LogProtocolError(chunk.urls[answer.refused_in], answer.refused)
        return AnalysedChunk(chunk.kept(answer.kept, answer.leaf_hashes), answer.outcomes, answer.subtrees)

    def record(self, row: Shard, entries: Sequence[SourceEntry], outcomes: dict[int, Outcome], batch: Batch) -> None:
        for position, outcome in sorted(outcomes.items()):
            entry = entries[position]
            if isinstance(outcome, ReasonedError):
                add_entry_error(batch, row, entry, outcome)
                continue
            if outcome.integrated.problem:
                log.warning("integrated_time_unproven", index=entry.log_index, problem=outcome.integrated.problem)
            batch.signings.extend(self._signing(row, entry, outcome, f) for f in outcome.findings)

    def _signing(self, row: Shard, entry: SourceEntry, analysis: EntryAnalysis, finding: Finding) -> SignedAlert:
        certificate, identity, judgement = finding.certificate, finding.identity, finding.judgement
        integrated = analysis.integrated.at
        signing = NewSigning(
            log_id=row.id,
            log_url=row.url,
            log_index=entry.log_index,
            entry_uuid=entry.uuid,
            integrated_time=integrated,
            signed_at=integrated or certificate.not_before,
            kind=analysis.decoded.kind,
            issuer=certificate.issuer or "",
            **identity.stored_fields(),
            artifact_digest=analysis.decoded.artifact_digest,
            certificate_sha256=certificate.sha256,
            issuer_ca=finding.issuer_ca.hex() if finding.issuer_ca else None,
            certificate_serial=finding.serial,
            not_before=certificate.not_before,
            chain_verified=finding.chain_verified,
            verdict=judgement.verdict.value,
            extensions=json.dumps(certificate.extensions, sort_keys=True),
        )
        alert = None
        if judgement.alert_kind and judgement.severity:
            alert = NewAlert(
                dedup_key=signing_key(judgement.alert_kind, row.url, entry.log_index, certificate.sha256),
                kind=judgement.alert_kind,
                severity=judgement.severity,
                summary=alert_summary(judgement.alert_kind, identity.identity, judgement.reason, entry.log_index),
                payload=alert_payload(row.url, row.origin, row.api, reason=judgement.reason),
                log_id=row.id,
                log_url=row.url,
            )
        return SignedAlert(signing, alert, self._build_check(identity, judgement.verdict, certificate.not_before))

    def _build_check(
        self, identity: SigningIdentity, verdict: str, not_before: datetime | None
    ) -> BuildCheckRow | None:
        """The Codefresh build check this signing needs, queued with it (codefresh_api/check.py)."""
        target = build_check_target(self.watch, identity, verdict)
        if target is None or not_before is None:
            return None
        return BuildCheckRow(
            account_id=target.account_id,
            platform_url=target.platform_url,
            workflow_id=target.workflow_id,
            pipeline_id=target.pipeline_id,
            not_before=not_before,
            attempts=0,
            next_attempt_at=utcnow(),
        )


def add_entry_error(batch: Batch, row: Shard, entry: SourceEntry, error: ReasonedError) -> None:
    """An entry that cannot be decoded: recorded and alerted with its chunk, then passed. One that
    failed for a bug (INTERNAL_ERROR) is logged as an error, with what to report."""
    if error.reason == INTERNAL_ERROR:
        log.error("entry_undecodable", log_url=row.url, index=entry.log_index, reason=error.reason, detail=error.detail)
    else:
        log.warning("entry_undecodable", log_url=row.url, index=entry.log_index, reason=error.reason)
    batch.errors.append(EntryError(entry.log_index, error.reason, error.detail[:1000]))
    batch.alerts.append(
        NewAlert(
            dedup_key=entry_undecodable_key(row.url, entry.log_index),
            kind=AlertKind.ENTRY_UNDECODABLE,
            severity=Severity.WARNING,
            summary=f"entry {entry.log_index} of {row.url} cannot be decoded ({error.reason})",
            payload=alert_payload(
                row.url,
                row.origin,
                row.api,
                log_index=entry.log_index,
                reason=error.reason,
                detail=error.detail[:1000],
            ),
            log_id=row.id,
            log_url=row.url,
        )
    )


def alert_summary(kind: str, identity: str | None, reason: str, log_index: int) -> str:
    return f"{kind.replace('_', ' ')}: {identity or 'unknown identity'} signed (log index {log_index}): {reason}"
