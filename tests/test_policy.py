"""Every verdict row of DESIGN.md and its decision order, end to end: simulator-issued certificates in
hashedrekord bodies through `analyse_entry`, against a trust root holding only the simulator's CA."""

from __future__ import annotations

import base64
import json
import pickle
from typing import Any

import pytest
import rfc8785

from monitor.analysis import EntryAnalysis, analyse_entry
from monitor.config import WatchSettings
from monitor.entries import EntryDecodeError
from monitor.identity import SigningIdentity
from monitor.identity.fulcio import ChainVerifier
from monitor.policy import Judgement, Policy, Verdict
from monitor.simulate.ca import (
    CODEFRESH_ISSUER,
    GITHUB_ISSUER,
    CertIdentity,
    LocalCA,
    codefresh_identity,
    email_identity,
    github_identity,
)
from monitor.simulate.entries import hashedrekord_body
from monitor.trust import load_trust_root, parse_trust_root
from tests.paths import SIGSTORE as FIXTURES

ACCOUNT_ID = "628a80b693a15c0f9c13ab75"
PIPELINE_ID = "6612ad6384ef42f18019b7e9"
UNNAMED_PIPELINE_ID = "6612ad6384ef42f18019b7ea"
OPEN_ACCOUNT_ID = "5f0c1d2e3a4b5c6d7e8f9a0b"
RELEASE = "https://github.com/myorg/app/.github/workflows/release.yml@refs/heads/main"
WATCH: dict[str, Any] = {
    "issuers": [CODEFRESH_ISSUER],
    "codefresh": [
        {
            "account_id": ACCOUNT_ID,
            "account_name": "ilia-codefresh",
            "pipelines": [{"id": PIPELINE_ID, "name": "sigstore-blog/keyless-signature"}, {"id": UNNAMED_PIPELINE_ID}],
        },
        {"account_id": OPEN_ACCOUNT_ID, "account_name": "open-shop", "pipelines": "*"},
    ],
    "identities": [
        {
            "issuer": GITHUB_ISSUER,
            "identity_regexp": r"^https://github\.com/myorg/.*",
            "allow": [r"^https://github\.com/myorg/app/\.github/workflows/release\.yml@refs/heads/main$"],
        }
    ],
}


@pytest.fixture(scope="module")
def ca() -> LocalCA:
    return LocalCA.generate()


@pytest.fixture(scope="module")
def chains(ca: LocalCA) -> ChainVerifier:
    authority = {
        "certChain": {"certificates": [{"rawBytes": base64.b64encode(der).decode()} for der in ca.chain_der()]},
        "validFor": {"start": "2000-01-01T00:00:00Z"},
    }
    return ChainVerifier(parse_trust_root({"certificateAuthorities": [authority], "tlogs": []}, None, "test"))


def policy(**changes: Any) -> Policy:
    return Policy(WatchSettings.model_validate({**WATCH, **changes}))


def analyse(
    cert_identity: CertIdentity, chains: ChainVerifier, *, by: LocalCA, watch: Policy | None = None
) -> EntryAnalysis:
    issued = by.issue(cert_identity)
    body = hashedrekord_body(issued.pem, b"artifact", issued.private_key)
    return analyse_entry(body, watch or policy(), chains)


def judge(cert_identity: CertIdentity, chains: ChainVerifier, *, by: LocalCA, watch: Policy | None = None) -> Judgement:
    (finding,) = analyse(cert_identity, chains, by=by, watch=watch).findings
    return finding.judgement


def codefresh(**changes: str) -> CertIdentity:
    claims = {
        "account_id": ACCOUNT_ID,
        "account_name": "ilia-codefresh",
        "pipeline_id": PIPELINE_ID,
        "pipeline_name": "sigstore-blog/keyless-signature",
        "workflow_id": "66c4ea1fd3ec2f5a3a1b7a5a",
        **changes,
    }
    return codefresh_identity(**claims)


def outcome(judgement: Judgement) -> tuple[Verdict, str | None, str | None]:
    return judgement.verdict, judgement.alert_kind, judgement.severity


# -- the verdict table -----------------------------------------------------------------------------


def test_expected(ca: LocalCA, chains: ChainVerifier) -> None:
    (finding,) = analyse(codefresh(), chains, by=ca).findings
    assert finding.chain_verified
    assert finding.identity.account_id == ACCOUNT_ID
    assert outcome(finding.judgement) == (Verdict.EXPECTED, None, None)


