"""The pure tailing core, at unit speed: no database, no HTTP. Proofs come from the simulator's tree."""

from __future__ import annotations

import itertools
import os

import pytest

from monitor import tailcore
from monitor.simulate.log import Shard
from monitor.tailcore import CheckpointUnusable, LogInconsistent, ShardState, VerifiedHead
from monitor.tlog.merkle import CompactRange, aligned_subtrees, leaf_hash
from monitor.tlog.note import Checkpoint


def tree(size: int) -> Shard:
    shard = Shard(tree_id=7)
    for index in range(size):
        shard.append(f"entry {index}".encode(), 0)
    return shard


def checkpoint_of(shard: Shard, size: int) -> Checkpoint:
    return Checkpoint("origin", size, shard.root(size), (), f"note at {size}")


def fresh(next_index: int = 0) -> ShardState:
    return ShardState("7", 0, next_index, CompactRange() if next_index == 0 else None, None)


def folded_leaf_by_leaf(compact: CompactRange, leaf_hashes: list[bytes]) -> CompactRange:
    """A new range with the leaves appended one by one (the reference for folded subtrees)."""
    folded = CompactRange(compact.size, list(compact.hashes))
    folded.extend(leaf_hashes)
    return folded


def accepted(shard: Shard, size: int) -> ShardState:
    return tailcore.accept(fresh(), checkpoint_of(shard, size))


def test_the_first_checkpoint_is_accepted_without_a_proof_and_announced() -> None:
    shard = tree(10)
    state = tailcore.accept(fresh(), checkpoint_of(shard, 10))
    assert state.verified == VerifiedHead(10, shard.root(10), "note at 10")
    assert (state.announced, state.lag) == (10, 10)


def test_a_grown_tree_needs_and_passes_a_consistency_proof() -> None:
    shard = tree(100)
    state = accepted(shard, 37)
    needed = tailcore.append_only_proof(state, checkpoint_of(shard, 100))
    assert needed == tailcore.ProofRequest(37, 100)
    state = tailcore.accept(state, checkpoint_of(shard, 100), shard.consistency_proof(37, 100))
    assert state.verified is not None and state.verified.size == 100


def test_a_wrong_consistency_proof_is_an_inconsistency() -> None:
    shard = tree(100)
    state = accepted(shard, 37)
    proof = shard.consistency_proof(37, 100)
    proof[0] = os.urandom(32)
    with pytest.raises(LogInconsistent) as caught:
        tailcore.accept(state, checkpoint_of(shard, 100), proof)
    assert caught.value.reason == "consistency_failed"


def test_a_shrinking_tree_or_another_root_at_the_same_size_is_an_inconsistency() -> None:
    shard = tree(50)
    state = accepted(shard, 50)
    with pytest.raises(LogInconsistent, match="tree_shrank"):
        tailcore.append_only_proof(state, checkpoint_of(shard, 49))
    forged = Checkpoint("origin", 50, os.urandom(32), (), "forged")
    with pytest.raises(LogInconsistent, match="root_changed"):
        tailcore.accept(state, forged)
    assert tailcore.append_only_proof(state, checkpoint_of(shard, 50)) is None


@pytest.mark.parametrize("size", [2**63, 2**64 - 1])
def test_a_size_no_log_can_reach_is_refused_before_use(size: int) -> None:
    absurd = Checkpoint("origin", size, os.urandom(32), (), "absurd")
    with pytest.raises(CheckpointUnusable):
        tailcore.announce(fresh(), absurd)
    with pytest.raises(CheckpointUnusable):
        tailcore.accept(fresh(), absurd)


def test_chunk_bounds_are_lazy_even_for_an_astronomical_size() -> None:
    bounds = tailcore.chunk_bounds(5, 10**12, 1024)
    assert list(itertools.islice(bounds, 3)) == [(5, 1029), (1029, 2053), (2053, 3077)]
    assert list(tailcore.chunk_bounds(0, 2500, 1024)) == [(0, 1024), (1024, 2048), (2048, 2500)]
    assert list(tailcore.chunk_bounds(7, 7, 1024)) == []


def test_folding_entries_proves_them_against_the_verified_root_chunk_by_chunk() -> None:
    shard = tree(3000)
    state = accepted(shard, 3000)
    assert state.verified is not None
    for start, end in tailcore.chunk_bounds(0, 3000, 1024):
        assert state.compact is not None
        compact = folded_leaf_by_leaf(state.compact, [shard.leaf_hash_at(i) for i in range(start, end)])
        assert state.compact.size == start, "folding leaves the old range as it was"
        needed = tailcore.prefix_proof(compact, state.verified)
        proof = shard.consistency_proof(needed.first, needed.last) if needed else []
        tailcore.prove_prefix("7", compact, state.verified, proof)
        state = tailcore.advance(state, compact)
    assert (state.next, state.lag) == (3000, 0)


def test_folding_a_chunk_as_subtrees_proves_it_like_folding_its_leaves() -> None:
    shard = tree(3000)
    state = accepted(shard, 3000)
    assert state.compact is not None and state.verified is not None
    compact = folded_leaf_by_leaf(state.compact, [shard.leaf_hash_at(i) for i in range(700)])
    leaves = [shard.leaf_hash_at(i) for i in range(700, 1724)]
    folded = tailcore.fold_subtrees(compact, aligned_subtrees(700, leaves), len(leaves))
    assert folded == folded_leaf_by_leaf(compact, leaves) and compact.size == 700
    tailcore.prove_prefix("7", folded, state.verified, shard.consistency_proof(1724, 3000))
    with pytest.raises(ValueError):  # subtrees that cover fewer leaves than the chunk holds
        tailcore.fold_subtrees(compact, aligned_subtrees(700, leaves[:-1]), len(leaves))
    with pytest.raises(ValueError):  # subtrees of another place in the tree
        tailcore.fold_subtrees(compact, aligned_subtrees(701, leaves), len(leaves))


def test_an_entry_that_is_not_the_logs_fails_the_prefix_proof() -> None:
    shard = tree(2048)
    state = accepted(shard, 2048)
    assert state.compact is not None and state.verified is not None
    leaves = [shard.leaf_hash_at(i) for i in range(1024)]
    leaves[500] = leaf_hash(b"an entry the log never had")
    compact = folded_leaf_by_leaf(state.compact, leaves)
    with pytest.raises(LogInconsistent, match="entries_mismatch"):
        tailcore.prove_prefix("7", compact, state.verified, shard.consistency_proof(1024, 2048))
    with pytest.raises(LogInconsistent, match="entries_mismatch"):
        tailcore.prove_prefix("7", folded_leaf_by_leaf(compact, leaves), state.verified)


def test_a_mid_log_start_bootstraps_from_one_inclusion_proof() -> None:
    shard = tree(1000)
    state = tailcore.accept(fresh(600), checkpoint_of(shard, 1000))
    compact = tailcore.bootstrap(state, shard.leaf_hash_at(599), shard.inclusion_proof(599, 1000), 1000, shard.root())
    assert compact.size == 600 and compact.root() == shard.root(600)
    with pytest.raises(LogInconsistent, match="inclusion_failed"):
        tailcore.bootstrap(state, shard.leaf_hash_at(598), shard.inclusion_proof(599, 1000), 1000, shard.root())


def test_lag_counts_what_is_announced_and_unread_and_nothing_once_retired() -> None:
    state = ShardState("7", 100, 40, None, None, announced=90)
    assert (state.next_global, state.lag) == (140, 50)
    assert ShardState("7", 100, 40, None, None, announced=90, retired=True).lag == 0
