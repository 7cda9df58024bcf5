"""Synthetic signings: entries with real certificates for watched and random unwatched identities.

Most of a real log is signings nobody watches: GitHub workflows of other organisations, email
identities, and entries signed with a plain public key. `EntryFactory` makes those and the watched
Codefresh ones; `populate` fills a log with many of them quickly for benchmarks. For a Rekor v2 log
every signing is a hashedrekord v0.0.2 (v2 logs DSSE attestations as a hashedrekord over the PAE).

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
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from monitor.simulate.ca import (
    CertIdentity,
    IssuedCert,
    LocalCA,
    codefresh_identity,
    email_identity,
    github_identity,
    new_p256_key,
)
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


def object_id(rng: random.Random) -> str:
    """A 24-hex id like the MongoDB ObjectIds Codefresh uses for accounts, pipelines and builds."""
    return rng.randbytes(12).hex()


@dataclass
class EntryFactory:
    """Entry bodies signed by certificates from `ca`; `rng` decides every random choice.

    With `leaf_key` set, every certificate reuses that key (much faster); otherwise each gets its own.
    With `rekor_v2` set, the bodies are the Rekor v2 kinds.
    """

    ca: LocalCA
    rng: random.Random = field(default_factory=random.Random)
    leaf_key: ec.EllipticCurvePrivateKey | None = None
    rekor_v2: bool = False

    def issue(self, identity: CertIdentity, ca: LocalCA | None = None) -> IssuedCert:
        return (ca or self.ca).issue(identity, key=self.leaf_key)

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

    def email(self) -> bytes:
        address = f"dev{self.rng.randrange(10**6)}@example.com"
        return self.hashedrekord(email_identity(address, issuer=self.rng.choice(EMAIL_ISSUERS)))

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
class PopulateChunk:
    """One process's share of `populate`: `count` bodies from the CA in `ca_pem`, seeded by `seed`;
    with `stamping`, their signed entry timestamps too (the slow part of serving a Rekor v1 entry)."""

    ca_pem: bytes
    count: int
    watched_fraction: float
    pipeline: dict[str, str]
    seed: int
    rekor_v2: bool = False
    stamping: ChunkStamping | None = None


class PopulatedChunk(NamedTuple):
    """A chunk's bodies and how many are watched; with stamping, the integrated time they were
    stamped with (taken after their certificates were issued) and their signed entry timestamps."""

    bodies: list[bytes]
    watched: int
    integrated_time: int | None = None
    entry_timestamps: list[bytes] | None = None


def populate_chunk(chunk: PopulateChunk) -> PopulatedChunk:
    """The chunk's bodies and how many of them are watched Codefresh signings (and their timestamps)."""
    factory = EntryFactory(
        LocalCA.from_pem(chunk.ca_pem), random.Random(chunk.seed), leaf_key=new_p256_key(), rekor_v2=chunk.rekor_v2
    )
    bodies, watched = [], 0
    for _ in range(chunk.count):
        if factory.rng.random() < chunk.watched_fraction:
            bodies.append(factory.codefresh(**chunk.pipeline))
            watched += 1
        else:
            bodies.append(factory.unwatched())
    if chunk.stamping is None:
        return PopulatedChunk(bodies, watched)
    key = serialization.load_pem_private_key(chunk.stamping.log_key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("a Rekor v1 log key is an EC key")
    log_id = hashlib.sha256(
        key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).digest()
    now, first = int(time.time()), chunk.stamping.first_index
    stamps = [entry_timestamp(key, log_id, body, now, first + offset) for offset, body in enumerate(bodies)]
    return PopulatedChunk(bodies, watched, now, stamps)


def chunk_results(chunks: list[PopulateChunk], workers: int) -> Iterator[PopulatedChunk]:
    """The chunks' results in order, made here or, with several workers, in fresh (spawned) processes."""
    if workers <= 1:
        yield from map(populate_chunk, chunks)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(populate_chunk, chunks)


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
) -> PopulateReport:
    """Append `count` entries, each with its own certificate; about `watched_fraction` are Codefresh
    signings of the `watched` pipeline (default: Fulcio's test identity), the rest unwatched.

    With `workers` > 1 the bodies are made in that many processes; they are appended in order here.
    `rekor_v2` makes Rekor v2 bodies, for a tiles log. For a Rekor v1 log the workers also sign the
    entries' timestamps, so serving them costs no signature; a chunk whose timestamps no longer fit
    (the log grew meanwhile, or its time would go backwards) is appended now and stamped when served.
    """
    started = time.perf_counter()
    seeds = random.Random(seed)
    pem, pipeline = ca.to_pem(), watched or FULCIO_TEST_CODEFRESH
    signer = log.key if not log.tiles and isinstance(log.key, ec.EllipticCurvePrivateKey) else None
    key_pem = (
        None
        if signer is None
        else signer.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    base = log.size
    chunks = [
        PopulateChunk(
            pem,
            min(POPULATE_CHUNK, count - first),
            watched_fraction,
            pipeline,
            seeds.getrandbits(64),
            rekor_v2,
            None if key_pem is None else ChunkStamping(key_pem, base + first),
        )
        for first in range(0, count, POPULATE_CHUNK)
    ]
    total_watched = 0
    for chunk, result in zip(chunks, chunk_results(chunks, min(workers, len(chunks))), strict=True):
        stamps, when = result.entry_timestamps, result.integrated_time
        latest = log.active.integrated_times[-1] if log.active.size else 0
        fits = chunk.stamping is not None and chunk.stamping.first_index == log.size and log.key is signer
        if stamps is not None and when is not None and fits and when >= latest:
            log.append_many(result.bodies, integrated_time=when, entry_timestamps=stamps)
        else:
            log.append_many(result.bodies)
        total_watched += result.watched
    return PopulateReport(count, total_watched, time.perf_counter() - started)