def test_renamed_pipeline(ca: LocalCA, chains: ChainVerifier) -> None:
    judgement = judge(codefresh(pipeline_name="sigstore-blog/renamed"), chains, by=ca)
    assert outcome(judgement) == (Verdict.RENAMED, "renamed", "info")
    assert "sigstore-blog/renamed" in judgement.reason


def test_renamed_account(ca: LocalCA, chains: ChainVerifier) -> None:
    judgement = judge(codefresh(account_name="ilia-new-name"), chains, by=ca)
    assert outcome(judgement) == (Verdict.RENAMED, "renamed", "info")


def test_a_name_left_out_of_the_config_never_differs(ca: LocalCA, chains: ChainVerifier) -> None:
    judgement = judge(codefresh(pipeline_id=UNNAMED_PIPELINE_ID, pipeline_name="any/name"), chains, by=ca)
    assert judgement.verdict is Verdict.EXPECTED


def test_unexpected_pipeline(ca: LocalCA, chains: ChainVerifier) -> None:
    judgement = judge(codefresh(pipeline_id="0123456789abcdef01234567", pipeline_name="x/backdoor"), chains, by=ca)
    assert outcome(judgement) == (Verdict.UNEXPECTED_PIPELINE, "unexpected_pipeline", "critical")


def test_all_pipelines(ca: LocalCA, chains: ChainVerifier) -> None:
    any_pipeline = codefresh(
        account_id=OPEN_ACCOUNT_ID, account_name="open-shop", pipeline_id="abc", pipeline_name="p/q"
    )
    assert judge(any_pipeline, chains, by=ca).verdict is Verdict.EXPECTED
    renamed = codefresh(account_id=OPEN_ACCOUNT_ID, account_name="closed-shop", pipeline_id="abc", pipeline_name="p/q")
    assert judge(renamed, chains, by=ca).verdict is Verdict.RENAMED


@pytest.mark.parametrize("name", ["ilia-codefresh", "ILIA-Codefresh"])
def test_impersonation_by_name_with_another_id(ca: LocalCA, chains: ChainVerifier, name: str) -> None:
    impersonator = codefresh(account_id="aaaaaaaaaaaaaaaaaaaaaaaa", account_name=name)
    assert outcome(judge(impersonator, chains, by=ca)) == (Verdict.IMPERSONATION, "impersonation", "critical")


def test_impersonation_by_another_platform_with_the_watched_id(ca: LocalCA, chains: ChainVerifier) -> None:
    judgement = judge(codefresh(platform_url="https://codefresh.evil.example"), chains, by=ca)
    assert outcome(judgement) == (Verdict.IMPERSONATION, "impersonation", "critical")


def test_forged_certificate_claiming_the_watched_account(ca: LocalCA, chains: ChainVerifier) -> None:
    (finding,) = analyse(codefresh(), chains, by=LocalCA.generate("forger")).findings
    assert not finding.chain_verified
    assert outcome(finding.judgement) == (Verdict.UNTRUSTED, "untrusted_certificate", "warning")


def test_forged_certificate_claiming_the_watched_name(chains: ChainVerifier) -> None:
    forged = codefresh(account_id="aaaaaaaaaaaaaaaaaaaaaaaa")
    assert outcome(judge(forged, chains, by=LocalCA.generate("forger"))) == (
        Verdict.UNTRUSTED,
        "untrusted_certificate",
        "warning",
    )


def test_non_chaining_certificate_claiming_nothing_watched_is_stored_silently(chains: ChainVerifier) -> None:
    stranger = codefresh(account_id="bbbbbbbbbbbbbbbbbbbbbbbb", account_name="stranger")
    assert outcome(judge(stranger, chains, by=LocalCA.generate("forger"))) == (Verdict.UNTRUSTED, None, None)


def test_non_chaining_certificate_inside_an_identity_regexp_alerts(chains: ChainVerifier) -> None:
    forger = LocalCA.generate("forger")
    inside = judge(github_identity(repository="myorg/app"), chains, by=forger)
    assert outcome(inside) == (Verdict.UNTRUSTED, "untrusted_certificate", "warning")
    outside = judge(github_identity(repository="elsewhere/app"), chains, by=forger)
    assert outcome(outside) == (Verdict.UNTRUSTED, None, None)


