"""The `watch` config -> a verdict for each signing identity (DESIGN.md "Verdicts and alerts").

The decision order is DESIGN's, first match wins:
1. issuer not watched: not stored (`judge` returns None);
2. the certificate does not chain: `untrusted`, alerting only when it claims something watched;
3. a watched Codefresh account id on another platform_url: `impersonation`;
4. watched account id, allowed pipeline id: `expected`, or `renamed` when a configured name differs;
5. watched account id, pipeline id not allowed: `unexpected_pipeline`;
6. a watched account's name (case-insensitive) with another id: `impersonation`;
7. generic rules: inside an `identity_regexp` and matching an `allow`: `expected`, else `unexpected_pipeline`;
8. otherwise `unwatched`.

Decisions where DESIGN is silent:
- A certificate that chains but whose extensions disagree with its SAN (`SigningIdentity.mismatches`)
  is something Fulcio never issues: it is judged like one that does not chain (rule 2), since
  neither can be trusted to say who signed. The reason names the disagreeing extensions.
- Several generic rules may cover an identity: it is `expected` when any covering rule allows it.
- Platform URLs are compared exactly (after dropping a trailing '/'); a differing one alerts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from monitor.contract import CODEFRESH_ISSUER, SEVERITY_OF, AlertKind, Severity, Verdict
from monitor.identity import SigningIdentity
from monitor.patterns import Pattern, compile_pattern

if TYPE_CHECKING:
    from monitor.config import CodefreshAccount, IdentityRule, WatchSettings

__all__ = ["Judgement", "Policy", "Verdict"]


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    alert_kind: AlertKind | None  # None: stored without an alert
    severity: Severity | None
    reason: str


@dataclass(frozen=True)
class _Pipeline:
    id: str
    name: str | None


@dataclass(frozen=True)
class _Account:
    """A watched Codefresh account as the rules need it: plain data (a Policy crosses to the decode
    process, which imports neither pydantic nor the config, and gets no API key)."""

    account_id: str
    account_name: str | None
    platform_url: str
    pipelines: tuple[_Pipeline, ...]
    all_pipelines: bool

    @classmethod
    def of(cls, account: CodefreshAccount) -> _Account:
        pipelines = tuple(_Pipeline(pipeline.id, pipeline.name) for pipeline in account.pipelines)
        return cls(account.account_id, account.account_name, account.platform_url, pipelines, account.all_pipelines)


@dataclass(frozen=True)
class _CompiledRule:
    """A generic rule with its patterns compiled for linear-time full matches (monitor/patterns.py):
    an identity from a hostile certificate cannot make judging it slow."""

    issuer: str
    namespace: Pattern
    allow: tuple[Pattern, ...]

    @classmethod
    def of(cls, rule: IdentityRule) -> _CompiledRule:
        return cls(rule.issuer, compile_pattern(rule.identity_regexp), tuple(compile_pattern(p) for p in rule.allow))

    def covers(self, identity: SigningIdentity) -> bool:
        return identity.issuer == self.issuer and self.namespace.fullmatch(identity.identity)

    def allows(self, identity: SigningIdentity) -> bool:
        return any(pattern.fullmatch(identity.identity) for pattern in self.allow)


def _quiet(verdict: Verdict, reason: str) -> Judgement:
    return Judgement(verdict, None, None, reason)


def _alert(verdict: Verdict, reason: str) -> Judgement:
    kind = AlertKind.UNTRUSTED_CERTIFICATE if verdict is Verdict.UNTRUSTED else AlertKind(verdict.value)
    return Judgement(verdict, kind, SEVERITY_OF[kind], reason)


class Policy:
    """The watch rules, compiled once; `judge` is pure and cheap."""

    def __init__(self, watch: WatchSettings):
        self._issuers = watch.watched_issuers()
        self.issuer_bytes = tuple(sorted(issuer.encode() for issuer in self._issuers))
        """The watched issuers in UTF-8, the bytes a certificate claiming one of them must contain."""
        self._accounts = tuple(_Account.of(account) for account in watch.codefresh)
        self._rules = tuple(_CompiledRule.of(rule) for rule in watch.identities)

    def watches_issuer(self, issuer: str | None) -> bool:
        return issuer is not None and issuer in self._issuers

    def judge(self, identity: SigningIdentity, chain_verified: bool) -> Judgement | None:
        if not self.watches_issuer(identity.issuer):
            return None
        if not chain_verified or identity.mismatches:
            return self._untrusted(identity, chain_verified)
        return (
            self._judge_codefresh(identity)
            or self._judge_generic(identity)
            or _quiet(Verdict.UNWATCHED, "no watch rule matches this identity")
        )

    # rule 2 ------------------------------------------------------------------------------------

    def _untrusted(self, identity: SigningIdentity, chain_verified: bool) -> Judgement:
        if chain_verified:
            why = f"its extensions disagree with its SAN ({', '.join(identity.mismatches)})"
        else:
            why = "it does not chain to a Fulcio CA of the trust root valid at its notBefore"
        claim = self._claim(identity)
        if claim is None:
            return _quiet(Verdict.UNTRUSTED, f"untrusted certificate: {why}")
        return _alert(Verdict.UNTRUSTED, f"certificate claiming {claim} is untrusted: {why}")

    def _claim(self, identity: SigningIdentity) -> str | None:
        """What watched thing an identity claims to be, for rule 2; None when nothing."""
        if identity.issuer == CODEFRESH_ISSUER:
            for account in self._accounts:
                if identity.account_id == account.account_id or _same_name(identity.account_name, account):
                    return f"watched Codefresh account {_account_label(account)}"
        if any(rule.covers(identity) for rule in self._rules):
            return f"watched identity {identity.identity}"
        return None

    # rules 3-6 ---------------------------------------------------------------------------------

    def _judge_codefresh(self, identity: SigningIdentity) -> Judgement | None:
        if identity.issuer != CODEFRESH_ISSUER:
            return None
        same_id = [account for account in self._accounts if account.account_id == identity.account_id]
        if same_id:
            platform_url = (identity.platform_url or "").rstrip("/")
            same_platform = [account for account in same_id if account.platform_url == platform_url]
            if not same_platform:
                return _alert(
                    Verdict.IMPERSONATION,
                    f"account id {identity.account_id} of watched account {_account_label(same_id[0])} "
                    f"signed on another platform, {identity.platform_url}",
                )
            return _judge_pipeline(identity, same_platform)
        for account in self._accounts:
            if _same_name(identity.account_name, account):
                return _alert(
                    Verdict.IMPERSONATION,
                    f"account {identity.account_name!r} has the name of watched account "
                    f"{_account_label(account)} but id {identity.account_id}",
                )
        return None

    # rule 7 ------------------------------------------------------------------------------------

    def _judge_generic(self, identity: SigningIdentity) -> Judgement | None:
        covering = [rule for rule in self._rules if rule.covers(identity)]
        if not covering:
            return None
        if any(rule.allows(identity) for rule in covering):
            return _quiet(Verdict.EXPECTED, f"{identity.identity} is allowed")
        return _alert(
            Verdict.UNEXPECTED_PIPELINE,
            f"{identity.identity} is inside a watched identity pattern but not allowed to sign",
        )


def _same_name(name: str | None, account: _Account) -> bool:
    return name is not None and account.account_name is not None and name.casefold() == account.account_name.casefold()


def _account_label(account: _Account) -> str:
    return f"{account.account_name} ({account.account_id})" if account.account_name else account.account_id


def _pipeline_entry(account: _Account, pipeline_id: str | None) -> _Pipeline | None:
    return next((pipeline for pipeline in account.pipelines if pipeline.id == pipeline_id), None)


def _judge_pipeline(identity: SigningIdentity, accounts: list[_Account]) -> Judgement:
    """Rules 4 and 5, for the watched accounts with this id and platform."""
    for account in accounts:
        pipeline = _pipeline_entry(account, identity.pipeline_id)
        if pipeline is None and not account.all_pipelines:
            continue
        renames = _renames(identity, account, pipeline)
        if renames:
            return _alert(Verdict.RENAMED, "; ".join(renames))
        return _quiet(Verdict.EXPECTED, f"pipeline {identity.pipeline_id} of {_account_label(account)} is allowed")
    return _alert(
        Verdict.UNEXPECTED_PIPELINE,
        f"pipeline {identity.pipeline_name!r} ({identity.pipeline_id}) of watched account "
        f"{_account_label(accounts[0])} is not allowed to sign",
    )


def _renames(identity: SigningIdentity, account: _Account, pipeline: _Pipeline | None) -> list[str]:
    """Configured names the identity differs from (exact comparison; unconfigured names never differ)."""
    renames = []
    if account.account_name is not None and identity.account_name != account.account_name:
        renames.append(
            f"account {account.account_id} is now named {identity.account_name!r}, not {account.account_name!r}"
        )
    if pipeline is not None and pipeline.name is not None and identity.pipeline_name != pipeline.name:
        renames.append(f"pipeline {pipeline.id} is now named {identity.pipeline_name!r}, not {pipeline.name!r}")
    return renames
