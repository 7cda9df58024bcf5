"""The pure tailing core: a shard's verified state as a plain value, and every rule of the tail as a
function of it. No I/O, no database, no clock: the shell (pipeline.py) fetches, stores and retries;
everything it fetches is judged here.

A shard's state is what certspotter calls the collapsed tree plus its verified head:

    ShardState(tree_id, offset, next, compact, verified, announced, retired)

- `verified`: the newest accepted checkpoint (signature by a trust-root key of this log, origin, and
  consistency with the one before). Nothing beyond it is read.
- `announced`: the size of the newest checkpoint whose signature verified, accepted or not (it may
  wait for a proof or a witness quorum). It only ever feeds `lag`; an unsigned size is never kept.
- `compact`: the roots of the perfect subtrees covering [0, next). Every leaf read is folded into it,
  and a chunk counts only once its folded root is proven to be a prefix of `verified` (by the root
  itself at `verified.size`, or by a consistency proof from the chunk's end). That one comparison
  proves every entry read is in the log and the log never rewrote what we read.

Sizes from the wire are untrusted: anything beyond MAX_TREE_SIZE (2^63 - 1, what SQL BIGINT holds and
more than any log will ever reach) is refused before it is stored or used in arithmetic, and the
chunks of a catch-up are generated lazily, so a signed size of 10^12 costs nothing until read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from monitor.errors import ReasonedError
from monitor.tlog.merkle import CompactRange, ProofError, Subtree, verify_consistency
from monitor.tlog.note import Checkpoint

MAX_TREE_SIZE = 2**63 - 1


class LogInconsistent(ReasonedError):
    """The log broke its append-only promise (or signed with a key it should not have): the shard's
    cursor stops for good, until an operator resets it."""


class CheckpointUnusable(ReasonedError):
    """A checkpoint that proves nothing against the log but cannot be used either (a size no log can
    reach): the log is misbehaving; the tail retries later without moving."""


@dataclass(frozen=True)
class VerifiedHead:
    size: int
    root: bytes
    note: str


@dataclass(frozen=True)
class ShardState:
    tree_id: str
    offset: int
    """Global index of the shard's leaf 0."""
    next: int
    """Index (in the shard) of the next entry to read."""
    compact: CompactRange | None
    """Roots covering [0, next); None when `next` was placed mid-log and is not bootstrapped yet."""
    verified: VerifiedHead | None
    announced: int = 0
    retired: bool = False

    @property
    def next_global(self) -> int:
        return self.offset + self.next

    @property
    def lag(self) -> int:
        return max(self.announced - self.next, 0) if not self.retired else 0


@dataclass(frozen=True)
class ProofRequest:
    """A consistency proof the shell must fetch: from the tree of `first` leaves to that of `last`."""

    first: int
    last: int


# checkpoints ----------------------------------------------------------------------------------


def check_size(checkpoint: Checkpoint) -> None:
    """Refuse a signed size no log can reach: it would overflow storage and arithmetic."""
    if checkpoint.size > MAX_TREE_SIZE:
        raise CheckpointUnusable("absurd_size", f"checkpoint size {checkpoint.size} exceeds 2^63-1")


def announce(state: ShardState, checkpoint: Checkpoint) -> ShardState:
    """A checkpoint's signature verified: its size is what the log announces (for lag), nothing more."""
    check_size(checkpoint)
    return replace(state, announced=max(checkpoint.size, state.verified.size if state.verified else 0))


def append_only_proof(state: ShardState, checkpoint: Checkpoint) -> ProofRequest | None:
    """The proof needed to accept `checkpoint` after `state.verified`; None when none is needed.

    Raises LogInconsistent for a shrinking tree or another root at the same size.
    """
    old = state.verified
    if old is None:
        return None
    if checkpoint.size < old.size:
        raise LogInconsistent("tree_shrank", f"shard {state.tree_id}: size {checkpoint.size} < verified {old.size}")
    if checkpoint.size == old.size:
        if checkpoint.root_hash != old.root:
            raise LogInconsistent("root_changed", f"shard {state.tree_id}: size {old.size} has another root")
        return None
    return ProofRequest(old.size, checkpoint.size)


