"""Per-entry cost of `analyse_entry` (decode, cheap issuer, and for watched issuers parse, identity,
chain check and verdict), in microseconds, and of each of its stages on the catch-up benchmark's mix.

    .venv/bin/python bench/bench_decode.py [--rounds N] [--entries N] [--mix N]

- unwatched: the real production GitHub Actions hashedrekord (fixtures), with only Codefresh watched;
- watched, Codefresh: simulator-issued certificates (EC P-256 CA), a new certificate per entry so
  every chain check runs, then the same certificate again (chain result cached);
- watched, GitHub: the real entry with its issuer watched, chained to the public-good Fulcio CA
  (EC P-384), chain cache disabled;
- the mix: what bench_catchup.py's simulator serves (Rekor v1 bodies, and v2 bodies for tiles), 1%
  watched Codefresh signings, each entry with its own certificate. Stages: parsing the JSON with the
  json module and with orjson, `decode_entry`, finding the watched certificates by walking every
  certificate's DER for its issuer (what was done before) or by a byte search first
  (`watched_certificates`), and the whole `analyse_entry` (chain check of each watched one included).
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from monitor.analysis import analyse_entry, watched_certificates
from monitor.config import WatchSettings
from monitor.entries import decode_entry
from monitor.identity.fulcio import ChainVerifier, certificate_issuer
from monitor.policy import Policy
from monitor.simulate.ca import LocalCA, codefresh_identity
from monitor.simulate.entries import hashedrekord_body
from monitor.simulate.synthetic import FULCIO_TEST_CODEFRESH, PopulateChunk, populate_chunk
from monitor.trust import TrustRoot, load_trust_root, parse_trust_root

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "sigstore"  # see its README.md
ACCOUNT_ID = "628a80b693a15c0f9c13ab75"
CODEFRESH_WATCH = {
    "codefresh": [{"account_id": ACCOUNT_ID, "account_name": "acme", "pipelines": [{"id": "6612ad6384ef42f18019b7e9"}]}]
}


def github_body() -> bytes:
    bundle = json.loads((FIXTURES / "bundle_v3_github.whl.sigstore").read_text())
    return base64.b64decode(bundle["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"])


def codefresh_bodies(ca: LocalCA, count: int) -> list[bytes]:
    bodies = []
    for n in range(count):
        identity = codefresh_identity(
            account_id=ACCOUNT_ID,
            account_name="acme",
            pipeline_id="6612ad6384ef42f18019b7e9",
            pipeline_name="project/release",
            workflow_id=f"{n:024x}",
        )
        issued = ca.issue(identity)
        bodies.append(hashedrekord_body(issued.pem, f"artifact {n}".encode(), issued.private_key))
    return bodies


def local_trust(ca: LocalCA) -> TrustRoot:
    """A trust root whose only Fulcio CA is `ca`."""
    authority = {
        "certChain": {"certificates": [{"rawBytes": base64.b64encode(der).decode()} for der in ca.chain_der()]},
        "validFor": {"start": "2000-01-01T00:00:00Z"},
    }
    return parse_trust_root({"certificateAuthorities": [authority], "tlogs": []}, None, "bench")


def local_chains(ca: LocalCA, cache_size: int) -> ChainVerifier:
    return ChainVerifier(local_trust(ca), cache_size)


def mix_policy() -> Policy:
    """Watches the Codefresh pipeline of the mix's watched signings."""
    account = {
        "account_id": FULCIO_TEST_CODEFRESH["account_id"],
        "account_name": FULCIO_TEST_CODEFRESH["account_name"],
        "pipelines": [{"id": FULCIO_TEST_CODEFRESH["pipeline_id"]}],
    }
    return Policy(WatchSettings.model_validate({"codefresh": [account]}))


def mix_bodies(ca: LocalCA, count: int, rekor_v2: bool) -> list[bytes]:
    """The catch-up benchmark's entries: its unwatched mix and 1% watched Codefresh signings."""
    chunk = PopulateChunk(
        ca.to_pem(), count, tuple(range(0, count, 100)), FULCIO_TEST_CODEFRESH, seed=9, rekor_v2=rekor_v2
    )
    return populate_chunk(chunk).bodies


