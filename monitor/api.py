"""The HTTP API on `server.listen` (aiohttp): metrics, health, and the query API over the store.

It only reads: the store (signings, alerts, logs) and the metrics registry. /api/* needs
`Authorization: Bearer <server.api_token>` when a token is configured. Whatever a client sends is
checked by monitor/api_params.py first: a bad parameter or header is a 400 with a JSON error, never
a 500 nor a traceback in the log.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from monitor import __version__
from monitor.api_params import MAX_ID, BadRequest, Params, bearer_token, decimal, encode_cursor
from monitor.contract import ALERT_STATUSES, AlertKind, LogState, Verdict
from monitor.health import FollowerHealth
from monitor.metrics import Metrics
from monitor.report import alert_objects, checkpoint_object, log_objects
from monitor.store.models import LogRow
from monitor.store.queries import (
    AlertFilter,
    CertificateFilter,
    SigningFilter,
    alerts_page,
    certificates_page,
    signing_by_id,
    signings_page,
)
from monitor.store.repository import Store

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ApiContext:
    store: Store
    metrics: Metrics
    poll_interval: float
    api_token: str | None = None
    health: Callable[[], Mapping[str, FollowerHealth]] = dict
    """Each followed log's state as the daemon knows it now (it may differ from the database's when
    the database is what fails)."""


CONTEXT = web.AppKey("context", ApiContext)


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    context = request.app[CONTEXT]
    try:
        if request.path.startswith("/api/") and context.api_token and not _authorized(request, context.api_token):
            return web.json_response(
                {"error": "missing or wrong bearer token"}, status=401, headers={"WWW-Authenticate": "Bearer"}
            )
        return await handler(request)
    except BadRequest as exc:
        return json_error(400, str(exc))


def _authorized(request: web.Request, token: str) -> bool:
    given = bearer_token(request.headers.get("Authorization"))
    return given is not None and hmac.compare_digest(given, token.encode())


# parameters ------------------------------------------------------------------------------------

SIGNING_PARAMS = ("issuer", "account", "pipeline", "verdict", "since", "until", "limit", "cursor")
ALERT_PARAMS = ("status", "kind", "limit", "cursor")
CERTIFICATE_PARAMS = (*SIGNING_PARAMS, "logged")


def _identity_filter(params: Params) -> dict[str, Any]:
    """The filters signings and certificates share, as keyword arguments of either filter."""
    return {
        "issuers": params.texts("issuer"),
        "accounts": params.texts("account"),
        "pipelines": params.texts("pipeline"),
        "verdicts": params.choices("verdict", Verdict),
        "since": params.time("since"),
        "until": params.time("until"),
    }


# handlers --------------------------------------------------------------------------------------


async def metrics(request: web.Request) -> web.Response:
    body = request.app[CONTEXT].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def landing(request: web.Request) -> web.Response:
    links = "".join(f'<li><a href="{path}">{path}</a> {what}</li>' for path, what in LANDING_LINKS)
    body = f"<!doctype html><title>rekorwatch</title><h1>rekorwatch {__version__}</h1><ul>{links}</ul>"
    return web.Response(text=body, content_type="text/html")


LANDING_LINKS = (
    ("/metrics", "Prometheus metrics"),
    ("/healthz", "liveness, and each log's state"),
    ("/readyz", "readiness, with the reason when not ready"),
    ("/api/v1/logs", "the logs and their state"),
    ("/api/v1/signings", "the signing history"),
    ("/api/v1/alerts", "alerts and their deliveries"),
    ("/api/v1/certificates", "certificates issued to watched identities (Fulcio's CT log)"),
    ("/api/v1/checkpoints", "the newest verified checkpoint of every log (gossip)"),
)


async def healthz(request: web.Request) -> web.Response:
    """200 while the process runs (restarting it would not help a log: its follower retries on its
    own); the body says which logs are not ok, and why."""
    logs = {url: _health_view(health) for url, health in request.app[CONTEXT].health().items()}
    degraded = any(view["state"] not in (None, LogState.OK) for view in logs.values())
    return web.json_response({"status": "degraded" if degraded else "ok", "logs": logs})


def _health_view(health: FollowerHealth) -> dict[str, Any]:
    return {"state": health.state, "detail": health.detail, "idle_seconds": round(health.idle_seconds(), 1)}


async def readyz(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    try:
        rows = await context.store.logs()
    except Exception as exc:  # any database failure means not ready
        return web.json_response({"ready": False, "reason": f"database: {type(exc).__name__}"}, status=503)
    reason = not_ready_reason(rows, context.health(), context.poll_interval, datetime.now(UTC))
    if reason:
        return web.json_response({"ready": False, "reason": reason}, status=503)
    return web.json_response({"ready": True})


def not_ready_reason(
    rows: list[LogRow], healths: Mapping[str, FollowerHealth], poll_interval: float, now: datetime
) -> str | None:
    for url, health in healths.items():
        if health.state in (LogState.ERROR, LogState.UNREACHABLE):
            return f"log {url} is {health.state}: {health.detail}"
        if not any(row.url == url for row in rows):
            return f"log {url} has not verified a checkpoint yet"
    followed = [row for row in rows if not row.retired]
    if not followed:
        return "no log has verified a checkpoint yet"
    fresh = now - timedelta(seconds=3 * poll_interval)
    for row in followed:
        if row.state == LogState.INCONSISTENT:
            return f"log {row.url} is inconsistent"
        if row.last_checkpoint_at is None or row.last_checkpoint_at < fresh:
            return f"log {row.url} has not verified a checkpoint within {3 * poll_interval:g}s"
    return None


async def list_signings(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    params = Params(request.query, SIGNING_PARAMS)
    rows, before = await signings_page(
        context.store, SigningFilter(**_identity_filter(params)), limit=params.limit(), before_id=params.cursor()
    )
    return web.json_response({"items": [row.as_object() for row in rows], "next_cursor": encode_cursor(before)})


async def get_signing(request: web.Request) -> web.Response:
    Params(request.query, ())
    signing_id = decimal(request.match_info["id"], "a signing id", 1, MAX_ID)
    row = await signing_by_id(request.app[CONTEXT].store, signing_id)
    if row is None:
        return json_error(404, f"no signing {signing_id}")
    return web.json_response(row.as_object())


async def list_certificates(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    params = Params(request.query, CERTIFICATE_PARAMS)
    logged = params.choice("logged", ("true", "false"))
    where = CertificateFilter(**_identity_filter(params), logged=None if logged is None else logged == "true")
    rows, before = await certificates_page(context.store, where, limit=params.limit(), before_id=params.cursor())
    return web.json_response({"items": [row.as_object() for row in rows], "next_cursor": encode_cursor(before)})


async def list_alerts(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    params = Params(request.query, ALERT_PARAMS)
    where = AlertFilter(status=params.choice("status", ALERT_STATUSES), kinds=params.choices("kind", AlertKind))
    rows, before = await alerts_page(context.store, where, limit=params.limit(), before_id=params.cursor())
    items = await alert_objects(context.store, rows)
    return web.json_response({"items": items, "next_cursor": encode_cursor(before)})


async def list_logs(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    return web.json_response(log_objects(await context.store.logs(), context.health()))


async def list_checkpoints(request: web.Request) -> web.Response:
    """The newest verified checkpoint of every log and shard: what peers gossip with."""
    rows = await request.app[CONTEXT].store.logs()
    return web.json_response({"items": [checkpoint_object(row) for row in rows if row.last_checkpoint]})


def create_app(context: ApiContext) -> web.Application:
    app = web.Application(middlewares=[errors_and_auth])
    app[CONTEXT] = context
    app.router.add_get("/", landing)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/v1/signings", list_signings)
    app.router.add_get("/api/v1/signings/{id}", get_signing)
    app.router.add_get("/api/v1/alerts", list_alerts)
    app.router.add_get("/api/v1/logs", list_logs)
    app.router.add_get("/api/v1/checkpoints", list_checkpoints)
    app.router.add_get("/api/v1/certificates", list_certificates)
    return app


async def start_api(context: ApiContext, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(create_app(context), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("api_listening", listen=f"{host}:{port}")
    return runner
