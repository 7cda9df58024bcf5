"""The simulator's CT log over real HTTP, read and verified with the daemon's CT client and sources.

Both APIs (RFC 6962 and static-ct-api): tree heads verify with the key of the trusted_root.json the
simulator writes, every leaf read folds into the signed root, proofs verify with tlog/merkle.py,
every precertificate decodes and chains, and each certificate's embedded SCT names the leaf the log
holds for it. Then the controls: certificates that never reach Rekor, truncated answers, a fork.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from monitor.identity import identify
from monitor.identity.ct_chain import CtChainVerifier
from monitor.identity.fulcio import parse_fulcio_certificate
from monitor.identity.sct import embedded_scts
from monitor.simulate.ca import LocalCA, codefresh_identity
from monitor.simulate.ct import SimCtLog, new_ct_log
from monitor.simulate.log import SimLog
from monitor.simulate.server import RunningSimulator, start_simulator
from monitor.simulate.synthetic import FULCIO_TEST_CODEFRESH, populate, populate_ct
from monitor.simulate.trustroot import trusted_root
from monitor.tlog.ct import PRECERT_ENTRY, CtEntry, CtLogEntry, decode_ct_entry, parse_merkle_tree_leaf
from monitor.tlog.ct_client import Rfc6962Client, StaticCtClient
from monitor.tlog.ct_head import CtCheckpoint, CtHeadError
from monitor.tlog.ct_source import Rfc6962Source, StaticCtSource
from monitor.tlog.merkle import CompactRange, ProofError, verify_consistency
from monitor.tlog.source import ShardHead
from monitor.trust import LogKey, TrustRoot, load_trust_root, parse_trust_root
from tests.harness import CLIENT_RETRY

CtSource = Rfc6962Source | StaticCtSource


@pytest.fixture(params=["rfc6962", "static"])
async def sim(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunningSimulator]:
    running = await start_simulator(directory=tmp_path, ct_api=request.param)
    try:
        yield running
    finally:
        await running.stop()


def trust_of(sim: RunningSimulator) -> TrustRoot:
    return load_trust_root(str(sim.trust_files.trusted_root))


def source_for(sim: RunningSimulator, http: aiohttp.ClientSession, **options: int) -> CtSource:
    (key,) = trust_of(sim).ct_log_keys_for_url(sim.ct_url)
    if sim.ct.static:
        return StaticCtSource(sim.ct_url, StaticCtClient(sim.ct_url, http, retry=CLIENT_RETRY, **options), key)
    return Rfc6962Source(sim.ct_url, Rfc6962Client(sim.ct_url, http, retry=CLIENT_RETRY, **options), key)


async def verified_head(source: CtSource) -> tuple[ShardHead, CtCheckpoint]:
    (head,) = await source.heads()
    return head, source.open_checkpoint(head.signed_note)


async def read_all(source: CtSource) -> tuple[CtCheckpoint, list[CtLogEntry]]:
    """Every entry of the verified tree, proven by folding them into its root."""
    head, checkpoint = await verified_head(source)
    entries = list(await source.entries(0, checkpoint.size, head, checkpoint.size))
    compact = CompactRange()
    compact.extend(entry.leaf_hash for entry in entries)
    assert compact.root() == checkpoint.root_hash
    return checkpoint, entries


def issue_codefresh(sim: RunningSimulator, count: int) -> None:
    for _ in range(count):
        sim.simulator.append_codefresh(**FULCIO_TEST_CODEFRESH)


async def test_the_trusted_root_lists_the_ct_log_where_it_answers(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    document = json.loads(sim.trust_files.trusted_root.read_text())
    (ctlog,) = document["ctlogs"]
    assert ctlog["baseUrl"] == sim.ct_url == f"{sim.url}{'/ctstatic' if sim.ct.static else '/ct/2022'}"
    assert ctlog["publicKey"]["keyDetails"] == "PKIX_ECDSA_P256_SHA_256"
    assert ctlog["publicKey"]["validFor"]["start"] == document["certificateAuthorities"][0]["validFor"]["start"]
    (key,) = trust_of(sim).ctlogs
    assert key.log_id == sim.ct.log_id == hashlib.sha256(key.spki_der).digest()
    path = "/checkpoint" if sim.ct.static else "/ct/v1/get-sth"
    async with http.get(sim.ct_url + path) as response:
        assert response.status == 200


async def test_the_served_log_verifies_and_every_entry_decodes_and_chains(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    issue_codefresh(sim, 3)
    await sim.simulator.append_unwatched(40)
    source = source_for(sim, http)
    checkpoint, entries = await read_all(source)
    assert checkpoint.size == sim.ct.size > 3 + 25 and checkpoint.origin == sim.ct.name
    trust = trust_of(sim)
    chains = CtChainVerifier(trust)
    decoded = [decode_ct_entry(entry) for entry in entries]
    assert all(entry.entry_type == PRECERT_ENTRY for entry in decoded)
    assert [chains.issuing_ca(entry, parse_fulcio_certificate(entry.certificate)) for entry in decoded] == [
        sim.ca.issuer_key_hash
    ] * len(decoded)
    providers = [identify(parse_fulcio_certificate(entry.certificate)).provider for entry in decoded]
    assert providers.count("codefresh") >= 3 and "github" in providers
    if sim.ct.static:
        leaf_indexes = [parse_merkle_tree_leaf(entry.leaf_input).leaf_index() for entry in entries]
        assert leaf_indexes == list(range(len(entries)))


async def test_each_certificate_embeds_the_sct_of_its_leaf(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    issued = [sim.simulator.factory.issue(sim.simulator.factory.other_github_identity()) for _ in range(3)]
    _, entries = await read_all(source_for(sim, http))
    by_hash = {entry.leaf_hash: entry for entry in entries}
    trust = trust_of(sim)
    for certificate in issued:
        (sct,) = embedded_scts(certificate.certificate, trust) or []
        assert sct.verified and sct.log is not None and sct.log.base_url == sim.ct_url
        assert sct.leaf_hash is not None
        entry = decode_ct_entry(by_hash[sct.leaf_hash])
        assert entry.certificate == certificate.precertificate
        assert entry.serial_number == certificate.certificate.serial_number
        assert sct.leaf_index == (entry.log_index if sim.ct.static else None)


async def test_consistency_and_bootstrap_proofs_verify(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    issue_codefresh(sim, 5)
    source = source_for(sim, http)
    head, old = await verified_head(source)
    issue_codefresh(sim, 6)
    head, new = await verified_head(source)
    assert new.size == old.size + 6
    proof = await source.consistency_proof(old.size, new.size, "")
    verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)
    bootstrap = await source.bootstrap_proof(new.size - 4, head, new.size)
    compact = CompactRange.from_inclusion_proof(
        bootstrap.leaf_hash, bootstrap.index, bootstrap.tree_size, bootstrap.hashes, new.root_hash
    )
    _, entries = await read_all(source)
    compact.extend(entry.leaf_hash for entry in entries[new.size - 3 :])
    assert compact.root() == new.root_hash


async def test_a_forked_ct_log_fails_consistency(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    issue_codefresh(sim, 4)
    source = source_for(sim, http)
    _, old = await verified_head(source)
    async with http.post(f"{sim.url}/sim/ct/fork", json={"at": old.size - 2}) as response:
        assert response.status == 200
    issue_codefresh(sim, 1)
    _, new = await verified_head(source)  # validly signed: only the proof shows the rewrite
    proof = await source.consistency_proof(old.size, new.size, "")
    with pytest.raises(ProofError):
        verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)
    async with http.post(f"{sim.url}/sim/ct/fork", json={"at": 10**6}) as response:
        assert response.status == 400


async def test_a_certificate_issued_only_in_ct_never_reaches_rekor(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    rekor_size = sim.log.size
    async with http.post(f"{sim.url}/sim/ct/issue_only", json={**FULCIO_TEST_CODEFRESH, "workflow_id": "q"}) as r:
        assert r.status == 200
        answer = await r.json()
    assert sim.log.size == rekor_size
    _, entries = await read_all(source_for(sim, http))
    entry = decode_ct_entry(entries[answer["ct_index"]])
    certificate = x509.load_pem_x509_certificate(answer["certificate"].encode())
    assert f"{entry.serial_number:x}" == answer["serial"] == f"{certificate.serial_number:x}"
    identity = identify(parse_fulcio_certificate(entry.certificate))
    assert (identity.provider, identity.pipeline_id, identity.workflow_id) == (
        "codefresh",
        FULCIO_TEST_CODEFRESH["pipeline_id"],
        "q",
    )
    async with http.post(f"{sim.url}/sim/ct/issue_only", json={"no_such_argument": 1}) as r:
        assert r.status == 400


async def test_truncated_get_entries_answers_are_read_in_full(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    sim = await start_simulator(directory=tmp_path)  # RFC 6962: a static-ct-api log serves whole data tiles
    try:
        await read_truncated_answers(sim, http)
    finally:
        await sim.stop()


async def read_truncated_answers(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    issue_codefresh(sim, 20)
    async with http.post(f"{sim.url}/sim/ct/max_entries", json={"count": 3}) as response:
        assert response.status == 200
    async with http.get(f"{sim.ct_url}/ct/v1/get-entries", params={"start": 0, "end": 9}) as response:
        assert len((await response.json())["entries"]) == 3
    source = source_for(sim, http, batch_size=8)
    checkpoint, entries = await read_all(source)
    assert [entry.log_index for entry in entries] == list(range(checkpoint.size))


async def test_the_served_tree_head_does_not_verify_with_another_logs_key(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    issue_codefresh(sim, 1)
    source = source_for(sim, http)
    (head,) = await source.heads()
    assert source.open_checkpoint(head.signed_note).size == 1 and head.claimed_size is None
    key = source.key
    source.key = LogKey(
        key.base_url, key.log_id, new_ct_log("x", [], "rfc6962").spki_der, key.key_details, key.validity
    )
    with pytest.raises(CtHeadError, match="no tree head signature"):
        source.open_checkpoint(head.signed_note)


async def test_ct_endpoints_answer_the_injected_faults(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    sim.faults.inject(count=2, status=503)
    _, checkpoint = await verified_head(source_for(sim, http))
    assert checkpoint.size == sim.ct.size and sim.faults.remaining == 0


def test_populate_logs_the_watched_certificates_and_their_scts_verify() -> None:
    ca = LocalCA.generate()
    for api in ("rfc6962", "static"):
        log, ct = SimLog("sim.test"), new_ct_log("sim.test", ca.chain_der(), api)
        report = populate(log, ca, 200, watched_fraction=0.1, seed=4, ct=ct)
        assert ct.size == report.watched > 5
        entries = decoded_entries(ct)
        assert {identify(parse_fulcio_certificate(entry.certificate)).provider for entry in entries} == {"codefresh"}
        assert_indexes(ct, entries)
        trust = parse_trust_root(trusted_root("http://sim.test", log, ca, ct), None, "sim")
        scts = [embedded_scts(certificate, trust) for certificate in certificates_of(log)]
        logged = [sct for found in scts if found is not None for sct in found]
        assert len(logged) == report.watched and all(sct.verified for sct in logged)
        assert [ct.tree.index_by_leaf_hash[sct.leaf_hash] for sct in logged if sct.leaf_hash] == list(range(ct.size))


def certificates_of(log: SimLog) -> list[x509.Certificate]:
    """The certificates of a Rekor v1 log's hashedrekord entries."""
    found = []
    for body in log.active.bodies:
        key = json.loads(body)["spec"].get("signature", {}).get("publicKey", {}).get("content", "")
        pem = base64.b64decode(key)
        if b"CERTIFICATE" in pem:
            found.append(x509.load_pem_x509_certificate(pem))
    return found


