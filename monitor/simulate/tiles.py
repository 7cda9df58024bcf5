"""The simulator's tlog-tiles (Rekor v2) face: /checkpoint, hash tiles and entry bundles of a tiles `SimLog`.

Everything is computed on request from the tree's stored levels, as a static tessera log would serve
it (c2sp.org/tlog-tiles): a full tile only once complete, a partial one at any width up to what the
tree holds (this log never deletes partial tiles), a wider partial one or anything malformed is 404.
Misbehaviour on demand: tampered tiles (every hash's first byte flipped) and partial tiles that
answer 404, so clients must fall back to the full tile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aiohttp import web

from monitor.simulate.log import Shard, SimLog
from monitor.simulate.witnesses import WitnessPanel
from monitor.tlog.merkle import HASH_SIZE

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_TILE_LEVEL = 63

_LEVEL = re.compile(r"0|[1-9][0-9]?")
# At most 7 groups of 3 digits: 2^64 has 20.
_INDEX = re.compile(r"(?P<groups>(?:x[0-9]{3}/){0,6}[0-9]{3})(?:\.p/(?P<width>[1-9][0-9]{0,2}))?")


@dataclass(frozen=True)
class TileAddress:
    index: int
    width: int


def parse_tile_address(text: str) -> TileAddress | None:
    """`<N>[.p/<W>]` in its one canonical spelling (no leading zero groups, 1 <= W <= 255), else None."""
    match = _INDEX.fullmatch(text)
    if match is None:
        return None
    groups = match["groups"].replace("x", "").split("/")
    if len(groups) > 1 and groups[0] == "000":
        return None
    if match["width"] is None:
        return TileAddress(int("".join(groups)), TILE_WIDTH)
    width = int(match["width"])
    return TileAddress(int("".join(groups)), width) if width < TILE_WIDTH else None


def tampered(tile: bytes) -> bytes:
    """The tile with the first byte of every hash flipped."""
    flipped = bytearray(tile)
    flipped[::HASH_SIZE] = bytes(byte ^ 0xFF for byte in tile[::HASH_SIZE])
    return bytes(flipped)


def shard_hash_tile(shard: Shard, level: int, address: TileAddress) -> bytes | None:
    """Hash tile `level`/`address` of a tree, or None when the tree does not hold that many hashes there."""
    levels = shard.levels
    if TILE_HEIGHT * level >= len(levels):
        return None
    start = address.index * TILE_WIDTH
    hashes = levels[TILE_HEIGHT * level][start : start + address.width]
    return b"".join(hashes) if len(hashes) == address.width else None


def frame_entries(bodies: list[bytes]) -> bytes:
    """An entry bundle: each body prefixed with its length as a big-endian uint16 (so at most 65535 bytes)."""
    return b"".join(len(body).to_bytes(2, "big") + body for body in bodies)


@dataclass
class TiledLog:
    """The tiles view of a `SimLog`'s only tree, with its misbehaviour switches and its witnesses."""

    log: SimLog
    witnesses: WitnessPanel = field(default_factory=WitnessPanel)
    tampered_tiles: set[tuple[int, int]] = field(default_factory=set)
    partials_to_drop: int = 0

    def checkpoint(self) -> str:
        """The current checkpoint, cosigned by the witnesses now."""
        return self.witnesses.cosigned(self.log.checkpoint(self.log.active))

    def tamper_tile(self, level: int, index: int, *, enabled: bool = True) -> None:
        """Serve tile (level, index), at every width, with corrupted hashes (or stop doing so)."""
        if enabled:
            self.tampered_tiles.add((level, index))
        else:
            self.tampered_tiles.discard((level, index))

    def drop_partials(self, count: int) -> None:
        """Answer 404 to the next `count` requests for partial tiles or bundles, as a log that deleted them."""
        self.partials_to_drop = count

    def hash_tile(self, level: int, address: TileAddress) -> bytes | None:
        tile = None if self.dropped(address) else shard_hash_tile(self.log.active, level, address)
        if tile is None:
            return None
        return tampered(tile) if (level, address.index) in self.tampered_tiles else tile

    def entry_bundle(self, address: TileAddress) -> bytes | None:
        if self.dropped(address):
            return None
        start = address.index * TILE_WIDTH
        bodies = self.log.active.bodies[start : start + address.width]
        return frame_entries(bodies) if len(bodies) == address.width else None

    def dropped(self, address: TileAddress) -> bool:
        """Whether this request is one of the partial ones to answer 404 (it uses one up)."""
        if address.width == TILE_WIDTH or self.partials_to_drop <= 0:
            return False
        self.partials_to_drop -= 1
        return True


TILED_LOG = web.AppKey("tiled_log", TiledLog)


async def get_checkpoint(request: web.Request) -> web.Response:
    return web.Response(text=request.app[TILED_LOG].checkpoint(), content_type="text/plain", charset="utf-8")


async def get_hash_tile(request: web.Request) -> web.Response:
    level_text = request.match_info["level"]
    address = parse_tile_address(request.match_info["address"])
    if not _LEVEL.fullmatch(level_text) or int(level_text) > MAX_TILE_LEVEL or address is None:
        raise web.HTTPNotFound()
    return octets(request.app[TILED_LOG].hash_tile(int(level_text), address))


async def get_entry_bundle(request: web.Request) -> web.Response:
    address = parse_tile_address(request.match_info["address"])
    if address is None:
        raise web.HTTPNotFound()
    return octets(request.app[TILED_LOG].entry_bundle(address))


def octets(body: bytes | None) -> web.Response:
    if body is None:
        raise web.HTTPNotFound()
    return web.Response(body=body, content_type="application/octet-stream")


def add_tiles_routes(app: web.Application, tiled: TiledLog) -> None:
    app[TILED_LOG] = tiled
    app.router.add_get("/checkpoint", get_checkpoint)
    app.router.add_get("/tile/entries/{address:.+}", get_entry_bundle)
    app.router.add_get("/tile/{level:[0-9]+}/{address:.+}", get_hash_tile)
