"""Async client for a C2SP tlog-tiles log (Rekor v2): checkpoint, hash tiles, entry bundles, and proofs.

Resources (c2sp.org/tlog-tiles): `/checkpoint`, `/tile/<L>/<N>[.p/<W>]` and `/tile/entries/<N>[.p/<W>]`,
`<N>` written in 3-digit groups, all but the last prefixed with `x` (1234067 -> `x001/x234/067`). The
rightmost tile of each level is partial (W = its width) until it fills up; when a partial resource
answers 404 the full one is fetched and cut to W (tessera's `PartialOrFullResource`).

A tiles log serves no proofs: inclusion and consistency proofs are computed here from the tiles of the
larger tree. Nothing fetched is trusted: the caller verifies proofs and entries against signed
checkpoints, so a tampered tile or bundle only makes that verification fail.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aiohttp

from monitor.lru import LruCache
from monitor.tlog.entry_bundle import (
    EntryBundle,
    TileFormatError,
    parse_entry_bundle,
)
from monitor.tlog.errors import LogProtocolError
from monitor.tlog.http import HttpFetcher, Observer, RetryPolicy, gather_or_cancel
from monitor.tlog.merkle import HASH_SIZE, CompactRange, node_hash

CHECKPOINT_PATH = "/checkpoint"
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_TILE_LEVEL = 63

DEFAULT_RETRY = RetryPolicy()

Range = tuple[int, int]  # leaves [start, end)
E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Node:
    """A complete (perfect) subtree of the tree: leaves [index·2^level, (index+1)·2^level)."""

    level: int
    index: int

    def tile(self) -> tuple[int, int]:
        """(tile level, tile index) of the tile whose hashes this node is built from."""
        tile_level, height = divmod(self.level, TILE_HEIGHT)
        return tile_level, (self.index << height) >> TILE_HEIGHT

    def slice_in_tile(self) -> slice:
        """Where, in its tile, the hashes under this node are."""
        height = self.level % TILE_HEIGHT
        first = (self.index << height) % TILE_WIDTH
        return slice(first, first + (1 << height))


@dataclass(frozen=True, slots=True)
class _Fetched:
    path: str
    width: int  # how many hashes or entries the resource fetched must hold
    body: bytes


def tile_width(level: int, index: int, tree_size: int) -> int:
    """How many hashes tile (level, index) holds in a tree of `tree_size` leaves: 256, or fewer at the right edge."""
    if not 0 <= level <= MAX_TILE_LEVEL or index < 0 or tree_size < 0:
        raise ValueError(f"no tile {level}/{index} in a tree of size {tree_size}")
    width = min((tree_size >> (TILE_HEIGHT * level)) - index * TILE_WIDTH, TILE_WIDTH)
    if width <= 0:
        raise ValueError(f"tile {level}/{index} is not in a tree of size {tree_size}")
    return width


def encode_index(index: int) -> str:
    """A tile index as C2SP path elements: 3-digit groups, all but the last prefixed with `x`."""
    if index < 0:
        raise ValueError(f"negative tile index {index}")
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(groups))


def _partial_suffix(width: int) -> str:
    if not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"a tile is 1 to {TILE_WIDTH} wide, not {width}")
    return "" if width == TILE_WIDTH else f".p/{width}"


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    return f"/tile/{level}/{encode_index(index)}{_partial_suffix(width)}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    return f"/tile/entries/{encode_index(index)}{_partial_suffix(width)}"


def data_tile_path(index: int, width: int = TILE_WIDTH) -> str:
    """A static-ct-api data tile: the leaves of level-0 tile `index`."""
    return f"/tile/data/{encode_index(index)}{_partial_suffix(width)}"


def parse_tile(raw: bytes, width: int) -> list[bytes]:
    """A hash tile's `width` hashes."""
    if len(raw) % HASH_SIZE:
        raise TileFormatError(f"a tile of {len(raw)} bytes is not a whole number of {HASH_SIZE}-byte hashes")
    if len(raw) != width * HASH_SIZE:
        raise TileFormatError(f"tile has {len(raw) // HASH_SIZE} hashes, expected {width}")
    return [raw[start : start + HASH_SIZE] for start in range(0, len(raw), HASH_SIZE)]


