"""Who signed: Fulcio certificate -> `SigningIdentity`, one module per provider, chosen by issuer."""

from __future__ import annotations

from monitor.contract import CODEFRESH_ISSUER
from monitor.identity.buildkite import BUILDKITE_ISSUER, identify_buildkite
from monitor.identity.codefresh import identify_codefresh
from monitor.identity.email_address import identify_email
from monitor.identity.fulcio import FulcioCertificate
from monitor.identity.github import identify_github, is_github_issuer
from monitor.identity.gitlab import GITLAB_ISSUERS, identify_gitlab
from monitor.identity.signing import SigningIdentity, unknown_identity

__all__ = ["SigningIdentity", "identify"]


def identify(cert: FulcioCertificate) -> SigningIdentity:
    """CI providers by issuer; any other issuer with an email SAN is an email identity."""
    issuer = cert.issuer
    if issuer == CODEFRESH_ISSUER:
        return identify_codefresh(cert)
    if is_github_issuer(issuer):
        return identify_github(cert)
    if issuer in GITLAB_ISSUERS:
        return identify_gitlab(cert)
    if issuer == BUILDKITE_ISSUER:
        return identify_buildkite(cert)
    if cert.san_kind == "email":
        return identify_email(cert)
    return unknown_identity(cert)
