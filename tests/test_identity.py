"""Provider identities: Codefresh per Fulcio's template (and Fulcio's own test identities), GitHub
Actions, GitLab, Buildkite, email; extensions that disagree with the SAN are flagged."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.contract import CODEFRESH_ISSUER
from monitor.entries import decode_entry
from monitor.identity import SigningIdentity, identify
from monitor.identity.codefresh import CodefreshSan, build_codefresh_san, parse_codefresh_san
from monitor.identity.fulcio import parse_fulcio_certificate
from monitor.simulate.ca import CertIdentity, LocalCA, codefresh_identity, email_identity
from tests.paths import SIGSTORE as FIXTURES


@pytest.fixture(scope="module")
def ca() -> LocalCA:
    return LocalCA.generate()


def identity_of(ca: LocalCA, cert_identity: CertIdentity) -> SigningIdentity:
    return identify(parse_fulcio_certificate(ca.issue(cert_identity).der))


def fixture_identity(name: str) -> SigningIdentity:
    bundle = json.loads((FIXTURES / name).read_text())
    body = base64.b64decode(bundle["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"])
    return identify(parse_fulcio_certificate(decode_entry(body).certificates[0]))


# -- Codefresh: the identities of Fulcio's own tests (pkg/identity/codefresh, TestAPIWithCodefresh) ----

FULCIO_TEST_IDENTITIES = [
    (  # manual trigger, on another platform
        {
            "account_id": "628a80b693a15c0f9c13ab75",
            "account_name": "codefresh-account",
            "pipeline_id": "65e5a53e52853dc51a5b0cc1",
            "pipeline_name": "oidc-test/get-token",
            "workflow_id": "65e5c23d706f166c4e8985ed",
            "platform_url": "https://pre-prod.codefresh.io",
            "runner_environment": "hybrid",
        },
        "https://pre-prod.codefresh.io/codefresh-account/oidc-test/get-token:628a80b693a15c0f9c13ab75/65e5a53e52853dc51a5b0cc1",
    ),
    (  # git push trigger
        {
            "account_id": "628a80b693a15c0f9c13ab75",
            "account_name": "codefresh-account",
            "pipeline_id": "65e5a53e52853dc51a5b0cc1",
            "pipeline_name": "oidc-test/get-token",
            "workflow_id": "65e6bcf7c2af1f228fa97f80",
            "scm_repo_url": "https://github.com/codefresh-io/fulcio-oidc",
            "scm_ref": "main",
            "runner_environment": "hybrid",
        },
        "https://g.codefresh.io/codefresh-account/oidc-test/get-token:628a80b693a15c0f9c13ab75/65e5a53e52853dc51a5b0cc1",
    ),
    (  # pull request trigger
        {
            "account_id": "628a80b693a15c0f9c13ab75",
            "account_name": "test-codefresh",
            "pipeline_id": "65e6d5551e47e5bc243ca93f",
            "pipeline_name": "oidc-test/oidc-test-2",
            "workflow_id": "65e6ebe0bfbfa1782876165e",
            "scm_repo_url": "https://github.com/test-codefresh/fulcio",
            "scm_ref": "feat/codefresh-issuer",
            "runner_environment": "hybrid",
        },
        "https://g.codefresh.io/test-codefresh/oidc-test/oidc-test-2:628a80b693a15c0f9c13ab75/65e6d5551e47e5bc243ca93f",
    ),
]


@pytest.mark.parametrize(("claims", "san"), FULCIO_TEST_IDENTITIES)
def test_fulcio_test_identities_parse_to_their_claims(ca: LocalCA, claims: dict[str, str], san: str) -> None:
    identity = identity_of(ca, codefresh_identity(**claims))
    platform_url = claims.get("platform_url", "https://g.codefresh.io")
    assert identity == SigningIdentity(
        provider="codefresh",
        issuer=CODEFRESH_ISSUER,
        identity=san,
        account_id=claims["account_id"],
        account_name=claims["account_name"],
        pipeline_id=claims["pipeline_id"],
        pipeline_name=claims["pipeline_name"],
        run_url=f"{platform_url}/build/{claims['workflow_id']}",
        source_repository=claims.get("scm_repo_url"),
        source_ref=claims.get("scm_ref"),
        platform_url=platform_url,
        workflow_id=claims["workflow_id"],
        runner_environment=claims["runner_environment"],
    )


def test_the_extensions_fulcio_expects_for_codefresh(ca: LocalCA) -> None:
    """TestAPIWithCodefresh's certificate, extension by extension, with its full `sub` in 1.24."""
    subject = (
        "account:628a80b693a15c0f9c13ab75:pipeline:65e6d5551e47e5bc243ca93f:scm_repo_url:"
        "https://github.com/test-codefresh/fulcio:scm_user_name:test-codefresh:scm_ref:feat/codefresh-issuer"
    )
    build = "https://g.codefresh.io/build/65e6ebe0bfbfa1782876165e"
    cert = parse_fulcio_certificate(
        ca.issue(
            CertIdentity(
                issuer=CODEFRESH_ISSUER,
                san_uri="https://g.codefresh.io/test-codefresh/oidc-test/oidc-test-2:628a80b693a15c0f9c13ab75/65e6d5551e47e5bc243ca93f",
                extensions={
                    9: build,
                    11: "hybrid",
                    12: "https://github.com/test-codefresh/fulcio",
                    14: "feat/codefresh-issuer",
                    18: "https://g.codefresh.io/api/pipelines/65e6d5551e47e5bc243ca93f",
                    21: build,
                    24: subject,
                },
            )
        ).der
    )
    assert cert.extensions["issuer"] == cert.extensions["issuer_v1"] == CODEFRESH_ISSUER
    identity = identify(cert)
    assert (identity.workflow_id, identity.run_url, identity.mismatches) == ("65e6ebe0bfbfa1782876165e", build, ())


