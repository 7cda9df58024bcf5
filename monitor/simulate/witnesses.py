"""The simulator's witnesses: three Ed25519 cosigners of the checkpoints its log serves, switched on demand.

Witnesses `a`, `b` and `c` (key names `witness-a.sim.example`, ...) cosign, timestamped now, every
checkpoint served as the log's current one: tiles `/checkpoint` and the v1 `signedTreeHead` of the
active shard. `cosigning` says which of them add a line, `bad` which sign wrongly: their line carries
their key name and key id, but its signature does not verify. `policy_text` is a ready tlog-policy
for them (the three witnesses, `group g 2 a b c`, `quorum g`), written to DIR/witness_policy.txt.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from monitor.tlog.note import signature_line, split_note
from monitor.tlog.witness import cosign, cosigner_key, witness_vkey

WITNESS_NAMES = ("a", "b", "c")
POLICY_FILE = "witness_policy.txt"
POLICY_THRESHOLD = 2


def with_last_signature_corrupted(note: str) -> str:
    """`note` with the last byte of its last signature flipped: same name and key id, a signature that fails."""
    body, signatures = split_note(note)
    *kept, last = signatures
    lines = [signature_line(each.name, each.key_id, each.signature) for each in kept]
    corrupted = last.signature[:-1] + bytes([last.signature[-1] ^ 0x01])
    return f"{body}\n{''.join(lines)}{signature_line(last.name, last.key_id, corrupted)}"


@dataclass(frozen=True)
class SimWitness:
    name: str
    """Its name in the policy."""
    key_name: str
    """The key name on its cosignature lines."""
    key: ed25519.Ed25519PrivateKey = field(repr=False, compare=False)

    @classmethod
    def generate(cls, name: str) -> SimWitness:
        return cls(name, f"witness-{name}.sim.example", ed25519.Ed25519PrivateKey.generate())

    @property
    def vkey(self) -> str:
        return witness_vkey(cosigner_key(self.key_name, self.key.public_key()))

    def cosign(self, note: str, timestamp: int, *, badly: bool = False) -> str:
        cosigned = cosign(note, self.key_name, self.key, timestamp)
        return with_last_signature_corrupted(cosigned) if badly else cosigned


def _three_witnesses() -> tuple[SimWitness, ...]:
    return tuple(SimWitness.generate(name) for name in WITNESS_NAMES)


@dataclass
class WitnessPanel:
    """The witnesses and the switches saying which cosign and which cosign badly."""

    witnesses: tuple[SimWitness, ...] = field(default_factory=_three_witnesses)
    cosigning: frozenset[str] = frozenset(WITNESS_NAMES)
    bad: frozenset[str] = frozenset()

    def silent(self) -> WitnessPanel:
        """The same witnesses, none of them cosigning: what a view the witnesses never saw gets."""
        return WitnessPanel(self.witnesses, frozenset(), frozenset())

    def names(self, requested: Iterable[str]) -> frozenset[str]:
        """Policy names for witnesses given by policy name or key name; ValueError for anyone else."""
        by_any_name = {name: witness.name for witness in self.witnesses for name in (witness.name, witness.key_name)}
        unknown = [name for name in requested if name not in by_any_name]
        if unknown:
            raise ValueError(f"unknown witnesses {unknown}; they are {[w.name for w in self.witnesses]}")
        return frozenset(by_any_name[name] for name in requested)

    def configure(self, *, cosign: Iterable[str] | None = None, bad: Iterable[str] | None = None) -> None:
        """Which witnesses cosign and which sign badly (a bad one adds its line); None leaves a switch as it is."""
        cosigning = self.cosigning if cosign is None else self.names(cosign)
        badly = self.bad if bad is None else self.names(bad)
        self.cosigning, self.bad = cosigning, badly

    @property
    def valid_cosigners(self) -> int:
        return len(self.cosigning - self.bad)

    def cosigned(self, note: str, *, valid_only: bool = False) -> str:
        """`note` with the lines of the cosigning witnesses (with `valid_only`, without the bad ones)."""
        timestamp = int(time.time())
        for witness in self.witnesses:
            if witness.name in self.bad and not valid_only:
                note = witness.cosign(note, timestamp, badly=True)
            elif witness.name in self.cosigning - self.bad:
                note = witness.cosign(note, timestamp)
        return note

    def policy_text(self) -> str:
        names = " ".join(witness.name for witness in self.witnesses)
        return "".join(
            [
                "# The rekorwatch simulator's witnesses: a quorum is 2 of the 3.\n",
                *(f"witness {witness.name} {witness.vkey}\n" for witness in self.witnesses),
                f"group g {POLICY_THRESHOLD} {names}\n",
                "quorum g\n",
            ]
        )

    def write_policy(self, directory: Path) -> Path:
        path = directory / POLICY_FILE
        path.write_text(self.policy_text())
        return path

    def state(self) -> dict[str, list[str]]:
        return {"cosign": sorted(self.cosigning), "bad": sorted(self.bad)}
