"""The simulator: its proofs, checkpoints, certificates and entry bodies, and its Rekor v1 API over HTTP.

Everything the simulator builds is checked with the daemon's own verifiers (monitor.tlog), against
the real fixtures where they exist, and over real HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import statistics
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import rfc8785
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from monitor.entries import decode_entry
from monitor.simulate.ca import (
    CODE_SIGNING,
    LEAF_KEY_USAGE,
    CertIdentity,
    LocalCA,
    codefresh_identity,
    email_identity,
    extension,
    fulcio_extensions,
    github_identity,
    self_signed_test_certificate,
    subject_alternative_name,
)
from monitor.simulate.entries import (
    canonical,
    dsse_body,
    hashedrekord_body,
    hashedrekord_v002_body,
    intoto_v002_body,
    pre_authentication_encoding,
    public_key_pem,
)
from monitor.simulate.log import Shard, SimLog
from monitor.simulate.server import RunningSimulator, start_simulator
from monitor.simulate.synthetic import (
    FULCIO_TEST_CODEFRESH,
    EntryFactory,
    PopulateChunk,
    chunk_results,
    populate,
    populate_chunk,
)
from monitor.tlog.merkle import ProofError, leaf_hash, verify_consistency, verify_inclusion
from monitor.tlog.note import NoteError, NoteVerifier, open_checkpoint, verifier_for_key
from tests.paths import MERKLE, SIGSTORE

# The 8-leaf tree of transparency-dev/merkle's test vectors (fixtures/merkle).
REFERENCE_LEAVES = [
    bytes.fromhex(leaf)
    for leaf in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")
]

FULCIO_CODEFRESH = {**FULCIO_TEST_CODEFRESH, "workflow_id": "65e6ebe0bfbfa1782876165e"}


def fulcio_extension(certificate: x509.Certificate, n: int) -> bytes:
    oid = x509.ObjectIdentifier(f"1.3.6.1.4.1.57264.1.{n}")
    return certificate.extensions.get_extension_for_oid(oid).value.value


def fulcio_extension_numbers(certificate: x509.Certificate) -> set[int]:
    prefix = "1.3.6.1.4.1.57264.1."
    return {
        int(extension.oid.dotted_string.removeprefix(prefix))
        for extension in certificate.extensions
        if extension.oid.dotted_string.startswith(prefix)
    }


def chains_to(certificate: x509.Certificate, ca: LocalCA) -> bool:
    try:
        certificate.verify_directly_issued_by(ca.intermediate_cert)
        ca.intermediate_cert.verify_directly_issued_by(ca.root_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def b64d(text: str) -> bytes:
    return base64.b64decode(text)


def fixture_body(name: str) -> dict[str, Any]:
    bundle = json.loads((SIGSTORE / name).read_text())
    return json.loads(b64d(bundle["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"]))


def shape(value: Any) -> Any:
    """The keys of a JSON document, recursively (lists by their first element): its shape."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


# Proofs


def reference_shard() -> Shard:
    shard = Shard(tree_id=1)
    for leaf in REFERENCE_LEAVES:
        shard.append(leaf, integrated_time=0)
    return shard


def happy_paths(kind: str) -> list[dict[str, Any]]:
    cases = [json.loads(path.read_text()) for path in sorted((MERKLE / kind).glob("[0-9]/happy-path.json"))]
    assert cases, f"no {kind} fixtures"
    return cases


def test_inclusion_proofs_equal_the_reference_vectors() -> None:
    shard = reference_shard()
    for case in happy_paths("inclusion"):
        index, size = case["leafIdx"], case["treeSize"]
        assert shard.leaf_hash_at(index) == b64d(case["leafHash"])
        assert shard.root(size) == b64d(case["root"])
        assert shard.inclusion_proof(index, size) == [b64d(item) for item in case["proof"] or []]


def test_consistency_proofs_equal_the_reference_vectors() -> None:
    shard = reference_shard()
    for case in happy_paths("consistency"):
        size1, size2 = case["size1"], case["size2"]
        assert (shard.root(size1), shard.root(size2)) == (b64d(case["root1"]), b64d(case["root2"]))
        assert shard.consistency_proof(size1, size2) == [b64d(item) for item in case["proof"] or []]


