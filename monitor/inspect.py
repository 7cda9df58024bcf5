"""`rekorwatch inspect`: one Rekor v1 `LogEntry` (`{uuid: entry}` or bare) or sigstore bundle
(v0.1-v0.3) -> what it carries, verified offline against the configured trust root, as JSON.

Each check is `true`/`false`, or `null` when the input carries nothing to check:
- `inclusion_verified`: the inclusion proof leads from the entry's leaf hash to the proof's root;
- `checkpoint_verified`: the checkpoint is signed by the entry's log key (found by log id in the
  trust root) and commits to that same root and tree size; with the proof, this proves inclusion;
- `set_verified`: the signed entry timestamp (FORMATS.md §1) verifies with that log key;
- per certificate, `chain_verified`: it chains to a Fulcio CA valid at its notBefore;
- per certificate, `sct_verified`: an embedded SCT verifies with a CT log key of the trust root; `scts`
  lists each embedded SCT with its CT log (base URL, null if the trust root does not list it) and the
  hash of the leaf that log holds for the certificate (null if no Fulcio CA of the trust root issued
  it), i.e. where a CT monitor finds the certificate.
`witnesses`: which witnesses of the witness policy of the configured log with the checkpoint's
origin cosigned the checkpoint, and whether they meet its quorum (null when no configured log of
that origin has a policy). `problems` says why a check failed. `verdict` is what the daemon would
store under the config's watch rules, or null when the daemon would not store the certificate at
all (issuer not watched).
A bundle's first transparency-log entry is inspected; the certificates are those of the entry body.

Only `inspect_with_build_checks` goes online: it adds `build` to every certificate, the Codefresh
builds API's judgement of its build (`codefresh_api.check`), or null when the daemon would not
check it (not a watched account's own signing, or the account has no api_key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
from cryptography import x509

from monitor.codefresh_api import BuildCheck, BuildsClients, ClientOptions, build_check_target, check_build
from monitor.config import LogSettings, Settings, WatchSettings
from monitor.entries import EntryDecodeError, decode_entry
from monitor.identity import SigningIdentity, identify
from monitor.identity.fulcio import CertificateError, ChainVerifier, FulcioCertificate, parse_fulcio_certificate
from monitor.identity.sct import EmbeddedSct, embedded_scts, verify_embedded_scts
from monitor.policy import Judgement, Policy
from monitor.tlog.entry_timestamp import signed_entry_timestamp_problem
from monitor.tlog.http import RetryPolicy
from monitor.tlog.merkle import ProofError, leaf_hash, verify_inclusion
from monitor.tlog.note import NoteError, open_checkpoint, parse_checkpoint_body, split_note, verifier_for_key
from monitor.tlog.witness import evaluate
from monitor.trust import LogKey, TrustRoot, TrustRootError, load_trust_root

BUNDLE_MEDIA_TYPE_PREFIX = "application/vnd.dev.sigstore.bundle"
IDENTITY_FIELDS = (
    "provider",
    "account_id",
    "account_name",
    "pipeline_id",
    "pipeline_name",
    "run_url",
    "source_repository",
    "source_ref",
    "platform_url",
    "workflow_id",
    "runner_environment",
)

MAX_UNIX_SECONDS = 253402300799  # 9999-12-31T23:59:59Z
# One person waits for the answer: fewer retries than the daemon, and no long Retry-After.
INSPECT_API_OPTIONS = ClientOptions(retry=RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=5.0), max_wait=10.0)

T = TypeVar("T")


class InspectError(Exception):
    """The input cannot be inspected; the message is one line for the user."""


@dataclass(frozen=True)
class InclusionProof:
    log_index: int  # per shard
    tree_size: int
    root_hash: bytes
    hashes: tuple[bytes, ...]
    checkpoint: str | None


@dataclass(frozen=True)
class TlogEntry:
    """What an input carries about one log entry, whatever its format."""

    body: bytes
    log_index: int | None
    log_id: bytes | None
    integrated_time: int | None
    signed_entry_timestamp: bytes | None
    inclusion_proof: InclusionProof | None


# -- reading the input -----------------------------------------------------------------------------


def _optional(obj: Any, key: str, kind: type[T], path: str) -> T | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise InspectError(f"{path}.{key} is not a {kind.__name__}")
    return value


def _required(obj: Any, key: str, kind: type[T], path: str) -> T:
    value = _optional(obj, key, kind, path)
    if value is None:
        raise InspectError(f"{path}.{key} is missing")
    return value


def _integer(value: object, what: str) -> int:
    """A protobuf-JSON int64 (a decimal string or a number) that must be >= 0."""
    if isinstance(value, str) and value.isdigit() and len(value) <= 19:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 63:
        return value
    raise InspectError(f"{what} is not a non-negative integer")


def _optional_integer(obj: Any, key: str, path: str) -> int | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    return None if value is None else _integer(value, f"{path}.{key}")


def _integrated_time(obj: Any, key: str, path: str) -> int | None:
    """Unix seconds; 0 or absent (Rekor v2) -> None."""
    seconds = _optional_integer(obj, key, path)
    if seconds is not None and seconds > MAX_UNIX_SECONDS:
        raise InspectError(f"{path}.{key} is out of range")
    return seconds or None


def _base64(value: str, what: str) -> bytes:
    """Standard or URL-safe base64 (protobuf JSON accepts both)."""
    try:
        return base64.b64decode(value.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise InspectError(f"{what} is not base64") from None


def _hex(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise InspectError(f"{what} is not hex") from None


def _hash_list(values: Any, decode: Callable[[str, str], bytes], what: str) -> tuple[bytes, ...]:
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        raise InspectError(f"{what} is not a list of strings")
    return tuple(decode(value, f"{what}[{i}]") for i, value in enumerate(values))


def _bundle_entry(bundle: dict[str, Any]) -> TlogEntry:
    media_type = bundle.get("mediaType")
    if media_type is not None and not str(media_type).startswith(BUNDLE_MEDIA_TYPE_PREFIX):
        raise InspectError(f"unsupported bundle media type {str(media_type)[:80]!r}")
    material = _required(bundle, "verificationMaterial", dict, "bundle")
    entries = _required(material, "tlogEntries", list, "verificationMaterial")
    if not entries or not isinstance(entries[0], dict):
        raise InspectError("the bundle has no transparency-log entry")
    entry, path = entries[0], "tlogEntries[0]"
    promise = _optional(entry, "inclusionPromise", dict, path)
    set_text = _optional(promise, "signedEntryTimestamp", str, f"{path}.inclusionPromise")
    log_id = _optional(_optional(entry, "logId", dict, path), "keyId", str, f"{path}.logId")
    return TlogEntry(
        body=_base64(_required(entry, "canonicalizedBody", str, path), f"{path}.canonicalizedBody"),
        log_index=_integer(entry.get("logIndex", 0), f"{path}.logIndex"),  # protobuf JSON omits zeros
        log_id=_base64(log_id, f"{path}.logId.keyId") if log_id is not None else None,
        integrated_time=_integrated_time(entry, "integratedTime", path),
        signed_entry_timestamp=_base64(set_text, "signedEntryTimestamp") if set_text is not None else None,
        inclusion_proof=_bundle_proof(_optional(entry, "inclusionProof", dict, path), path),
    )


def _bundle_proof(proof: dict[str, Any] | None, path: str) -> InclusionProof | None:
    if proof is None:
        return None
    path = f"{path}.inclusionProof"
    checkpoint = _optional(proof, "checkpoint", dict, path)
    return InclusionProof(
        log_index=_integer(proof.get("logIndex", 0), f"{path}.logIndex"),
        tree_size=_integer(proof.get("treeSize", 0), f"{path}.treeSize"),
        root_hash=_base64(_required(proof, "rootHash", str, path), f"{path}.rootHash"),
        hashes=_hash_list(proof.get("hashes", []), _base64, f"{path}.hashes"),
        checkpoint=_optional(checkpoint, "envelope", str, f"{path}.checkpoint"),
    )


def _log_entry(entry: dict[str, Any]) -> TlogEntry:
    verification = _optional(entry, "verification", dict, "entry")
    set_text = _optional(verification, "signedEntryTimestamp", str, "verification")
    log_id = _optional(entry, "logID", str, "entry")
    return TlogEntry(
        body=_base64(_required(entry, "body", str, "entry"), "entry.body"),
        log_index=_optional_integer(entry, "logIndex", "entry"),
        log_id=_hex(log_id, "entry.logID") if log_id is not None else None,
        integrated_time=_integrated_time(entry, "integratedTime", "entry"),
        signed_entry_timestamp=_base64(set_text, "signedEntryTimestamp") if set_text is not None else None,
        inclusion_proof=_log_entry_proof(_optional(verification, "inclusionProof", dict, "verification")),
    )


def _log_entry_proof(proof: dict[str, Any] | None) -> InclusionProof | None:
    if proof is None:
        return None
    path = "verification.inclusionProof"
    return InclusionProof(
        log_index=_integer(proof.get("logIndex"), f"{path}.logIndex"),
        tree_size=_integer(proof.get("treeSize"), f"{path}.treeSize"),
        root_hash=_hex(_required(proof, "rootHash", str, path), f"{path}.rootHash"),
        hashes=_hash_list(proof.get("hashes", []), _hex, f"{path}.hashes"),
        checkpoint=_optional(proof, "checkpoint", str, path),
    )


def read_tlog_entry(data: bytes) -> TlogEntry:
    """A sigstore bundle, a Rekor `LogEntry` (`{uuid: entry}`) or a bare entry."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InspectError(f"the input is not JSON ({str(exc)[:80]})") from None
    if not isinstance(document, dict):
        raise InspectError("the input is not a JSON object")
    if "verificationMaterial" in document:
        return _bundle_entry(document)
    if "body" in document:
        return _log_entry(document)
    if len(document) == 1:
        (entry,) = document.values()
        if isinstance(entry, dict) and "body" in entry:
            return _log_entry(entry)
    raise InspectError("the input is neither a sigstore bundle nor a Rekor LogEntry")


