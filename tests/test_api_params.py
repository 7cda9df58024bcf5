"""Whatever a client sends the HTTP API, a bad parameter or header is a 400 with a JSON error and
nothing in the log: on SQLite and PostgreSQL, over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from monitor.api import ApiContext, create_app
from monitor.api_params import MAX_ID, encode_cursor
from monitor.metrics import Metrics
from monitor.store.repository import Store
from tests.seed import Spec, seed

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OTHER = Spec(account_id="77aa80b693a15c0f9c13ab99", account_name="other", verdict="unexpected_pipeline")


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[TestServer]:
    await seed(database_url, [Spec(), OTHER] * 6, alerts=[("impersonation", "critical")])
    async with Store.open(database_url) as store:
        server = TestServer(create_app(ApiContext(store, Metrics(), poll_interval=10.0, api_token=TOKEN)))
        await server.start_server()
        try:
            yield server
        finally:
            await server.close()


async def get(server: TestServer, path: str) -> tuple[int, object]:
    """GET `path` exactly as written (already percent-encoded), with the bearer token."""
    url = URL(f"http://{server.host}:{server.port}{path}", encoded=True)
    async with aiohttp.ClientSession() as http, http.get(url, headers=AUTH) as response:
        return response.status, await response.json(content_type=None)


TOO_BIG = str(MAX_ID + 1)
BAD_REQUESTS = [
    "/api/v1/signings?account=ac%00me",
    "/api/v1/signings?pipeline=%00",
    "/api/v1/alerts?kind=%00",
    f"/api/v1/signings?limit={'9' * 5000}",
    f"/api/v1/signings?cursor={'9' * 5000}",
    f"/api/v1/signings?cursor={base64.urlsafe_b64encode(b'9' * 5000).decode()}",
    f"/api/v1/signings?cursor={encode_cursor(MAX_ID + 1)}",
    f"/api/v1/signings/{TOO_BIG}",
    f"/api/v1/signings/{'9' * 5000}",
    "/api/v1/signings/%D9%A1%D9%A2",  # Arabic-Indic digits: decimal to Python, no id
    "/api/v1/signings/-1",
    "/api/v1/signings?limit=1001",
    "/api/v1/signings?limit=%EF%BC%91",  # a full-width 1
    "/api/v1/signings?limit=1&limit=2",
    "/api/v1/signings?account=acme&account=other",
    "/api/v1/signings?acount=acme",
    "/api/v1/signings?verdict=expectd",
    "/api/v1/alerts?kind=impersonaton",
    "/api/v1/alerts?status=done",
    "/api/v1/signings?since=yesterday",
    f"/api/v1/signings?since={'2' * 3000}",
    f"/api/v1/signings?account={'a' * 3000}",
    "/api/v1/signings?since=0001-01-01T00:00:00%2B14:00",
    "/api/v1/signings/1?verbose=1",
]


async def test_every_bad_parameter_is_a_400_with_a_json_error_and_no_log(
    api: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    for path in BAD_REQUESTS:
        status, body = await get(api, path)
        assert status == 400, (path, body)
        assert isinstance(body, dict) and isinstance(body["error"], str) and len(body["error"]) < 300, path
    assert [record for record in caplog.records if record.levelno >= logging.WARNING] == []


async def test_good_parameters_still_answer(api: TestServer) -> None:
    status, body = await get(api, "/api/v1/signings?account=other&verdict=unexpected_pipeline&limit=4&since=3650d")
    assert status == 200 and isinstance(body, dict)
    assert len(body["items"]) == 4 and {item["account_name"] for item in body["items"]} == {"other"}
    status, page = await get(api, f"/api/v1/signings?account=other&limit=4&cursor={body['next_cursor']}")
    assert status == 200 and [item["id"] for item in page["items"]] == [4, 2]  # type: ignore[index]
    assert (await get(api, f"/api/v1/signings/{MAX_ID}"))[0] == 404
    assert (await get(api, "/api/v1/signings?account="))[0] == 200  # empty means absent
    status, alerts = await get(api, "/api/v1/alerts?kind=impersonation&status=pending")
    created_at = alerts["items"][0]["created_at"]  # type: ignore[index]
    assert status == 200 and created_at.endswith("Z") and len(created_at) == 20


async def raw_request(server: TestServer, head: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


async def test_an_authorization_header_that_is_not_utf8_is_a_400(
    api: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    head = b"GET /api/v1/signings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0\xff\xfeken\r\n"
    head += b"Connection: close\r\n\r\n"
    status, body = await raw_request(api, head)
    assert status == 400 and b'"error"' in body and b"UTF-8" in body
    wrong = b"GET /api/v1/signings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nConnection: close\r\n\r\n"
    assert (await raw_request(api, wrong))[0] == 401
    right = head.replace(b"t0\xff\xfeken", TOKEN.encode())
    assert (await raw_request(api, right))[0] == 200
    assert [record for record in caplog.records if record.levelno >= logging.WARNING] == []