@pytest.fixture(scope="module")
def big_shard() -> Shard:
    shard = Shard(tree_id=7)
    for number in range(3000):
        shard.append(number.to_bytes(4, "big"), integrated_time=0)
    return shard


def test_every_inclusion_proof_of_small_trees_verifies(big_shard: Shard) -> None:
    for size in range(1, 70):
        root = big_shard.root(size)
        for index in range(size):
            proof = big_shard.inclusion_proof(index, size)
            verify_inclusion(big_shard.leaf_hash_at(index), index, size, proof, root)


def test_every_consistency_proof_of_small_trees_verifies(big_shard: Shard) -> None:
    for size2 in range(1, 70):
        for size1 in range(1, size2 + 1):
            proof = big_shard.consistency_proof(size1, size2)
            verify_consistency(size1, size2, proof, big_shard.root(size1), big_shard.root(size2))


def test_random_proofs_of_large_odd_trees_verify(big_shard: Shard) -> None:
    rng = random.Random(6962)
    for _ in range(300):
        size = rng.randrange(1, big_shard.size + 1)
        index, older = rng.randrange(size), rng.randrange(1, size + 1)
        root = big_shard.root(size)
        verify_inclusion(big_shard.leaf_hash_at(index), index, size, big_shard.inclusion_proof(index, size), root)
        verify_consistency(older, size, big_shard.consistency_proof(older, size), big_shard.root(older), root)


def test_a_forked_shard_is_inconsistent_with_its_past() -> None:
    log = SimLog("sim.test")
    log.append_many(f"entry {number}".encode() for number in range(100))
    old_root = log.active.root(60)
    log.fork(at=17)
    assert log.active.bodies[17] == b"entry 17\n"
    with pytest.raises(ProofError):
        verify_consistency(60, 100, log.active.consistency_proof(60, 100), old_root, log.active.root())
    verify_inclusion(leaf_hash(b"entry 17\n"), 17, 100, log.active.inclusion_proof(17, 100), log.active.root())


def test_the_root_after_a_fork_is_the_root_of_a_fresh_tree_with_the_new_leaf() -> None:
    log, fresh = SimLog("sim.test"), Shard(tree_id=2)
    bodies = [f"entry {number}".encode() for number in range(37)]
    log.append_many(bodies)
    log.fork(at=36, body=b"other")
    for body in [*bodies[:36], b"other"]:
        fresh.append(body, integrated_time=0)
    assert log.active.root() == fresh.root()
    assert log.find_leaf(leaf_hash(b"other")) is not None
    assert log.find_leaf(leaf_hash(bodies[36])) is None


def test_global_indexes_walk_the_shards_in_order() -> None:
    log = SimLog("sim.test")
    log.append_many([b"a", b"b", b"c"])
    log.rotate_shard()
    assert log.append(b"d") == 3
    location = log.locate(3)
    assert location is not None
    assert (location.shard, location.index) == (log.active, 0)
    assert log.locate(4) is None and log.locate(-1) is None
    with pytest.raises(ValueError):
        log.fork(at=1)


# Certificates


def test_the_fulcio_codefresh_test_identity_is_issued_byte_for_byte() -> None:
    ca = LocalCA.generate()
    issued = ca.issue(codefresh_identity(**FULCIO_CODEFRESH))
    certificate = issued.certificate
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "https://g.codefresh.io/test-codefresh/oidc-test/oidc-test-2:628a80b693a15c0f9c13ab75/65e6d5551e47e5bc243ca93f"
    ]
    expected_utf8 = {
        8: "https://oidc.codefresh.io",
        9: "https://g.codefresh.io/build/65e6ebe0bfbfa1782876165e",
        11: "hybrid",
        12: "https://github.com/test-codefresh/fulcio",
        14: "feat/codefresh-issuer",
        18: "https://g.codefresh.io/api/pipelines/65e6d5551e47e5bc243ca93f",
        21: "https://g.codefresh.io/build/65e6ebe0bfbfa1782876165e",
        24: "account:628a80b693a15c0f9c13ab75:pipeline:65e6d5551e47e5bc243ca93f",
    }
    assert fulcio_extension(certificate, 1) == b"https://oidc.codefresh.io"
    for n, value in expected_utf8.items():
        assert fulcio_extension(certificate, n) == b"\x0c" + bytes([len(value)]) + value.encode()
    assert fulcio_extension_numbers(certificate) == {1, *expected_utf8}
    assert chains_to(certificate, ca)