def test_deprecated_principal_build_url_in_1_18_is_accepted(ca: LocalCA) -> None:
    build = "https://g.codefresh.io/build/65e6bcf7c2af1f228fa97f80"
    identity = identity_of(
        ca,
        CertIdentity(
            issuer=CODEFRESH_ISSUER,
            san_uri="https://g.codefresh.io/codefresh-account/oidc-test/get-token:628a80b693a15c0f9c13ab75/65e5a53e52853dc51a5b0cc1",
            extensions={9: build, 18: build, 21: build},
        ),
    )
    assert identity.mismatches == ()


CODEFRESH = {
    "account_id": "628a80b693a15c0f9c13ab75",
    "account_name": "ilia-codefresh",
    "pipeline_id": "6612ad6384ef42f18019b7e9",
    "pipeline_name": "sigstore-blog/keyless-signature",
    "workflow_id": "66c4ea1fd3ec2f5a3a1b7a5a",
}


def test_a_pipeline_id_in_1_18_that_disagrees_with_the_san_is_flagged(ca: LocalCA) -> None:
    identity = identity_of(ca, codefresh_identity(**CODEFRESH, build_config_pipeline_id="aaaaaaaaaaaaaaaaaaaaaaaa"))
    assert identity.pipeline_id == CODEFRESH["pipeline_id"]
    assert identity.mismatches == ("build_config_uri",)


