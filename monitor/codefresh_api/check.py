"""Which signings have their Codefresh build checked, and what the builds API's answer means.

Invariants:
- Only a signing of a watched account's own id, on that account's platform URL, with verdict
  `expected`, `renamed` or `unexpected_pipeline`, is checked, and only with that account's key: an
  impersonating account (another id, or the same id on another platform) is never sent anyone's key.
- The workflow id is the last path element of the certificate's run URL (Fulcio 1.21, else 1.9)
  under the account's platform URL, and only when it fits `model.WORKFLOW_ID`; anything else is
  not checked, so a hostile certificate cannot steer the request to another path.
- `judge_build` is pure (DESIGN.md "Certificate and build alerts", issue 14 item 4): a build of
  that pipeline whose run (created − 5 min … finished + 5 min, now while running) holds the
  certificate's notBefore is `verified`; 404 is `not_found`; another pipeline or outside the run is
  `mismatch`; a refused key, an unreachable API or an answer that cannot be judged is `error` with
  `build_verified` None and no alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from monitor.codefresh_api.client import BuildsClients
from monitor.codefresh_api.model import (
    Build,
    BuildAnswer,
    Found,
    NotFound,
    Unauthorized,
    Unavailable,
    is_workflow_id,
)
from monitor.config import WatchSettings
from monitor.contract import CODEFRESH_ISSUER, AlertKind, BuildResult, Verdict
from monitor.identity.signing import SigningIdentity, strip_prefix

RUN_MARGIN = timedelta(minutes=5)
CHECKED_VERDICTS = frozenset({Verdict.EXPECTED, Verdict.RENAMED, Verdict.UNEXPECTED_PIPELINE})


@dataclass(frozen=True)
class BuildCheckTarget:
    """What to ask, and with which account's key: all a queued check needs besides the signing's notBefore."""

    account_id: str
    platform_url: str
    workflow_id: str
    pipeline_id: str


@dataclass(frozen=True)
class BuildCheck:
    """The outcome to keep with the signing (`build_verified`, the build's fields) and to alert on."""

    result: BuildResult
    build_verified: bool | None
    alert_kind: AlertKind | None
    reason: str  # one line
    status: str | None = None
    created: datetime | None = None
    finished: datetime | None = None
    retry_later: bool = False  # the answer may differ later (API down, key refused): ask again with backoff
    retry_after: float | None = None  # seconds the API asked to wait before the next request, if it did


def workflow_id_of(run_url: str | None, platform_url: str) -> str | None:
    """`<id>` of `{platform_url}/build/<id>` when it is a plain workflow id; None otherwise."""
    workflow_id = strip_prefix(run_url, f"{platform_url.rstrip('/')}/build/")
    return workflow_id if workflow_id is not None and is_workflow_id(workflow_id) else None


def build_check_target(watch: WatchSettings, identity: SigningIdentity, verdict: str) -> BuildCheckTarget | None:
    """The check to queue for a signing, or None when it is not checked (see the module's invariants)."""
    if identity.issuer != CODEFRESH_ISSUER or verdict not in CHECKED_VERDICTS:
        return None
    if not identity.account_id or not identity.pipeline_id or not identity.platform_url:
        return None
    platform_url = identity.platform_url.rstrip("/")
    for account in watch.codefresh:
        if account.account_id != identity.account_id or account.platform_url != platform_url:
            continue
        if account.api_key is None:
            continue
        workflow_id = workflow_id_of(identity.run_url, account.platform_url)
        if workflow_id is None:
            return None
        return BuildCheckTarget(account.account_id, account.platform_url, workflow_id, identity.pipeline_id)
    return None


def judge_build(answer: BuildAnswer, pipeline_id: str, not_before: datetime, now: datetime) -> BuildCheck:
    """What `answer` says of a signing of pipeline `pipeline_id` certified at `not_before` (aware times)."""
    match answer:
        case Found(build):
            return _judge_found(build, pipeline_id, not_before, now)
        case NotFound():
            return BuildCheck(
                BuildResult.NOT_FOUND, False, AlertKind.BUILD_NOT_FOUND, "no such build is visible to the account's key"
            )
        case Unauthorized(status):
            return BuildCheck(
                BuildResult.ERROR, None, None, f"the Codefresh API refused the key (HTTP {status})", retry_later=True
            )
        case Unavailable(reason, retry_after):
            return BuildCheck(
                BuildResult.ERROR,
                None,
                None,
                f"the Codefresh API is unavailable: {reason}",
                retry_later=True,
                retry_after=retry_after,
            )
    raise TypeError(f"not a build answer: {type(answer).__name__}")


def _judge_found(build: Build, pipeline_id: str, not_before: datetime, now: datetime) -> BuildCheck:
    if build.service_id is None or build.created is None:
        return _of_build(build, BuildResult.ERROR, "the build's answer lacks serviceId or created")
    if build.service_id != pipeline_id:
        name = f" ({build.service_name})" if build.service_name else ""
        return _of_build(
            build, BuildResult.MISMATCH, f"the build belongs to pipeline {build.service_id}{name}, not {pipeline_id}"
        )
    if not build.created - RUN_MARGIN <= not_before <= (build.finished or now) + RUN_MARGIN:
        run = f"{_iso(build.created)} … {_iso(build.finished) if build.finished else 'still running'}"
        return _of_build(
            build,
            BuildResult.MISMATCH,
            f"the certificate was issued at {_iso(not_before)}, outside the build's run ({run}, ± 5 min)",
        )
    return _of_build(build, BuildResult.VERIFIED, f"a build of pipeline {pipeline_id}, in its run")


_VERIFIED_AND_ALERT = {
    BuildResult.VERIFIED: (True, None),
    BuildResult.MISMATCH: (False, AlertKind.BUILD_MISMATCH),
    BuildResult.ERROR: (None, None),
}


def _of_build(build: Build, result: BuildResult, reason: str) -> BuildCheck:
    verified, alert_kind = _VERIFIED_AND_ALERT[result]
    return BuildCheck(result, verified, alert_kind, reason, build.status, build.created, build.finished)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


async def check_build(clients: BuildsClients, target: BuildCheckTarget, not_before: datetime) -> BuildCheck | None:
    """Ask the API about `target` with its account's key and judge the answer (a running build's run
    ends now); None when that account has no key any more (the config changed since it was queued)."""
    client = clients.client_for(target.account_id, target.platform_url)
    if client is None:
        return None
    answer = await client.get_build(target.workflow_id)
    return judge_build(answer, target.pipeline_id, not_before, datetime.now(UTC))