def accept(state: ShardState, checkpoint: Checkpoint, proof: Sequence[bytes] = ()) -> ShardState:
    """`checkpoint` becomes the verified head, once proven consistent with the previous one."""
    check_size(checkpoint)
    needed = append_only_proof(state, checkpoint)
    if needed is not None:
        assert state.verified is not None
        try:
            verify_consistency(needed.first, needed.last, proof, state.verified.root, checkpoint.root_hash)
        except ProofError as exc:
            raise LogInconsistent(
                "consistency_failed", f"shard {state.tree_id}: {needed.first} -> {needed.last}: {exc}"
            ) from exc
    head = VerifiedHead(checkpoint.size, checkpoint.root_hash, checkpoint.note)
    return replace(state, verified=head, announced=max(state.announced, checkpoint.size))


# reading entries ------------------------------------------------------------------------------


def chunk_bounds(start: int, end: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """[start, end) in chunks of `chunk_size`, generated lazily (end may be astronomically large)."""
    while start < end:
        stop = min(start + chunk_size, end)
        yield start, stop
        start = stop


def fold_subtrees(compact: CompactRange, subtrees: Sequence[Subtree], leaves: int) -> CompactRange:
    """A new range with a chunk of `leaves` leaves appended, given as the aligned subtrees they make
    (hashed off the event loop); the subtrees must cover exactly the leaves that follow `compact`."""
    folded = CompactRange(compact.size, list(compact.hashes))
    for subtree in subtrees:
        folded.append_subtree(subtree)
    if folded.size != compact.size + leaves:
        raise ValueError(f"subtrees of {folded.size - compact.size} leaves for a chunk of {leaves}")
    return folded


def prefix_proof(compact: CompactRange, verified: VerifiedHead) -> ProofRequest | None:
    """The proof that [0, compact.size) is a prefix of the verified tree; None at its full size."""
    if compact.size > verified.size:
        raise LogInconsistent("entries_mismatch", f"{compact.size} entries read, the tree has {verified.size}")
    return None if compact.size == verified.size else ProofRequest(compact.size, verified.size)


def prove_prefix(tree_id: str, compact: CompactRange, verified: VerifiedHead, proof: Sequence[bytes] = ()) -> None:
    """Raise LogInconsistent unless the entries read, [0, compact.size), are the start of `verified`."""
    needed = prefix_proof(compact, verified)
    if needed is None:
        if compact.root() != verified.root:
            raise LogInconsistent("entries_mismatch", f"shard {tree_id}: entries do not hash to the root")
        return
    try:
        verify_consistency(compact.size, verified.size, proof, compact.root(), verified.root)
    except ProofError as exc:
        raise LogInconsistent(
            "entries_mismatch", f"shard {tree_id}: entries before {compact.size} are not in the tree: {exc}"
        ) from exc


def advance(state: ShardState, compact: CompactRange, *, retired: bool = False) -> ShardState:
    """The cursor after a proven chunk: it moves to the range's end."""
    return replace(state, next=compact.size, compact=compact, retired=retired)


def bootstrap(state: ShardState, leaf_hash: bytes, proof: Sequence[bytes], size: int, root: bytes) -> CompactRange:
    """The compact range of [0, next) from the inclusion proof of leaf next-1 in the tree (size, root),
    which the caller has verified (a checkpoint) and proven consistent with `state.verified`."""
    index = state.next - 1
    try:
        return CompactRange.from_inclusion_proof(leaf_hash, index, size, proof, root)
    except ProofError as exc:
        raise LogInconsistent("inclusion_failed", f"leaf {index} of shard {state.tree_id!r}: {exc}") from exc
