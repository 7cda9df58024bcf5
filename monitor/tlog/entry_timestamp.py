"""Rekor v1 signed entry timestamps (SETs): the log's promise of an entry's integratedTime.

The signed payload is the JCS (RFC 8785) canonical JSON of {body, integratedTime, logID, logIndex}
(body base64, logID hex, logIndex global), signed ECDSA-SHA256 by the log key (FORMATS.md §1).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

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
