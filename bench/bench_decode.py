"""Per-entry cost of `analyse_entry` (decode, cheap issuer, and for watched issuers parse, identity,
chain check and verdict), in microseconds.

    .venv/bin/python bench/bench_decode.py [--rounds N]

- unwatched: the real production GitHub Actions hashedrekord (fixtures), with only Codefresh watched;
- watched, Codefresh: simulator-issued certificates (EC P-256 CA), a new certificate per entry so
  every chain check runs, then the same certificate again (chain result cached);
- watched, GitHub: the real entry with its issuer watched, chained to the public-good Fulcio CA
  (EC P-384), chain cache disabled.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from monitor.analysis import analyse_entry
from monitor.config import WatchSettings
from monitor.identity.fulcio import ChainVerifier
from monitor.policy import Policy
from monitor.simulate.ca import LocalCA, codefresh_identity
from monitor.simulate.entries import hashedrekord_body
from monitor.trust import load_trust_root, parse_trust_root

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


def local_chains(ca: LocalCA, cache_size: int) -> ChainVerifier:
    authority = {
        "certChain": {"certificates": [{"rawBytes": base64.b64encode(der).decode()} for der in ca.chain_der()]},
        "validFor": {"start": "2000-01-01T00:00:00Z"},
    }
    return ChainVerifier(
        parse_trust_root({"certificateAuthorities": [authority], "tlogs": []}, None, "bench"), cache_size
    )


def microseconds_per_entry(bodies: Sequence[bytes], analyse: Callable[[bytes], object], rounds: int) -> float:
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
    width = max(map(len, results))
    for name, micros in results.items():
        print(f"{name:<{width}}  {micros:8.1f} µs/entry")


if __name__ == "__main__":
    main()
