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
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.entries import DecodedEntry, EntryDecodeError, decode_entry
from monitor.identity import SigningIdentity, identify
from monitor.identity.fulcio import (
    CertificateError,
    ChainVerifier,
    FulcioCertificate,
    certificate_issuer,
    may_claim_issuer,
    parse_fulcio_certificate,
)
from monitor.policy import Judgement, Policy


@dataclass(frozen=True)
class Finding:
    certificate: FulcioCertificate
    identity: SigningIdentity
    chain_verified: bool
    judgement: Judgement


@dataclass(frozen=True)
class EntryAnalysis:
    decoded: DecodedEntry
    findings: tuple[Finding, ...]  # one per certificate whose issuer is watched


def analyse_entry(body: bytes, policy: Policy, chains: ChainVerifier) -> EntryAnalysis:
    """Raises EntryDecodeError for an undecodable body (or an unparseable watched certificate)."""
    decoded = decode_entry(body)
    findings = []
    for der in watched_certificates(decoded, policy):
        finding = _examine(der, policy, chains)
        if finding is not None:
            findings.append(finding)
    return EntryAnalysis(decoded, tuple(findings))


def watched_certificates(decoded: DecodedEntry, policy: Policy) -> list[bytes]:
    """The entry's certificates whose (cheaply read) issuer is watched."""
    issuers = policy.issuer_bytes
    return [
        der
        for der in decoded.certificates
        if may_claim_issuer(der, issuers) and policy.watches_issuer(certificate_issuer(der))
    ]


def _examine(der: bytes, policy: Policy, chains: ChainVerifier) -> Finding | None:
    try:
        certificate = parse_fulcio_certificate(der)
    except CertificateError as exc:
        raise EntryDecodeError("bad_certificate", f"a certificate of a watched issuer: {exc}") from None
    identity = identify(certificate)
    chain_verified = chains.verify(certificate)
    judgement = policy.judge(identity, chain_verified)
    if judgement is None:  # only if the full parse reads another issuer than the cheap one did
        return None
    return Finding(certificate, identity, chain_verified, judgement)