@pytest.mark.parametrize(
    ("extensions", "mismatches"),
    [
        ({24: "account:628a80b693a15c0f9c13ab75:pipeline:000000000000000000000000"}, ("token_subject",)),
        ({9: "https://g.codefresh.io/build/w1", 21: "https://g.codefresh.io/build/w2"}, ("build_signer_uri",)),
        ({21: "https://evil.example/build/w1"}, ("run_invocation_uri",)),
        ({18: "https://evil.example/api/pipelines/6612ad6384ef42f18019b7e9"}, ("build_config_uri",)),
        ({24: "repo:someone/else"}, ()),  # not a Codefresh `sub`: nothing to compare
    ],
)
def test_other_disagreements_are_flagged(ca: LocalCA, extensions: dict[int, str], mismatches: tuple[str, ...]) -> None:
    san = "https://g.codefresh.io/ilia-codefresh/sigstore-blog/keyless-signature:628a80b693a15c0f9c13ab75/6612ad6384ef42f18019b7e9"
    assert identity_of(ca, CertIdentity(CODEFRESH_ISSUER, san_uri=san, extensions=extensions)).mismatches == mismatches


@pytest.mark.parametrize(
    "san",
    [
        "https://g.codefresh.io/acme/pipeline-without-project:628a80b693a15c0f9c13ab75/65e5a53e52853dc51a5b0cc1",
        "https://g.codefresh.io/acme/proj/pipe:628a80b693a15c0f9c13ab75",
        "https://g.codefresh.io/acme/proj/pipe:a/b/c",
        "g.codefresh.io/acme/proj/pipe:a/b",
        "https:/acme/proj/pipe:a/b",
    ],
)
def test_a_san_that_does_not_fit_the_template(ca: LocalCA, san: str) -> None:
    identity = identity_of(ca, CertIdentity(CODEFRESH_ISSUER, san_uri=san))
    assert identity.mismatches == ("san",)
    assert identity.account_id is None and identity.pipeline_id is None


def test_an_email_san_under_the_codefresh_issuer_is_flagged(ca: LocalCA) -> None:
    identity = identity_of(ca, CertIdentity(CODEFRESH_ISSUER, san_email="x@example.com"))
    assert (identity.provider, identity.mismatches) == ("codefresh", ("san",))


segment = st.text(st.characters(blacklist_characters="/", blacklist_categories=("Cs",)), min_size=1, max_size=20)
identifier = st.text(st.characters(blacklist_characters="/:", blacklist_categories=("Cs",)), min_size=1, max_size=24)
host = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{2,6}){1,2}(:[0-9]{2,5})?", fullmatch=True)
platform = st.builds(
    lambda scheme, netloc, path: f"{scheme}://{netloc}{path}",
    st.sampled_from(["https", "http"]),
    host,
    st.sampled_from(["", "/codefresh", "/a/b"]),
)


@given(st.builds(CodefreshSan, platform, segment, st.builds("{}/{}".format, segment, segment), identifier, identifier))
def test_codefresh_san_round_trips(san: CodefreshSan) -> None:
    assert parse_codefresh_san(build_codefresh_san(san)) == san


@given(st.text(max_size=200))
def test_parsing_any_text_never_raises(text: str) -> None:
    parsed = parse_codefresh_san(text)
    assert parsed is None or build_codefresh_san(parsed) == text


# -- other providers -------------------------------------------------------------------------------


def test_github_actions_fixture() -> None:
    identity = fixture_identity("bundle_v3_github.whl.sigstore")
    assert identity == SigningIdentity(
        provider="github",
        issuer="https://token.actions.githubusercontent.com",
        identity="https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2",
        account_id="2314423",
        account_name="trailofbits",
        pipeline_name="trailofbits/rfc8785.py/.github/workflows/release.yml",
        run_url="https://github.com/trailofbits/rfc8785.py/actions/runs/8351058501/attempts/1",
        source_repository="https://github.com/trailofbits/rfc8785.py",
        source_ref="refs/tags/v0.1.2",
        platform_url="https://github.com",
        workflow_id="8351058501",
        runner_environment="github-hosted",
    )