def mix_stages(bodies: Sequence[bytes], policy: Policy, chains: ChainVerifier, rounds: int) -> dict[str, float]:
    decoded = [decode_entry(body) for body in bodies]

    def every_issuer_walked(index: int) -> object:
        return [der for der in decoded[index].certificates if policy.watches_issuer(certificate_issuer(der))]

    positions = range(len(bodies))
    return {
        "JSON, json module": microseconds_per_entry(bodies, json.loads, rounds),
        "JSON, orjson": microseconds_per_entry(bodies, orjson.loads, rounds),
        "decode_entry": microseconds_per_entry(bodies, decode_entry, rounds),
        "watched certificates: every issuer walked": microseconds_per_entry(positions, every_issuer_walked, rounds),
        "watched certificates: byte search first": microseconds_per_entry(
            decoded, lambda entry: watched_certificates(entry, policy), rounds
        ),
        "analyse_entry (all of it)": microseconds_per_entry(
            bodies, lambda body: analyse_entry(body, policy, chains), rounds
        ),
    }


def print_table(title: str, results: dict[str, float]) -> None:
    print(title)
    width = max(map(len, results))
    for name, micros in results.items():
        print(f"  {name:<{width}}  {micros:8.2f} µs/entry")


def microseconds_per_entry(bodies: Sequence[Any], analyse: Callable[[Any], object], rounds: int) -> float:
    """Median over `rounds` of the mean cost per body."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for body in bodies:
            analyse(body)
        samples.append((time.perf_counter() - start) / len(bodies) * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--entries", type=int, default=400, help="distinct entries per round")
    parser.add_argument("--mix", type=int, default=3000, help="entries of the catch-up mix per round")
    args = parser.parse_args()

    public_good = load_trust_root(str(FIXTURES / "trusted_root.json"))
    codefresh_policy = Policy(WatchSettings.model_validate(CODEFRESH_WATCH))
    github_policy = Policy(WatchSettings.model_validate({"issuers": ["https://token.actions.githubusercontent.com"]}))
    ca = LocalCA.generate()
    bodies = codefresh_bodies(ca, args.entries)
    github = [github_body()] * args.entries

    unwatched_chains = ChainVerifier(public_good)
    uncached_local = local_chains(ca, cache_size=0)
    cached_local = local_chains(ca, cache_size=4096)
    uncached_public_good = ChainVerifier(public_good, cache_size=0)
    results = {
        "unwatched (GitHub entry, Codefresh watched)": microseconds_per_entry(
            github, lambda body: analyse_entry(body, codefresh_policy, unwatched_chains), args.rounds
        ),
        "watched, Codefresh, chain check each entry": microseconds_per_entry(
            bodies, lambda body: analyse_entry(body, codefresh_policy, uncached_local), args.rounds
        ),
        "watched, Codefresh, chain result cached": microseconds_per_entry(
            [bodies[0]] * args.entries, lambda body: analyse_entry(body, codefresh_policy, cached_local), args.rounds
        ),
        "watched, GitHub, public-good chain (P-384) each entry": microseconds_per_entry(
            github, lambda body: analyse_entry(body, github_policy, uncached_public_good), args.rounds
        ),
    }
    print_table("one entry kind at a time:", results)
    for api, rekor_v2 in (("Rekor v1", False), ("tiles (Rekor v2)", True)):
        bodies = mix_bodies(ca, args.mix, rekor_v2)
        size = sum(map(len, bodies)) / len(bodies)
        title = f"the catch-up mix, {api}: {len(bodies)} entries of {size:,.0f} bytes on average, 1% watched:"
        print_table(title, mix_stages(bodies, mix_policy(), local_chains(ca, cache_size=4096), args.rounds))


if __name__ == "__main__":
    main()