# -- verifying what it carries ---------------------------------------------------------------------


@dataclass
class _Checks:
    trust_root: TrustRoot
    entry: TlogEntry
    problems: list[str] = field(default_factory=list)

    def fail(self, problem: str) -> bool:
        self.problems.append(problem)
        return False

    def log_key(self) -> LogKey | None:
        if self.entry.log_id is None:
            return None
        return self.trust_root.log_key(self.entry.log_id)

    def inclusion(self) -> bool | None:
        proof = self.entry.inclusion_proof
        if proof is None:
            return None
        try:
            verify_inclusion(
                leaf_hash(self.entry.body), proof.log_index, proof.tree_size, list(proof.hashes), proof.root_hash
            )
        except ProofError as exc:
            return self.fail(f"inclusion proof: {exc}")
        return True

    def checkpoint(self) -> bool | None:
        proof = self.entry.inclusion_proof
        if proof is None or proof.checkpoint is None:
            return None
        key = self.log_key()
        if key is None:
            return self.fail("checkpoint: the trust root has no log key with this entry's log id")
        try:
            checkpoint = open_checkpoint(proof.checkpoint, [verifier_for_key(key.name, key.spki_der)])
        except NoteError as exc:
            return self.fail(f"checkpoint: {exc}")
        if checkpoint.origin != key.name and not checkpoint.origin.startswith(f"{key.name} - "):
            return self.fail(f"checkpoint: origin {checkpoint.origin!r} is not of log {key.name}")
        if (checkpoint.size, checkpoint.root_hash) != (proof.tree_size, proof.root_hash):
            return self.fail("checkpoint: it is for another tree than the inclusion proof")
        return True

    def signed_entry_timestamp(self) -> bool | None:
        entry = self.entry
        if entry.signed_entry_timestamp is None:
            return None
        if entry.integrated_time is None or entry.log_index is None or entry.log_id is None:
            return self.fail("signed entry timestamp: the entry lacks integratedTime or logIndex")
        problem = signed_entry_timestamp_problem(
            self.log_key(),
            entry.signed_entry_timestamp,
            body=entry.body,
            integrated_time=entry.integrated_time,
            log_id=entry.log_id,
            log_index=entry.log_index,
        )
        return self.fail(f"signed entry timestamp: {problem}") if problem else True


