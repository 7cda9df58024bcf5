"""Verified CT entries -> certificates, committed with the cursor in one transaction: the
`BatchHandler` of CT logs, as the SigningRecorder is Rekor's.

Each certificate of a watched issuer is stored once, by (issuing CA, serial), and joined with the
Rekor signing made with it, whichever log is read first (Store.commit_batch). A certificate whose
verdict is `unexpected_pipeline` or `impersonation` raises `certificate_issued` (critical), once per
certificate, whether or not it also signed in Rekor: one alert says a certificate was issued in the
watched name, the other what it signed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from monitor.analyser import AnalysedChunk, ChunkAnalyser, CtOutcome
from monitor.analysis import CertificateFinding
from monitor.contract import SEVERITY_OF, AlertKind, Verdict, certificate_key
from monitor.errors import ReasonedError
from monitor.recorder import add_entry_error
from monitor.store.models import CertificateRow
from monitor.store.repository import Batch, IssuedCertificate, NewAlert, alert_payload
from monitor.tlog.ct import CtLogEntry
from monitor.tlog.source import KeptEntries

if TYPE_CHECKING:
    from monitor.pipeline import Shard

ISSUED_ALERT_VERDICTS = frozenset({Verdict.UNEXPECTED_PIPELINE, Verdict.IMPERSONATION})


@dataclass
class CertificateRecorder:
    """Shared by every CT log of the daemon: it keeps no per-log state."""

    analyser: ChunkAnalyser

    async def analyse(self, entries: Sequence[CtLogEntry], first: int) -> AnalysedChunk:
        """The entries' outcomes and subtrees (off the event loop): until its turn to commit, the
        chunk keeps only the entries with outcomes."""
        if not entries:
            return AnalysedChunk(KeptEntries(0, {}), {}, ())
        analysed = await self.analyser.analyse_ct(entries, hash_from=first)
        kept = KeptEntries(len(entries), {position: entries[position] for position in analysed.outcomes})
        return AnalysedChunk(kept, analysed.outcomes, analysed.subtrees)

    def record(self, row: Shard, entries: Sequence[CtLogEntry], outcomes: dict[int, CtOutcome], batch: Batch) -> None:
        for position, outcome in sorted(outcomes.items()):
            entry = entries[position]
            if isinstance(outcome, ReasonedError):
                add_entry_error(batch, row, entry, outcome)
            else:
                batch.certificates.append(self._issued(row, outcome))

    @staticmethod
    def _issued(row: Shard, found: CertificateFinding) -> IssuedCertificate:
        finding = found.finding
        certificate, identity, judgement = finding.certificate, finding.identity, finding.judgement
        issuer_ca = found.issuer_ca.hex() if found.issuer_ca else None
        stored = CertificateRow(
            log_id=row.id,
            log_url=row.url,
            ct_index=found.ct_index,
            ct_timestamp=datetime.fromtimestamp(found.ct_timestamp_ms / 1000, UTC),
            entry_type=found.entry_type,
            issuer_ca=issuer_ca,
            serial=found.serial,
            issuer=certificate.issuer or "",
            **identity.stored_fields(),
            certificate_sha256=certificate.sha256,
            not_before=certificate.not_before,
            chain_verified=finding.chain_verified,
            verdict=judgement.verdict.value,
            extensions=json.dumps(certificate.extensions, sort_keys=True),
            unlogged_alerted=False,
        )
        alert = None
        if judgement.verdict in ISSUED_ALERT_VERDICTS:
            kind = AlertKind.CERTIFICATE_ISSUED
            alert = NewAlert(
                dedup_key=certificate_key(kind, issuer_ca, found.serial),
                kind=kind,
                severity=SEVERITY_OF[kind],
                summary=f"certificate issued: {identity.identity or 'unknown identity'} "
                f"(CT index {found.ct_index} of {row.url}): {judgement.reason}",
                payload=alert_payload(row.url, row.origin, row.api, reason=judgement.reason),
                log_id=row.id,
                log_url=row.url,
            )
        return IssuedCertificate(stored, alert)
