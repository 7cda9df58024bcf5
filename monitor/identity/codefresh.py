"""Codefresh identities, exactly per Fulcio's `codefresh-workflow` template (FORMATS.md §5).

    SAN  {platform_url}/{account_name}/{pipeline_name}:{account_id}/{pipeline_id}
         where pipeline_name is "project/pipeline"
    1.9  = 1.21 = {platform_url}/build/{workflow_id}
    1.18 {platform_url}/api/pipelines/{pipeline_id}
    1.11 runner_environment, 1.12 scm_repo_url, 1.14 scm_ref, 1.24 the token's `sub`

Certificates issued by Fulcio's older, deprecated Codefresh principal (2024) carry the build URL
in 1.18 instead; that form is accepted too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from monitor.identity.fulcio import FulcioCertificate
from monitor.identity.signing import SigningIdentity, url_origin

__all__ = ["CodefreshSan", "build_codefresh_san", "identify_codefresh", "parse_codefresh_san"]


@dataclass(frozen=True)
class CodefreshSan:
    platform_url: str
    account_name: str
    pipeline_name: str  # "project/pipeline"
    account_id: str
    pipeline_id: str


def build_codefresh_san(san: CodefreshSan) -> str:
    return f"{san.platform_url}/{san.account_name}/{san.pipeline_name}:{san.account_id}/{san.pipeline_id}"


def parse_codefresh_san(uri: str) -> CodefreshSan | None:
    """The template's fields, or None when `uri` does not fit it.

    Ids contain neither ':' nor '/', so they are split off the right first; names may hold ':'.
    """
    head, colon, ids = uri.rpartition(":")
    account_id, slash, pipeline_id = ids.partition("/")
    if not (colon and slash and account_id and pipeline_id) or "/" in pipeline_id:
        return None
    parts = head.rsplit("/", 3)
    if len(parts) != 4 or not all(parts) or url_origin(parts[0]) is None:
        return None
    platform_url, account_name, project, pipeline = parts
    return CodefreshSan(platform_url, account_name, f"{project}/{pipeline}", account_id, pipeline_id)


def _workflow_id(run_url: str | None, platform_url: str) -> str | None:
    prefix = f"{platform_url}/build/"
    if run_url is None or not run_url.startswith(prefix):
        return None
    workflow_id = run_url[len(prefix) :]
    return workflow_id if workflow_id and "/" not in workflow_id else None


def _token_subject_ids(subject: str | None) -> tuple[str, str] | None:
    """(account id, pipeline id) of a `sub` like `account:<id>:pipeline:<id>[:...]`; None otherwise."""
    parts = (subject or "").split(":")
    if len(parts) < 4 or parts[0] != "account" or parts[2] != "pipeline":
        return None
    return parts[1], parts[3]


def _mismatches(san: CodefreshSan, extensions: dict[str, str], workflow_id: str | None) -> tuple[str, ...]:
    build_url = f"{san.platform_url}/build/{workflow_id}" if workflow_id else None
    names = [
        name for name in ("build_signer_uri", "run_invocation_uri") if extensions.get(name, build_url) != build_url
    ]
    config_uri = extensions.get("build_config_uri")
    if config_uri is not None and config_uri not in (f"{san.platform_url}/api/pipelines/{san.pipeline_id}", build_url):
        names.append("build_config_uri")
    subject_ids = _token_subject_ids(extensions.get("token_subject"))
    if subject_ids is not None and subject_ids != (san.account_id, san.pipeline_id):
        names.append("token_subject")
    return tuple(names)


def identify_codefresh(cert: FulcioCertificate) -> SigningIdentity:
    extensions = cert.extensions
    run_url = extensions.get("run_invocation_uri") or extensions.get("build_signer_uri")
    claimed = SigningIdentity(
        provider="codefresh",
        issuer=cert.issuer,
        identity=cert.identity,
        run_url=run_url,
        source_repository=extensions.get("source_repository_uri"),
        source_ref=extensions.get("source_repository_ref"),
        runner_environment=extensions.get("runner_environment"),
    )
    san = parse_codefresh_san(cert.identity) if cert.san_kind == "uri" and cert.identity else None
    if san is None:
        return replace(claimed, mismatches=("san",))
    workflow_id = _workflow_id(run_url, san.platform_url)
    return replace(
        claimed,
        account_id=san.account_id,
        account_name=san.account_name,
        pipeline_id=san.pipeline_id,
        pipeline_name=san.pipeline_name,
        platform_url=san.platform_url,
        workflow_id=workflow_id,
        mismatches=_mismatches(san, extensions, workflow_id),
    )
