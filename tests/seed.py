"""Rows written straight into a migrated database, for tests of what reads them (CLI, API, queries)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.store.db import upgrade
from monitor.store.models import LogRow, NewSigning, SigningRow
from monitor.store.repository import NewAlert, Store

LOG_URL = "https://rekor.example.org"
EPOCH = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@dataclass(frozen=True)
class Spec:
    """What a seeded signing is about; everything else is filled in, unique per index."""

    account_id: str = "628a80b693a15c0f9c13ab75"
    account_name: str = "acme"
    pipeline_id: str = "6612ad6384ef42f18019b7e9"
    pipeline_name: str = "app/release"
    verdict: str = "expected"
    issuer: str = "https://oidc.codefresh.io"
    chain_verified: bool = True


def new_signing(log_id: int, index: int, spec: Spec) -> NewSigning:
    when = EPOCH + timedelta(minutes=index)
    identity = f"https://g.codefresh.io/{spec.account_name}/{spec.pipeline_name}:{spec.account_id}/{spec.pipeline_id}"
    return NewSigning(
        log_id=log_id,
        log_url=LOG_URL,
        log_index=index,
        entry_uuid=hashlib.sha256(f"entry {index}".encode()).hexdigest(),
        integrated_time=when,
        signed_at=when,
        kind="hashedrekord",
        issuer=spec.issuer,
        identity=identity,
        provider="codefresh",
        account_id=spec.account_id,
        account_name=spec.account_name,
        pipeline_id=spec.pipeline_id,
        pipeline_name=spec.pipeline_name,
        run_url=f"https://g.codefresh.io/build/{index:024x}",
        artifact_digest="sha256:" + hashlib.sha256(f"artifact {index}".encode()).hexdigest(),
        certificate_sha256=hashlib.sha256(f"certificate {index}".encode()).hexdigest(),
        not_before=when - timedelta(seconds=2),
        chain_verified=spec.chain_verified,
        verdict=spec.verdict,
        extensions=json.dumps({"build_config_uri": f"https://g.codefresh.io/api/pipelines/{spec.pipeline_id}"}),
    )


def signing_row(log_id: int, index: int, spec: Spec) -> SigningRow:
    values = new_signing(log_id, index, spec)
    return SigningRow(**{field.name: getattr(values, field.name) for field in fields(values)})


async def seed(url: str, specs: Sequence[Spec], alerts: Sequence[tuple[str, str]] = ()) -> None:
    """Migrate `url`, then store one signing per spec (log index = position, in id order) and one
    alert per (kind, severity), each with a pending delivery to a sink named `hook`."""
    await upgrade(url)
    async with Store.open(url) as store:
        async with store.sessions() as session, session.begin():
            log = LogRow(url=LOG_URL, api="v1", origin="rekor.example.org - 1", tree_id="1")
            session.add(log)
            await session.flush()
            session.add_all(signing_row(log.id, index, spec) for index, spec in enumerate(specs))
        for number, (kind, severity) in enumerate(alerts):
            alert = NewAlert(f"{kind}:{number}", kind, severity, f"alert {number}: {kind}", _payload())
            await store.raise_alert(alert, [("hook", "info")])


def _payload() -> dict[str, Any]:
    return {"signing": None, "log": {"url": LOG_URL, "origin": "rekor.example.org - 1"}}