def test_a_leaf_looks_like_fulcios() -> None:
    ca = LocalCA.generate()
    certificate = ca.issue(email_identity("dev@example.com")).certificate
    assert certificate.subject == x509.Name([])
    assert certificate.not_valid_after_utc - certificate.not_valid_before_utc == timedelta(minutes=10)
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["dev@example.com"]
    assert fulcio_extension(certificate, 1) == b"https://accounts.google.com"
    aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.intermediate_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest


def test_leaves_are_encoded_as_the_certificate_builder_encodes_them() -> None:
    ca, key = LocalCA.generate(), ec.generate_private_key(ec.SECP256R1())
    long_one = CertIdentity("https://x.test", "https://x.test/" + "u" * 300, "a@b.test", {2: "raw", 24: "v" * 200})
    for identity in (codefresh_identity(**FULCIO_CODEFRESH), github_identity(), email_identity("a@b.test"), long_one):
        leaf = ca.issue(identity, key=key).certificate
        extensions = [
            extension(LEAF_KEY_USAGE, critical=True),
            extension(CODE_SIGNING),
            extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key())),
            extension(ca.authority_key_identifier),
            extension(subject_alternative_name(identity), critical=True),
            *(extension(value) for value in fulcio_extensions(identity)),
        ]
        reference = (
            x509.CertificateBuilder(extensions=extensions)
            .subject_name(x509.Name([]))
            .issuer_name(ca.intermediate_cert.subject)
            .public_key(key.public_key())
            .serial_number(leaf.serial_number)
            .not_valid_before(leaf.not_valid_before_utc)
            .not_valid_after(leaf.not_valid_after_utc)
            .sign(ca.intermediate_key, hashes.SHA256())
        )
        assert leaf.tbs_certificate_bytes == reference.tbs_certificate_bytes
        assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(minutes=10)
        assert chains_to(leaf, ca)


def test_the_ca_chain_is_intermediate_then_root() -> None:
    ca = LocalCA.generate("test-ca")
    intermediate, root = (x509.load_der_x509_certificate(der) for der in ca.chain_der())
    assert (intermediate, root) == (ca.intermediate_cert, ca.root_cert)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    constraints = intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    assert intermediate.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign


def test_a_forged_build_config_disagrees_with_the_san() -> None:
    identity = codefresh_identity(**FULCIO_CODEFRESH, build_config_pipeline_id="ffffffffffffffffffffffff")
    assert identity.san_uri is not None and identity.san_uri.endswith("/65e6d5551e47e5bc243ca93f")
    assert identity.extensions[18] == "https://g.codefresh.io/api/pipelines/ffffffffffffffffffffffff"


def test_github_extensions_are_raw_then_utf8() -> None:
    certificate = LocalCA.generate().issue(github_identity(repository="myorg/app", run_id="42")).certificate
    assert fulcio_extension(certificate, 5) == b"myorg/app"
    assert fulcio_extension(certificate, 6) == b"refs/heads/main"
    assert fulcio_extension(certificate, 8) == b"\x0c\x2bhttps://token.actions.githubusercontent.com"
    assert fulcio_extension(certificate, 21)[2:] == b"https://github.com/myorg/app/actions/runs/42/attempts/1"
    assert fulcio_extension(certificate, 9) == fulcio_extension(certificate, 18)


def test_long_extension_values_use_the_long_der_length_form() -> None:
    long_ref = "refs/heads/" + "x" * 200
    certificate = LocalCA.generate().issue(github_identity(ref=long_ref)).certificate
    assert fulcio_extension(certificate, 14) == b"\x0c\x81" + bytes([len(long_ref)]) + long_ref.encode()


def test_other_cas_and_self_signed_certificates_do_not_chain() -> None:
    ca, other = LocalCA.generate(), LocalCA.generate("other")
    assert not chains_to(other.issue(codefresh_identity(**FULCIO_CODEFRESH)).certificate, ca)
    test_certificate = self_signed_test_certificate().certificate
    assert test_certificate.subject == test_certificate.issuer
    assert not chains_to(test_certificate, ca)


# Entry bodies


