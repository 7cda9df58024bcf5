"""GitHub Actions identities (Fulcio's `github-workflow` template).

The SAN is the job's workflow ref (`https://github.com/owner/repo/.github/workflows/x.yml@ref`),
which is also 1.9. The account is the repository owner (1.16, id 1.17), the pipeline the top-level
workflow file (1.18 without its ref), the run 1.21. The deprecated raw 1.3, 1.5 and 1.6 come from
the same claims as 1.13, 1.12 and 1.14 and must agree with them.
"""

from __future__ import annotations

import re

from monitor.identity.fulcio import FulcioCertificate
from monitor.identity.signing import SigningIdentity, consistent, disagreeing, strip_prefix, url_origin

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
_RUN_ID = re.compile(r"/actions/runs/([0-9]+)(?:/|$)")


def is_github_issuer(issuer: str | None) -> bool:
    """The public issuer, or an enterprise's `https://token.actions.githubusercontent.com/<slug>`."""
    return issuer is not None and (issuer == GITHUB_ISSUER or issuer.startswith(f"{GITHUB_ISSUER}/"))


def config_path(uri: str | None, platform_url: str | None) -> str | None:
    """`https://host/owner/repo/path@ref` -> `owner/repo/path`: the pipeline definition without its ref."""
    path = strip_prefix(uri, f"{platform_url}/") if platform_url else None
    if not path:
        return None
    return path.rpartition("@")[0] or path


def identify_github(cert: FulcioCertificate) -> SigningIdentity:
    extensions = cert.extensions
    repository_uri = extensions.get("source_repository_uri")
    platform_url = url_origin(repository_uri) or url_origin(cert.identity)
    legacy_repository = extensions.get("github_workflow_repository")
    legacy_uri = f"{platform_url}/{legacy_repository}" if platform_url and legacy_repository else None
    owner = strip_prefix(extensions.get("source_repository_owner_uri"), f"{platform_url}/")
    run_url = extensions.get("run_invocation_uri")
    run_id = _RUN_ID.search(run_url or "")
    source_ref = extensions.get("source_repository_ref")
    return SigningIdentity(
        provider="github",
        issuer=cert.issuer,
        identity=cert.identity,
        account_id=extensions.get("source_repository_owner_identifier"),
        account_name=owner or (legacy_repository.partition("/")[0] if legacy_repository else None),
        pipeline_name=config_path(extensions.get("build_config_uri") or cert.identity, platform_url),
        run_url=run_url,
        source_repository=repository_uri or legacy_uri,
        source_ref=source_ref or extensions.get("github_workflow_ref"),
        platform_url=platform_url,
        workflow_id=run_id.group(1) if run_id else None,
        runner_environment=extensions.get("runner_environment"),
        mismatches=disagreeing(
            ("build_signer_uri", consistent(extensions.get("build_signer_uri"), cert.identity)),
            ("github_workflow_repository", consistent(repository_uri, legacy_uri)),
            ("github_workflow_ref", consistent(source_ref, extensions.get("github_workflow_ref"))),
            (
                "github_workflow_sha",
                consistent(extensions.get("source_repository_digest"), extensions.get("github_workflow_sha")),
            ),
        ),
    )
