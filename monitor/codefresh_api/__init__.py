"""Checking each Codefresh signing against the Codefresh builds API (issue 14, FORMATS.md §9).

`model` reads the API's answers, `client` asks the API (one rate-limited, caching client per
account with an api_key), `check` decides which signings are checked and judges the answers.
"""

from monitor.codefresh_api.check import (
    CHECKED_VERDICTS,
    BuildCheck,
    BuildCheckTarget,
    build_check_target,
    check_build,
    judge_build,
    workflow_id_of,
)
from monitor.codefresh_api.client import BuildsClient, BuildsClients, ClientOptions, RequestSpacing
from monitor.codefresh_api.model import (
    Build,
    BuildAnswer,
    Found,
    NotFound,
    Unauthorized,
    Unavailable,
    is_workflow_id,
    parse_build,
)

__all__ = [
    "CHECKED_VERDICTS",
    "Build",
    "BuildAnswer",
    "BuildCheck",
    "BuildCheckTarget",
    "BuildsClient",
    "BuildsClients",
    "ClientOptions",
    "Found",
    "NotFound",
    "RequestSpacing",
    "Unauthorized",
    "Unavailable",
    "build_check_target",
    "check_build",
    "is_workflow_id",
    "judge_build",
    "parse_build",
    "workflow_id_of",
]
