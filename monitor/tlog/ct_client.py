"""Async clients for Certificate Transparency logs: the RFC 6962 API and the C2SP static-ct-api.

RFC 6962 (base URL + path): `GET /ct/v1/get-sth`, `/ct/v1/get-sth-consistency?first=&second=`,
`/ct/v1/get-entries?start=&end=` (end INCLUSIVE; a log may answer fewer entries than asked: the rest
is asked again from where it stopped; more than asked, or none, is a protocol error) and
`/ct/v1/get-proof-by-hash?hash=&tree_size=`. static-ct-api: `/checkpoint`, hash tiles and data tiles
(read through tlog/tiles.py, which also computes proofs from the tiles). Issuers (`/issuer/<sha256
hex>`) are not read: a certificate's chain is checked against the trust root's Fulcio CAs.

The same rules as the Rekor clients: retries and caps from tlog/http.py, at most `concurrency`
requests in flight, answers parsed strictly (tlog/answers.py). Nothing here is trusted: tree heads,
proofs and entries are verified by the caller, and entries are only split here, decoded later.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import aiohttp
import msgspec

from monitor.tlog.answers import MalformedError, json_base64, json_int, json_list, json_object, parse_answer
from monitor.tlog.ct import CtEntryError, CtLogEntry, split_data_tile
from monitor.tlog.ct_head import SignedTreeHead, parse_sth
from monitor.tlog.entry_bundle import TileFormatError
from monitor.tlog.errors import LogProtocolError
from monitor.tlog.http import HttpFetcher, Observer, RetryPolicy, gather_or_cancel
from monitor.tlog.merkle import HASH_SIZE, MAX_PROOF_HASHES
from monitor.tlog.tiles import BundleFormat, TilesClient, data_tile_path

GET_STH = "/ct/v1/get-sth"
GET_STH_CONSISTENCY = "/ct/v1/get-sth-consistency"
GET_ENTRIES = "/ct/v1/get-entries"
GET_PROOF_BY_HASH = "/ct/v1/get-proof-by-hash"

DEFAULT_RETRY = RetryPolicy()
DEFAULT_BATCH_SIZE = 1000  # Trillian's CTFE default for --max_get_entries
MAX_BATCH_SIZE = 10_000

T = TypeVar("T")
Params = dict[str, str | int]


@dataclass(frozen=True, slots=True)
class ProofByHash:
    """A get-proof-by-hash answer: where the leaf is, and its audit path (leaf to root)."""

    leaf_index: int
    audit_path: tuple[bytes, ...]


def _hash_list(value: Any, where: str) -> tuple[bytes, ...]:
    items = json_list(value, where)
    if len(items) > MAX_PROOF_HASHES:
        raise MalformedError(where, f"has {len(items)} hashes, more than any tree needs")
    hashes = tuple(json_base64(item, f"{where}[{at}]") for at, item in enumerate(items))
    if any(len(item) != HASH_SIZE for item in hashes):
        raise MalformedError(where, f"holds a hash that is not {HASH_SIZE} bytes")
    return hashes


def parse_consistency(document: Any) -> list[bytes]:
    return list(_hash_list(json_object(document, "answer").get("consistency"), "consistency"))


def parse_proof_by_hash(document: Any) -> ProofByHash:
    answer = json_object(document, "answer")
    return ProofByHash(
        leaf_index=json_int(answer.get("leaf_index"), "leaf_index"),
        audit_path=_hash_list(answer.get("audit_path"), "audit_path"),
    )


def parse_entries(document: Any, first: int, asked: int, log_id: bytes = b"") -> list[CtLogEntry]:
    """A get-entries answer for `asked` entries from index `first`: between 1 and `asked` of them."""
    items = json_list(json_object(document, "answer").get("entries"), "entries")
    _check_count(len(items), asked)
    entries = []
    for position, item in enumerate(items):
        where = f"entries[{position}]"
        entry = json_object(item, where)
        leaf_input = json_base64(entry.get("leaf_input"), f"{where}.leaf_input")
        extra_data = json_base64(entry.get("extra_data"), f"{where}.extra_data")
        entries.append(CtLogEntry.of(first + position, leaf_input, extra_data, log_id=log_id))
    return entries


def _check_count(count: int, asked: int) -> None:
    if not 0 < count <= asked:
        raise MalformedError("entries", f"holds {count} entries, asked for {asked}")


class _TypedEntry(msgspec.Struct):
    leaf_input: bytes
    extra_data: bytes


class _TypedEntries(msgspec.Struct):
    entries: list[_TypedEntry]


_GET_ENTRIES_ANSWER = msgspec.json.Decoder(_TypedEntries)


def parse_entries_typed(raw: bytes, first: int, asked: int, log_id: bytes = b"") -> list[CtLogEntry] | None:
    """`parse_entries` of a raw get-entries answer, when this shortcut takes it; None: parse it the
    general way (which also names what is wrong). The shortcut decodes the base64 straight into
    bytes: the general way first makes a JSON document of base64 strings, as large again as the
    answer (about 5 MB for 1000 entries), which raised a CT catch-up's peak RSS by 5-8 MiB. It takes
    no answer the general way refuses: msgspec's base64 is as strict as binascii's (or stricter,
    then the general way decides), and the answer must be ASCII, as every honest one is: msgspec does
    not check the UTF-8 of the fields it skips, which the general way refuses."""
    if not raw.isascii():
        return None
    try:
        items = _GET_ENTRIES_ANSWER.decode(raw).entries
        _check_count(len(items), asked)
    except (msgspec.DecodeError, RecursionError, MalformedError):
        return None
    return [
        CtLogEntry.of(first + position, item.leaf_input, item.extra_data, log_id=log_id)
        for position, item in enumerate(items)
    ]


class Rfc6962Client:
    """Reads one RFC 6962 CT log: its STH, consistency and inclusion proofs, and entries by index.

    Entries are asked for in batches of `batch_size`, at most `concurrency` requests in flight.
    """

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: float = 30,
        concurrency: int = 8,
        batch_size: int = DEFAULT_BATCH_SIZE,
        observe: Observer | None = None,
        log_id: bytes = b"",
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
        self._http = HttpFetcher(
            session, base_url, retry=retry, timeout=timeout, observe=observe, concurrency=concurrency
        )
        self._batch_size = batch_size
        self._log_id = log_id

    @property
    def base_url(self) -> str:
        return self._http.base_url

    async def get_sth(self) -> SignedTreeHead:
        """The log's current signed tree head, parsed strictly, not verified."""
        return await self._get_json(GET_STH, None, "get-sth", "signed tree head", parse_sth)

    async def get_sth_consistency(self, first: int, second: int) -> list[bytes]:
        """The proof that the tree of `second` leaves extends the one of `first` (empty when one is 0 or equal)."""
        if not 0 <= first <= second:
            raise ValueError(f"no consistency proof from size {first} to {second}")
        if first in (0, second):
            return []
        params: Params = {"first": first, "second": second}
        return await self._get_json(GET_STH_CONSISTENCY, params, "get-sth-consistency", "proof", parse_consistency)

    async def get_proof_by_hash(self, leaf_hash: bytes, tree_size: int) -> ProofByHash:
        """Where the leaf with this hash is in the tree of `tree_size` leaves, and its audit path."""
        if len(leaf_hash) != HASH_SIZE or tree_size < 1:
            raise ValueError("a 32-byte leaf hash and a non-empty tree are needed")
        params: Params = {"hash": base64.b64encode(leaf_hash).decode("ascii"), "tree_size": tree_size}
        proof = await self._get_json(GET_PROOF_BY_HASH, params, "get-proof-by-hash", "proof", parse_proof_by_hash)
        if proof.leaf_index >= tree_size:
            raise LogProtocolError(self._http.url_for(GET_PROOF_BY_HASH, params), "leaf_index beyond the tree")
        return proof

    async def get_entries(self, first: int, end: int) -> list[CtLogEntry]:
        """The entries [first, end), all of them, in index order; batches fetched concurrently."""
        if not 0 <= first <= end:
            raise ValueError(f"no entries [{first}, {end})")
        size = self._batch_size
        batches = [(start, min(start + size, end)) for start in range(first, end, size)]
        entries: list[CtLogEntry] = []
        for batch in await gather_or_cancel(self._entries_between(start, stop) for start, stop in batches):
            entries.extend(batch)
        return entries

    async def _entries_between(self, start: int, stop: int) -> list[CtLogEntry]:
        """[start, stop), asking again from where each shorter answer stopped."""
        entries: list[CtLogEntry] = []
        while start < stop:
            params: Params = {"start": start, "end": stop - 1}
            raw = await self._get(GET_ENTRIES, params, "get-entries")
            answer = parse_entries_typed(raw, start, stop - start, self._log_id)
            if answer is None:
                parse = partial(parse_entries, first=start, asked=stop - start, log_id=self._log_id)
                answer = parse_answer(raw, self._http.url_for(GET_ENTRIES, params), "entries", parse)
            entries.extend(answer)
            start += len(answer)
        return entries

    async def _get_json(
        self, path: str, params: Params | None, endpoint: str, what: str, parse: Callable[[Any], T]
    ) -> T:
        raw = await self._get(path, params, endpoint)
        return parse_answer(raw, self._http.url_for(path, params), what, parse)

    async def _get(self, path: str, params: Params | None, endpoint: str) -> bytes:
        raw = await self._http.get(path, params, endpoint=endpoint)
        if raw is None:
            raise LogProtocolError(self._http.url_for(path, params), f"the {endpoint} endpoint answered 404")
        return raw


