"""One log entry -> the findings the pipeline stores: decode, cheap issuer filter, then (only for
watched issuers) full parse, identity, chain check and verdict.

The issuer filter costs one byte search per watched issuer for most certificates: only one that
contains a watched issuer's bytes has its DER walked for its issuer (`may_claim_issuer` says why
that never misses one), and only one whose issuer is watched is parsed.

Pure: no I/O, no shared state beyond the chain verifier's caches; every argument and result
pickles, so it can run in a worker process.

A certificate whose issuer is watched but that cannot be parsed makes the whole entry
undecodable (`EntryDecodeError`, reason `bad_certificate`): the pipeline records and alerts it as
`entry_undecodable` instead of dropping a certificate that claims a watched issuer.

No entry stops the tail: an exception the decoders do not raise for bad input (a bug here or in a
library, which a hostile entry may find) makes that one entry undecodable too, reason
`internal_error`, with the exception and where it was raised, and the others are analysed as usual.
Failing the chunk instead would stop the log's tail at that entry, on every monitor, until a fix.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from monitor.entries import DecodedEntry, EntryDecodeError, decode_entry
from monitor.errors import INTERNAL_ERROR
from monitor.identity import SigningIdentity, identify
from monitor.identity.ct_chain import CtChainVerifier
from monitor.identity.fulcio import (
    CertificateError,
    ChainVerifier,
    FulcioCertificate,
    certificate_issuer,
    may_claim_issuer,
    parse_fulcio_certificate,
)
from monitor.policy import Judgement, Policy
from monitor.tlog.ct import PRECERT_ENTRY, CtEntryError, CtLogEntry, decode_ct_entry
from monitor.tlog.entry_timestamp import WITHOUT_SET, EntryTimestamps, IntegratedTime
from monitor.tlog.rekor_v1_entries import RekorEntry
from monitor.trust import TrustRoot


@dataclass(frozen=True)
class Finding:
    certificate: FulcioCertificate
    identity: SigningIdentity
    chain_verified: bool
    judgement: Judgement
    issuer_ca: bytes | None = None
    """SHA-256 of the key of the trust root's CA that issued the certificate (None: it does not chain)."""

    @property
    def serial(self) -> str:
        return serial_text(self.certificate.serial)


@dataclass(frozen=True)
class EntryAnalysis:
    decoded: DecodedEntry
    findings: tuple[Finding, ...]  # one per certificate whose issuer is watched
    integrated: IntegratedTime = WITHOUT_SET
    """What the entry's SET proves of its integratedTime (`with_integrated_times`; a body alone has none)."""


def analyse_entry(body: bytes, policy: Policy, chains: ChainVerifier) -> EntryAnalysis:
    """Raises EntryDecodeError for an undecodable body (or an unparseable watched certificate)."""
    decoded = decode_entry(body)
    return EntryAnalysis(decoded, findings_among(watched_certificates(decoded, policy), policy, chains))


def watched_certificates(decoded: DecodedEntry, policy: Policy) -> list[bytes]:
    """The entry's certificates whose (cheaply read) issuer is watched."""
    issuers, watched = policy.issuer_bytes, []
    for der in decoded.certificates:  # a loop: a comprehension (a function call) cost 5% of the decode process
        if may_claim_issuer(der, issuers) and policy.watches_issuer(certificate_issuer(der)):
            watched.append(der)
    return watched


def findings_among(watched: list[bytes], policy: Policy, chains: ChainVerifier) -> tuple[Finding, ...]:
    findings = (_examine(der, policy, chains) for der in watched)
    return tuple(finding for finding in findings if finding is not None)


def _examine(der: bytes, policy: Policy, chains: ChainVerifier) -> Finding | None:
    try:
        certificate = parse_fulcio_certificate(der)
    except CertificateError as exc:
        raise EntryDecodeError("bad_certificate", f"a certificate of a watched issuer: {exc}") from None
    identity = identify(certificate)
    issuer_ca = chains.issuer_key_hash(certificate)
    judgement = policy.judge(identity, issuer_ca is not None)
    if judgement is None:  # only if the full parse reads another issuer than the cheap one did
        return None
    return Finding(certificate, identity, issuer_ca is not None, judgement, issuer_ca)


def serial_text(serial: int) -> str:
    """A serial number as stored and joined on: lowercase hex, no leading zeros."""
    return format(serial, "x")


@dataclass(frozen=True)
class CertificateFinding:
    """A certificate of a watched issuer in a CT log entry: what the `certificates` table keeps."""

    finding: Finding
    ct_index: int
    ct_timestamp_ms: int
    entry_type: str
    issuer_ca: bytes | None
    serial: str


