"""The signing identity: who a Fulcio certificate says signed, mapped onto the signing object's fields."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from monitor.identity.fulcio import FulcioCertificate


@dataclass(frozen=True)
class SigningIdentity:
    """Provider fields of one certificate. `mismatches` names the extensions that disagree with the
    SAN (or with each other); a certificate Fulcio issued never has any."""

    provider: str  # "codefresh" | "github" | "gitlab" | "buildkite" | "email" | "unknown"
    issuer: str | None
    identity: str | None
    account_id: str | None = None
    account_name: str | None = None
    pipeline_id: str | None = None
    pipeline_name: str | None = None
    run_url: str | None = None
    source_repository: str | None = None
    source_ref: str | None = None
    platform_url: str | None = None
    workflow_id: str | None = None
    runner_environment: str | None = None
    mismatches: tuple[str, ...] = ()

    def stored_fields(self) -> dict[str, str | None]:
        """The fields a signing and a CT certificate row store (the others live in `extensions`)."""
        return {
            "identity": self.identity,
            "provider": self.provider,
            "account_id": self.account_id,
            "account_name": self.account_name,
            "pipeline_id": self.pipeline_id,
            "pipeline_name": self.pipeline_name,
            "run_url": self.run_url,
            "source_repository": self.source_repository,
            "source_ref": self.source_ref,
        }


def unknown_identity(cert: FulcioCertificate) -> SigningIdentity:
    return SigningIdentity(provider="unknown", issuer=cert.issuer, identity=cert.identity)


def url_origin(url: str | None) -> str | None:
    """`scheme://host[:port]` of a URL, None when it has no scheme or host."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def strip_prefix(value: str | None, prefix: str | None) -> str | None:
    """`value` without `prefix`; None unless `value` starts with a non-empty `prefix`."""
    if value is None or not prefix or not value.startswith(prefix):
        return None
    return value[len(prefix) :]


def disagreeing(*checks: tuple[str, bool]) -> tuple[str, ...]:
    """The names of the checks that failed, in order."""
    return tuple(name for name, agrees in checks if not agrees)


def consistent(value: str | None, other: str | None) -> bool:
    """Two values that must agree when both are present."""
    return value is None or other is None or value == other