def test_self_signed_certificate_claiming_no_issuer_is_not_stored(chains: ChainVerifier) -> None:
    entry = json.loads((FIXTURES / "docker-attest.tlog.mock.go.TestEntry.json").read_text())
    everything = policy(issuers=[CODEFRESH_ISSUER, GITHUB_ISSUER, "https://accounts.google.com"])
    assert analyse_entry(base64.b64decode(entry["body"]), everything, chains).findings == ()


def test_unwatched(ca: LocalCA, chains: ChainVerifier) -> None:
    stranger = codefresh(account_id="bbbbbbbbbbbbbbbbbbbbbbbb", account_name="stranger")
    assert outcome(judge(stranger, chains, by=ca)) == (Verdict.UNWATCHED, None, None)


def test_issuer_not_watched_is_not_stored(chains: ChainVerifier) -> None:
    bundle = json.loads((FIXTURES / "bundle_v3_github.whl.sigstore").read_text())
    body = base64.b64decode(bundle["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"])
    codefresh_only = policy(identities=[])
    analysis = analyse_entry(body, codefresh_only, chains)
    assert analysis.decoded.kind == "hashedrekord" and analysis.findings == ()
    identity = SigningIdentity("github", GITHUB_ISSUER, RELEASE)
    assert codefresh_only.judge(identity, chain_verified=True) is None


def test_real_github_certificate_under_a_rule_for_its_issuer() -> None:
    bundle = json.loads((FIXTURES / "bundle_v3_github.whl.sigstore").read_text())
    body = base64.b64decode(bundle["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"])
    public_good = ChainVerifier(load_trust_root(str(FIXTURES / "trusted_root.json")))
    rule = {
        "issuer": GITHUB_ISSUER,
        "identity_regexp": "https://github.com/trailofbits/.*",
        "allow": [".*@refs/tags/v.*"],
    }
    (finding,) = analyse_entry(body, policy(identities=[rule]), public_good).findings
    assert finding.chain_verified and finding.judgement.verdict is Verdict.EXPECTED
    (finding,) = analyse_entry(body, policy(), public_good).findings  # GitHub watched through the myorg rule
    assert finding.judgement.verdict is Verdict.UNWATCHED


# -- generic identity rules ------------------------------------------------------------------------


def test_generic_rule_allows_and_alerts(ca: LocalCA, chains: ChainVerifier) -> None:
    assert judge(github_identity(), chains, by=ca).verdict is Verdict.EXPECTED
    nightly = github_identity(workflow_path=".github/workflows/nightly.yml")
    assert outcome(judge(nightly, chains, by=ca)) == (Verdict.UNEXPECTED_PIPELINE, "unexpected_pipeline", "critical")
    assert judge(github_identity(repository="other/app"), chains, by=ca).verdict is Verdict.UNWATCHED


def test_regular_expressions_must_match_the_whole_identity(ca: LocalCA, chains: ChainVerifier) -> None:
    prefix_allow = policy(
        identities=[
            {
                "issuer": GITHUB_ISSUER,
                "identity_regexp": r"https://github\.com/myorg/.*",
                "allow": [r"https://github\.com/myorg/app/\.github/workflows/release\.yml@refs/heads/main"],
            }
        ]
    )
    evil_branch = github_identity(ref="refs/heads/main-evil")
    assert judge(evil_branch, chains, by=ca, watch=prefix_allow).verdict is Verdict.UNEXPECTED_PIPELINE
    prefix_namespace = policy(
        identities=[{"issuer": GITHUB_ISSUER, "identity_regexp": r"https://github\.com/myorg/", "allow": [".*"]}]
    )
    assert judge(github_identity(), chains, by=ca, watch=prefix_namespace).verdict is Verdict.UNWATCHED


def test_any_covering_rule_may_allow(ca: LocalCA, chains: ChainVerifier) -> None:
    nightly = github_identity(workflow_path=".github/workflows/nightly.yml")
    two_rules = policy(
        identities=[
            *WATCH["identities"],
            {"issuer": GITHUB_ISSUER, "identity_regexp": r"https://github\.com/myorg/app/.*", "allow": [".*nightly.*"]},
        ]
    )
    assert judge(nightly, chains, by=ca, watch=two_rules).verdict is Verdict.EXPECTED