def analyse_ct_entry(raw: CtLogEntry, policy: Policy, chains: CtChainVerifier) -> CertificateFinding | None:
    """A CT entry's certificate, when its issuer is watched; None otherwise. Raises CtEntryError for a
    leaf or extra data that cannot be decoded (or a precertificate that is not the leaf's), and for a
    watched certificate that cannot be parsed: recorded as undecodable, never dropped."""
    entry = decode_ct_entry(raw)
    certificate = entry.certificate
    if not (
        may_claim_issuer(certificate, policy.issuer_bytes) and policy.watches_issuer(certificate_issuer(certificate))
    ):
        return None
    try:
        certificate = parse_fulcio_certificate(entry.certificate)
    except CertificateError as exc:
        raise CtEntryError("malformed_certificate", f"a certificate of a watched issuer: {exc}") from None
    identity = identify(certificate)
    issuing_ca = chains.issuing_ca(entry, certificate)
    judgement = policy.judge(identity, issuing_ca is not None)
    if judgement is None:
        return None
    finding = Finding(certificate, identity, issuing_ca is not None, judgement, issuing_ca)
    entry_type = "precert" if entry.entry_type == PRECERT_ENTRY else "x509"
    issuer_ca = issuing_ca or entry.issuer_key_hash
    return CertificateFinding(
        finding, raw.log_index, entry.timestamp, entry_type, issuer_ca, serial_text(entry.serial_number)
    )


@dataclass(frozen=True)
class Judges:
    """What decoding and judging need, given to a decode process once: the watch rules, the chain
    checks of the trust root (Rekor certificates, and CT precertificates) and its log keys (SETs)."""

    policy: Policy
    chains: ChainVerifier
    ct_chains: CtChainVerifier
    timestamps: EntryTimestamps

    @classmethod
    def of(cls, policy: Policy, trust: TrustRoot) -> Judges:
        """`policy`'s judges under `trust`: its CAs' chain checks and its log keys."""
        return cls(policy, ChainVerifier(trust), CtChainVerifier(trust), EntryTimestamps(trust.tlogs))


Outcome = EntryAnalysis | EntryDecodeError
CtOutcome = CertificateFinding | CtEntryError


def analyse_bodies(bodies: Sequence[bytes], judges: Judges) -> dict[int, Outcome]:
    """{position: outcome} for the Rekor entry bodies that yield findings or cannot be decoded."""
    outcomes: dict[int, Outcome] = {}
    policy, chains = judges.policy, judges.chains
    for position, body in enumerate(bodies):  # analyse_entry, making nothing for entries without findings
        try:
            decoded = decode_entry(body)
            watched = watched_certificates(decoded, policy)
            if not watched:
                continue
            findings = findings_among(watched, policy, chains)
        except EntryDecodeError as exc:
            outcomes[position] = exc
            continue
        except Exception as exc:  # no entry stops the tail (module docstring)
            outcomes[position] = EntryDecodeError(INTERNAL_ERROR, unforeseen(exc))
            continue
        if findings:
            outcomes[position] = EntryAnalysis(decoded, findings)
    return outcomes


def with_integrated_times(
    outcomes: dict[int, Outcome], entries: Sequence[RekorEntry], timestamps: EntryTimestamps
) -> dict[int, Outcome]:
    """`outcomes` of Rekor v1 `entries`, each analysis with what its entry's SET proves (a new dict).
    A check that raises what no check raises for bad input proves nothing, and says why (no entry
    stops the tail)."""
    return {
        position: replace(outcome, integrated=_integrated_time(entries[position], timestamps))
        if isinstance(outcome, EntryAnalysis)
        else outcome
        for position, outcome in outcomes.items()
    }


def _integrated_time(entry: RekorEntry, timestamps: EntryTimestamps) -> IntegratedTime:
    try:
        return timestamps.integrated_time(entry)
    except Exception as exc:  # no entry stops the tail (module docstring)
        return IntegratedTime(problem=f"the SET could not be checked: {unforeseen(exc)}")


def unforeseen(exc: Exception) -> str:
    """An exception no decoder raises for bad input, and the line that raised it: what to report."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    text = f"{type(exc).__name__}: {str(exc)[:300]}{where}"
    return text.encode("utf-8", "backslashreplace").decode()  # no lone surrogate from a hostile value


def analyse_ct_entries(entries: Sequence[CtLogEntry], judges: Judges) -> dict[int, CtOutcome]:
    """{position: outcome} for the CT entries that hold a watched certificate or cannot be decoded."""
    outcomes: dict[int, CtOutcome] = {}
    for position, entry in enumerate(entries):
        try:
            found = analyse_ct_entry(entry, judges.policy, judges.ct_chains)
        except CtEntryError as exc:
            outcomes[position] = exc
            continue
        except Exception as exc:  # no entry stops the tail (module docstring)
            outcomes[position] = CtEntryError(INTERNAL_ERROR, unforeseen(exc))
            continue
        if found is not None:
            outcomes[position] = found
    return outcomes
