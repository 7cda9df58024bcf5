"""Buildkite identities (Fulcio's `buildkite-job` template).

SAN `{url}/{organization_slug}/{pipeline_slug}`; 1.21 `{SAN}/builds/{build_number}#{job_id}`.
The account is the organization, the pipeline the pipeline slug, the run the build.
"""

from __future__ import annotations

from dataclasses import replace

from monitor.identity.fulcio import FulcioCertificate
from monitor.identity.signing import SigningIdentity, strip_prefix, url_origin

BUILDKITE_ISSUER = "https://agent.buildkite.com"


def _parse_san(san: str | None) -> tuple[str, str, str] | None:
    """(platform url, organization, pipeline) of a SAN that fits the template."""
    parts = (san or "").rsplit("/", 2)
    if len(parts) != 3 or not all(parts) or url_origin(parts[0]) != parts[0]:
        return None
    return parts[0], parts[1], parts[2]


def identify_buildkite(cert: FulcioCertificate) -> SigningIdentity:
    run_url = cert.extensions.get("run_invocation_uri")
    claimed = SigningIdentity(
        provider="buildkite",
        issuer=cert.issuer,
        identity=cert.identity,
        run_url=run_url,
        runner_environment=cert.extensions.get("runner_environment"),
    )
    san = _parse_san(cert.identity)
    if san is None:
        return replace(claimed, mismatches=("san",))
    platform_url, organization, pipeline = san
    build = strip_prefix(run_url, f"{cert.identity}/builds/")
    return replace(
        claimed,
        account_name=organization,
        pipeline_name=pipeline,
        platform_url=platform_url,
        workflow_id=build.partition("#")[0] or None if build else None,
        mismatches=("run_invocation_uri",) if run_url and not build else (),
    )