# -- witnesses -------------------------------------------------------------------------------------


def _log_origin(log: LogSettings) -> str:
    """A configured log's origin: its `origin`, else its URL without the scheme (a v1 shard adds ` - <tree id>`)."""
    return log.origin or log.url.split("://", 1)[-1]


def _policy_log(logs: Sequence[LogSettings], origin: str) -> LogSettings | None:
    """The configured log with a witness policy whose checkpoints carry `origin`."""
    for log in logs:
        name = _log_origin(log)
        if log.parsed_witness_policy is not None and (origin == name or origin.startswith(f"{name} - ")):
            return log
    return None


def _witnesses(
    entry: TlogEntry, logs: Sequence[LogSettings], now: datetime, problems: list[str]
) -> dict[str, Any] | None:
    """Which witnesses of the policy of the checkpoint's log cosigned it; None without a checkpoint or a policy."""
    if entry.inclusion_proof is None or entry.inclusion_proof.checkpoint is None:
        return None
    checkpoint = entry.inclusion_proof.checkpoint
    try:
        origin = parse_checkpoint_body(split_note(checkpoint)[0])[0]
        log = _policy_log(logs, origin)
        if log is None or log.parsed_witness_policy is None:
            return None
        verdict = evaluate(log.parsed_witness_policy, checkpoint, now)
    except NoteError as exc:
        problems.append(f"witnesses: {exc}")
        return None
    return {
        "log": log.url,
        "origin": origin,
        "quorum_met": verdict.satisfied,
        "cosigners": [
            {"name": cosigner.name, "timestamp": rfc3339(datetime.fromtimestamp(cosigner.timestamp, UTC))}
            for cosigner in verdict.cosigners
        ],
        "invalid": list(verdict.invalid),
        "missing": list(verdict.missing),
        "future": list(verdict.future),
    }