def parse_data_tile(raw: bytes, width: int) -> list[tuple[bytes, bytes]]:
    try:
        return split_data_tile(raw, width)
    except CtEntryError as exc:
        raise TileFormatError(exc.detail) from None


DATA_TILES: BundleFormat[tuple[bytes, bytes]] = BundleFormat(data_tile_path, parse_data_tile)


class StaticCtClient:
    """Reads one static-ct-api log: its checkpoint and tiles (`tiles`, a TilesClient), and its data
    tiles as entries."""

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: float = 30,
        concurrency: int = 8,
        observe: Observer | None = None,
        log_id: bytes = b"",
    ) -> None:
        self.tiles = TilesClient(
            base_url, session, retry=retry, timeout=timeout, concurrency=concurrency, observe=observe
        )
        self._log_id = log_id

    @property
    def base_url(self) -> str:
        return self.tiles.base_url

    async def get_entries(self, first: int, end: int, tree_size: int) -> list[CtLogEntry]:
        """The entries [first, end) of the tree of `tree_size` leaves, from its data tiles."""
        leaves = await self.tiles.get_bundled(DATA_TILES, first, end, tree_size)
        return [
            CtLogEntry.of(index, leaf_input, tail, tile_leaf=True, log_id=self._log_id)
            for index, (leaf_input, tail) in zip(range(first, end), leaves, strict=True)
        ]
