"""Async client for the Rekor v1 REST API, built to face a hostile or flaky log.

Every answer is parsed once (codec.loads_json) and every field is type-checked by hand (tlog/answers.py,
rekor_v1_entries.py: cheap enough for thousands of entries per second); anything malformed is a
`LogProtocolError` naming the field. Nothing here is trusted yet: checkpoints, proofs and entries are
verified by the caller.

The tail fetches its retrieve answers unparsed (`get_answers`): its decode process reads them, the way
`read_answer` would (rekor_v1_entries.entries_of), where it analyses their entries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from monitor.tlog.answers import MalformedError, RefusedAnswer, json_int, json_list, json_object, json_str, parse_answer
from monitor.tlog.errors import LogProtocolError, UnexpectedStatusError
from monitor.tlog.http import HttpFetcher, Observer, RetryPolicy, gather_or_cancel
from monitor.tlog.rekor_v1_entries import (
    RekorEntry,
    RetrieveAnswer,
    entries_of,
    hex_hash,
    parse_log_entry,
    proof_hashes,
)

LOG_PATH = "/api/v1/log"
PROOF_PATH = "/api/v1/log/proof"
ENTRIES_PATH = "/api/v1/log/entries"
RETRIEVE_PATH = "/api/v1/log/entries/retrieve"

MAX_BATCH_SIZE = 10  # Rekor's maxSearchQueries: a larger retrieve request gets 422
BATCH_TOO_LARGE_STATUSES = frozenset({413, 422})
DEFAULT_RETRY = RetryPolicy()

_TREE_ID = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """One tree of the log, as `/api/v1/log` describes it (sizes are per shard)."""

    tree_id: str
    tree_size: int
    root_hash: bytes
    signed_tree_head: str


@dataclass(frozen=True, slots=True)
class LogInfo:
    active: ShardInfo
    inactive: tuple[ShardInfo, ...]  # oldest first

    @property
    def global_size(self) -> int:
        return self.active.tree_size + sum(shard.tree_size for shard in self.inactive)


class RekorV1Client:
    """Reads one Rekor v1 log: log info, consistency proofs and entries by global index."""

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: float = 30,
        concurrency: int = 8,
        batch_size: int = MAX_BATCH_SIZE,
        observe: Observer | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
        self._http = HttpFetcher(
            session, base_url, retry=retry, timeout=timeout, observe=observe, concurrency=concurrency
        )
        self._batch_size = batch_size

    @property
    def base_url(self) -> str:
        return self._http.base_url

    @property
    def retry(self) -> RetryPolicy:
        return self._http.retry

    async def get_log_info(self) -> LogInfo:
        raw = await self._http.get(LOG_PATH, endpoint="log")
        url = self._http.url_for(LOG_PATH)
        if raw is None:
            raise LogProtocolError(url, "the log info endpoint answered 404")
        return parse_answer(raw, url, "log info", parse_log_info)

    async def get_consistency_proof(self, first_size: int, last_size: int, tree_id: str | None = None) -> list[bytes]:
        """The proof that the shard's tree of `last_size` extends the one of `first_size` (per-shard sizes).

        The answer's rootHash is ignored: it is the root of the server's current tree, unverified.
        """
        if not 0 <= first_size <= last_size:
            raise ValueError(f"no consistency proof from size {first_size} to {last_size}")
        if first_size in (0, last_size):
            return []
        params: dict[str, str | int] = {"firstSize": first_size, "lastSize": last_size}
        if tree_id is not None:
            params["treeID"] = tree_id
        raw = await self._http.get(PROOF_PATH, params, endpoint="proof")
        url = self._http.url_for(PROOF_PATH, params)
        if raw is None:
            raise LogProtocolError(url, "the consistency proof endpoint answered 404")
        return parse_answer(raw, url, "consistency proof", parse_consistency_proof)

    async def get_entry(self, global_index: int) -> RekorEntry | None:
        """The entry at a global index, or None if the log has none there."""
        if global_index < 0:
            raise ValueError(f"negative log index {global_index}")
        params = {"logIndex": global_index}
        raw = await self._http.get(ENTRIES_PATH, params, endpoint="entry")
        if raw is None:
            return None
        url = self._http.url_for(ENTRIES_PATH, params)
        entry = parse_answer(raw, url, "log entry", parse_log_entry)
        if entry.log_index != global_index:
            raise LogProtocolError(url, f"asked for entry {global_index}, got entry {entry.log_index}")
        return entry

    async def get_entries(self, global_indexes: Sequence[int], *, proofs: bool = True) -> dict[int, RekorEntry]:
        """The entries the log has at these global indexes; the ones it does not have are absent.

        Each answer is read as it comes: a malformed one fails the call at once, cancelling the rest.
        `proofs=False` skips reading the inclusion proofs (a tail that folds leaves into a compact
        range does not need them) and hashing the bodies: each entry's leaf hash is then the one its
        uuid names, for the caller to check against the hash of its body (`RekorEntry.leaf_hash`).
        """
        found: dict[int, RekorEntry] = {}
        for entries in await gather_or_cancel(
            self._read_batch(batch, proofs) for batch in self._batches(global_indexes)
        ):
            found.update(entries)
        return found

    async def get_answers(self, global_indexes: Sequence[int]) -> list[RetrieveAnswer]:
        """The retrieve answers for these global indexes, unparsed (`read_answer` reads one), in the
        order of the indexes."""
        answered = await gather_or_cancel(self._retrieve(batch) for batch in self._batches(global_indexes))
        return [answer for answers in answered for answer in answers]

    def _batches(self, global_indexes: Sequence[int]) -> list[list[int]]:
        """Batches of at most `batch_size` indexes (asked at most `concurrency` at a time)."""
        wanted = list(dict.fromkeys(global_indexes))
        if wanted and min(wanted) < 0:
            raise ValueError("negative log index")
        size = self._batch_size
        return [wanted[start : start + size] for start in range(0, len(wanted), size)]

    async def _read_batch(self, batch: list[int], proofs: bool) -> dict[int, RekorEntry]:
        found: dict[int, RekorEntry] = {}
        for answer in await self._retrieve(batch):
            found.update(self.read_answer(answer, proofs=proofs))
        return found

    def read_answer(self, answer: RetrieveAnswer, *, proofs: bool = True) -> dict[int, RekorEntry]:
        """A retrieve answer's entries, keyed by global index; LogProtocolError naming the faulty field."""
        try:
            return entries_of(answer, proofs=proofs)
        except RefusedAnswer as exc:
            raise LogProtocolError(self.retrieve_url, exc.problem) from exc.__cause__

    @property
    def retrieve_url(self) -> str:
        return self._http.url_for(RETRIEVE_PATH)

    async def _retrieve(self, batch: list[int]) -> list[RetrieveAnswer]:
        """The answer to a batch, or to its halves when the log finds it too large."""
        try:
            raw = await self._http.post_json(RETRIEVE_PATH, {"logIndexes": batch}, endpoint="retrieve")
        except UnexpectedStatusError as exc:
            if exc.status not in BATCH_TOO_LARGE_STATUSES or len(batch) == 1:
                raise
            half = len(batch) // 2
            first, second = await gather_or_cancel([self._retrieve(batch[:half]), self._retrieve(batch[half:])])
            return first + second
        return [RetrieveAnswer(tuple(batch), raw)]