# -- the report ------------------------------------------------------------------------------------


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _judgement_view(judgement: Judgement | None) -> dict[str, Any]:
    if judgement is None:
        return {"verdict": None, "alert_kind": None, "severity": None, "reason": "issuer not watched: not stored"}
    return {
        "verdict": judgement.verdict.value,
        "alert_kind": judgement.alert_kind,
        "severity": judgement.severity,
        "reason": judgement.reason,
    }


def _identity_view(certificate: FulcioCertificate, identity: SigningIdentity) -> dict[str, Any]:
    return {
        "issuer": certificate.issuer,
        "identity": certificate.identity,
        "san_kind": certificate.san_kind,
        **{name: getattr(identity, name) for name in IDENTITY_FIELDS},
        "mismatches": list(identity.mismatches),
        "not_before": rfc3339(certificate.not_before),
        "not_after": rfc3339(certificate.not_after),
        "certificate_sha256": certificate.sha256,
    }


def _sct_views(certificate: x509.Certificate, trust_root: TrustRoot) -> list[dict[str, Any]]:
    return [_sct_view(sct) for sct in embedded_scts(certificate, trust_root) or ()]


def _sct_view(sct: EmbeddedSct) -> dict[str, Any]:
    leaf_hash = sct.leaf_hash
    return {
        "ct_log": sct.log.base_url if sct.log is not None else None,
        "log_id": sct.log_id.hex(),
        "timestamp": rfc3339(datetime.fromtimestamp(sct.timestamp / 1000, UTC)),
        "leaf_hash": leaf_hash.hex() if leaf_hash is not None else None,
        "leaf_index": sct.leaf_index,
        "verified": sct.verified,
    }


def _unparseable_view(der: bytes, error: CertificateError) -> dict[str, Any]:
    empty = dict.fromkeys(("issuer", "identity", "san_kind", *IDENTITY_FIELDS, "not_before", "not_after"))
    return {
        **empty,
        "mismatches": [],
        "certificate_sha256": hashlib.sha256(der).hexdigest(),
        "chain_verified": False,
        "sct_verified": None,
        "scts": [],
        "extensions": {},
        **_judgement_view(None),
        "error": str(error),
    }


@dataclass(frozen=True)
class _InspectedCertificate:
    """A certificate's view, and what its build check needs (None when it could not be parsed)."""

    view: dict[str, Any]
    certificate: FulcioCertificate | None = None
    identity: SigningIdentity | None = None
    judgement: Judgement | None = None


