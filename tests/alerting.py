"""What the alert tests share: real local HTTP receivers that record what they get, alerts raised in
a real store, and the sample signing they carry."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select, update

from monitor.alerts.dispatcher import outbox_sinks
from monitor.config import AlertSink
from monitor.store import outbox
from monitor.store.db import upgrade
from monitor.store.models import AlertDeliveryRow, AlertRow, SigningRow
from monitor.store.repository import NewAlert, Store

LOG_URL = "https://rekor.example.test"
LOG = {"url": LOG_URL, "origin": "rekor.example.test - 1193050959916656506", "api": "v1"}
WEBHOOK_SECRET = "whsec-0123456789abcdef"
ROUTING_KEY = "R0UTING0KEY0abcdef0123456789"
SLACK_TOKEN_PATH = "/services/T0000SECRET/B0000SECRET/XXXXXXXXSLACKTOKEN"

Behaviour = Callable[["Received"], Awaitable[web.StreamResponse]]


def signing_object(**changes: Any) -> dict[str, Any]:
    row = SigningRow(
        id=7,
        log_id=1,
        log_url=LOG_URL,
        log_index=1234,
        entry_uuid="24296fb24b8ad77a" + "0" * 64,
        integrated_time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        signed_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        kind="hashedrekord",
        issuer="https://oidc.codefresh.io",
        identity="https://g.codefresh.io/acme/app/release:628a80b693a15c0f9c13ab75/6612ad6384ef42f18019b7e9",
        provider="codefresh",
        account_id="628a80b693a15c0f9c13ab75",
        account_name="acme",
        pipeline_id="6612ad6384ef42f18019b7e9",
        pipeline_name="app/release",
        run_url="https://g.codefresh.io/build/65f0c0ffee",
        source_repository="https://github.com/acme/app",
        source_ref="refs/heads/main",
        artifact_digest="sha256:" + "ab" * 32,
        certificate_sha256="cd" * 32,
        not_before=datetime(2026, 1, 2, 3, 4, 0, tzinfo=UTC),
        chain_verified=True,
        verdict="unexpected_pipeline",
        extensions=json.dumps({"build_config_uri": "https://g.codefresh.io/api/pipelines/6612"}),
    )
    for name, value in changes.items():
        setattr(row, name, value)
    return row.as_object()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def delivery_id(self) -> str | None:
        return self.headers.get("X-Rekorwatch-Delivery")


async def ok(_: Received) -> web.StreamResponse:
    return web.Response(status=200, text="ok")


@dataclass
class Receiver:
    """A real HTTP server that records every request and answers as `behaviour` says."""

    behaviour: Behaviour = ok
    requests: list[Received] = field(default_factory=list)
    server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(request.path_qs, dict(request.headers), await request.read())
        self.requests.append(received)
        response = await self.behaviour(received)
        received.status = response.status
        return response

    def url(self, path: str = "/hook") -> str:
        assert self.server is not None
        return str(self.server.make_url(path))


@asynccontextmanager
async def running_receiver(behaviour: Behaviour = ok) -> AsyncIterator[Receiver]:
    receiver = Receiver(behaviour)
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", receiver.handle)
    receiver.server = TestServer(app)
    await receiver.server.start_server()
    try:
        yield receiver
    finally:
        await receiver.server.close()


async def open_store(url: str) -> Store:
    await upgrade(url)
    return Store.open(url)


def sink(**settings: Any) -> AlertSink:
    return AlertSink.model_validate(settings)


async def raise_alert(
    store: Store,
    sinks: list[AlertSink],
    key: str = "unexpected_pipeline:1234",
    *,
    kind: str = "unexpected_pipeline",
    severity: str = "critical",
    signing: dict[str, Any] | None = None,
    summary: str = "unexpected pipeline app/release of acme signed",
    log: dict[str, Any] | None = None,
    **extra: object,
) -> AlertRow:
    payload = {"signing": signing, "log": LOG if log is None else log, **extra}
    new = NewAlert(key, kind, severity, summary, payload, signing_id=signing["id"] if signing else None)
    assert await store.raise_alert(new, sinks=outbox_sinks(sinks))
    [row] = [alert for alert in await store.alerts() if alert.dedup_key == key]
    return row


async def resolve(store: Store, alert: AlertRow, at: datetime) -> datetime:
    """What the tail does when a lasting condition clears: set the alert's resolved_at. Returns it as
    stored."""
    async with store.sessions.begin() as session:
        await session.execute(update(AlertRow).where(AlertRow.id == alert.id).values(resolved_at=at))
    async with store.sessions() as session:
        stored = await session.scalar(select(AlertRow.resolved_at).where(AlertRow.id == alert.id))
    assert stored is not None
    return stored


async def deliveries(store: Store, alert: AlertRow) -> dict[str, AlertDeliveryRow]:
    rows = (await outbox.deliveries_for(store, [alert.id]))[alert.id]
    return {row.sink: row for row in rows}


async def wait_until(condition: Callable[[], bool | Awaitable[bool]], seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        assert asyncio.get_running_loop().time() < deadline, f"still not true after {seconds}s"
        await asyncio.sleep(0.02)