def test_entry_bodies_have_the_shapes_of_real_leaves() -> None:
    ca = LocalCA.generate()
    issued = ca.issue(github_identity())
    key_pem = public_key_pem(issued.private_key)
    ours_and_theirs = [
        (hashedrekord_body(issued.pem, b"artifact", issued.private_key), "bundle_v3_github.whl.sigstore"),
        (dsse_body(issued.pem, b"{}", issued.private_key), "happy-path-intoto-in-dsse-v3.bundle.sigstore.json"),
        (hashedrekord_v002_body(issued.der, b"artifact", issued.private_key), "staging-rekor-v2.txt.sigstore.json"),
    ]
    for body, fixture in ours_and_theirs:
        assert body == rfc8785.dumps(json.loads(body))
        assert shape(json.loads(body)) == shape(fixture_body(fixture)), fixture
    intoto = json.loads(intoto_v002_body(key_pem, b"{}", issued.private_key))
    real = shape(fixture_body("bundle-publish.json"))
    del real["spec"]["content"]["envelope"]["signatures"][0]["keyid"]  # optional; we write none
    assert shape(intoto) == real


def test_entry_signatures_verify() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    hashedrekord = json.loads(hashedrekord_body(public_key_pem(key), b"artifact", key))
    assert hashedrekord["spec"]["data"]["hash"]["value"] == hashlib.sha256(b"artifact").hexdigest()
    public.verify(b64d(hashedrekord["spec"]["signature"]["content"]), b"artifact", ec.ECDSA(hashes.SHA256()))
    dsse = json.loads(dsse_body(public_key_pem(key), b"{}", key))
    pae = pre_authentication_encoding("application/vnd.in-toto+json", b"{}")
    assert pae == b"DSSEv1 28 application/vnd.in-toto+json 2 {}"
    public.verify(b64d(dsse["spec"]["signatures"][0]["signature"]), pae, ec.ECDSA(hashes.SHA256()))
    intoto = json.loads(intoto_v002_body(public_key_pem(key), b"{}", key))
    sig = b64d(b64d(intoto["spec"]["content"]["envelope"]["signatures"][0]["sig"]).decode())
    public.verify(sig, pae, ec.ECDSA(hashes.SHA256()))


def test_canonical_json_is_rfc8785() -> None:
    for code in range(128):  # every ASCII character, escaped or not, in keys and values
        document = {"k" + chr(code): [chr(code) * 2, 1 - 2**53, True, None, {"b": chr(code), "a": 0}]}
        assert canonical(document) == rfc8785.dumps(document)
    for unusual in ({"f": 1.5}, {"s": "é"}, {"é": 1}):  # these go to rfc8785 itself
        assert canonical(unusual) == rfc8785.dumps(unusual)


def test_populate_signs_the_entry_timestamps_it_will_serve() -> None:
    log, ca = SimLog("sim.test"), LocalCA.generate()
    log.append(b"already there")
    populate(log, ca, 30, seed=3)
    assert sorted(log.active.entry_timestamps) == list(range(1, 31))
    public = log.key.public_key()
    for index in range(1, 31):
        location = log.locate(index)
        assert location is not None
        payload = {
            "body": base64.b64encode(log.active.bodies[index]).decode(),
            "integratedTime": log.active.integrated_times[index],
            "logID": log.log_id.hex(),
            "logIndex": index,
        }
        public.verify(log.signed_entry_timestamp(location), rfc8785.dumps(payload), ec.ECDSA(hashes.SHA256()))


def entry_certificate(public_key: dict[str, str]) -> bytes:
    """The DER certificate of a hashedrekord's publicKey, or b"" for a plain key or another kind."""
    pem = b64d(public_key.get("content", ""))
    if b"CERTIFICATE" not in pem:
        return b""
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def test_populate_gives_every_entry_its_own_certificate() -> None:
    log, ca = SimLog("sim.test"), LocalCA.generate()
    report = populate(log, ca, 300, watched_fraction=0.1, seed=1)
    assert log.size == report.count == 300
    assert 10 < report.watched < 60
    certificates = [
        x509.load_der_x509_certificate(der) for body in log.active.bodies for der in decode_entry(body).certificates
    ]
    assert len(certificates) > 200
    assert len({certificate.fingerprint(hashes.SHA256()) for certificate in certificates}) == len(certificates)
    issuers = [fulcio_extension(certificate, 1) for certificate in certificates]
    assert issuers.count(b"https://oidc.codefresh.io") == report.watched


