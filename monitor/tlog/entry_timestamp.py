"""Rekor v1 signed entry timestamps (SETs): the log's promise of an entry's integratedTime.

The signed payload is the JCS (RFC 8785) canonical JSON of {body, integratedTime, logID, logIndex}
(body base64, logID hex, logIndex global), signed ECDSA-SHA256 by the log key (FORMATS.md §1).

`EntryTimestamps` checks them where the entries are analysed (the decode process): an ECDSA check
per watched entry, which on the daemon's event loop held up the requests of a v1 catch-up
(docs/DECISIONS.md, Performance).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from monitor.tlog.rekor_v1_entries import RekorEntry
from monitor.trust import LogKey


def signed_entry_timestamp_payload(body: bytes, integrated_time: int, log_id: bytes, log_index: int) -> bytes:
    return rfc8785.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "integratedTime": integrated_time,
            "logID": log_id.hex(),
            "logIndex": log_index,
        }
    )


def signed_entry_timestamp_problem(
    key: LogKey | None, signature: bytes, *, body: bytes, integrated_time: int, log_id: bytes, log_index: int
) -> str | None:
    """Why the SET does not prove the entry's integratedTime, or None when it does. `key` is the
    trust root's key for the entry's log id (None when it has none)."""
    if key is None:
        return "the trust root has no log key with this entry's log id"
    try:
        signed_at = datetime.fromtimestamp(integrated_time, UTC)
    except (OverflowError, OSError, ValueError):
        return "integratedTime is not a time"
    if not key.validity.contains(signed_at):
        return "the log key was not valid at integratedTime"
    public_key = key.public_key
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return "the log key is not an ECDSA key"
    try:
        payload = signed_entry_timestamp_payload(body, integrated_time, log_id, log_index)
        public_key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, rfc8785.CanonicalizationError, ValueError):
        return "the signature does not verify"
    return None


@dataclass(frozen=True)
class IntegratedTime:
    """What an entry's SET proves of its integratedTime: `at` when it proves it, else why not
    (`problem`; neither for an entry that has no SET)."""

    at: datetime | None = None
    problem: str | None = None


WITHOUT_SET = IntegratedTime()
"""An entry without a SET (a tiles entry, or a body alone): nothing is proven, nothing is wrong."""


class EntryTimestamps:
    """The SETs of Rekor v1 entries, checked against the trust root's log keys (by log id).
    Picklable (the keys as DER), so a decode process checks them with the rest of an entry's analysis."""

    def __init__(self, keys: Iterable[LogKey]) -> None:
        self._keys = {key.log_id: key for key in keys}

    def integrated_time(self, entry: RekorEntry) -> IntegratedTime:
        if entry.integrated_time is None or entry.signed_entry_timestamp is None:
            return WITHOUT_SET
        problem = signed_entry_timestamp_problem(
            self._keys.get(entry.log_id),
            entry.signed_entry_timestamp,
            body=entry.body,
            integrated_time=entry.integrated_time,
            log_id=entry.log_id,
            log_index=entry.log_index,
        )
        if problem:
            return IntegratedTime(problem=problem)
        return IntegratedTime(at=datetime.fromtimestamp(entry.integrated_time, UTC))
