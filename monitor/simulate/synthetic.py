"""Synthetic signings: entries with real certificates for watched and random unwatched identities.

Most of a real log is signings nobody watches: GitHub workflows of other organisations, email
identities, and entries signed with a plain public key. `EntryFactory` makes those and the watched
Codefresh ones; `populate` fills a log with many of them quickly for benchmarks. For a Rekor v2 log
every signing is a hashedrekord v0.0.2 (v2 logs DSSE attestations as a hashedrekord over the PAE).

With a CT log, the factory's certificates are logged there first (`LocalCA.issue`). To keep
`populate` fast it logs only the watched certificates (two more signatures each, 1% of the entries);
`populate_ct` fills a CT log alone, with precertificates only (one signature each), for benchmarks.

The unwatched mix has the sizes of the real leaves in fixtures/sigstore, so that benchmarks move
as many bytes per entry as a real catch-up: mostly hashedrekord of about 1.4 KB around an 800-byte
(PEM) email certificate, some of about 3.2 KB around a GitHub Actions one, some dsse and intoto
attestations of 3.3 KB and more, and a few small plain-key signings.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import random
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from monitor.simulate.ca import (
    CertIdentity,
    IssuedCert,
    LocalCA,
    PrecertificateLog,
    codefresh_identity,
    email_identity,
    github_identity,
    new_p256_key,
)
from monitor.simulate.ct import CtLeaf, CtStamper, SimCtLog, precert_entry
from monitor.simulate.entries import (
    IN_TOTO_PAYLOAD_TYPE,
    dsse_body,
    hashedrekord_body,
    hashedrekord_v002_body,
    intoto_v002_body,
    pre_authentication_encoding,
    public_key_pem,
)
from monitor.simulate.log import SimLog, entry_timestamp
from monitor.tlog.ct import merkle_tree_leaf

# Fulcio's own Codefresh test identity (FORMATS.md §5), the default watched pipeline.
FULCIO_TEST_CODEFRESH: dict[str, str] = {
    "account_id": "628a80b693a15c0f9c13ab75",
    "account_name": "test-codefresh",
    "pipeline_id": "65e6d5551e47e5bc243ca93f",
    "pipeline_name": "oidc-test/oidc-test-2",
    "scm_repo_url": "https://github.com/test-codefresh/fulcio",
    "scm_ref": "feat/codefresh-issuer",
    "runner_environment": "hybrid",
}

IN_TOTO_STATEMENT = (
    b'{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"https://slsa.dev/provenance/v1"}'
)
OTHER_ORGS = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell")
EMAIL_ISSUERS = ("https://accounts.google.com", "https://github.com/login/oauth")
POPULATE_CHUNK = 2_000

T = TypeVar("T")
R = TypeVar("R")


def object_id(rng: random.Random) -> str:
    """A 24-hex id like the MongoDB ObjectIds Codefresh uses for accounts, pipelines and builds."""
    return rng.randbytes(12).hex()


@dataclass
class EntryFactory:
    """Entry bodies signed by certificates from `ca`; `rng` decides every random choice.

    With `leaf_key` set, every certificate reuses that key (much faster); otherwise each gets its own.
    With `rekor_v2` set, the bodies are the Rekor v2 kinds. With `ct` set, the certificates of `ca`
    are logged there first (another CA's, like a rogue one, are not).
    """

    ca: LocalCA
    rng: random.Random = field(default_factory=random.Random)
    leaf_key: ec.EllipticCurvePrivateKey | None = None
    rekor_v2: bool = False
    ct: PrecertificateLog | None = None

    def issue(self, identity: CertIdentity, ca: LocalCA | None = None) -> IssuedCert:
        if ca is None or ca is self.ca:
            return self.ca.issue(identity, key=self.leaf_key, ct=self.ct)
        return ca.issue(identity, key=self.leaf_key)

    def artifact(self) -> bytes:
        return b"artifact " + self.rng.randbytes(16).hex().encode()

    def hashedrekord(self, identity: CertIdentity, ca: LocalCA | None = None) -> bytes:
        issued = self.issue(identity, ca)
        if self.rekor_v2:
            return hashedrekord_v002_body(issued.der, self.artifact(), issued.private_key)
        return hashedrekord_body(issued.pem, self.artifact(), issued.private_key)

    def dsse(self, identity: CertIdentity) -> bytes:
        issued = self.issue(identity)
        if self.rekor_v2:
            pae = pre_authentication_encoding(IN_TOTO_PAYLOAD_TYPE, IN_TOTO_STATEMENT)
            return hashedrekord_v002_body(issued.der, pae, issued.private_key)
        return dsse_body(issued.pem, IN_TOTO_STATEMENT, issued.private_key)

    def codefresh(self, ca: LocalCA | None = None, **identity: Any) -> bytes:
        """A Codefresh signing; `identity` holds codefresh_identity's arguments, workflow_id optional."""
        identity.setdefault("workflow_id", object_id(self.rng))
        return self.hashedrekord(codefresh_identity(**identity), ca)

    def github(self, **identity: Any) -> bytes:
        return self.hashedrekord(github_identity(**identity))

    def unwatched(self) -> bytes:
        """A random signing of nobody's concern, of a random kind."""
        make: Callable[[], bytes] = self.rng.choices(UNWATCHED_KINDS, weights=UNWATCHED_WEIGHTS)[0]
        return make(self)

    def unwatched_many(self, count: int) -> list[bytes]:
        return [self.unwatched() for _ in range(count)]

    def other_github_identity(self) -> CertIdentity:
        org = f"{self.rng.choice(OTHER_ORGS)}-{self.rng.randrange(10_000)}"
        return github_identity(
            repository=f"{org}/service-{self.rng.randrange(100)}",
            sha=self.rng.randbytes(20).hex(),
            run_id=str(self.rng.randrange(10**9, 10**10)),
        )

    def other_github(self) -> bytes:
        return self.hashedrekord(self.other_github_identity())

    def other_github_dsse(self) -> bytes:
        return self.dsse(self.other_github_identity())

    def other_github_intoto(self) -> bytes:
        """An in-toto attestation (intoto v0.0.2) certified for a GitHub workflow; for v2, a DSSE one."""
        if self.rekor_v2:
            return self.other_github_dsse()
        issued = self.issue(self.other_github_identity())
        return intoto_v002_body(issued.pem, IN_TOTO_STATEMENT, issued.private_key)

    def email_identity(self) -> CertIdentity:
        address = f"dev{self.rng.randrange(10**6)}@example.com"
        return email_identity(address, issuer=self.rng.choice(EMAIL_ISSUERS))

    def email(self) -> bytes:
        return self.hashedrekord(self.email_identity())

    def public_key_only(self) -> bytes:
        """Signed with a plain key, no certificate: hashedrekord or intoto v0.0.2 (v2: hashedrekord 0.0.2)."""
        key = self.leaf_key or new_p256_key()
        if self.rekor_v2:
            return hashedrekord_v002_body(None, self.artifact(), key)
        if self.rng.random() < 0.5:
            return hashedrekord_body(public_key_pem(key), self.artifact(), key)
        return intoto_v002_body(public_key_pem(key), IN_TOTO_STATEMENT, key)


# An unwatched signing's kind and its share of the mix (see the module docstring).
UNWATCHED_KINDS: tuple[Callable[[EntryFactory], bytes], ...] = (
    EntryFactory.email,
    EntryFactory.other_github,
    EntryFactory.other_github_dsse,
    EntryFactory.other_github_intoto,
    EntryFactory.public_key_only,
)
UNWATCHED_WEIGHTS = (55, 15, 10, 5, 15)


@dataclass(frozen=True)
class PopulateReport:
    count: int
    watched: int
    seconds: float


@dataclass(frozen=True)
class ChunkStamping:
    """What a worker needs to sign a Rekor v1 chunk's entry timestamps: the log key (PKCS#8 PEM) and
    the global index the chunk's first entry will get."""

    log_key_pem: bytes
    first_index: int


@dataclass(frozen=True)
class CtStamping:
    """What a worker needs to log a chunk's watched precertificates: the CT log's key (PKCS#8 PEM), its
    API, and the index its first leaf will get (the leaf index of a static-ct-api leaf)."""

    key_pem: bytes
    static: bool
    first_index: int

    def stamper(self) -> CtStamper:
        return CtStamper(_ec_key(self.key_pem), self.static, self.first_index)


@dataclass(frozen=True)
class PopulateChunk:
    """One process's share of `populate`: `count` bodies from the CA in `ca_pem`, seeded by `seed`, the
    ones at `watched` of the watched pipeline; with `stamping`, their signed entry timestamps too (the
    slow part of serving a Rekor v1 entry); with `ct`, the watched certificates are logged in CT."""

    ca_pem: bytes
    count: int
    watched: tuple[int, ...]
    pipeline: dict[str, str]
    seed: int
    rekor_v2: bool = False
    stamping: ChunkStamping | None = None
    ct: CtStamping | None = None


class PopulatedChunk(NamedTuple):
    """A chunk's bodies; with stamping, the integrated time they were stamped with (taken after their
    certificates were issued) and their signed entry timestamps; with ct, the CT leaves to append."""

    bodies: list[bytes]
    integrated_time: int | None = None
    entry_timestamps: list[bytes] | None = None
    ct_leaves: list[CtLeaf] | None = None


def _ec_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("a Rekor v1 or CT log key is an EC key")
    return key


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def populate_chunk(chunk: PopulateChunk) -> PopulatedChunk:
    """The chunk's bodies (and their timestamps, and the CT leaves of its watched certificates)."""
    ca, rng, leaf_key = LocalCA.from_pem(chunk.ca_pem), random.Random(chunk.seed), new_p256_key()
    stamper = None if chunk.ct is None else chunk.ct.stamper()
    unwatched = EntryFactory(ca, rng, leaf_key=leaf_key, rekor_v2=chunk.rekor_v2)
    watched = EntryFactory(ca, rng, leaf_key=leaf_key, rekor_v2=chunk.rekor_v2, ct=stamper)
    positions = frozenset(chunk.watched)
    bodies = [
        watched.codefresh(**chunk.pipeline) if at in positions else unwatched.unwatched() for at in range(chunk.count)
    ]
    ct_leaves = None if stamper is None else stamper.leaves
    if chunk.stamping is None:
        return PopulatedChunk(bodies, ct_leaves=ct_leaves)
    key = _ec_key(chunk.stamping.log_key_pem)
    log_id = hashlib.sha256(
        key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).digest()
    now, first = int(time.time()), chunk.stamping.first_index
    stamps = [entry_timestamp(key, log_id, body, now, first + offset) for offset, body in enumerate(bodies)]
    return PopulatedChunk(bodies, now, stamps, ct_leaves)


def chunk_results(chunks: Sequence[T], work: Callable[[T], R], workers: int) -> Iterator[R]:
    """`work` on each chunk, results in order, made here or, with several workers, in fresh (spawned) processes."""
    if workers <= 1:
        yield from map(work, chunks)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(work, chunks)


def watched_positions(rng: random.Random, count: int, fraction: float) -> tuple[int, ...]:
    """`fraction` of `count` positions, exactly (rounded), spread at random: a test that asks for 1%
    of 1,100 entries gets 11, never 4 (each position drawn alone gave anything from 0 to 25)."""
    return tuple(sorted(rng.sample(range(count), round(count * fraction))))


def populate(
    log: SimLog,
    ca: LocalCA,
    count: int,
    watched_fraction: float = 0.01,
    *,
    watched: dict[str, str] | None = None,
    seed: int | None = None,
    workers: int = 1,
    rekor_v2: bool = False,
    ct: SimCtLog | None = None,
) -> PopulateReport:
    """Append `count` entries, each with its own certificate; about `watched_fraction` are Codefresh
    signings of the `watched` pipeline (default: Fulcio's test identity), the rest unwatched.

    With `workers` > 1 the bodies are made in that many processes; they are appended in order here.
    `rekor_v2` makes Rekor v2 bodies, for a tiles log. For a Rekor v1 log the workers also sign the
    entries' timestamps, so serving them costs no signature; a chunk whose timestamps no longer fit
    (the log grew meanwhile, or its time would go backwards) is appended now and stamped when served.
    With `ct`, the watched certificates are logged there, their leaves numbered in advance: nothing
    else may log in `ct` meanwhile.
    """
    started = time.perf_counter()
    seeds = random.Random(seed)
    pem, pipeline = ca.to_pem(), watched or FULCIO_TEST_CODEFRESH
    signer = log.key if not log.tiles and isinstance(log.key, ec.EllipticCurvePrivateKey) else None
    key_pem = None if signer is None else _key_pem(signer)
    ct_key_pem = None if ct is None else _key_pem(ct.key)
    base, ct_next = log.size, 0 if ct is None else ct.size
    chunks = []
    for first in range(0, count, POPULATE_CHUNK):
        size = min(POPULATE_CHUNK, count - first)
        positions = watched_positions(random.Random(seeds.getrandbits(64)), size, watched_fraction)
        ct_stamping = None
        if ct is not None and ct_key_pem is not None:
            ct_stamping = CtStamping(ct_key_pem, ct.static, ct_next)
            ct_next += len(positions)
        stamping = None if key_pem is None else ChunkStamping(key_pem, base + first)
        chunks.append(
            PopulateChunk(pem, size, positions, pipeline, seeds.getrandbits(64), rekor_v2, stamping, ct_stamping)
        )
    for chunk, result in zip(chunks, chunk_results(chunks, populate_chunk, min(workers, len(chunks))), strict=True):
        if ct is not None and chunk.ct is not None and result.ct_leaves is not None:
            ct.append_leaves(chunk.ct.first_index, result.ct_leaves)
        stamps, when = result.entry_timestamps, result.integrated_time
        latest = log.active.integrated_times[-1] if log.active.size else 0
        fits = chunk.stamping is not None and chunk.stamping.first_index == log.size and log.key is signer
        if stamps is not None and when is not None and fits and when >= latest:
            log.append_many(result.bodies, integrated_time=when, entry_timestamps=stamps)
        else:
            log.append_many(result.bodies)
    return PopulateReport(count, sum(len(chunk.watched) for chunk in chunks), time.perf_counter() - started)


@dataclass(frozen=True)
class CtChunk:
    """One process's share of `populate_ct`: `count` precertificates, the ones at `watched` of the
    watched pipeline, logged from index `first_index` (numbered only in a static-ct-api log)."""

    ca_pem: bytes
    count: int
    watched: tuple[int, ...]
    pipeline: dict[str, str]
    seed: int
    static: bool
    first_index: int


def ct_chunk(chunk: CtChunk) -> list[CtLeaf]:
    """The chunk's CT leaves, with their precertificates."""
    ca, rng, leaf_key = LocalCA.from_pem(chunk.ca_pem), random.Random(chunk.seed), new_p256_key()
    factory = EntryFactory(ca, rng, leaf_key=leaf_key)
    positions = frozenset(chunk.watched)
    leaves = []
    for at in range(chunk.count):
        if at in positions:
            identity = codefresh_identity(workflow_id=object_id(rng), **chunk.pipeline)
        else:
            identity = factory.other_github_identity() if rng.random() < 0.7 else factory.email_identity()
        precertificate = ca.precertificate(identity, key=leaf_key)
        index = chunk.first_index + at if chunk.static else None
        leaves.append((merkle_tree_leaf(precert_entry(precertificate, ca.issuer_key_hash, index)), precertificate.der))
    return leaves


def populate_ct(
    ct: SimCtLog,
    ca: LocalCA,
    count: int,
    watched_fraction: float = 0.01,
    *,
    watched: dict[str, str] | None = None,
    seed: int | None = None,
    workers: int = 1,
) -> PopulateReport:
    """Log `count` precertificates of `ca` in `ct` (no certificates, no Rekor entries): about
    `watched_fraction` of the `watched` Codefresh pipeline, the rest GitHub and email identities.
    Made in `workers` processes, appended in order; nothing else may log in `ct` meanwhile."""
    started = time.perf_counter()
    seeds = random.Random(seed)
    pem, pipeline = ca.to_pem(), watched or FULCIO_TEST_CODEFRESH
    chunks = []
    for first in range(0, count, POPULATE_CHUNK):
        size = min(POPULATE_CHUNK, count - first)
        positions = watched_positions(random.Random(seeds.getrandbits(64)), size, watched_fraction)
        chunks.append(CtChunk(pem, size, positions, pipeline, seeds.getrandbits(64), ct.static, ct.size + first))
    for chunk, leaves in zip(chunks, chunk_results(chunks, ct_chunk, min(workers, len(chunks))), strict=True):
        ct.append_leaves(chunk.first_index, leaves)
    return PopulateReport(count, sum(len(chunk.watched) for chunk in chunks), time.perf_counter() - started)