def parse_log_info(document: Any) -> LogInfo:
    """`/api/v1/log`: the active shard's fields at the top level, plus `inactiveShards`."""
    active = _shard(document, "log info")
    listed = document.get("inactiveShards")
    shards = [] if listed is None else json_list(listed, "inactiveShards")
    inactive = tuple(_shard(item, f"inactiveShards[{position}]") for position, item in enumerate(shards))
    tree_ids = [shard.tree_id for shard in (*inactive, active)]
    if len(set(tree_ids)) != len(tree_ids):
        raise MalformedError("inactiveShards", f"tree ids repeat: {tree_ids}")
    return LogInfo(active=active, inactive=inactive)


def parse_consistency_proof(document: Any) -> list[bytes]:
    return list(proof_hashes(json_object(document, "consistency proof").get("hashes"), "hashes"))


def _shard(value: Any, where: str) -> ShardInfo:
    shard = json_object(value, where)
    tree_id = shard.get("treeID")
    if type(tree_id) is not str or not _TREE_ID.fullmatch(tree_id):
        raise MalformedError(f"{where}.treeID", "is not a decimal string")
    return ShardInfo(
        tree_id=tree_id,
        tree_size=json_int(shard.get("treeSize"), f"{where}.treeSize"),
        root_hash=hex_hash(shard.get("rootHash"), f"{where}.rootHash"),
        signed_tree_head=json_str(shard.get("signedTreeHead"), f"{where}.signedTreeHead"),
    )