@dataclass(frozen=True)
class BundleFormat(Generic[E]):
    """Where a log serves the leaves of each level-0 tile, and how one such resource splits into them.

    `parse(raw, width)` must return exactly `width` items or raise TileFormatError.
    """

    path: Callable[[int, int], str]  # (tile index, width) -> path
    parse: Callable[[bytes, int], list[E]]


ENTRY_BUNDLES: BundleFormat[bytes] = BundleFormat(entries_path, parse_entry_bundle)


def _wanted(offset: int, first: int, end: int) -> slice:
    """The leaves in [first, end) of the bundle of leaves from `offset`, by their place in it."""
    return slice(max(first - offset, 0), min(end - offset, TILE_WIDTH))


def _bundle_indexes(first: int, end: int, tree_size: int) -> range:
    """The level-0 tiles (bundles) that hold leaves [first, end) of the tree of `tree_size` leaves."""
    if not 0 <= first <= end <= tree_size:
        raise ValueError(f"entries [{first}, {end}) are not in a tree of size {tree_size}")
    return range(first // TILE_WIDTH, -(-end // TILE_WIDTH)) if first < end else range(0)


def covering_nodes(start: int, end: int) -> list[Node]:
    """The perfect subtrees covering leaves [start, end), largest first.

    `start` must be a multiple of a power of two at least `end - start`, as for [0, n) and every
    subtree an RFC 6962 proof names; then the range's hash folds these nodes from the right.
    """
    nodes = []
    width, position = end - start, start
    for level in reversed(range(width.bit_length())):
        if width >> level & 1:
            nodes.append(Node(level, position >> level))
            position += 1 << level
    return nodes


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The subtrees whose hashes make RFC 9162 PATH(index, D[0:size]), leaf to root."""
    ranges = []
    start, end = 0, size
    while end - start > 1:
        split = start + _largest_power_of_two_below(end - start)
        if index < split:
            ranges.append((split, end))
            end = split
        else:
            ranges.append((start, split))
            start = split
    ranges.reverse()
    return ranges


def consistency_ranges(size1: int, size2: int) -> list[Range]:
    """The subtrees whose hashes make RFC 9162 PROOF(size1, D[0:size2]), in proof order."""
    if size1 in (0, size2):
        return []
    ranges = []
    start, end, complete = 0, size2, True
    while size1 != end:
        split = start + _largest_power_of_two_below(end - start)
        if size1 <= split:
            ranges.append((split, end))
            end = split
        else:
            ranges.append((start, split))
            start, complete = split, False
    if not complete:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def perfect_subtree_root(hashes: Sequence[bytes]) -> bytes:
    """The root over a power-of-two number of consecutive node hashes."""
    level = list(hashes)
    while len(level) > 1:
        level = [node_hash(level[at], level[at + 1]) for at in range(0, len(level), 2)]
    return level[0]


def _fold_right(hashes: Sequence[bytes]) -> bytes:
    node = hashes[-1]
    for left in reversed(hashes[:-1]):
        node = node_hash(left, node)
    return node


TileKey = tuple[int, int, int]  # level, index, width


class _TileCache:
    """The hash tiles read in this cycle (since the last checkpoint read), by level, index and width,
    and the node hashes computed from them (`nodes`).

    A tile of a given width never changes in an append-only log, and each chunk's prefix proof needs
    the same few tiles at the right edge of the verified tree: 200k entries took 774 tile reads for
    195 chunks, of 6 distinct tiles, as many requests as the entries themselves. A read in flight
    is shared; a failed one is forgotten. Nothing cached is trusted more than a fresh read: what it
    proves is checked against the verified checkpoint, and a new cycle reads every tile again.
    """

    CAPACITY = 64  # tiles of 8 KiB at most: far more than the right edge of any tree
    NODES = 4096
    """Node hashes of 32 bytes, per (node, tree size): each chunk's prefix proof needs the same nodes
    at the right edge, each up to 255 hashes to compute again (0.8 ms a chunk)."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """A new cycle, with node hashes of its own: one computed from the tiles of the cycle that
        ended (read before this) is kept in that cycle's, which no one reads any more."""
        self._reads: LruCache[TileKey, asyncio.Task[list[bytes]]] = LruCache(self.CAPACITY)
        self.nodes: LruCache[tuple[Node, int], bytes] = LruCache(self.NODES)

    async def get(self, key: TileKey, read: Callable[[], Coroutine[Any, Any, list[bytes]]]) -> list[bytes]:
        task = self._reads.get(key)
        if task is None:
            task = self._reads.put(key, asyncio.ensure_future(read()))
            task.add_done_callback(functools.partial(self._forget_failed, key))
        return await asyncio.shield(task)  # a reader cancelled (its chunk failed) leaves the read to the others

    def _forget_failed(self, key: TileKey, task: asyncio.Task[list[bytes]]) -> None:
        if task.cancelled() or task.exception() is not None:
            self._reads.discard(key, task)


class TilesClient:
    """Reads one tlog-tiles log: its checkpoint, tiles and entries, and proofs computed from its tiles.

    At most `concurrency` requests are in flight; 429, 5xx and timeouts are retried per `retry`.
    """

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: float = 30,
        concurrency: int = 8,
        observe: Observer | None = None,
    ) -> None:
        self._http = HttpFetcher(
            session, base_url, retry=retry, timeout=timeout, observe=observe, concurrency=concurrency
        )
        self._tiles = _TileCache()

    @property
    def base_url(self) -> str:
        return self._http.base_url

    async def get_checkpoint(self) -> str:
        """The log's current signed checkpoint, unverified. Each read starts a new cycle: the hash
        tiles the previous one read are forgotten."""
        self._tiles.clear()
        raw = await self._get(CHECKPOINT_PATH, "checkpoint")
        url = self._http.url_for(CHECKPOINT_PATH)
        if raw is None:
            raise LogProtocolError(url, "the log serves no checkpoint (404)")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise LogProtocolError(url, "the checkpoint is not UTF-8") from None

    async def get_tile(self, level: int, index: int, tree_size: int) -> list[bytes]:
        """The hashes of tile (level, index) as it is in the tree of `tree_size` leaves (its width of them)."""
        width = tile_width(level, index, tree_size)
        return await self._tiles.get((level, index, width), lambda: self._fetch_tile(level, index, width))

    async def _fetch_tile(self, level: int, index: int, width: int) -> list[bytes]:
        fetched = await self._partial_or_full(lambda served: tile_path(level, index, served), width, "tile")
        return self._parsed(parse_tile, fetched)[:width]

    async def get_entry_bundle(self, index: int, tree_size: int) -> list[bytes]:
        """The entries of bundle `index` (leaves [256·index, 256·index + 256)) that the tree of `tree_size` holds."""
        return await self.get_bundle(ENTRY_BUNDLES, index, tree_size)

    async def get_entries(self, first: int, end: int, tree_size: int) -> list[bytes]:
        """The entries [first, end) in index order, their bundles fetched concurrently."""
        return await self.get_bundled(ENTRY_BUNDLES, first, end, tree_size)

    async def get_bundle(self, bundles: BundleFormat[E], index: int, tree_size: int) -> list[E]:
        """The leaves of level-0 tile `index` that the tree of `tree_size` holds, as `bundles` serves them."""
        fetched = await self._fetch_bundle(bundles, index, tree_size)
        return self._parsed(bundles.parse, fetched)[: tile_width(0, index, tree_size)]

    async def get_bundled(self, bundles: BundleFormat[E], first: int, end: int, tree_size: int) -> list[E]:
        """The leaves [first, end) in index order, as `bundles` serves them, fetched concurrently."""
        indexes = _bundle_indexes(first, end, tree_size)
        fetched = await gather_or_cancel(self.get_bundle(bundles, index, tree_size) for index in indexes)
        entries: list[E] = []
        for index, bundle_entries in zip(indexes, fetched, strict=True):
            entries.extend(bundle_entries[_wanted(index * TILE_WIDTH, first, end)])
        return entries

    async def get_entry_bundles(self, first: int, end: int, tree_size: int) -> list[tuple[str, EntryBundle]]:
        """The entry bundles holding entries [first, end), each with its URL, fetched concurrently,
        unsplit (entry_bundle.bundled_entries splits them)."""
        indexes = _bundle_indexes(first, end, tree_size)
        fetched = await gather_or_cancel(self._fetch_bundle(ENTRY_BUNDLES, index, tree_size) for index in indexes)
        wanted = [_wanted(index * TILE_WIDTH, first, end) for index in indexes]
        return [
            (self._http.url_for(bundle.path), EntryBundle(bundle.width, part.start, part.stop, bundle.body))
            for bundle, part in zip(fetched, wanted, strict=True)
        ]

    async def _fetch_bundle(self, bundles: BundleFormat[E], index: int, tree_size: int) -> _Fetched:
        width = tile_width(0, index, tree_size)
        return await self._partial_or_full(lambda served: bundles.path(index, served), width, "entries")

    async def hashes_at(self, level: int, indexes: Sequence[int], tree_size: int) -> list[bytes]:
        """The hashes of the complete subtrees (level, index) of the tree of `tree_size` leaves."""
        nodes = [Node(level, index) for index in indexes]
        known = await self._node_hashes(nodes, tree_size)
        return [known[node] for node in nodes]

    async def compact_range(self, size: int, tree_size: int) -> CompactRange:
        """The compact range of leaves [0, size), read from the tiles of the tree of `tree_size` leaves.

        Unverified: compare its root with a checkpoint of `size` before relying on it.
        """
        if not 0 <= size <= tree_size:
            raise ValueError(f"no range [0, {size}) in a tree of size {tree_size}")
        nodes = covering_nodes(0, size)
        known = await self._node_hashes(nodes, tree_size)
        return CompactRange(size, [known[node] for node in nodes])

    async def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """The RFC 6962 inclusion proof of leaf `index` in the tree of `tree_size` leaves, from its tiles."""
        if not 0 <= index < tree_size:
            raise ValueError(f"leaf {index} is not in a tree of size {tree_size}")
        return await self._range_hashes(inclusion_ranges(index, tree_size), tree_size)

    async def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """The RFC 6962 proof that the tree of `size2` leaves extends the one of `size1`, from the tiles of `size2`."""
        if not 0 <= size1 <= size2:
            raise ValueError(f"no consistency proof from size {size1} to {size2}")
        return await self._range_hashes(consistency_ranges(size1, size2), size2)

    async def _range_hashes(self, ranges: Sequence[Range], tree_size: int) -> list[bytes]:
        covers = [covering_nodes(start, end) for start, end in ranges]
        known = await self._node_hashes([node for cover in covers for node in cover], tree_size)
        return [_fold_right([known[node] for node in cover]) for cover in covers]

    async def _node_hashes(self, nodes: Sequence[Node], tree_size: int) -> dict[Node, bytes]:
        """Each node's hash, computed from its tile; every tile needed is fetched once, concurrently."""
        for node in nodes:
            if node.level < 0 or node.index < 0 or (node.index + 1) << node.level > tree_size:
                raise ValueError(f"{node} is not a complete subtree of a tree of size {tree_size}")
        kept = self._tiles.nodes  # this cycle's, even if the next one starts while the tiles are read
        known = {node: node_hash for node in nodes if (node_hash := kept.get((node, tree_size))) is not None}
        wanted = list(dict.fromkeys(node.tile() for node in nodes if node not in known))
        fetched = await gather_or_cancel(self.get_tile(level, index, tree_size) for level, index in wanted)
        tiles = dict(zip(wanted, fetched, strict=True))
        for node in nodes:
            if node not in known:
                under = tiles[node.tile()][node.slice_in_tile()]
                known[node] = kept.put((node, tree_size), perfect_subtree_root(under))
        return known

    async def _partial_or_full(self, path_for: Callable[[int], str], width: int, endpoint: str) -> _Fetched:
        """The resource at `width`, or the full one when that partial one is gone (404)."""
        path = path_for(width)
        raw = await self._get(path, endpoint)
        if raw is None and width < TILE_WIDTH:
            width, path = TILE_WIDTH, path_for(TILE_WIDTH)
            raw = await self._get(path, endpoint)
        if raw is None:
            raise LogProtocolError(self._http.url_for(path), "the log does not serve a resource its tree needs (404)")
        return _Fetched(path, width, raw)

    def _parsed(self, parse: Callable[[bytes, int], list[E]], fetched: _Fetched) -> list[E]:
        try:
            return parse(fetched.body, fetched.width)
        except TileFormatError as exc:
            raise LogProtocolError(self._http.url_for(fetched.path), str(exc)) from None

    async def _get(self, path: str, endpoint: str) -> bytes | None:
        return await self._http.get(path, endpoint=endpoint)