def _inspect_certificate(
    der: bytes, policy: Policy, trust_root: TrustRoot, chains: ChainVerifier
) -> _InspectedCertificate:
    try:
        certificate = parse_fulcio_certificate(der)
    except CertificateError as exc:
        return _InspectedCertificate(_unparseable_view(der, exc))
    identity = identify(certificate)
    chain_verified = chains.verify(certificate)
    judgement = policy.judge(identity, chain_verified)
    view = {
        **_identity_view(certificate, identity),
        "chain_verified": chain_verified,
        "sct_verified": verify_embedded_scts(x509.load_der_x509_certificate(der), trust_root),
        "scts": _sct_views(x509.load_der_x509_certificate(der), trust_root),
        "extensions": certificate.extensions,
        **_judgement_view(judgement),
    }
    return _InspectedCertificate(view, certificate, identity, judgement)


def inspect_entry(
    entry: TlogEntry, trust_root: TrustRoot, policy: Policy, logs: Sequence[LogSettings] = ()
) -> dict[str, Any]:
    """The report of one entry; `logs` (the configured logs) give the witness policies of `witnesses`."""
    report, _ = _inspect_entry(entry, trust_root, policy, logs)
    return report


def _inspect_entry(
    entry: TlogEntry, trust_root: TrustRoot, policy: Policy, logs: Sequence[LogSettings] = ()
) -> tuple[dict[str, Any], list[_InspectedCertificate]]:
    try:
        decoded = decode_entry(entry.body)
    except EntryDecodeError as exc:
        raise InspectError(f"the entry body cannot be decoded: {exc}") from None
    checks = _Checks(trust_root, entry)
    chains = ChainVerifier(trust_root)
    certificates = [_inspect_certificate(der, policy, trust_root, chains) for der in decoded.certificates]
    report = {
        "kind": decoded.kind,
        "api_version": decoded.api_version,
        "log_index": entry.log_index,
        "log_id": entry.log_id.hex() if entry.log_id is not None else None,
        "integrated_time": rfc3339(datetime.fromtimestamp(entry.integrated_time, UTC))
        if entry.integrated_time
        else None,
        "inclusion_verified": checks.inclusion(),
        "checkpoint_verified": checks.checkpoint(),
        "set_verified": checks.signed_entry_timestamp(),
        "artifact_digest": decoded.artifact_digest,
        "public_keys": decoded.public_keys,
        "certificates": [inspected.view for inspected in certificates],
        "witnesses": _witnesses(entry, logs, datetime.now(UTC), checks.problems),
        "problems": checks.problems,
    }
    return report, certificates


def _read_input(data: bytes, settings: Settings) -> tuple[TlogEntry, TrustRoot]:
    entry = read_tlog_entry(data)
    try:
        trust_root = load_trust_root(settings.trust.root, refresh=False, signing_config=settings.trust.signing_config)
    except TrustRootError as exc:
        raise InspectError(str(exc)) from None
    return entry, trust_root


def inspect_input(data: bytes, settings: Settings) -> dict[str, Any]:
    """The `inspect` report for `data` under `settings` (trust root and watch rules); offline."""
    entry, trust_root = _read_input(data, settings)
    return inspect_entry(entry, trust_root, Policy(settings.watch), settings.logs or ())


async def inspect_with_build_checks(data: bytes, settings: Settings) -> dict[str, Any]:
    """`inspect_input`'s report, each certificate with its `build` checked online (or null)."""
    entry, trust_root = _read_input(data, settings)
    report, certificates = _inspect_entry(entry, trust_root, Policy(settings.watch), settings.logs or ())
    async with aiohttp.ClientSession() as session:
        clients = BuildsClients(settings.watch, session, INSPECT_API_OPTIONS)
        for inspected in certificates:
            check = await _check_build(clients, settings.watch, inspected)
            inspected.view["build"] = None if check is None else _build_view(check)
    return report


async def _check_build(
    clients: BuildsClients, watch: WatchSettings, inspected: _InspectedCertificate
) -> BuildCheck | None:
    if inspected.certificate is None or inspected.identity is None or inspected.judgement is None:
        return None
    target = build_check_target(watch, inspected.identity, inspected.judgement.verdict)
    if target is None:
        return None
    return await check_build(clients, target, inspected.certificate.not_before)


def _build_view(check: BuildCheck) -> dict[str, Any]:
    return {
        "result": check.result.value,
        "build_verified": check.build_verified,
        "reason": check.reason,
        "status": check.status,
        "created": rfc3339(check.created) if check.created else None,
        "finished": rfc3339(check.finished) if check.finished else None,
    }