# -- the decision order ----------------------------------------------------------------------------

ALLOW_ALL_CODEFRESH = {"issuer": CODEFRESH_ISSUER, "identity_regexp": ".*", "allow": [".*"]}


def test_untrusted_comes_before_expected(chains: ChainVerifier) -> None:
    assert judge(codefresh(), chains, by=LocalCA.generate("forger")).verdict is Verdict.UNTRUSTED


def test_watched_id_comes_before_name_impersonation(ca: LocalCA, chains: ChainVerifier) -> None:
    assert judge(codefresh(account_name="ILIA-CODEFRESH"), chains, by=ca).verdict is Verdict.RENAMED


def test_codefresh_rules_come_before_generic_rules(ca: LocalCA, chains: ChainVerifier) -> None:
    lenient = policy(identities=[ALLOW_ALL_CODEFRESH])
    unexpected = codefresh(pipeline_id="0123456789abcdef01234567")
    assert judge(unexpected, chains, by=ca, watch=lenient).verdict is Verdict.UNEXPECTED_PIPELINE
    impersonator = codefresh(account_id="aaaaaaaaaaaaaaaaaaaaaaaa")
    assert judge(impersonator, chains, by=ca, watch=lenient).verdict is Verdict.IMPERSONATION
    stranger = codefresh(account_id="bbbbbbbbbbbbbbbbbbbbbbbb", account_name="stranger")
    assert judge(stranger, chains, by=ca, watch=lenient).verdict is Verdict.EXPECTED


def test_extensions_that_disagree_with_the_san_are_untrusted(ca: LocalCA, chains: ChainVerifier) -> None:
    (finding,) = analyse(codefresh(build_config_pipeline_id="0123456789abcdef01234567"), chains, by=ca).findings
    assert finding.chain_verified and finding.identity.mismatches == ("build_config_uri",)
    assert outcome(finding.judgement) == (Verdict.UNTRUSTED, "untrusted_certificate", "warning")
    assert "build_config_uri" in finding.judgement.reason


# -- analysing entries -----------------------------------------------------------------------------


def test_only_certificates_of_watched_issuers_become_findings(ca: LocalCA, chains: ChainVerifier) -> None:
    signers = [ca.issue(codefresh()), ca.issue(email_identity("dev@example.com"))]
    signatures = [{"signature": "MA==", "verifier": base64.b64encode(signer.pem).decode()} for signer in signers]
    body = rfc8785.dumps({"apiVersion": "0.0.1", "kind": "dsse", "spec": {"signatures": signatures}})
    analysis = analyse_entry(body, policy(), chains)
    assert len(analysis.decoded.certificates) == 2
    assert [finding.identity.provider for finding in analysis.findings] == ["codefresh"]


def test_an_unparseable_certificate_of_a_watched_issuer_makes_the_entry_undecodable(
    ca: LocalCA, chains: ChainVerifier
) -> None:
    issued = ca.issue(codefresh())
    issuer_v2 = bytes.fromhex("060a2b0601040183bf300108")
    at = issued.der.index(issuer_v2) + len(issuer_v2) + 2  # the UTF8String tag inside the OCTET STRING
    broken = issued.der[:at] + b"\x13" + issued.der[at + 1 :]  # PrintableString: not Fulcio's encoding
    pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(broken) + b"-----END CERTIFICATE-----\n"
    with pytest.raises(EntryDecodeError) as caught:
        analyse_entry(hashedrekord_body(pem, b"artifact", issued.private_key), policy(), chains)
    assert caught.value.reason == "bad_certificate"


# -- the policy object -----------------------------------------------------------------------------


def test_watched_issuers() -> None:
    watch = Policy(WatchSettings.model_validate({"issuers": [], "codefresh": [{"account_id": "a"}]}))
    assert watch.watches_issuer(CODEFRESH_ISSUER)
    assert policy().watches_issuer(GITHUB_ISSUER)  # named by a rule
    assert not policy().watches_issuer("https://accounts.google.com")
    assert not policy().watches_issuer(None)


def test_policy_and_results_pickle(ca: LocalCA, chains: ChainVerifier) -> None:
    analysis = analyse(codefresh(), chains, by=ca, watch=pickle.loads(pickle.dumps(policy())))
    assert pickle.loads(pickle.dumps(analysis)) == analysis
