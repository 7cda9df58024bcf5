"""A tlog-tiles entry bundle (c2sp.org/tlog-tiles): each entry a big-endian uint16 length, then that
many bytes. Lean (no HTTP client): the decode process splits a tiles chunk's bundles where it
analyses their entries, and the client (tiles.py) splits every other bundle with the same function.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

ENTRY_LENGTH_SIZE = 2


class TileFormatError(ValueError):
    """A tile or entry bundle does not have the shape its width demands."""


class EntryBundle(NamedTuple):
    """An entry bundle as fetched, unsplit: `width` entries as served (a full bundle may stand in for
    the partial one the tree needs), of which [start, stop) are wanted."""

    width: int
    start: int
    stop: int
    raw: bytes | memoryview


class BundleRefused(Exception):
    """A bundle that is not `width` entries; `position`: which of a chunk's bundles."""

    def __init__(self, position: int, problem: str) -> None:
        super().__init__(problem)
        self.position = position
        self.problem = problem


def parse_entry_bundle(raw: bytes | memoryview, width: int) -> list[bytes]:
    """An entry bundle's `width` entries: each a big-endian uint16 length, then that many bytes."""
    entries: list[bytes] = []
    append = entries.append
    offset, size = 0, len(raw)
    for number in range(width):
        start = offset + ENTRY_LENGTH_SIZE
        if start > size:
            raise TileFormatError(f"bundle ends after {number} of {width} entries")
        end = start + (raw[offset] << 8 | raw[offset + 1])
        if end > size:
            raise TileFormatError(f"entry {number} runs past the end of the bundle")
        append(bytes(raw[start:end]))  # no copy of a bytes object's slice
        offset = end
    if offset != size:
        raise TileFormatError(f"{size - offset} bytes follow the last of the bundle's {width} entries")
    return entries


def bundled_entries(bundles: Sequence[EntryBundle]) -> list[bytes]:
    """The wanted entries of the bundles, in order; BundleRefused for one that is malformed."""
    entries: list[bytes] = []
    for position, bundle in enumerate(bundles):
        try:
            entries += parse_entry_bundle(bundle.raw, bundle.width)[bundle.start : bundle.stop]
        except TileFormatError as exc:
            raise BundleRefused(position, str(exc)) from None
    return entries
