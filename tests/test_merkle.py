"""RFC 6962 hashing, proofs and compact ranges, against the transparency-dev vectors, a naive
reference implementation written here, and real Rekor inclusion proofs."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest

from monitor.tlog.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactRange,
    ProofError,
    Subtree,
    aligned_subtrees,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from tests.paths import MERKLE as MERKLE_VECTORS
from tests.paths import SIGSTORE

# The leaves of the RFC 6962 reference tree that the transparency-dev vectors are built from.
RFC6962_LEAVES = [
    bytes.fromhex(value)
    for value in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
]


def _b64(text: str | None) -> bytes:
    return base64.b64decode(text or "")


def _vector_files(kind: str) -> list[Any]:
    root = MERKLE_VECTORS / kind
    return [
        pytest.param(path, id=path.relative_to(root).with_suffix("").as_posix())
        for path in sorted(root.rglob("*.json"))
    ]


# --- naive reference implementation (RFC 6962 §2.1 definitions, written recursively) ---


def _split_point(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def naive_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = _split_point(len(leaves))
    return node_hash(naive_root(leaves[:k]), naive_root(leaves[k:]))


def naive_inclusion_proof(index: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _split_point(len(leaves))
    if index < k:
        return [*naive_inclusion_proof(index, leaves[:k]), naive_root(leaves[k:])]
    return [*naive_inclusion_proof(index - k, leaves[k:]), naive_root(leaves[:k])]


def naive_consistency_proof(size1: int, leaves: list[bytes], complete: bool = True) -> list[bytes]:
    if size1 == len(leaves):
        return [] if complete else [naive_root(leaves)]
    k = _split_point(len(leaves))
    if size1 <= k:
        return [*naive_consistency_proof(size1, leaves[:k], complete), naive_root(leaves[k:])]
    return [*naive_consistency_proof(size1 - k, leaves[k:], False), naive_root(leaves[:k])]


def naive_compact_hashes(leaves: list[bytes]) -> list[bytes]:
    """The roots of the perfect subtrees covering the leaves, largest first."""
    hashes, start = [], 0
    for bit in reversed(range(len(leaves).bit_length())):
        if len(leaves) >> bit & 1:
            hashes.append(naive_root(leaves[start : start + (1 << bit)]))
            start += 1 << bit
    return hashes


def random_leaf_hashes(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [leaf_hash(rng.randbytes(rng.randrange(64))) for _ in range(count)]


def _flip_bit(value: bytes, bit: int) -> bytes:
    flipped = bytearray(value)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


# --- hashing ---


def test_hash_primitives() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    assert len(node_hash(left, right)) == HASH_SIZE
    assert node_hash(left, right) != node_hash(right, left)
    # Domain separation: a leaf can never pass for a node with the same bytes.
    assert leaf_hash(left + right) != node_hash(left, right)


# --- transparency-dev vectors ---


def test_vector_directories_are_complete() -> None:
    assert len(_vector_files("inclusion")) == 98
    assert len(_vector_files("consistency")) == 98


def test_vectors_use_zero_based_leaf_indices() -> None:
    """The vectors' happy paths prove leaf `leafIdx` (0-based, as the library) of the RFC 6962 tree.

    The `leafIdx-sub-@1` files of leaf 0 hold 2**64 - 1: Go's uint64 underflow of 0 - 1.
    """
    leaf_hashes = [leaf_hash(leaf) for leaf in RFC6962_LEAVES]
    for path in sorted((MERKLE_VECTORS / "inclusion").glob("[0-9]/happy-path.json")):
        vector = json.loads(path.read_text())
        assert _b64(vector["leafHash"]) == leaf_hashes[vector["leafIdx"]]
        assert _b64(vector["root"]) == naive_root(leaf_hashes[: vector["treeSize"]])
    underflow = json.loads((MERKLE_VECTORS / "inclusion/0/leafIdx-sub-@1.json").read_text())
    assert underflow["leafIdx"] == 2**64 - 1


@pytest.mark.parametrize("path", _vector_files("inclusion"))
def test_inclusion_vector(path: Path) -> None:
    vector = json.loads(path.read_text())
    proof = [_b64(item) for item in vector["proof"] or []]
    leaf, root = _b64(vector["leafHash"]), _b64(vector["root"])

    def verify() -> None:
        verify_inclusion(leaf, vector["leafIdx"], vector["treeSize"], proof, root)

    if vector["wantErr"]:
        with pytest.raises(ProofError):
            verify()
    else:
        verify()


@pytest.mark.parametrize("path", _vector_files("consistency"))
def test_consistency_vector(path: Path) -> None:
    vector = json.loads(path.read_text())
    proof = [_b64(item) for item in vector["proof"] or []]
    root1, root2 = _b64(vector["root1"]), _b64(vector["root2"])

    def verify() -> None:
        verify_consistency(vector["size1"], vector["size2"], proof, root1, root2)

    if vector["wantErr"]:
        with pytest.raises(ProofError):
            verify()
    else:
        verify()


# --- proofs against the naive reference ---


def test_inclusion_proofs_of_every_leaf_verify() -> None:
    leaves = random_leaf_hashes(70, seed=1)
    for size in range(1, len(leaves) + 1):
        tree, root = leaves[:size], naive_root(leaves[:size])
        for index in range(size):
            proof = naive_inclusion_proof(index, tree)
            assert root_from_inclusion_proof(tree[index], index, size, proof) == root
            verify_inclusion(tree[index], index, size, proof, root)


def test_consistency_proofs_of_every_pair_verify() -> None:
    leaves = random_leaf_hashes(40, seed=2)
    for size2 in range(1, len(leaves) + 1):
        root2 = naive_root(leaves[:size2])
        for size1 in range(0, size2 + 1):
            proof = naive_consistency_proof(size1, leaves[:size2]) if size1 else []
            verify_consistency(size1, size2, proof, naive_root(leaves[:size1]), root2)


def test_tampered_inclusion_proof_is_rejected() -> None:
    leaves = random_leaf_hashes(70, seed=3)
    index, root = 37, naive_root(leaves)
    proof = naive_inclusion_proof(index, leaves)
    for position, item in enumerate(proof):
        for bit in range(0, HASH_SIZE * 8, 7):
            tampered = [*proof[:position], _flip_bit(item, bit), *proof[position + 1 :]]
            with pytest.raises(ProofError):
                verify_inclusion(leaves[index], index, len(leaves), tampered, root)
            with pytest.raises(ProofError):
                CompactRange.from_inclusion_proof(leaves[index], index, len(leaves), tampered, root)
    tampered_shapes = [proof[:-1], [*proof, proof[0]], [proof[1], proof[0], *proof[2:]], [*proof[:-1], b""]]
    for tampered in tampered_shapes:
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], index, len(leaves), tampered, root)
    for wrong_index in (index - 1, index + 1, -1, len(leaves)):
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], wrong_index, len(leaves), proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(leaves[index + 1], index, len(leaves), proof, root)


def test_tampered_consistency_proof_is_rejected() -> None:
    leaves = random_leaf_hashes(40, seed=4)
    size1, size2 = 13, 40
    root1, root2 = naive_root(leaves[:size1]), naive_root(leaves)
    proof = naive_consistency_proof(size1, leaves)
    for position, item in enumerate(proof):
        tampered = [*proof[:position], _flip_bit(item, 8 * position + 3), *proof[position + 1 :]]
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, tampered, root1, root2)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof, root2, root1)
    with pytest.raises(ProofError):
        verify_consistency(size1 + 1, size2, proof, naive_root(leaves[: size1 + 1]), root2)


# --- compact ranges ---


def test_compact_range_matches_naive_tree_at_every_size() -> None:
    leaves = random_leaf_hashes(300, seed=5)
    compact = CompactRange()
    assert compact.root() == EMPTY_ROOT
    for size in range(0, len(leaves) + 1):
        if size:
            compact.append(leaves[size - 1])
        assert compact.size == size
        assert compact.hashes == naive_compact_hashes(leaves[:size])
        assert compact.root() == naive_root(leaves[:size])
        assert CompactRange.from_bytes(size, compact.to_bytes()) == compact


def test_extend_equals_appending_one_by_one() -> None:
    leaves = random_leaf_hashes(77, seed=6)
    extended = CompactRange()
    extended.extend(leaves[:30])
    extended.extend(iter(leaves[30:]))
    appended = CompactRange()
    for leaf in leaves:
        appended.append(leaf)
    assert extended == appended


@pytest.mark.parametrize("first", [0, 1, 5, 256, 1000, 1024, 3 * 1024 + 7])
@pytest.mark.parametrize("count", [0, 1, 2, 3, 255, 1024, 1100])
def test_appending_aligned_subtrees_equals_appending_their_leaves(first: int, count: int) -> None:
    leaves = random_leaf_hashes(first + count, seed=first * 7919 + count)
    one_by_one = CompactRange()
    one_by_one.extend(leaves[:first])
    by_subtrees = CompactRange(one_by_one.size, list(one_by_one.hashes))
    one_by_one.extend(leaves[first:])
    subtrees = aligned_subtrees(first, leaves[first:])
    for subtree in subtrees:
        assert subtree.first % (1 << subtree.level) == 0, "aligned"
        assert subtree.root == naive_root(leaves[subtree.first : subtree.first + (1 << subtree.level)])
        by_subtrees.append_subtree(subtree)
    assert by_subtrees == one_by_one
    assert sum(1 << subtree.level for subtree in subtrees) == count


def test_a_subtree_that_does_not_start_at_the_ranges_end_or_is_not_aligned_is_refused() -> None:
    compact = CompactRange()
    compact.extend(random_leaf_hashes(6, seed=8))
    root = leaf_hash(b"x")
    for wrong in (Subtree(5, 0, root), Subtree(7, 0, root), Subtree(6, 2, root), Subtree(6, 0, root[:31])):
        with pytest.raises(ValueError):
            compact.append_subtree(wrong)
    assert compact.size == 6
    compact.append_subtree(Subtree(6, 1, root))
    assert compact.size == 8


def test_from_inclusion_proof_of_every_leaf() -> None:
    leaves = random_leaf_hashes(70, seed=8)
    for size in range(1, len(leaves) + 1):
        tree, root = leaves[:size], naive_root(leaves[:size])
        for index in range(size):
            proof = naive_inclusion_proof(index, tree)
            compact = CompactRange.from_inclusion_proof(tree[index], index, size, proof, root)
            assert compact.size == index + 1
            assert compact.hashes == naive_compact_hashes(tree[: index + 1])
            # The bootstrapped range keeps folding like one built from leaf 0.
            compact.extend(tree[index + 1 :])
            assert compact.root() == root


@pytest.mark.parametrize(
    ("size", "blob"),
    [
        (1, b""),
        (1, bytes(HASH_SIZE + 1)),
        (3, bytes(HASH_SIZE)),
        (3, bytes(3 * HASH_SIZE)),
        (0, bytes(HASH_SIZE)),
        (-1, bytes(HASH_SIZE)),
        (6, bytes(2 * HASH_SIZE - 1)),
    ],
    ids=["missing", "one-byte-too-long", "one-of-two", "three-for-two", "nonempty-for-zero", "negative", "short"],
)
def test_from_bytes_rejects_bad_blobs(size: int, blob: bytes) -> None:
    with pytest.raises(ValueError):
        CompactRange.from_bytes(size, blob)


def test_constructor_and_append_reject_malformed_hashes() -> None:
    with pytest.raises(ValueError):
        CompactRange(2, [])
    with pytest.raises(ValueError):
        CompactRange(1, [bytes(HASH_SIZE - 1)])
    with pytest.raises(ValueError):
        CompactRange().append(bytes(HASH_SIZE + 1))


# --- real Rekor inclusion proofs ---


def _bundle_proof(name: str) -> tuple[bytes, int, int, list[bytes], bytes]:
    entry = json.loads((SIGSTORE / name).read_text())["verificationMaterial"]["tlogEntries"][0]
    proof = entry["inclusionProof"]
    return (
        leaf_hash(base64.b64decode(entry["canonicalizedBody"])),
        int(proof["logIndex"]),
        int(proof["treeSize"]),
        [base64.b64decode(item) for item in proof["hashes"]],
        base64.b64decode(proof["rootHash"]),
    )


def _rest_entry_proof(name: str) -> tuple[bytes, int, int, list[bytes], bytes]:
    """A Rekor v1 REST LogEntry: hashes in hex, per-shard index in the proof."""
    entry = json.loads((SIGSTORE / name).read_text())
    proof = entry["verification"]["inclusionProof"]
    return (
        leaf_hash(base64.b64decode(entry["body"])),
        proof["logIndex"],
        proof["treeSize"],
        [bytes.fromhex(item) for item in proof["hashes"]],
        bytes.fromhex(proof["rootHash"]),
    )


REAL_PROOFS = [
    pytest.param(_bundle_proof, "bundle_v3_github.whl.sigstore", id="v1-hashedrekord"),
    pytest.param(_bundle_proof, "happy-path-intoto-in-dsse-v3.bundle.sigstore.json", id="v1-dsse-shard3"),
    pytest.param(_rest_entry_proof, "docker-attest.tlog.mock.go.TestEntry.json", id="v1-rest-entry"),
    pytest.param(_bundle_proof, "staging-rekor-v2.txt.sigstore.json", id="v2-staging"),
    pytest.param(_bundle_proof, "rekor2-checkpoint-two-sigs-cosigned.bundle.sigstore.json", id="v2-cosigned"),
]


@pytest.mark.parametrize(("load", "name"), REAL_PROOFS)
def test_real_inclusion_proof(load: Any, name: str) -> None:
    leaf, index, size, proof, root = load(name)
    verify_inclusion(leaf, index, size, proof, root)
    compact = CompactRange.from_inclusion_proof(leaf, index, size, proof, root)
    assert compact.size == index + 1
    assert len(compact.hashes) == (index + 1).bit_count()
    if size == index + 1:
        assert compact.root() == root


@pytest.mark.parametrize(("load", "name"), REAL_PROOFS)
def test_real_inclusion_proof_tampered(load: Any, name: str) -> None:
    leaf, index, size, proof, root = load(name)
    with pytest.raises(ProofError):
        verify_inclusion(_flip_bit(leaf, 0), index, size, proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, [*proof[:-1], _flip_bit(proof[-1], 255)], root)
    with pytest.raises(ProofError):
        CompactRange.from_inclusion_proof(leaf, index, size, proof, _flip_bit(root, 100))