def test_populate_ct_fills_a_ct_log_alone_in_other_processes() -> None:
    ca = LocalCA.generate()
    for api, count, workers in (("rfc6962", 300, 1), ("static", 2100, 2)):  # 2100: two chunks, numbered in advance
        ct = new_ct_log("sim.test", ca.chain_der(), api)
        first = codefresh_identity(**FULCIO_TEST_CODEFRESH, workflow_id="first")
        ct.log_precertificate(ca.precertificate(first, key=ca.intermediate_key), ca.issuer_key_hash)
        report = populate_ct(ct, ca, count, watched_fraction=0.05, seed=5, workers=workers)
        assert ct.size == count + 1 and count * 0.02 < report.watched < count * 0.08
        entries = decoded_entries(ct)
        providers = [identify(parse_fulcio_certificate(entry.certificate)).provider for entry in entries[1:]]
        assert providers.count("codefresh") == report.watched and {"github", "email"} <= set(providers)
        assert len({entry.serial_number for entry in entries}) == len(entries)
        assert_indexes(ct, entries)


def decoded_entries(ct: SimCtLog) -> list[CtEntry]:
    return [
        decode_ct_entry(CtLogEntry.of(index, leaf, ct.extra_data(index))) for index, leaf in enumerate(ct.tree.bodies)
    ]


def assert_indexes(ct: SimCtLog, entries: list[CtEntry]) -> None:
    expected = list(range(len(entries))) if ct.static else [None] * len(entries)
    assert [parse_merkle_tree_leaf(ct.tree.bodies[entry.log_index]).leaf_index() for entry in entries] == expected
