"""The Codefresh build check (issue 14): which signings are checked, the client against the simulator's
builds API over real HTTP (rate limit, Retry-After, cache, outage, refused key, unexpected shapes), the
judgement rows, key hygiene, the config fields and `inspect --check-build` end to end.

Signings are made by the simulator with its CA and read back through the daemon's own analysis
(`analyse_entry` with the chain verifier of the simulator's trusted_root.json): nothing is mocked.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from monitor.analysis import Finding, analyse_entry
from monitor.codefresh_api import (
    Build,
    BuildCheckTarget,
    BuildsClient,
    BuildsClients,
    ClientOptions,
    Found,
    NotFound,
    Unauthorized,
    Unavailable,
    build_check_target,
    check_build,
    judge_build,
    parse_build,
    workflow_id_of,
)
from monitor.codefresh_api.client import REQUESTS_PER_SECOND
from monitor.config import ConfigError, WatchSettings, parse_settings
from monitor.contract import AlertKind, BuildResult, Verdict
from monitor.identity import identify
from monitor.identity.fulcio import ChainVerifier, parse_fulcio_certificate
from monitor.policy import Policy
from monitor.simulate.builds import BUILD_FINISHED_AFTER, BUILD_STARTED_BEFORE, OTHER_PIPELINE_ID, BuildFate
from monitor.simulate.ca import codefresh_identity
from monitor.simulate.server import RunningSimulator
from monitor.simulate.synthetic import FULCIO_TEST_CODEFRESH
from monitor.tlog.http import RetryPolicy
from monitor.trust import load_trust_root

ACCOUNT_ID = FULCIO_TEST_CODEFRESH["account_id"]
PIPELINE_ID = FULCIO_TEST_CODEFRESH["pipeline_id"]
PLATFORM = "https://g.codefresh.io"
WORKTREE = Path(__file__).resolve().parents[1]
# quick retries and no rate limit, for the tests that are not about them
FAST = ClientOptions(retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05), per_second=1000.0)


def watch_of(*accounts: dict[str, Any]) -> WatchSettings:
    return WatchSettings.model_validate({"codefresh": list(accounts)})


def our_account(sim: RunningSimulator, **overrides: Any) -> dict[str, Any]:
    """Fulcio's test account, every pipeline allowed, with the simulator's key and builds API."""
    account = {
        "account_id": ACCOUNT_ID,
        "account_name": FULCIO_TEST_CODEFRESH["account_name"],
        "pipelines": "*",
        "api_key": sim.simulator.builds.api_key,
        "api_url": sim.url,
    }
    return account | overrides


def finding_at(sim: RunningSimulator, index: int, watch: WatchSettings) -> Finding:
    """The daemon's analysis of the signing at `index`: identity, chain check, verdict."""
    location = sim.log.locate(index)
    assert location is not None
    chains = ChainVerifier(load_trust_root(str(sim.trust_files.trusted_root)))
    (finding,) = analyse_entry(location.shard.bodies[location.index], Policy(watch), chains).findings
    return finding


def sign(sim: RunningSimulator, watch: WatchSettings, **identity: Any) -> tuple[Finding, BuildCheckTarget | None]:
    """A Codefresh signing by the simulator (Fulcio's test pipeline unless overridden) and its check target."""
    finding = finding_at(sim, sim.simulator.append_codefresh(**(FULCIO_TEST_CODEFRESH | identity)), watch)
    return finding, build_check_target(watch, finding.identity, finding.judgement.verdict)


# -- which signings are checked --------------------------------------------------------------------


