"""RFC 6962 / RFC 9162 Merkle tree hashing, proof verification and compact ranges.

Indices are 0-based, as in Rekor. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from hashlib import sha256

HASH_SIZE = 32
MAX_PROOF_HASHES = 128  # more than a proof in any tree of 2^63 leaves needs: a longer list is refused unread
EMPTY_ROOT = sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


@dataclass(frozen=True)
class Subtree:
    """The root of the perfect subtree of 2^level leaves starting at leaf `first` (a multiple of 2^level)."""

    first: int
    level: int
    root: bytes


def aligned_subtrees(first: int, leaf_hashes: Sequence[bytes]) -> list[Subtree]:
    """The perfect, aligned subtrees that cover leaves [first, first + len(leaf_hashes)), left to
    right, each as large as its position allows: appended in turn to the compact range of [0, first),
    they give the compact range of the whole (`CompactRange.append_subtree`)."""
    subtrees, position, end = [], first, first + len(leaf_hashes)
    while position < end:
        level = (end - position).bit_length() - 1
        if position:
            level = min(level, (position & -position).bit_length() - 1)
        nodes = leaf_hashes[position - first : position - first + (1 << level)]
        while len(nodes) > 1:
            nodes = [node_hash(nodes[i], nodes[i + 1]) for i in range(0, len(nodes), 2)]
        subtrees.append(Subtree(position, level, nodes[0]))
        position += 1 << level
    return subtrees


class ProofError(Exception):
    """A Merkle proof is malformed or does not verify."""


def leaf_hash(entry: bytes) -> bytes:
    """The RFC 6962 hash of a log entry: SHA256(0x00 ‖ entry)."""
    return sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 6962 hash of an interior node: SHA256(0x01 ‖ left ‖ right)."""
    return sha256(_NODE_PREFIX + left + right).digest()


def _require_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def _require_proof_hashes(proof: Sequence[bytes]) -> None:
    for position, item in enumerate(proof):
        _require_hash(item, f"proof[{position}]")


