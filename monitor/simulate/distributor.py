"""A transparency-dev distributor for the simulator's log: its honest checkpoints, cosigned by its witnesses.

The API of transparency-dev/distributor (`api/http.go`, `cmd/internal/http/server.go`):
- GET /distributor/v0/logs: a JSON array of the log ids, sorted (Content-Type `text/json`); a log id
  is hex SHA-256("o:" ‖ origin), one per shard of a v1 log.
- GET /distributor/v0/logs/<log id>/checkpoint.<N>: the newest checkpoint with at least N witness
  signatures (`text/plain`): the log's current checkpoint with the lines of the witnesses that cosign
  validly (a distributor verifies what it stores, so bad cosignatures never reach it). 404 when fewer
  than N witnesses cosign; 400 for N outside 1..100 or an unknown log id, with Go's plain-text errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web

from monitor.simulate.log import Shard, SimLog
from monitor.simulate.witnesses import WitnessPanel
from monitor.tlog.note import origin_log_id

LOGS_PATH = "/distributor/v0/logs"
MAX_SIGNATURES = 100


@dataclass(frozen=True)
class Distributor:
    log: SimLog
    witnesses: WitnessPanel

    def shards_by_id(self) -> dict[str, Shard]:
        return {origin_log_id(self.log.origin(shard)): shard for shard in self.log.shards}

    def checkpoint(self, log_id: str, signatures: int) -> str | None:
        """The shard's current checkpoint cosigned validly; None when fewer than `signatures` witnesses cosign.

        Raises KeyError for an unknown log id.
        """
        shard = self.shards_by_id()[log_id]
        if self.witnesses.valid_cosigners < signatures:
            return None
        return self.witnesses.cosigned(self.log.checkpoint(shard), valid_only=True)


DISTRIBUTOR = web.AppKey("distributor", Distributor)


def go_http_error(status: int, message: str) -> web.Response:
    """What Go's http.Error writes."""
    return web.Response(status=status, text=f"{message}\n", content_type="text/plain")


async def get_logs(request: web.Request) -> web.Response:
    log_ids = sorted(request.app[DISTRIBUTOR].shards_by_id())
    return web.Response(text=json.dumps(log_ids), content_type="text/json")


async def get_checkpoint_n(request: web.Request) -> web.Response:
    signatures = int(request.match_info["signatures"])
    if not 0 < signatures <= MAX_SIGNATURES:
        return go_http_error(400, "failed to get checkpoint")
    try:
        checkpoint = request.app[DISTRIBUTOR].checkpoint(request.match_info["log_id"], signatures)
    except KeyError:
        return go_http_error(400, "failed to get checkpoint")
    if checkpoint is None:
        return go_http_error(404, "failed to get checkpoint")
    return web.Response(text=checkpoint, content_type="text/plain")


def add_distributor_routes(app: web.Application, distributor: Distributor) -> None:
    app[DISTRIBUTOR] = distributor
    app.router.add_get(LOGS_PATH, get_logs)
    app.router.add_get(LOGS_PATH + "/{log_id:[a-zA-Z0-9-]+}/checkpoint.{signatures:[0-9]{1,9}}", get_checkpoint_n)
