"""The simulator's Codefresh-like builds API (FORMATS.md §9): `GET /api/builds/<workflow id>`.

It knows the build of every Codefresh signing the simulator makes (`Simulator.append_codefresh`
registers it): `{id, serviceId: the pipeline id, serviceName, created: issuance − 1 min, finished:
issuance + 2 min, status: success}`, plus fields rekorwatch does not read. Each request is counted,
with its arrival time, before anything else happens to it.

Misbehaviour on demand: a signing whose build is unknown (404) or belongs to another pipeline
(`BuildFate`), a build forgotten or moved later, an outage (503 with Retry-After for the next N
requests), any raw answer for one build (unexpected shapes). Every request whose `Authorization`
header is not exactly `api_key` is answered 401 (after the outage, as a load balancer would).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from monitor.simulate.ca import utc_now

BUILD_STARTED_BEFORE = timedelta(minutes=1)
BUILD_FINISHED_AFTER = timedelta(minutes=2)
OTHER_PIPELINE_ID = "5f00000000000000000000ff"
OTHER_PIPELINE_NAME = "other-project/other-pipeline"


class BuildFate(StrEnum):
    """What the builds API knows of a signing's build."""

    REGISTERED = "registered"
    UNKNOWN = "unknown"
    OTHER_PIPELINE = "other_pipeline"


@dataclass(frozen=True)
class SimBuild:
    id: str
    service_id: str
    service_name: str
    created: datetime
    finished: datetime | None
    status: str = "success"

    def document(self) -> dict[str, Any]:
        """The build as Codefresh answers it (the fields its CLI reads, and a few more)."""
        project, _, name = self.service_name.rpartition("/")
        return {
            "id": self.id,
            "serviceId": self.service_id,
            "serviceName": self.service_name,
            "created": _millisecond_iso(self.created),
            "finished": _millisecond_iso(self.finished) if self.finished else None,
            "status": self.status,
            "progress": f"p{self.id}",
            "trigger": "build",
            "repoOwner": project or "codefresh",
            "repoName": name,
            "branchName": "main",
            "annotations": [],
        }


def _millisecond_iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class BuildRequest:
    at: float  # time.monotonic() at arrival
    workflow_id: str
    status: int


@dataclass(frozen=True)
class BuildsReply:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


def _json(status: int, document: Any, headers: Mapping[str, str] | None = None) -> BuildsReply:
    return BuildsReply(status, json.dumps(document).encode(), headers or {})


@dataclass
class SimBuildsApi:
    api_key: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    builds: dict[str, SimBuild] = field(default_factory=dict)
    raw_answers: dict[str, bytes] = field(default_factory=dict)
    requests: list[BuildRequest] = field(default_factory=list)
    outage_remaining: int = 0
    outage_retry_after: int | None = None

    def register(self, workflow_id: str, pipeline_id: str, pipeline_name: str, issued_at: datetime) -> SimBuild:
        build = SimBuild(
            workflow_id,
            pipeline_id,
            pipeline_name,
            issued_at - BUILD_STARTED_BEFORE,
            issued_at + BUILD_FINISHED_AFTER,
        )
        self.builds[workflow_id] = build
        return build

    def record_signing(self, identity: Mapping[str, Any], fate: BuildFate) -> None:
        """Register the build of a Codefresh signing just issued (`codefresh_identity`'s arguments) as
        `fate` says; its issuance is now (to the second, as the certificate's notBefore)."""
        if fate is BuildFate.UNKNOWN:
            return
        pipeline = (
            (identity["pipeline_id"], identity["pipeline_name"])
            if fate is BuildFate.REGISTERED
            else (OTHER_PIPELINE_ID, OTHER_PIPELINE_NAME)
        )
        self.register(identity["workflow_id"], *pipeline, utc_now())

    def forget(self, workflow_id: str) -> None:
        self.builds.pop(workflow_id, None)

    def move_to_pipeline(
        self, workflow_id: str, pipeline_id: str = OTHER_PIPELINE_ID, pipeline_name: str = OTHER_PIPELINE_NAME
    ) -> None:
        build = self.builds[workflow_id]
        self.builds[workflow_id] = SimBuild(
            build.id, pipeline_id, pipeline_name, build.created, build.finished, build.status
        )

    def set_raw_answer(self, workflow_id: str, body: bytes) -> None:
        """Answer `body` (200) for this build from now on."""
        self.raw_answers[workflow_id] = body

    def start_outage(self, count: int, retry_after: int | None = None) -> None:
        """The next `count` requests are answered 503, with `Retry-After: retry_after` when set."""
        self.outage_remaining = count
        self.outage_retry_after = retry_after

    def requests_for(self, workflow_id: str) -> list[BuildRequest]:
        return [request for request in self.requests if request.workflow_id == workflow_id]

    def answer(self, workflow_id: str, authorization: str | None) -> BuildsReply:
        reply = self._reply(workflow_id, authorization)
        self.requests.append(BuildRequest(time.monotonic(), workflow_id, reply.status))
        return reply

    def _reply(self, workflow_id: str, authorization: str | None) -> BuildsReply:
        if self.outage_remaining > 0:
            self.outage_remaining -= 1
            retry_after = self.outage_retry_after
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            return _json(503, {"status": 503, "message": "Service Unavailable"}, headers)
        if authorization is None or not secrets.compare_digest(authorization.encode(), self.api_key.encode()):
            return _json(401, {"status": 401, "message": "Unauthorized"})
        if workflow_id in self.raw_answers:
            return BuildsReply(200, self.raw_answers[workflow_id])
        build = self.builds.get(workflow_id)
        if build is None:
            return _json(404, {"status": 404, "message": f"Build {workflow_id} not found"})
        return _json(200, build.document())
