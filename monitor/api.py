"""The HTTP API on `server.listen` (aiohttp): metrics, health, and the query API over the store.

It only reads: the store (signings, alerts, logs) and the metrics registry. /api/* needs
`Authorization: Bearer <server.api_token>` when a token is configured. Bad query parameters are a
400 with a JSON error, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from monitor import __version__
from monitor.contract import ALERT_STATUSES, LogState
from monitor.health import FollowerHealth
from monitor.metrics import Metrics
from monitor.report import VERDICTS, alert_objects, checkpoint_object, log_objects, parse_time
from monitor.store.models import LogRow
from monitor.store.queries import MAX_LIMIT, AlertFilter, SigningFilter, alerts_page, signing_by_id, signings_page
from monitor.store.repository import Store

log = structlog.get_logger(__name__)

DEFAULT_LIMIT = 100
MAX_ID = 2**63 - 1  # ids are SQL BIGINTs at most: a larger one would be a database error, not a 400
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


class BadRequest(Exception):
    pass


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    context = request.app[CONTEXT]
    if request.path.startswith("/api/") and context.api_token and not _authorized(request, context.api_token):
        return web.json_response(
            {"error": "missing or wrong bearer token"}, status=401, headers={"WWW-Authenticate": "Bearer"}
        )
    try:
        return await handler(request)
    except BadRequest as exc:
        return json_error(400, str(exc))


def _authorized(request: web.Request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


# parameters ------------------------------------------------------------------------------------


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdecimal() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def _cursor(request: web.Request) -> int | None:
    raw = request.query.get("cursor")
    if not raw:
        return None
    try:
        value = base64.urlsafe_b64decode(raw.encode() + b"==").decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest("cursor is not one this API gave out") from None
    if not value.isdecimal() or int(value) > MAX_ID:
        raise BadRequest("cursor is not one this API gave out")
    return int(value)


def encode_cursor(before_id: int | None) -> str | None:
    return None if before_id is None else base64.urlsafe_b64encode(str(before_id).encode()).decode().rstrip("=")


def _time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return parse_time(raw)
    except ValueError as exc:
        raise BadRequest(f"{name}: {exc}") from None


def _choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.query.get(name) or None
    if value is not None and value not in allowed:
        raise BadRequest(f"{name} must be one of {', '.join(allowed)}")
    return value


def _signing_filter(request: web.Request) -> SigningFilter:
    return SigningFilter(
        issuer=request.query.get("issuer") or None,
        account=request.query.get("account") or None,
        pipeline=request.query.get("pipeline") or None,
        verdict=_choice(request, "verdict", VERDICTS),
        since=_time(request, "since"),
        until=_time(request, "until"),
    )


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
    rows, before = await signings_page(
        context.store, _signing_filter(request), limit=_limit(request), before_id=_cursor(request)
    )
    return web.json_response({"items": [row.as_object() for row in rows], "next_cursor": encode_cursor(before)})


async def get_signing(request: web.Request) -> web.Response:
    raw = request.match_info["id"]
    if not raw.isdecimal() or int(raw) > MAX_ID:
        raise BadRequest("a signing id is a positive integer")
    row = await signing_by_id(request.app[CONTEXT].store, int(raw))
    if row is None:
        return json_error(404, f"no signing {raw}")
    return web.json_response(row.as_object())


async def list_alerts(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    where = AlertFilter(status=_choice(request, "status", ALERT_STATUSES), kind=request.query.get("kind") or None)
    rows, before = await alerts_page(context.store, where, limit=_limit(request), before_id=_cursor(request))
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
    return app


async def start_api(context: ApiContext, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(create_app(context), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("api_listening", listen=f"{host}:{port}")
    return runner