async def test_a_watched_accounts_own_signings_are_checked_and_never_an_impersonators(sim: RunningSimulator) -> None:
    watch = watch_of(our_account(sim, pipelines=[{"id": PIPELINE_ID, "name": "oidc-test/oidc-test-2"}]))
    expected, target = sign(sim, watch, workflow_id="65e6ebe0bfbfa1782876165e")
    assert expected.judgement.verdict is Verdict.EXPECTED
    assert target == BuildCheckTarget(ACCOUNT_ID, PLATFORM, "65e6ebe0bfbfa1782876165e", PIPELINE_ID)
    renamed, target = sign(sim, watch, pipeline_name="oidc-test/renamed")
    assert renamed.judgement.verdict is Verdict.RENAMED and target is not None
    unexpected, target = sign(sim, watch, pipeline_id="66aa00000000000000000001")
    assert unexpected.judgement.verdict is Verdict.UNEXPECTED_PIPELINE
    assert target is not None and target.pipeline_id == "66aa00000000000000000001"

    same_name, none_1 = sign(sim, watch, account_id="66bb00000000000000000002")
    other_platform, none_2 = sign(sim, watch, platform_url="https://codefresh.evil.example")
    forged = finding_at(sim, sim.simulator.append_forged(**FULCIO_TEST_CODEFRESH, workflow_id="w1"), watch)
    assert same_name.judgement.verdict is other_platform.judgement.verdict is Verdict.IMPERSONATION
    assert forged.judgement.verdict is Verdict.UNTRUSTED
    assert none_1 is None and none_2 is None
    assert build_check_target(watch, forged.identity, forged.judgement.verdict) is None
    assert sim.simulator.builds.requests == []  # deciding asks nothing


async def test_no_key_no_check_and_keys_stay_with_their_account(sim: RunningSimulator) -> None:
    other = {"account_id": "66cc00000000000000000003", "pipelines": "*", "api_key": "other-accounts-key"}
    without_key = watch_of(our_account(sim, api_key=""), other)
    _, target = sign(sim, without_key)
    assert target is None
    with_keys = watch_of(our_account(sim), other)
    _, target = sign(sim, with_keys)
    assert target is not None and target.account_id == ACCOUNT_ID
    async with aiohttp.ClientSession() as session:
        clients = BuildsClients(with_keys, session)
        mine = clients.client_for(ACCOUNT_ID, PLATFORM + "/")
        assert mine is not None and mine.api_url == sim.url
        assert clients.client_for(ACCOUNT_ID, "https://codefresh.evil.example") is None
        assert clients.client_for("66cc00000000000000000003", PLATFORM) is not None
        assert clients.client_for("66dd00000000000000000004", PLATFORM) is None


@pytest.mark.parametrize(
    "run_url",
    [
        "https://g.codefresh.io/build/../../api/user",
        "https://g.codefresh.io/build/a/b",
        "https://g.codefresh.io/build/a?b=c",
        "https://g.codefresh.io/build/a#b",
        "https://g.codefresh.io/build/%2e%2e",
        "https://g.codefresh.io/build/",
        "https://g.codefresh.io/build/" + "a" * 65,
        "https://g.codefresh.io/build/é",
        "https://g.codefresh.io/build/a b",
        "https://g.codefresh.io/build/a\nb",
        "https://g.codefresh.io.evil.example/build/abc",
        "https://g.codefresh.io/builds/abc",
        None,
    ],
)
def test_hostile_workflow_ids_are_not_checked(run_url: str | None) -> None:
    assert workflow_id_of(run_url, PLATFORM) is None


def test_workflow_ids_that_are_checked() -> None:
    assert workflow_id_of("https://g.codefresh.io/build/65e6ebe0bfbfa1782876165e", PLATFORM + "/") == (
        "65e6ebe0bfbfa1782876165e"
    )
    assert workflow_id_of("https://g.codefresh.io/build/" + "A_-9" * 16, PLATFORM) == "A_-9" * 16


