"""GitLab CI identities (Fulcio's `gitlab-pipeline` template).

The SAN, 1.9 and 1.18 are all `https://{ci_config_ref_uri}`, e.g.
`https://gitlab.com/group/project//.gitlab-ci.yml@refs/heads/main`. The account is the namespace
(1.16, id 1.17), the pipeline the CI config path, the run the job (1.21 `.../-/jobs/<id>`).
"""

from __future__ import annotations

import re

from monitor.identity.fulcio import FulcioCertificate
from monitor.identity.github import config_path
from monitor.identity.signing import SigningIdentity, consistent, disagreeing, strip_prefix, url_origin

GITLAB_ISSUERS = frozenset(
    {"https://gitlab.com", "https://dev.gitlab.org", "https://gitlab.archlinux.org", "https://ops.gitlab.net"}
)
_JOB_ID = re.compile(r"/-/jobs/([0-9]+)$")


def identify_gitlab(cert: FulcioCertificate) -> SigningIdentity:
    extensions = cert.extensions
    repository_uri = extensions.get("source_repository_uri")
    platform_url = url_origin(repository_uri) or url_origin(cert.identity)
    run_url = extensions.get("run_invocation_uri")
    job_id = _JOB_ID.search(run_url or "")
    return SigningIdentity(
        provider="gitlab",
        issuer=cert.issuer,
        identity=cert.identity,
        account_id=extensions.get("source_repository_owner_identifier"),
        account_name=strip_prefix(extensions.get("source_repository_owner_uri"), f"{platform_url}/"),
        pipeline_name=config_path(extensions.get("build_config_uri") or cert.identity, platform_url),
        run_url=run_url,
        source_repository=repository_uri,
        source_ref=extensions.get("source_repository_ref"),
        platform_url=platform_url,
        workflow_id=job_id.group(1) if job_id else None,
        runner_environment=extensions.get("runner_environment"),
        mismatches=disagreeing(
            ("build_signer_uri", consistent(extensions.get("build_signer_uri"), cert.identity)),
            ("build_config_uri", consistent(extensions.get("build_config_uri"), cert.identity)),
        ),
    )
