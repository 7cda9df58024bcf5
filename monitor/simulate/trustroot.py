"""The simulator's trust files in sigstore's formats: trusted_root.json and signing_config.json."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from monitor.simulate.ca import LocalCA
from monitor.simulate.ct import SimCtLog
from monitor.simulate.log import SimLog

TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
SIGNING_CONFIG_MEDIA_TYPE = "application/vnd.dev.sigstore.signingconfig.v0.2+json"
OPERATOR = "rekorwatch-simulator"


@dataclass(frozen=True)
class TrustFiles:
    trusted_root: Path
    signing_config: Path


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def key_details(log: SimLog) -> str:
    return "PKIX_ED25519" if isinstance(log.key, ed25519.Ed25519PrivateKey) else "PKIX_ECDSA_P256_SHA_256"


def trusted_root(url: str, log: SimLog, ca: LocalCA, ct: SimCtLog | None = None) -> dict[str, Any]:
    """A trust root holding exactly the simulator's log key, CA and CT log, all valid since the CA's start.

    The log's keyId is its full signed-note key id (for a v2 Ed25519 key, not a hash of the SPKI);
    the CT log's is its RFC 6962 log id, SHA-256 of its key.
    """
    valid_for = {"start": rfc3339(ca.root_cert.not_valid_before_utc)}
    ctlogs = [] if ct is None else [ct_log_entry(url, ct, valid_for)]
    return {
        "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
        "tlogs": [
            {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": b64(log.spki_der),
                    "keyDetails": key_details(log),
                    "validFor": valid_for,
                },
                "logId": {"keyId": b64(log.log_id)},
            }
        ],
        "certificateAuthorities": [
            {
                "subject": {"organization": "rekorwatch", "commonName": ca.name},
                "uri": f"{url}/fulcio",
                "certChain": {"certificates": [{"rawBytes": b64(der)} for der in ca.chain_der()]},
                "validFor": valid_for,
            }
        ],
        "ctlogs": ctlogs,
        "timestampAuthorities": [],
    }


def ct_log_entry(url: str, ct: SimCtLog, valid_for: dict[str, str]) -> dict[str, Any]:
    return {
        "baseUrl": f"{url}{ct.path}",
        "hashAlgorithm": "SHA2_256",
        "publicKey": {"rawBytes": b64(ct.spki_der), "keyDetails": "PKIX_ECDSA_P256_SHA_256", "validFor": valid_for},
        "logId": {"keyId": b64(ct.log_id)},
    }


def service(url: str, start: str, major_api_version: int = 1) -> dict[str, Any]:
    return {"url": url, "majorApiVersion": major_api_version, "validFor": {"start": start}, "operator": OPERATOR}


def signing_config(url: str, log: SimLog, ca: LocalCA) -> dict[str, Any]:
    """A signing config v0.2 whose only Rekor is the simulator: API v1, or v2 for a tiles log."""
    start = rfc3339(ca.root_cert.not_valid_before_utc)
    return {
        "mediaType": SIGNING_CONFIG_MEDIA_TYPE,
        "caUrls": [service(f"{url}/fulcio", start)],
        "oidcUrls": [],
        "rekorTlogUrls": [service(url, start, 2 if log.tiles else 1)],
        "tsaUrls": [],
        "rekorTlogConfig": {"selector": "ANY"},
        "tsaConfig": {"selector": "ANY"},
    }


def write_trust_files(directory: Path, url: str, log: SimLog, ca: LocalCA, ct: SimCtLog | None = None) -> TrustFiles:
    directory.mkdir(parents=True, exist_ok=True)
    files = TrustFiles(directory / "trusted_root.json", directory / "signing_config.json")
    files.trusted_root.write_text(json.dumps(trusted_root(url, log, ca, ct), indent=2) + "\n")
    files.signing_config.write_text(json.dumps(signing_config(url, log, ca), indent=2) + "\n")
    return files