@pytest.mark.parametrize(
    ("workflow_id", "verdict"),
    [
        ("..", Verdict.EXPECTED),  # /api/builds/.. would be /api/
        ("a%2fb", Verdict.EXPECTED),
        ("x" * 65, Verdict.EXPECTED),
        ("../../api/user", Verdict.UNTRUSTED),  # its 1.21 disagrees with its SAN
    ],
)
async def test_a_certificate_with_a_hostile_build_url_asks_nothing(
    sim: RunningSimulator, http: aiohttp.ClientSession, workflow_id: str, verdict: Verdict
) -> None:
    """Fulcio would never issue these; a compromised issuer could. The URL fits no workflow id."""
    identity_claims = codefresh_identity(**FULCIO_TEST_CODEFRESH, workflow_id=workflow_id)
    identity = identify(parse_fulcio_certificate(sim.ca.issue(identity_claims).der))
    watch = watch_of(our_account(sim))
    judgement = Policy(watch).judge(identity, chain_verified=True)
    assert judgement is not None and judgement.verdict is verdict
    assert build_check_target(watch, identity, Verdict.EXPECTED) is None
    client = BuildsClients(watch, http).client_for(ACCOUNT_ID, PLATFORM)
    assert client is not None
    with pytest.raises(ValueError, match="not a workflow id"):
        await client.get_build(workflow_id)
    assert sim.simulator.builds.requests == []


# -- the judgement rows, over HTTP -----------------------------------------------------------------


async def checked(sim: RunningSimulator, http: aiohttp.ClientSession, **identity: Any) -> Any:
    watch = watch_of(our_account(sim))
    finding, target = sign(sim, watch, **identity)
    assert target is not None
    return await check_build(BuildsClients(watch, http, FAST), target, finding.certificate.not_before)


