"""The simulator's witnesses, distributor and split view, over real HTTP, checked with the daemon's verifiers.

Every checkpoint is opened with the log key of the simulator's trusted_root.json and judged with the
witness policy it wrote (monitor.tlog.witness), as the daemon would.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from monitor.simulate.server import RunningSimulator, start_simulator
from monitor.tlog.merkle import ProofError, verify_consistency
from monitor.tlog.note import Checkpoint, NoteVerifier, open_checkpoint, origin_log_id, split_note, verifier_for_key
from monitor.tlog.witness import WitnessPolicy, evaluate, parse_policy
from monitor.trust import load_trust_root


@pytest.fixture(params=["v1", "tiles"])
async def sim(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunningSimulator]:
    running = await start_simulator(directory=tmp_path, api=request.param, split_view=True)
    yield running
    await running.stop()


def written_policy(sim: RunningSimulator) -> WitnessPolicy:
    return parse_policy(sim.witness_policy.read_text())


def log_verifier(sim: RunningSimulator) -> NoteVerifier:
    """The log key as the daemon finds it: in the trusted_root.json the simulator wrote."""
    (key,) = load_trust_root(str(sim.trust_files.trusted_root)).log_keys_for_url(sim.url)
    return verifier_for_key(key.name, key.spki_der)


async def get_text(http: aiohttp.ClientSession, url: str, status: int = 200) -> str:
    async with http.get(url) as response:
        assert response.status == status, await response.text()
        return await response.text()


async def post(http: aiohttp.ClientSession, url: str, body: object, status: int = 200) -> object:
    async with http.post(url, json=body) as response:
        assert response.status == status, await response.text()
        return await response.json()


async def current_note(http: aiohttp.ClientSession, sim: RunningSimulator, base_url: str | None = None) -> str:
    """The checkpoint served as current: tiles /checkpoint, or v1 signedTreeHead of the active shard."""
    base = base_url or sim.url
    if sim.log.tiles:
        return await get_text(http, f"{base}/checkpoint")
    async with http.get(f"{base}/api/v1/log") as response:
        assert response.status == 200
        return (await response.json())["signedTreeHead"]


async def opened(http: aiohttp.ClientSession, sim: RunningSimulator, base_url: str | None = None) -> Checkpoint:
    return open_checkpoint(await current_note(http, sim, base_url), [log_verifier(sim)])


async def entry_body(http: aiohttp.ClientSession, sim: RunningSimulator, base_url: str, index: int) -> bytes:
    """Entry `index` of a small log (< 256 entries) as served at `base_url`."""
    if sim.log.tiles:
        async with http.get(f"{base_url}/tile/entries/000.p/{index + 1}") as response:
            assert response.status == 200
            bundle = await response.read()
        offset = 0
        for _ in range(index):
            offset += 2 + int.from_bytes(bundle[offset : offset + 2], "big")
        size = int.from_bytes(bundle[offset : offset + 2], "big")
        return bundle[offset + 2 : offset + 2 + size]
    async with http.get(f"{base_url}/api/v1/log/entries?logIndex={index}") as response:
        assert response.status == 200
        (entry,) = (await response.json()).values()
    return base64.b64decode(entry["body"])


def fill(sim: RunningSimulator, count: int) -> None:
    start = sim.log.size
    sim.log.append_many([b'{"entry": %d}' % (start + number) for number in range(count)])


# -- witnesses -------------------------------------------------------------------------------------


async def test_served_checkpoints_meet_the_written_policy_cosigned_now(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    fill(sim, 3)
    policy = written_policy(sim)
    assert [(w.name, w.key.name) for w in policy.witnesses] == [
        (name, f"witness-{name}.sim.example") for name in ("a", "b", "c")
    ]
    assert (policy.quorum, policy.groups[0].threshold) == ("g", 2)
    note = await current_note(http, sim)
    assert open_checkpoint(note, [log_verifier(sim)]).size == 3  # the log's own line still opens it
    verdict = evaluate(policy, note, datetime.now(UTC))
    assert verdict.satisfied and [c.name for c in verdict.cosigners] == ["a", "b", "c"]
    assert all(abs(cosigner.timestamp - time.time()) < 600 for cosigner in verdict.cosigners)


async def test_the_witness_switches_over_http_and_in_process(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    policy = written_policy(sim)
    state = await post(http, f"{sim.url}/sim/witnesses", {"cosign": ["a"], "bad": ["witness-b.sim.example"]})
    assert state == {"cosign": ["a"], "bad": ["b"]}
    verdict = evaluate(policy, await current_note(http, sim), datetime.now(UTC))
    assert (verdict.satisfied, [c.name for c in verdict.cosigners]) == (False, ["a"])
    assert (verdict.invalid, verdict.missing) == (("b",), ("c",))
    assert await post(http, f"{sim.url}/sim/witnesses", {"bad": []}) == {"cosign": ["a"], "bad": []}
    sim.witnesses.configure(cosign=["a", "c"])
    verdict = evaluate(policy, await current_note(http, sim), datetime.now(UTC))
    assert verdict.satisfied and (verdict.invalid, verdict.missing) == ((), ("b",))
    sim.witnesses.configure(cosign=[])
    assert len(split_note(await current_note(http, sim))[1]) == 1  # the log's line only
    await post(http, f"{sim.url}/sim/witnesses", {"cosign": ["d"]}, status=400)
    await post(http, f"{sim.url}/sim/witnesses", {"bad": "a"}, status=422)


# -- distributor -----------------------------------------------------------------------------------


async def test_the_distributor_lists_the_log_and_serves_its_honest_cosigned_checkpoint(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    fill(sim, 4)
    origin = (await opened(http, sim)).origin
    async with http.get(f"{sim.url}/distributor/v0/logs") as response:
        assert (response.status, response.content_type) == (200, "text/json")
        assert await response.json(content_type=None) == [origin_log_id(origin)]
    base = f"{sim.url}/distributor/v0/logs/{origin_log_id(origin)}"
    sim.witnesses.configure(bad=["b"])
    async with http.get(f"{base}/checkpoint.2") as response:
        assert (response.status, response.content_type) == (200, "text/plain")
        note = await response.text()
    checkpoint = open_checkpoint(note, [log_verifier(sim)])
    assert (checkpoint.origin, checkpoint.size, checkpoint.root_hash) == (origin, 4, sim.log.active.root())
    verdict = evaluate(written_policy(sim), note, datetime.now(UTC))
    assert verdict.satisfied and (verdict.invalid, verdict.missing) == ((), ("b",))  # bad lines never reach it
    assert await get_text(http, f"{base}/checkpoint.3", status=404) == "failed to get checkpoint\n"
    await get_text(http, f"{base}/checkpoint.0", status=400)
    await get_text(http, f"{base}/checkpoint.101", status=400)
    await get_text(http, f"{sim.url}/distributor/v0/logs/{'0' * 64}/checkpoint.1", status=400)


async def test_the_distributor_has_one_log_id_per_v1_shard(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    sim = await start_simulator(directory=tmp_path)
    try:
        fill(sim, 2)
        sim.log.rotate_shard()
        origins = [sim.log.origin(shard) for shard in sim.log.shards]
        async with http.get(f"{sim.url}/distributor/v0/logs") as response:
            assert await response.json(content_type=None) == sorted(map(origin_log_id, origins))
        old = await get_text(http, f"{sim.url}/distributor/v0/logs/{origin_log_id(origins[0])}/checkpoint.3")
        assert open_checkpoint(old, [log_verifier(sim)], origin=origins[0]).size == 2
    finally:
        await sim.stop()


# -- split view ------------------------------------------------------------------------------------


async def test_before_the_split_both_ports_serve_one_history(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    fill(sim, 5)
    assert sim.split_url is not None and sim.split_url != sim.url
    honest, other = await opened(http, sim), await opened(http, sim, sim.split_url)
    assert (other.origin, other.size, other.root_hash) == (honest.origin, honest.size, honest.root_hash)


async def test_a_split_view_diverges_from_the_chosen_index_and_both_views_verify(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    assert sim.split is not None and sim.split_url is not None
    fill(sim, 6)
    await post(http, f"{sim.url}/sim/split", {"at": 4})
    fill(sim, 4)  # mirrored into the fork, rewritten: they are past the split
    honest, forked = await opened(http, sim), await opened(http, sim, sim.split_url)
    assert (forked.origin, forked.size) == (honest.origin, honest.size) == (forked.origin, 10)
    assert forked.root_hash != honest.root_hash  # same size, another root: a split view
    for index in range(10):
        same = await entry_body(http, sim, sim.url, index) == await entry_body(http, sim, sim.split_url, index)
        assert same is (index < 4)
    # The fork is append-only on its own ...
    earlier = await opened(http, sim, sim.split_url)
    fill(sim, 3)
    later = await opened(http, sim, sim.split_url)
    proof = sim.split.served.log.active.consistency_proof(earlier.size, later.size)
    verify_consistency(earlier.size, later.size, proof, earlier.root_hash, later.root_hash)
    # ... but not with the honest log: the honest log's proof from the fork's checkpoint fails.
    honest_later = await opened(http, sim)
    proof = sim.log.active.consistency_proof(earlier.size, honest_later.size)
    with pytest.raises(ProofError):
        verify_consistency(earlier.size, honest_later.size, proof, earlier.root_hash, honest_later.root_hash)


async def test_the_fork_is_unwitnessed_unless_the_witnesses_collude(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    assert sim.split_url is not None
    fill(sim, 3)
    policy = written_policy(sim)
    await post(http, f"{sim.split_url}/sim/split", {"at": 1})
    assert not evaluate(policy, await current_note(http, sim, sim.split_url), datetime.now(UTC)).satisfied
    assert evaluate(policy, await current_note(http, sim), datetime.now(UTC)).satisfied
    await post(http, f"{sim.split_url}/sim/split", {"at": 1, "witnessed": True})
    assert evaluate(policy, await current_note(http, sim, sim.split_url), datetime.now(UTC)).satisfied


async def test_a_split_in_the_future_and_bad_split_requests(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    assert sim.split is not None and sim.split_url is not None
    fill(sim, 2)
    sim.split.split(5)
    fill(sim, 2)
    assert (await opened(http, sim, sim.split_url)).root_hash == (await opened(http, sim)).root_hash
    fill(sim, 2)
    assert (await opened(http, sim, sim.split_url)).root_hash != (await opened(http, sim)).root_hash
    await post(http, f"{sim.url}/sim/split", {"at": -1}, status=400)
    await post(http, f"{sim.url}/sim/split", {}, status=400)
    await post(http, f"{sim.url}/sim/split", {"at": 1, "witnessed": "yes"}, status=400)


async def test_without_split_view_there_is_no_second_port(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    sim = await start_simulator(directory=tmp_path)
    try:
        assert (sim.split, sim.split_url) == (None, None)
        async with http.post(f"{sim.url}/sim/split", json={"at": 1}) as response:
            assert response.status == 404
    finally:
        await sim.stop()
