"""Trust roots: Rekor log keys (by log id, with validity windows), Fulcio CAs, and where the logs are.

`public-good` and `staging` are shipped with the package (monitor/trustroots/). With
`trust.refresh` on, they are refreshed over TUF through sigstore's public `TrustUpdater`; when the
network does not answer in time the shipped copy is used, with one warning. Any other value of
`trust.root` is a path to a `trusted_root.json` (sigstore format), e.g. the simulator's.
"""

from __future__ import annotations

import base64
import concurrent.futures
import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import structlog
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import load_der_public_key

log = structlog.get_logger(__name__)

SHIPPED_ROOTS = {"public-good", "staging"}
TUF_URLS = {
    "public-good": "https://tuf-repo-cdn.sigstore.dev",
    "staging": "https://tuf-repo-cdn.sigstage.dev",
}
TUF_TIMEOUT_SECONDS = 15.0


class TrustRootError(Exception):
    """The trust root cannot be read or is malformed."""


@dataclass(frozen=True)
class Validity:
    start: datetime
    end: datetime | None = None

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment and (self.end is None or moment < self.end)


@dataclass(frozen=True)
class LogKey:
    """One transparency log's key, as the trust root lists it."""

    base_url: str
    log_id: bytes  # the trust root's `logId.keyId`: SHA256(SPKI) for v1 (= Rekor's logID)
    spki_der: bytes
    key_details: str
    validity: Validity

    @property
    def name(self) -> str:
        """Signed-note key name and checkpoint origin prefix: the base URL without its scheme."""
        return self.base_url.split("://", 1)[-1].rstrip("/")

    @property
    def public_key(self) -> PublicKeyTypes:
        return _loaded_key(self.spki_der)


@functools.lru_cache(maxsize=64)
def _loaded_key(spki_der: bytes) -> PublicKeyTypes:
    """A log key, loaded once per process (10 µs, at each SET, SCT or checkpoint checked)."""
    return load_der_public_key(spki_der)


@dataclass(frozen=True)
class FulcioAuthority:
    """A Fulcio CA: `certificates` in trust-root order (intermediates first, root last)."""

    uri: str
    certificates: tuple[x509.Certificate, ...]
    validity: Validity


@dataclass(frozen=True)
class RekorService:
    """A log from the signing config: where it is, which API it speaks, since when."""

    url: str
    major_api_version: int
    validity: Validity


@dataclass(frozen=True)
class TrustRoot:
    source: str
    tlogs: tuple[LogKey, ...]
    fulcio: tuple[FulcioAuthority, ...]
    ctlogs: tuple[LogKey, ...] = ()
    rekor_services: tuple[RekorService, ...] = ()
    _by_log_id: Mapping[bytes, LogKey] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_log_id", {key.log_id: key for key in self.tlogs})

    def log_key(self, log_id: bytes) -> LogKey | None:
        return self._by_log_id.get(log_id)

    def log_keys_for_url(self, url: str) -> list[LogKey]:
        wanted = url.rstrip("/")
        return [key for key in self.tlogs if key.base_url.rstrip("/") == wanted]

    def keys_for(self, url: str, origin: str | None = None) -> list[LogKey]:
        """A Rekor log's keys: by its `origin` when one is configured (a log read through a mirror or
        proxy: the trust root's log whose base URL, without scheme, is that origin), else by URL."""
        if origin:
            return [key for key in self.tlogs if key.name == origin]
        return self.log_keys_for_url(url)

    def ct_log_keys_for_url(self, url: str) -> list[LogKey]:
        """The CT log keys listed for `url` (one per log: a CT log never changes its key, RFC 6962 §3.2)."""
        wanted = url.rstrip("/")
        return [key for key in self.ctlogs if key.base_url.rstrip("/") == wanted]

    def ct_keys_for(self, url: str, origin: str | None = None) -> list[LogKey]:
        """A CT log's keys: by its `origin` when one is configured (a log read through a mirror or
        proxy: the trust root's CT log whose base URL, without scheme, is that origin), else by URL."""
        if origin:
            return [key for key in self.ctlogs if key.base_url.split("://", 1)[-1].rstrip("/") == origin]
        return self.ct_log_keys_for_url(url)


