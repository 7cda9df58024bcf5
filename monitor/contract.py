"""The contract strings of DESIGN.md in one place: verdicts, alert kinds and severities, log states,
and the dedup keys that make each event alert once.

Everything users see (alert payloads, metric labels, API fields, table values) spells these values
exactly; nothing else in the package writes them as literals.
"""

from __future__ import annotations

from enum import StrEnum

EXIT_OK = 0
EXIT_ERROR = 1
"""Any other failure: a log unreachable in `run --once`, a database that does not answer..."""
EXIT_CONFIG = 2
"""A bad config, trust root or command line (click's usage errors are 2 too)."""
EXIT_INCONSISTENT = 3
"""`run --once` found a log inconsistent (or gossip found a split view)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C: the command stopped quietly once the work in flight was done."""

CODEFRESH_ISSUER = "https://oidc.codefresh.io"


class Verdict(StrEnum):
    EXPECTED = "expected"
    RENAMED = "renamed"
    UNEXPECTED_PIPELINE = "unexpected_pipeline"
    IMPERSONATION = "impersonation"
    UNTRUSTED = "untrusted"
    UNWATCHED = "unwatched"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_ORDER.index(self)

    def reaches(self, minimum: str) -> bool:
        return self.rank >= Severity(minimum).rank


_SEVERITY_ORDER = (Severity.INFO, Severity.WARNING, Severity.CRITICAL)


class AlertKind(StrEnum):
    # signings (DESIGN "Verdicts and alerts")
    RENAMED = "renamed"
    UNEXPECTED_PIPELINE = "unexpected_pipeline"
    IMPERSONATION = "impersonation"
    UNTRUSTED_CERTIFICATE = "untrusted_certificate"
    # logs
    LOG_INCONSISTENT = "log_inconsistent"
    LOG_STALLED = "log_stalled"
    ENTRY_UNDECODABLE = "entry_undecodable"
    CHECKPOINT_UNWITNESSED = "checkpoint_unwitnessed"
    WITNESS_INVALID = "witness_invalid"
    LOG_RESET = "log_reset"
    # certificates (CT) and builds (Codefresh API)
    CERTIFICATE_ISSUED = "certificate_issued"
    UNLOGGED_CERTIFICATE = "unlogged_certificate"
    BUILD_NOT_FOUND = "build_not_found"
    BUILD_MISMATCH = "build_mismatch"

    @property
    def lasting(self) -> bool:
        """A condition that holds until it clears (and is then resolved), rather than an event."""
        return self in LASTING_KINDS


LASTING_KINDS = frozenset(
    {AlertKind.LOG_INCONSISTENT, AlertKind.LOG_STALLED, AlertKind.CHECKPOINT_UNWITNESSED, AlertKind.WITNESS_INVALID}
)

SEVERITY_OF: dict[AlertKind, Severity] = {
    AlertKind.RENAMED: Severity.INFO,
    AlertKind.UNEXPECTED_PIPELINE: Severity.CRITICAL,
    AlertKind.IMPERSONATION: Severity.CRITICAL,
    AlertKind.UNTRUSTED_CERTIFICATE: Severity.WARNING,
    AlertKind.LOG_INCONSISTENT: Severity.CRITICAL,
    AlertKind.LOG_STALLED: Severity.WARNING,
    AlertKind.ENTRY_UNDECODABLE: Severity.WARNING,
    AlertKind.CHECKPOINT_UNWITNESSED: Severity.WARNING,
    AlertKind.WITNESS_INVALID: Severity.CRITICAL,
    AlertKind.LOG_RESET: Severity.INFO,
    AlertKind.CERTIFICATE_ISSUED: Severity.CRITICAL,
    AlertKind.UNLOGGED_CERTIFICATE: Severity.CRITICAL,
    AlertKind.BUILD_NOT_FOUND: Severity.CRITICAL,
    AlertKind.BUILD_MISMATCH: Severity.CRITICAL,
}
"""The usual severity of each kind (`unlogged_certificate` of an expected certificate is a warning)."""


class BuildResult(StrEnum):
    """`result` of a Codefresh build check (`build_checks_total{result}`)."""

    VERIFIED = "verified"
    NOT_FOUND = "not_found"
    MISMATCH = "mismatch"
    ERROR = "error"


class GossipResult(StrEnum):
    """`result` of comparing another's checkpoint with ours (`gossip_checks_total{source,result}`)."""

    CONSISTENT = "consistent"
    SPLIT_VIEW = "split_view"
    UNVERIFIABLE = "unverifiable"
    ERROR = "error"


class LogState(StrEnum):
    """`state` of a log object: what an operator must know first about a log."""

    OK = "ok"
    INCONSISTENT = "inconsistent"  # stopped for good until `rekorwatch log reset`
    UNREACHABLE = "unreachable"  # the log does not answer, or answers nonsense; retried with backoff
    UNWITNESSED = "unwitnessed"  # its newest checkpoint misses the witness quorum
    ERROR = "error"  # rekorwatch's follower keeps failing (database down, a bug): see state_detail


class LogKind(StrEnum):
    REKOR = "rekor"
    CT = "ct"


ALERT_STATUSES = ("pending", "delivered", "failed")


# dedup keys: the same event is alerted once, across restarts and replicas --------------------------


def signing_key(kind: str, log_url: str, log_index: int, certificate_sha256: str) -> str:
    return f"{kind}:{log_url}:{log_index}:{certificate_sha256}"


def entry_undecodable_key(log_url: str, log_index: int) -> str:
    return f"{AlertKind.ENTRY_UNDECODABLE}:{log_url}:{log_index}"


def log_inconsistent_key(log_url: str, tree_id: str, reason: str, verified_size: int) -> str:
    return f"{AlertKind.LOG_INCONSISTENT}:{log_url}:{tree_id}:{reason}:{verified_size}"


def log_stalled_key(log_url: str, stalled_since: str) -> str:
    """One alert per stall: its start is in the key."""
    return f"{AlertKind.LOG_STALLED}:{log_url}:{stalled_since}"


def certificate_key(kind: str, issuer_ca: str | None, serial: str) -> str:
    """Alerts about one certificate (certificate_issued, unlogged_certificate): once per certificate."""
    return f"{kind}:{issuer_ca or '-'}:{serial}"


def condition_key(kind: str, log_url: str, since: str) -> str:
    """A lasting condition of a log (unwitnessed, invalid witness): one alert per episode."""
    return f"{kind}:{log_url}:{since}"


def log_reset_key(log_url: str, at: str) -> str:
    return f"{AlertKind.LOG_RESET}:{log_url}:{at}"