async def test_a_build_of_the_pipeline_in_its_run_is_verified(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    check = await checked(sim, http, workflow_id="65e6ebe0bfbfa1782876165e")
    assert (check.result, check.build_verified, check.alert_kind) == (BuildResult.VERIFIED, True, None)
    build = sim.simulator.builds.builds["65e6ebe0bfbfa1782876165e"]
    assert (check.status, check.created, check.finished) == ("success", build.created, build.finished)
    assert build.finished - build.created == BUILD_STARTED_BEFORE + BUILD_FINISHED_AFTER
    (request,) = sim.simulator.builds.requests
    assert (request.workflow_id, request.status) == ("65e6ebe0bfbfa1782876165e", 200)


async def test_an_unknown_build_is_not_found(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    check = await checked(sim, http, build=BuildFate.UNKNOWN)
    assert (check.result, check.build_verified, check.alert_kind) == (
        BuildResult.NOT_FOUND,
        False,
        AlertKind.BUILD_NOT_FOUND,
    )
    assert check.status is None and not check.retry_later


async def test_a_build_of_another_pipeline_is_a_mismatch(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    check = await checked(sim, http, build=BuildFate.OTHER_PIPELINE)
    assert (check.result, check.build_verified, check.alert_kind) == (
        BuildResult.MISMATCH,
        False,
        AlertKind.BUILD_MISMATCH,
    )
    assert OTHER_PIPELINE_ID in check.reason and PIPELINE_ID in check.reason and check.status == "success"


async def test_a_certificate_issued_outside_the_run_is_a_mismatch(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    watch = watch_of(our_account(sim))
    finding, target = sign(sim, watch, workflow_id="aa00000000000000000000aa")
    assert target is not None
    # the same build, as if it had run an hour before the certificate was issued
    sim.simulator.builds.register("aa00000000000000000000aa", PIPELINE_ID, "p", datetime.now(UTC) - timedelta(hours=1))
    check = await check_build(BuildsClients(watch, http, FAST), target, finding.certificate.not_before)
    assert (check.result, check.alert_kind) == (BuildResult.MISMATCH, AlertKind.BUILD_MISMATCH)
    assert "outside the build's run" in check.reason


NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
CREATED = NOW - timedelta(hours=1)
FINISHED = CREATED + timedelta(minutes=20)


def found(**fields: Any) -> Found:
    build = {"id": "w", "service_id": PIPELINE_ID, "service_name": "p/q", "created": CREATED, "finished": FINISHED}
    return Found(Build(**(build | {"status": "success"} | fields)))


@pytest.mark.parametrize(
    ("answer", "not_before", "result", "verified", "kind"),
    [
        (found(), CREATED + timedelta(minutes=1), BuildResult.VERIFIED, True, None),
        (found(), CREATED - timedelta(minutes=5), BuildResult.VERIFIED, True, None),
        (found(), FINISHED + timedelta(minutes=5), BuildResult.VERIFIED, True, None),
        (found(), CREATED - timedelta(minutes=5, seconds=1), BuildResult.MISMATCH, False, AlertKind.BUILD_MISMATCH),
        (found(), FINISHED + timedelta(minutes=5, seconds=1), BuildResult.MISMATCH, False, AlertKind.BUILD_MISMATCH),
        (found(finished=None), NOW + timedelta(minutes=4), BuildResult.VERIFIED, True, None),  # running: until now
        (found(finished=None), NOW + timedelta(minutes=6), BuildResult.MISMATCH, False, AlertKind.BUILD_MISMATCH),
        (found(service_id="other"), CREATED, BuildResult.MISMATCH, False, AlertKind.BUILD_MISMATCH),
        (found(service_id=None), CREATED, BuildResult.ERROR, None, None),
        (found(created=None), CREATED, BuildResult.ERROR, None, None),
        (NotFound(), CREATED, BuildResult.NOT_FOUND, False, AlertKind.BUILD_NOT_FOUND),
        (Unauthorized(401), CREATED, BuildResult.ERROR, None, None),
        (Unauthorized(403), CREATED, BuildResult.ERROR, None, None),
        (Unavailable("HTTP 503"), CREATED, BuildResult.ERROR, None, None),
    ],
)
def test_judgement_rows(
    answer: Any, not_before: datetime, result: BuildResult, verified: bool | None, kind: AlertKind | None
) -> None:
    check = judge_build(answer, PIPELINE_ID, not_before, NOW)
    assert (check.result, check.build_verified, check.alert_kind) == (result, verified, kind)
    assert check.reason and "\n" not in check.reason
    assert check.retry_later is isinstance(answer, Unauthorized | Unavailable)


# -- the client: refused key, retries, outage, rate, cache, shapes -----------------------------------


def client_of(
    sim: RunningSimulator, http: aiohttp.ClientSession, options: ClientOptions = FAST, **kw: Any
) -> BuildsClient:
    client = BuildsClients(watch_of(our_account(sim, **kw)), http, options).client_for(ACCOUNT_ID, PLATFORM)
    assert client is not None
    return client


async def test_a_refused_key_is_an_error_logged_once_per_account(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    sim.simulator.append_codefresh(**FULCIO_TEST_CODEFRESH, workflow_id="ab00000000000000000000ab")
    client = client_of(sim, http, api_key="not-the-simulators-key")
    with capture_logs() as logs:
        first = await client.get_build("ab00000000000000000000ab")
        second = await client.get_build("ab00000000000000000000ab")
    assert first == second == Unauthorized(401)
    assert len(sim.simulator.builds.requests) == 2  # not cached, not retried
    refusals = [entry for entry in logs if entry["event"] == "codefresh_api_key_refused"]
    assert len(refusals) == 1 and refusals[0]["account_id"] == ACCOUNT_ID and refusals[0]["log_level"] == "error"


async def test_retry_after_is_honoured(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    sim.simulator.append_codefresh(**FULCIO_TEST_CODEFRESH, workflow_id="ac00000000000000000000ac")
    sim.simulator.builds.start_outage(1, retry_after=1)
    answer = await client_of(sim, http).get_build("ac00000000000000000000ac")
    assert isinstance(answer, Found)
    first, second = sim.simulator.builds.requests
    assert (first.status, second.status) == (503, 200)
    assert second.at - first.at >= 0.95  # the backoff alone would wait at most 0.01 s


async def test_a_long_retry_after_is_left_to_the_caller(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    sim.simulator.builds.start_outage(5, retry_after=600)
    answer = await client_of(sim, http).get_build("ad00000000000000000000ad")
    assert isinstance(answer, Unavailable) and answer.retry_after == 600
    check = judge_build(answer, PIPELINE_ID, NOW, NOW)
    assert (check.result, check.retry_later, check.retry_after) == (BuildResult.ERROR, True, 600)
    assert len(sim.simulator.builds.requests) == 1


async def test_an_outage_then_recovery(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    watch = watch_of(our_account(sim))
    finding, target = sign(sim, watch)
    assert target is not None
    clients = BuildsClients(watch, http, FAST)
    sim.simulator.builds.start_outage(5)
    during = await check_build(clients, target, finding.certificate.not_before)
    assert during is not None
    assert (during.result, during.build_verified, during.alert_kind, during.retry_later) == (
        BuildResult.ERROR,
        None,
        None,
        True,
    )
    assert "HTTP 503 (gave up after 3 attempts)" in during.reason
    after = await check_build(clients, target, finding.certificate.not_before)  # the failure was not cached
    assert after is not None and after.result is BuildResult.VERIFIED
    assert [request.status for request in sim.simulator.builds.requests] == [503] * 5 + [200]


def closed_port() -> int:
    """A port that was just free: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_api_is_unavailable(http: aiohttp.ClientSession) -> None:
    watch = watch_of({"account_id": ACCOUNT_ID, "api_key": "k" * 20, "api_url": f"http://127.0.0.1:{closed_port()}"})
    client = BuildsClients(watch, http, FAST).client_for(ACCOUNT_ID, PLATFORM)
    assert client is not None
    answer = await client.get_build("ae00000000000000000000ae")
    assert isinstance(answer, Unavailable) and "gave up after 3 attempts" in answer.reason


async def test_at_most_five_requests_a_second_for_all_callers(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    client = client_of(sim, http, options=ClientOptions(retry=FAST.retry))
    ids = [f"{n:024x}" for n in range(20)]
    asked_at = time.monotonic()  # the event loop's clock, and the simulator's
    answers = await asyncio.gather(*(client.get_build(workflow_id) for workflow_id in ids))
    assert all(answer == NotFound() for answer in answers)
    arrivals = sorted(request.at for request in sim.simulator.builds.requests)
    assert len(arrivals) == 20
    # The k-th request arrives no sooner than k fifths of a second after they were all asked for.
    # A busy machine only makes an arrival later: gaps between arrivals measured it too, and failed
    # in CI when one arrival was late and the next on time (0.70 s for six).
    early = [k for k, at in enumerate(arrivals) if at < asked_at + k / REQUESTS_PER_SECOND - 0.001]
    assert early == []


async def test_finished_builds_and_404s_are_cached_running_builds_are_not(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    builds = sim.simulator.builds
    sim.simulator.append_codefresh(**FULCIO_TEST_CODEFRESH, workflow_id="af00000000000000000000af")
    running = {"id": "b000000000000000000000b0", "serviceId": PIPELINE_ID, "created": "2025-06-01T12:00:00.000Z"}
    builds.set_raw_answer("b000000000000000000000b0", json.dumps(running).encode())
    client = client_of(sim, http, options=FAST)
    for _ in range(3):
        assert isinstance(await client.get_build("af00000000000000000000af"), Found)
        assert await client.get_build("b100000000000000000000b1") == NotFound()
        found_running = await client.get_build("b000000000000000000000b0")
        assert isinstance(found_running, Found) and found_running.build.finished is None
    assert len(builds.requests_for("af00000000000000000000af")) == 1
    assert len(builds.requests_for("b100000000000000000000b1")) == 1
    assert len(builds.requests_for("b000000000000000000000b0")) == 3


async def test_the_cache_is_bounded(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    client = client_of(sim, http, options=ClientOptions(retry=FAST.retry, per_second=1000.0, cache_size=2))
    for workflow_id in ("c1", "c2", "c3", "c1"):
        assert await client.get_build(workflow_id) == NotFound()
    assert len(sim.simulator.builds.requests_for("c1")) == 2  # c1 was evicted by c3


SHAPES = [
    (b"<html>maintenance</html>", "not JSON", None),
    (b"[1, 2]", "a JSON list", None),
    (b'{"id": "d0", "serviceId": 5, "created": "2025-06-01T12:00:00Z"}', "serviceId: a int", BuildResult.ERROR),
    (b'{"id": "d0", "serviceId": "PIPE", "created": "yesterday"}', "created: not an ISO 8601", BuildResult.ERROR),
    (b'{"id": "d0", "serviceId": "PIPE", "created": "0001-01-01T00:00:00+05:00"}', "created: not", BuildResult.ERROR),
    (b'{"id": "d0", "serviceId": "PIPE", "created": -1}', "created: not", BuildResult.ERROR),
    (b'{"id": "d0", "serviceId": "PIPE", "created": 1e400}', "not JSON", None),
    (b'{"id": "d0", "serviceId": "PIPE\\nQ", "created": "2025-06-01T12:00:00Z"}', "control", BuildResult.ERROR),
    (b'{"serviceId": "PIPE", "created": 1748779200000, "finished": null}', "id: missing", BuildResult.VERIFIED),
    (b'{"id": "other", "serviceId": "PIPE", "created": "2025-06-01T12:00:00Z"}', "serviceName: missing", None),
]


@pytest.mark.parametrize(("body", "problem", "result"), SHAPES)
async def test_unexpected_shapes_are_tolerated_and_logged_once(
    sim: RunningSimulator, http: aiohttp.ClientSession, body: bytes, problem: str, result: BuildResult | None
) -> None:
    sim.simulator.builds.set_raw_answer("d0", body.replace(b"PIPE", PIPELINE_ID.encode()))
    client = client_of(sim, http, options=FAST)
    with capture_logs() as logs:
        answers = [await client.get_build("d0") for _ in range(2)]
    shapes = [entry for entry in logs if entry["event"] == "codefresh_build_answer_unexpected"]
    assert len(shapes) == 1 and any(problem in text for text in shapes[0]["problems"]), shapes
    check = judge_build(answers[0], PIPELINE_ID, datetime(2025, 6, 1, 12, 1, tzinfo=UTC), NOW)
    if result is None:
        assert isinstance(answers[0], Unavailable) and check.result is BuildResult.ERROR and check.retry_later
    else:
        assert check.result is result


async def test_extra_fields_are_ignored_silently(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    sim.simulator.append_codefresh(**FULCIO_TEST_CODEFRESH, workflow_id="e0")
    document = sim.simulator.builds.builds["e0"].document() | {"unknownField": {"nested": [1, 2]}, "serviceName": "x"}
    sim.simulator.builds.set_raw_answer("e0", json.dumps(document).encode())
    with capture_logs() as logs:
        answer = await client_of(sim, http).get_build("e0")
    assert isinstance(answer, Found) and answer.build.service_id == PIPELINE_ID and logs == []


async def test_an_answer_over_the_cap_is_unavailable(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    sim.simulator.builds.set_raw_answer("e1", b'{"id": "e1", "pad": "' + b"x" * 5000 + b'"}')
    options = ClientOptions(retry=FAST.retry, max_answer_bytes=4096)
    answer = await client_of(sim, http, options=options).get_build("e1")
    assert isinstance(answer, Unavailable) and "4096-byte cap" in answer.reason


def test_parse_build_reads_iso_and_epoch_milliseconds() -> None:
    parsed = parse_build(
        b'{"id": "w", "serviceId": "p", "serviceName": "a/b", "status": "running",'
        b' "created": "2025-06-01T14:00:00.250+02:00", "finished": 1748779260000}'
    )
    assert parsed.problems == () and parsed.build is not None
    assert parsed.build.created == datetime(2025, 6, 1, 12, 0, 0, 250000, tzinfo=UTC)
    assert parsed.build.finished == datetime(2025, 6, 1, 12, 1, tzinfo=UTC)


# -- key hygiene -----------------------------------------------------------------------------------


async def test_the_key_appears_in_no_log_error_repr_or_answer(
    sim: RunningSimulator, http: aiohttp.ClientSession, capsys: pytest.CaptureFixture[str]
) -> None:
    key = sim.simulator.builds.api_key
    watch = watch_of(our_account(sim))
    seen: list[str] = [repr(watch), str(watch.codefresh[0]), watch.model_dump_json()]
    finding, target = sign(sim, watch)
    assert target is not None
    clients = BuildsClients(watch, http, FAST)
    client = clients.client_for(ACCOUNT_ID, PLATFORM)
    seen.append(repr(client))
    with capture_logs() as logs:
        sim.simulator.builds.start_outage(2, retry_after=0)
        seen.append(repr(await check_build(clients, target, finding.certificate.not_before)))
        sim.simulator.builds.set_raw_answer("f0", f'{{"echo": "{key}", "serviceId": 1}}'.encode())
        seen.append(repr(await check_build(clients, BuildCheckTarget(ACCOUNT_ID, PLATFORM, "f0", "p"), NOW)))
        refused = BuildsClients(watch_of(our_account(sim, api_key=key + "-wrong")), http, FAST)
        seen.append(repr(await check_build(refused, target, NOW)))
        unreachable = BuildsClients(watch_of(our_account(sim, api_url=f"http://127.0.0.1:{closed_port()}")), http, FAST)
        seen.append(repr(await check_build(unreachable, target, NOW)))
    seen += [json.dumps(entry, default=str) for entry in logs]
    captured = capsys.readouterr()
    seen += [captured.out, captured.err]
    assert any("codefresh_api_key_refused" in text for text in seen)  # the logs were captured
    assert all(key not in text for text in seen)


def test_config_keeps_the_key_secret_and_an_empty_variable_means_none() -> None:
    settings = parse_settings(
        "watch: {codefresh: [{account_id: a, api_key: '${CF_KEY}', api_url: 'http://127.0.0.1:8080/'}]}",
        {"CF_KEY": "cf-secret-key-1234"},
    )
    account = settings.watch.codefresh[0]
    assert account.api_key is not None and account.api_key.get_secret_value() == "cf-secret-key-1234"
    assert account.builds_api_url == "http://127.0.0.1:8080"
    assert "cf-secret-key-1234" not in repr(settings) + settings.model_dump_json()
    default = parse_settings("watch: {codefresh: [{account_id: a, api_key: '${CF_KEY}'}]}", {})
    assert default.watch.codefresh[0].api_key is None
    assert default.watch.codefresh[0].builds_api_url == PLATFORM


@pytest.mark.parametrize(
    ("account", "problem"),
    [
        ("{account_id: a, api_url: 'http://user:pw@host'}", "api_url must be an http(s) URL"),
        ("{account_id: a, api_url: 'ftp://host'}", "api_url must be an http(s) URL"),
        ("{account_id: a, api_url: 'https://host/?q=1'}", "api_url must be an http(s) URL"),
        ("{account_id: a, api_key: k, platform_url: 'not a url'}", "api_key needs an http(s) api_url"),
        ('{account_id: a, api_key: "cf-secret\\u0007key"}', "api_key contains control characters"),
    ],
)
def test_config_problems_never_echo_the_key(account: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_settings(f"watch: {{codefresh: [{account}]}}")
    assert any(problem in line for line in raised.value.problems), raised.value.problems
    assert "cf-secret" not in str(raised.value) + str(raised.value.__cause__)


# -- the simulator's controls over HTTP --------------------------------------------------------------


async def test_the_simulators_builds_controls(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    identity = FULCIO_TEST_CODEFRESH | {"workflow_id": "a1"}
    async with http.post(
        f"{sim.url}/sim/append", json={"codefresh": [identity, identity | {"workflow_id": "a2", "build": "unknown"}]}
    ) as answer:
        assert answer.status == 200
    async with http.post(f"{sim.url}/sim/append", json={"codefresh": [identity | {"build": "lost"}]}) as answer:
        assert answer.status == 400
    headers = {"Authorization": sim.simulator.builds.api_key}
    sim_key = sim.codefresh_api_key_file.read_text()
    assert sim_key == sim.simulator.builds.api_key and sim.codefresh_api_key_file.stat().st_mode & 0o077 == 0
    async with http.get(f"{sim.url}/api/builds/a1", headers=headers) as answer:
        assert answer.status == 200 and (await answer.json())["serviceId"] == PIPELINE_ID
    async with http.get(f"{sim.url}/api/builds/a2", headers=headers) as answer:
        assert answer.status == 404
    async with http.get(f"{sim.url}/api/builds/a1") as answer:
        assert answer.status == 401
    async with http.post(f"{sim.url}/sim/builds/move", json={"workflow_id": "a1"}) as answer:
        assert answer.status == 200
    async with http.get(f"{sim.url}/api/builds/a1", headers=headers) as answer:
        assert (await answer.json())["serviceId"] == OTHER_PIPELINE_ID
    async with http.post(f"{sim.url}/sim/builds/forget", json={"workflow_id": "a1"}) as answer:
        assert answer.status == 200
    async with http.post(f"{sim.url}/sim/builds/outage", json={"count": 1, "retry_after": 7}) as answer:
        assert answer.status == 200
    sim.faults.inject(count=5, status=500)  # the log's faults leave the builds API alone
    async with http.get(f"{sim.url}/api/builds/a1", headers=headers) as answer:
        assert answer.status == 503 and answer.headers["Retry-After"] == "7"
    async with http.get(f"{sim.url}/api/builds/a1", headers=headers) as answer:
        assert answer.status == 404
    async with http.get(f"{sim.url}/sim/builds/requests") as answer:
        counted = await answer.json()
    assert counted["count"] == 6
    assert [item["status"] for item in counted["requests"]] == [200, 404, 401, 200, 503, 404]


# -- inspect --check-build, end to end --------------------------------------------------------------


async def rekor_entry(http: aiohttp.ClientSession, sim: RunningSimulator, index: int) -> bytes:
    async with http.get(f"{sim.url}/api/v1/log/entries", params={"logIndex": index}) as answer:
        assert answer.status == 200
        return await answer.read()


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=os.environ | env,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_inspect_check_build_end_to_end(
    sim: RunningSimulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    key = sim.simulator.builds.api_key
    account = our_account(sim, api_key="${CODEFRESH_API_KEY}", pipelines=[{"id": PIPELINE_ID}])
    config = tmp_path / "rekorwatch.yaml"
    trust = {"root": str(sim.trust_files.trusted_root), "refresh": False}
    config.write_text(json.dumps({"trust": trust, "watch": {"codefresh": [account]}}))
    cases = {
        "verified": sim.simulator.append_codefresh(**FULCIO_TEST_CODEFRESH),
        "not_found": sim.simulator.append_codefresh(**FULCIO_TEST_CODEFRESH, build="unknown"),
        "mismatch": sim.simulator.append_codefresh(**FULCIO_TEST_CODEFRESH, build="other_pipeline"),
        "impersonation": sim.simulator.append_codefresh(**FULCIO_TEST_CODEFRESH | {"account_id": "66ee" + "0" * 20}),
    }
    env = {"CODEFRESH_API_KEY": key, "PYTHONPATH": str(WORKTREE)}
    entries = {name: tmp_path / f"{name}.json" for name in cases}
    for name, index in cases.items():
        entries[name].write_bytes(await rekor_entry(http, sim, index))
    runs = await asyncio.gather(
        *(run_cli("inspect", "-c", str(config), "--check-build", str(entries[name]), env=env) for name in cases),
        run_cli("inspect", "-c", str(config), str(entries["verified"]), env=env),
    )
    assert all(status == 0 for status, _, _ in runs), runs
    reports = {name: json.loads(out)["certificates"][0] for name, (_, out, _) in zip(cases, runs, strict=False)}
    for name in ("verified", "not_found", "mismatch"):
        build = reports[name]["build"]
        assert set(build) == {"result", "build_verified", "reason", "status", "created", "finished"}
        assert build["result"] == name and build["build_verified"] is (name == "verified")
    assert reports["verified"]["build"]["status"] == "success" and reports["verified"]["build"]["created"]
    assert reports["impersonation"]["verdict"] == "impersonation" and reports["impersonation"]["build"] is None
    assert "build" not in json.loads(runs[-1][1])["certificates"][0]  # offline without the flag
    asked = sorted(request.workflow_id for request in sim.simulator.builds.requests)
    assert len(asked) == 3  # never the impersonator's build, nothing without the flag
    assert all(key not in text for _, out, err in runs for text in (out, err))