def test_github_actions_dsse_fixture_and_enterprise_issuer(ca: LocalCA) -> None:
    identity = fixture_identity("happy-path-intoto-in-dsse-v3.bundle.sigstore.json")
    assert (identity.provider, identity.account_name, identity.workflow_id) == (
        "github",
        "sigstore-conformance",
        "12359147651",
    )
    enterprise = identity_of(
        ca,
        CertIdentity(
            "https://token.actions.githubusercontent.com/acme",
            san_uri="https://github.com/acme/app/.github/workflows/ci.yml@refs/heads/main",
        ),
    )
    assert enterprise.provider == "github"


def test_github_legacy_extensions_must_agree(ca: LocalCA) -> None:
    identity = identity_of(
        ca,
        CertIdentity(
            "https://token.actions.githubusercontent.com",
            san_uri="https://github.com/myorg/app/.github/workflows/release.yml@refs/heads/main",
            extensions={
                5: "other/repo",
                6: "refs/heads/main",
                9: "https://github.com/evil/app/.github/workflows/release.yml@refs/heads/main",
                12: "https://github.com/myorg/app",
                14: "refs/heads/main",
            },
        ),
    )
    assert identity.mismatches == ("build_signer_uri", "github_workflow_repository")


def test_gitlab(ca: LocalCA) -> None:
    config_ref = "https://gitlab.com/group/sub/project//.gitlab-ci.yml@refs/heads/main"
    identity = identity_of(
        ca,
        CertIdentity(
            "https://gitlab.com",
            san_uri=config_ref,
            extensions={
                9: config_ref,
                11: "gitlab-hosted",
                12: "https://gitlab.com/group/sub/project",
                14: "refs/heads/main",
                15: "4242",
                16: "https://gitlab.com/group/sub",
                17: "77",
                18: config_ref,
                21: "https://gitlab.com/group/sub/project/-/jobs/123456",
            },
        ),
    )
    assert identity == SigningIdentity(
        provider="gitlab",
        issuer="https://gitlab.com",
        identity=config_ref,
        account_id="77",
        account_name="group/sub",
        pipeline_name="group/sub/project//.gitlab-ci.yml",
        run_url="https://gitlab.com/group/sub/project/-/jobs/123456",
        source_repository="https://gitlab.com/group/sub/project",
        source_ref="refs/heads/main",
        platform_url="https://gitlab.com",
        workflow_id="123456",
        runner_environment="gitlab-hosted",
    )


def test_buildkite(ca: LocalCA) -> None:
    identity = identity_of(
        ca,
        CertIdentity(
            "https://agent.buildkite.com",
            san_uri="https://buildkite.com/acme/deploy",
            extensions={11: "self-hosted", 21: "https://buildkite.com/acme/deploy/builds/42#0190-abc"},
        ),
    )
    assert (identity.provider, identity.account_name, identity.pipeline_name) == ("buildkite", "acme", "deploy")
    assert (identity.platform_url, identity.workflow_id, identity.mismatches) == ("https://buildkite.com", "42", ())
    elsewhere = identity_of(
        ca,
        CertIdentity(
            "https://agent.buildkite.com",
            san_uri="https://buildkite.com/acme/deploy",
            extensions={21: "https://buildkite.com/evil/deploy/builds/42#0190-abc"},
        ),
    )
    assert elsewhere.mismatches == ("run_invocation_uri",)


def test_email_identities(ca: LocalCA) -> None:
    staging = fixture_identity("staging-rekor-v2.txt.sigstore.json")
    assert (staging.provider, staging.issuer, staging.identity, staging.account_name) == (
        "email",
        "https://github.com/login/oauth",
        "jku@goto.fi",
        "jku@goto.fi",
    )
    google = identity_of(ca, email_identity("dev@example.com"))
    assert (google.provider, google.identity) == ("email", "dev@example.com")


def test_unknown_provider(ca: LocalCA) -> None:
    identity = identity_of(ca, CertIdentity("https://issuer.example", san_uri="https://example.com/workload"))
    assert identity == SigningIdentity("unknown", "https://issuer.example", "https://example.com/workload")