def _inclusion_shape(index: int, size: int) -> tuple[int, int]:
    """Split an inclusion proof's length into (inner, border), RFC 9162 §2.1.3.2.

    `inner` hashes lie below the level where the leaf's path leaves the last perfect subtree,
    `border` hashes (all left siblings) above it.
    """
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def root_from_inclusion_proof(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof of leaf `index` in a tree of `size` leaves."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _require_hash(leaf_hash, "leaf hash")
    _require_proof_hashes(proof)
    inner, border = _inclusion_shape(index, size)
    if len(proof) != inner + border:
        raise ProofError(f"inclusion proof has {len(proof)} hashes, expected {inner + border}")
    node = leaf_hash
    for level, sibling in enumerate(proof[:inner]):
        node = node_hash(sibling, node) if (index >> level) & 1 else node_hash(node, sibling)
    for sibling in proof[inner:]:
        node = node_hash(sibling, node)
    return node


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Raise ProofError unless `proof` shows leaf `index` is in the tree of `size` leaves with `root`."""
    _require_hash(root, "root")
    if root_from_inclusion_proof(leaf_hash, index, size, proof) != root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Raise ProofError unless `proof` shows the tree (size2, root2) extends (size1, root1).

    RFC 9162 §2.1.4.2. Equal sizes need an empty proof and equal roots; size 0 needs root1 to be
    EMPTY_ROOT (a checkpoint claiming another root for the empty tree is bogus) and an empty proof.
    """
    if not 0 <= size1 <= size2:
        raise ProofError(f"cannot prove size {size1} consistent with size {size2}")
    if size1 == 0 and root1 != EMPTY_ROOT:
        raise ProofError("the root of the empty tree is SHA256 of nothing")
    if size1 == size2:
        if proof:
            raise ProofError("equal sizes need an empty proof")
        if root1 != root2:
            raise ProofError("equal sizes with different roots")
        return
    _require_hash(root2, "root2")
    if size1 == 0:
        if proof:
            raise ProofError("every tree extends the empty tree: the proof must be empty")
        return
    _require_hash(root1, "root1")
    _require_proof_hashes(proof)
    if not proof:
        raise ProofError("empty consistency proof")
    if _roots_from_consistency_proof(size1, size2, proof, root1) != (root1, root2):
        raise ProofError("consistency proof does not lead to both roots")


def _roots_from_consistency_proof(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes
) -> tuple[bytes, bytes] | None:
    """The (old, new) roots a consistency proof implies for 0 < size1 < size2, None if its shape is wrong."""
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        # A power-of-two old tree is a node of the new one; the proof leaves its hash implicit.
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    first = second = path[0]
    for sibling in path[1:]:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            first = node_hash(sibling, first)
            second = node_hash(sibling, second)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            second = node_hash(second, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return None
    return first, second


@dataclass
class CompactRange:
    """The roots of the perfect subtrees covering leaves [0, size), left to right.

    Their sizes are the binary decomposition of `size`, largest first, so there are popcount(size)
    of them. Folding every leaf of a log into one proves, by comparing `root()` with a signed
    checkpoint's root, that every leaf read is in the log and that the log never rewrote history.
    """

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"negative size {self.size}")
        if len(self.hashes) != self.size.bit_count():
            raise ValueError(f"size {self.size} needs {self.size.bit_count()} hashes, got {len(self.hashes)}")
        if any(len(item) != HASH_SIZE for item in self.hashes):
            raise ValueError(f"every hash must be {HASH_SIZE} bytes")

    @classmethod
    def from_bytes(cls, size: int, blob: bytes) -> CompactRange:
        """Rebuild a range from `to_bytes()` output."""
        if size < 0 or len(blob) != HASH_SIZE * size.bit_count():
            raise ValueError(f"a range of size {size} cannot be stored in {len(blob)} bytes")
        return cls(size, [blob[start : start + HASH_SIZE] for start in range(0, len(blob), HASH_SIZE)])

    @classmethod
    def from_inclusion_proof(
        cls, leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
    ) -> CompactRange:
        """Verify the inclusion of leaf `index` in (size, root) and return the range covering [0, index]."""
        verify_inclusion(leaf_hash, index, size, proof, root)
        inner, _ = _inclusion_shape(index, size)
        # The left siblings on the leaf's path, bottom up, are exactly the perfect subtrees
        # covering [0, index), smallest first.
        left_siblings = [sibling for level, sibling in enumerate(proof[:inner]) if (index >> level) & 1]
        left_siblings.extend(proof[inner:])
        left_siblings.reverse()
        compact = cls(index, left_siblings)
        compact.append(leaf_hash)
        return compact

    def to_bytes(self) -> bytes:
        """The hashes concatenated, for storage next to `size`."""
        return b"".join(self.hashes)

    def append(self, leaf_hash: bytes) -> None:
        """Fold in the leaf hash at index `size`."""
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, got {len(leaf_hash)}")
        self._fold_in(leaf_hash, 0)

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        for item in leaf_hashes:
            self.append(item)

    def append_subtree(self, subtree: Subtree) -> None:
        """Fold in a perfect subtree that starts at index `size` (aligned: `size` is a multiple of its
        width), as if each of its leaves had been appended in turn."""
        width = 1 << subtree.level
        if subtree.first != self.size or self.size % width:
            raise ValueError(f"a subtree of {width} leaves at {subtree.first} does not fit a range of size {self.size}")
        if len(subtree.root) != HASH_SIZE:
            raise ValueError(f"a subtree root is {HASH_SIZE} bytes, got {len(subtree.root)}")
        self._fold_in(subtree.root, subtree.level)

    def _fold_in(self, node: bytes, level: int) -> None:
        """Append the root of a perfect subtree of 2^level leaves at index `size` (a multiple of 2^level)."""
        hashes = self.hashes
        # Each 1 bit of the old size from `level` up is a subtree as large as `node` that merges with it.
        carries = self.size >> level
        while carries & 1:
            node = sha256(_NODE_PREFIX + hashes.pop() + node).digest()
            carries >>= 1
        hashes.append(node)
        self.size += 1 << level

    def root(self) -> bytes:
        """The RFC 6962 root of the tree of the first `size` leaves."""
        if not self.hashes:
            return EMPTY_ROOT
        node = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            node = node_hash(left, node)
        return node