def _timestamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _validity(raw: Mapping[str, Any] | None) -> Validity:
    raw = raw or {}
    start = _timestamp(raw["start"]) if raw.get("start") else datetime.min.replace(tzinfo=UTC)
    return Validity(start=start, end=_timestamp(raw["end"]) if raw.get("end") else None)


def _log_keys(items: Iterable[Mapping[str, Any]]) -> tuple[LogKey, ...]:
    keys = []
    for item in items:
        public_key = item["publicKey"]
        keys.append(
            LogKey(
                base_url=item["baseUrl"].rstrip("/"),
                log_id=base64.b64decode(item["logId"]["keyId"]),
                spki_der=base64.b64decode(public_key["rawBytes"]),
                key_details=public_key.get("keyDetails", ""),
                validity=_validity(public_key.get("validFor")),
            )
        )
    return tuple(keys)


def _authorities(items: Iterable[Mapping[str, Any]]) -> tuple[FulcioAuthority, ...]:
    return tuple(
        FulcioAuthority(
            uri=item.get("uri", ""),
            certificates=tuple(
                x509.load_der_x509_certificate(base64.b64decode(cert["rawBytes"]))
                for cert in item["certChain"]["certificates"]
            ),
            validity=_validity(item.get("validFor")),
        )
        for item in items
    )


def _rekor_services(signing_config: Mapping[str, Any] | None) -> tuple[RekorService, ...]:
    if not signing_config:
        return ()
    return tuple(
        RekorService(
            url=item["url"].rstrip("/"),
            major_api_version=int(item.get("majorApiVersion", 1)),
            validity=_validity(item.get("validFor")),
        )
        for item in signing_config.get("rekorTlogUrls", [])
    )


def parse_trust_root(
    trusted_root: Mapping[str, Any], signing_config: Mapping[str, Any] | None, source: str
) -> TrustRoot:
    try:
        return TrustRoot(
            source=source,
            tlogs=_log_keys(trusted_root.get("tlogs", [])),
            fulcio=_authorities(trusted_root.get("certificateAuthorities", [])),
            ctlogs=_log_keys(trusted_root.get("ctlogs", [])),
            rekor_services=_rekor_services(signing_config),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # AttributeError: a list where a mapping goes
        raise TrustRootError(f"{source}: malformed trust root ({type(exc).__name__}: {exc})") from exc


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrustRootError(f"cannot read {path}: {exc}") from exc


def _shipped(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    folder = resources.files("monitor") / "trustroots" / name
    return (
        json.loads(folder.joinpath("trusted_root.json").read_text(encoding="utf-8")),
        json.loads(folder.joinpath("signing_config.json").read_text(encoding="utf-8")),
    )


def _refreshed_over_tuf(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from sigstore.models import TrustUpdater

    updater = TrustUpdater(TUF_URLS[name], offline=False)
    return (
        _read_json(Path(updater.get_trusted_root_path())),
        _read_json(Path(updater.get_signing_config_path())),
    )


def _named_root(name: str, refresh: bool) -> tuple[dict[str, Any], dict[str, Any], str]:
    if refresh:
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        try:
            root, config = pool.submit(_refreshed_over_tuf, name).result(timeout=TUF_TIMEOUT_SECONDS)
            return root, config, f"{name} (TUF)"
        except Exception as exc:  # any TUF/network failure falls back to the shipped copy
            log.warning("trust_refresh_failed", root=name, error=str(exc)[:200], using="shipped copy")
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    root, config = _shipped(name)
    return root, config, f"{name} (shipped)"


def load_trust_root(root: str = "public-good", refresh: bool = False, signing_config: str = "") -> TrustRoot:
    """Load `root` (a shipped name or a trusted_root.json path) and the signing config.

    `signing_config` is a shipped name or a path; when empty or equal to a shipped name while
    `root` is a path, a `signing_config.json` next to the trusted root is used if present.
    """
    if root in SHIPPED_ROOTS:
        trusted, config, source = _named_root(root, refresh)
    else:
        path = Path(root)
        trusted, config, source = _read_json(path), None, str(path)
        sibling = path.with_name("signing_config.json")
        if sibling.exists():
            config = _read_json(sibling)
    if signing_config and signing_config not in SHIPPED_ROOTS:
        config = _read_json(Path(signing_config))
    elif signing_config in SHIPPED_ROOTS and root in SHIPPED_ROOTS and signing_config != root:
        config = _shipped(signing_config)[1]
    return parse_trust_root(trusted, config, source)