def test_unwatched_entries_are_as_large_as_real_ones() -> None:
    """Mostly ~1.4 KB hashedrekord around an ~800-byte PEM certificate (the real leaves of
    fixtures/sigstore), some attestations over 3 KB, every kind a real decoder knows."""
    factory = EntryFactory(LocalCA.generate(), random.Random(7), leaf_key=ec.generate_private_key(ec.SECP256R1()))
    bodies = factory.unwatched_many(400)
    decoded = [decode_entry(body) for body in bodies]
    assert {entry.kind for entry in decoded} == {"hashedrekord", "dsse", "intoto"}
    assert 1200 <= statistics.median(map(len, bodies)) <= 1600
    assert 1600 <= statistics.mean(map(len, bodies)) <= 2200
    assert sum(len(body) > 3000 for body in bodies) > 40
    assert sum(entry.kind != "hashedrekord" for entry in decoded if entry.certificates) > 20
    email_certificates = [der for entry in decoded for der in entry.certificates if b"@example.com" in der]
    assert len(email_certificates) > 150
    assert all(500 <= len(der) <= 900 for der in email_certificates)


# Over HTTP


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[RunningSimulator]:
    running = await start_simulator(directory=tmp_path)
    yield running
    await running.stop()


def trusted_log_key(sim: RunningSimulator) -> bytes:
    """The log key's SPKI as the daemon would find it: in the written trusted_root.json."""
    root = json.loads(sim.trust_files.trusted_root.read_text())
    (tlog,) = root["tlogs"]
    assert tlog["baseUrl"] == sim.url
    spki = b64d(tlog["publicKey"]["rawBytes"])
    assert b64d(tlog["logId"]["keyId"]) == hashlib.sha256(spki).digest()
    return spki


def log_verifier(sim: RunningSimulator) -> NoteVerifier:
    return verifier_for_key(sim.url.removeprefix("http://"), trusted_log_key(sim))


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def retrieve(http: aiohttp.ClientSession, sim: RunningSimulator, query: dict[str, Any]) -> Any:
    async with http.post(f"{sim.url}/api/v1/log/entries/retrieve", json=query) as response:
        assert response.status == 200, await response.text()
        return await response.json()


def only_entry(answer: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ((uuid, entry),) = answer.items()
    return uuid, entry


def fill(sim: RunningSimulator, count: int) -> None:
    start = sim.log.size
    sim.log.append_many([f"body {start + number}".encode() for number in range(count)])


async def test_trust_files_are_sigstore_documents(sim: RunningSimulator) -> None:
    root = json.loads(sim.trust_files.trusted_root.read_text())
    assert root["mediaType"] == "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
    (authority,) = root["certificateAuthorities"]
    chain = [b64d(item["rawBytes"]) for item in authority["certChain"]["certificates"]]
    assert chain == sim.ca.chain_der()
    assert root["tlogs"][0]["publicKey"]["keyDetails"] == "PKIX_ECDSA_P256_SHA_256"
    config = json.loads(sim.trust_files.signing_config.read_text())
    assert config["rekorTlogUrls"][0]["url"] == sim.url
    assert config["rekorTlogUrls"][0]["majorApiVersion"] == 1


async def test_log_info_sums_the_shards(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    fill(sim, 5)
    old_tree = sim.log.active.tree_id
    async with http.post(f"{sim.url}/sim/rotate") as response:
        new_tree = int((await response.json())["treeID"])
    fill(sim, 3)
    info = await get_json(http, f"{sim.url}/api/v1/log")
    assert info["treeID"] == str(new_tree) and info["treeSize"] == 3
    (inactive,) = info["inactiveShards"]
    assert inactive["treeID"] == str(old_tree) and inactive["treeSize"] == 5
    assert inactive["treeSize"] + info["treeSize"] == sim.log.size == 8
    verifier = log_verifier(sim)
    host = sim.url.removeprefix("http://")
    for shard in (info, inactive):
        checkpoint = open_checkpoint(shard["signedTreeHead"], [verifier], origin=f"{host} - {shard['treeID']}")
        assert (checkpoint.size, checkpoint.root_hash.hex()) == (shard["treeSize"], shard["rootHash"])
    again = await get_json(http, f"{sim.url}/api/v1/log")
    assert again["signedTreeHead"] != info["signedTreeHead"]  # the active checkpoint is re-signed
    assert again["inactiveShards"][0]["signedTreeHead"] == inactive["signedTreeHead"]  # cached


async def test_entries_carry_global_and_per_shard_indexes(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    fill(sim, 6)
    sim.log.rotate_shard()
    fill(sim, 4)
    verifier = log_verifier(sim)
    answer = await retrieve(http, sim, {"logIndexes": [8, 2]})
    assert [only_entry(item)[1]["logIndex"] for item in answer] == [8, 2]
    for item, (shard, shard_index) in zip(answer, [(sim.log.active, 2), (sim.log.inactive[0], 2)], strict=True):
        uuid, entry = only_entry(item)
        proof = entry["verification"]["inclusionProof"]
        assert (proof["logIndex"], proof["treeSize"]) == (shard_index, shard.size)
        assert uuid == f"{shard.tree_id:016x}" + leaf_hash(b64d(entry["body"])).hex()
        checkpoint = open_checkpoint(proof["checkpoint"], [verifier])
        assert (checkpoint.size, checkpoint.root_hash.hex()) == (proof["treeSize"], proof["rootHash"])
        proof_hashes = [bytes.fromhex(value) for value in proof["hashes"]]
        verify_inclusion(leaf_hash(b64d(entry["body"])), shard_index, shard.size, proof_hashes, checkpoint.root_hash)
        by_uuid = await get_json(http, f"{sim.url}/api/v1/log/entries/{uuid}")
        by_hash = await get_json(http, f"{sim.url}/api/v1/log/entries/{uuid[16:]}")
        by_index = await get_json(http, f"{sim.url}/api/v1/log/entries?logIndex={entry['logIndex']}")
        assert {only_entry(by_uuid)[0], only_entry(by_hash)[0], only_entry(by_index)[0]} == {uuid}


async def test_signed_entry_timestamps_verify(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    fill(sim, 3)
    sim.log.rotate_shard()
    index = sim.simulator.append_codefresh(**FULCIO_CODEFRESH)
    _, entry = only_entry(await get_json(http, f"{sim.url}/api/v1/log/entries?logIndex={index}"))
    assert entry["logID"] == sim.log.log_id.hex()
    payload = {key: entry[key] for key in ("body", "integratedTime", "logID", "logIndex")}
    assert payload["logIndex"] == 3
    public_key = serialization.load_der_public_key(trusted_log_key(sim))
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    signature = b64d(entry["verification"]["signedEntryTimestamp"])
    public_key.verify(signature, rfc8785.dumps(payload), ec.ECDSA(hashes.SHA256()))


async def test_retrieve_limits_and_omissions(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    fill(sim, 12)
    url = f"{sim.url}/api/v1/log/entries/retrieve"
    async with http.post(url, json={"logIndexes": list(range(11))}) as response:
        assert response.status == 422
    async with http.post(url, json={"logIndexes": list(range(6)), "entryUUIDs": ["0" * 64] * 5}) as response:
        assert response.status == 422
    answer = await retrieve(http, sim, {"logIndexes": [11, 500, 0, 12]})
    assert [only_entry(item)[1]["logIndex"] for item in answer] == [11, 0]
    body = b64d(only_entry(answer[1])[1]["body"])
    by_uuid = await retrieve(http, sim, {"logIndexes": [5], "entryUUIDs": [leaf_hash(body).hex()]})
    assert [only_entry(item)[1]["logIndex"] for item in by_uuid] == [0, 5]
    async with http.get(f"{sim.url}/api/v1/log/entries?logIndex=12") as response:
        assert response.status == 404
    async with http.get(f"{sim.url}/api/v1/log/entries/{'ab' * 32}") as response:
        assert response.status == 404
    async with http.get(f"{sim.url}/api/v1/log/entries/not-hex") as response:
        assert response.status == 400


async def test_consistency_proofs_and_their_400s(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    fill(sim, 21)
    shard = sim.log.active
    proof = await get_json(http, f"{sim.url}/api/v1/log/proof?firstSize=6&lastSize=13&treeID={shard.tree_id}")
    assert proof["rootHash"] == shard.root().hex()  # the current root, not lastSize's
    proof_hashes = [bytes.fromhex(value) for value in proof["hashes"]]
    verify_consistency(6, 13, proof_hashes, shard.root(6), shard.root(13))
    same = await get_json(http, f"{sim.url}/api/v1/log/proof?firstSize=9&lastSize=9")
    assert same["hashes"] == []
    default_first = await get_json(http, f"{sim.url}/api/v1/log/proof?lastSize=4")
    assert len(default_first["hashes"]) == 2
    for query in (
        "firstSize=5&lastSize=4",
        "lastSize=22",
        "firstSize=0&lastSize=3",
        "firstSize=1",
        "lastSize=x",
        "lastSize=3&treeID=12345",
    ):
        async with http.get(f"{sim.url}/api/v1/log/proof?{query}") as response:
            assert response.status == 400, query
            assert (await response.json())["code"] == 400


async def test_faults_answer_then_recover(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    url = f"{sim.url}/api/v1/log"
    async with http.post(f"{sim.url}/sim/faults", json={"status": 429, "count": 2, "retry_after": 3}):
        pass
    for _ in range(2):
        async with http.get(url) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "3"
    async with http.get(url) as response:
        assert response.status == 200
    sim.faults.inject(count=1, status=503)
    async with http.get(url) as response:
        assert response.status == 503
    sim.faults.inject(count=1, delay=0.3)
    started = asyncio.get_running_loop().time()
    async with http.get(url) as response:
        assert response.status == 200
    assert asyncio.get_running_loop().time() - started >= 0.3


async def test_added_latency_delays_the_log_api_but_not_the_control_endpoints(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    running = await start_simulator(directory=tmp_path, api="tiles", latency_ms=200)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with http.get(f"{running.url}/checkpoint") as response:
            assert response.status == 200
        assert loop.time() - started >= 0.2
        running.simulator.latency = 3600.0  # were control answers delayed, this would time out
        async with asyncio.timeout(60), http.post(f"{running.url}/sim/append", json={"unwatched": 1}) as response:
            assert response.status == 200
    finally:
        await running.stop()
    with pytest.raises(ValueError, match="latency_ms"):
        await start_simulator(directory=tmp_path, latency_ms=-1)


async def test_a_fork_fails_consistency_with_the_last_checkpoint(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    verifier = log_verifier(sim)
    fill(sim, 40)
    before = open_checkpoint((await get_json(http, f"{sim.url}/api/v1/log"))["signedTreeHead"], [verifier])
    async with http.post(f"{sim.url}/sim/fork", json={"at": 10}) as response:
        assert response.status == 200
    fill(sim, 5)
    after = open_checkpoint((await get_json(http, f"{sim.url}/api/v1/log"))["signedTreeHead"], [verifier])
    proof = await get_json(http, f"{sim.url}/api/v1/log/proof?firstSize={before.size}&lastSize={after.size}")
    with pytest.raises(ProofError):
        verify_consistency(
            before.size,
            after.size,
            [bytes.fromhex(item) for item in proof["hashes"]],
            before.root_hash,
            after.root_hash,
        )


async def test_checkpoints_signed_with_the_wrong_key_do_not_open(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    fill(sim, 2)
    verifier = log_verifier(sim)
    async with http.post(f"{sim.url}/sim/wrong_key", json={"enabled": True}):
        pass
    with pytest.raises(NoteError):
        open_checkpoint((await get_json(http, f"{sim.url}/api/v1/log"))["signedTreeHead"], [verifier])
    sim.log.sign_with_wrong_key(False)
    open_checkpoint((await get_json(http, f"{sim.url}/api/v1/log"))["signedTreeHead"], [verifier])


async def test_entry_checkpoints_are_signed_once_per_tree_head(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    fill(sim, 6)
    verifier = log_verifier(sim)

    async def entry_checkpoint(index: int) -> str:
        async with http.post(f"{sim.url}/api/v1/log/entries/retrieve", json={"logIndexes": [index]}) as response:
            text = await response.text()
        assert text == json.dumps(json.loads(text))  # spelled as json.dumps spells it
        return str(only_entry(json.loads(text)[0])[1]["verification"]["inclusionProof"]["checkpoint"])

    first = await entry_checkpoint(0)
    assert await entry_checkpoint(3) == first  # one signature for one tree head
    fill(sim, 1)
    assert open_checkpoint(await entry_checkpoint(0), [verifier]).size == 7
    sim.log.fork(at=3)
    forked = open_checkpoint(await entry_checkpoint(0), [verifier])
    assert (forked.size, forked.root_hash) == (7, sim.log.active.root())
    _, rewritten = only_entry((await retrieve(http, sim, {"logIndexes": [3]}))[0])
    assert b64d(rewritten["body"]) == b"body 3\n"  # and its timestamp is signed anew
    payload = {key: rewritten[key] for key in ("body", "integratedTime", "logID", "logIndex")}
    signature = b64d(rewritten["verification"]["signedEntryTimestamp"])
    sim.log.key.public_key().verify(signature, rfc8785.dumps(payload), ec.ECDSA(hashes.SHA256()))
    sim.log.sign_with_wrong_key(True)
    with pytest.raises(NoteError):
        open_checkpoint(await entry_checkpoint(0), [verifier])
    sim.log.sign_with_wrong_key(False)
    assert open_checkpoint(await entry_checkpoint(0), [verifier]).root_hash == forked.root_hash


async def test_control_endpoints_append_real_and_forged_signings(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    request = {"codefresh": [FULCIO_CODEFRESH], "github": [{"repository": "myorg/app"}], "unwatched": 4}
    async with http.post(f"{sim.url}/sim/append", json=request) as response:
        appended = await response.json()
    assert appended == {"codefresh": [0], "github": [1], "unwatched": [2, 3, 4, 5]}
    async with http.post(f"{sim.url}/sim/forged", json=FULCIO_CODEFRESH) as response:
        assert (await response.json())["logIndex"] == 6
    async with http.post(f"{sim.url}/sim/append", json={"codefresh": [{"account_id": "x"}]}) as response:
        assert response.status == 400
    certificates = []
    for item in await retrieve(http, sim, {"logIndexes": [0, 1, 6]}):
        spec = json.loads(b64d(only_entry(item)[1]["body"]))["spec"]
        certificates.append(x509.load_pem_x509_certificate(b64d(spec["signature"]["publicKey"]["content"])))
    real, github, forged = certificates
    assert chains_to(real, sim.ca) and chains_to(github, sim.ca)
    assert not chains_to(forged, sim.ca)
    assert forged.extensions.get_extension_for_class(x509.SubjectAlternativeName) == (
        real.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    )


async def test_bad_control_requests_are_400s(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    bad = [
        ("faults", {"count": "2"}),
        ("faults", {"count": -1}),
        ("faults", {"delay": "slow"}),
        ("append", {"unwatched": 1.5}),
        ("fork", {}),
        ("fork", {"at": 0}),  # the log is empty
        ("wrong_key", {"enabled": "yes"}),
    ]
    for endpoint, request in bad:
        async with http.post(f"{sim.url}/sim/{endpoint}", json=request) as response:
            assert response.status == 400, (endpoint, request)
    async with http.get(f"{sim.url}/api/v1/log") as response:
        assert response.status == 200


async def test_prefill_and_rate(tmp_path: Path) -> None:
    running = await start_simulator(directory=tmp_path, rate=50, prefill=20)
    try:
        assert running.prefill is not None and running.prefill.count == 20
        await asyncio.sleep(0.35)
        assert running.log.size >= 25
    finally:
        await running.stop()


def test_populate_chunks_are_made_in_other_processes() -> None:
    ca = LocalCA.generate()
    chunks = [PopulateChunk(ca.to_pem(), 5, watched, FULCIO_TEST_CODEFRESH, 1) for watched in ((0, 3), (4,))]
    results = list(chunk_results(chunks, populate_chunk, workers=2))
    assert [len(result.bodies) for result in results] == [5, 5]
    for chunk, result in zip(chunks, results, strict=True):  # in order, the watched entries where asked
        certificates = [json.loads(body)["spec"].get("signature", {}).get("publicKey", {}) for body in result.bodies]
        codefresh = [at for at, key in enumerate(certificates) if b"oidc.codefresh.io" in entry_certificate(key)]
        assert tuple(codefresh) == chunk.watched
