"""Hostile answers on demand: what someone who serves a log, or sits in front of one, can send.

Switches (POST /sim/hostile with a JSON object, or the `Hostility` object in process; each applies
to the log's API only, never to /sim/, and `{}` clears them all):

- `endless`: {"path": P, "count": N}: the next N answers under path prefix P are a 200 whose body
  never ends;
- `drip`: {"path": P, "seconds_per_byte": S}: answers under P are the real ones, one byte every S
  seconds;
- `checkpoint`: {"size": S, "signed": true|false}: the log's checkpoint says size S (with a random
  root), signed with the log's own key or with a key nobody trusts (tiles: /checkpoint; v1: the
  active shard's signedTreeHead and treeSize in /api/v1/log);
- `claimed_size`: S: v1's /api/v1/log says treeSize S beside its real, signed checkpoint;
- `misnamed`: I: v1's retrieve answers name entry I (global index) with a uuid that ends with another
  leaf hash than its body's;
- `omitted`: {"index": I, "times": N}: v1's retrieve answers leave entry I out, the first N times it
  is asked for (a loaded Rekor does);
- `truncated`: {"path": P}: answers under path prefix P lose their last byte (a cut JSON answer, an
  entry bundle whose last entry runs past its end).
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from monitor.simulate.log import SimLog, new_key_like
from monitor.tlog.merkle import leaf_hash
from monitor.tlog.note import format_checkpoint_body, sign_note
from monitor.tlog.rekor_v1 import RETRIEVE_PATH

ENDLESS_PIECE = b" " * 65536


@dataclass
class Hostility:
    endless_path: str | None = None
    endless_left: int = 0
    drip_path: str | None = None
    drip_seconds: float = 0.0
    checkpoint_size: int | None = None
    checkpoint_signed: bool = True
    claimed_size: int | None = None
    misnamed: int | None = None
    omitted: int | None = None
    omitted_left: int = 0
    truncated_path: str | None = None

    def configure(self, spec: dict[str, Any]) -> None:
        """Replace every switch with those of `spec` (the /sim/hostile body); raises ValueError."""
        self.__init__()  # type: ignore[misc]
        endless, drip, checkpoint = spec.get("endless"), spec.get("drip"), spec.get("checkpoint")
        if endless is not None:
            self.endless_path, self.endless_left = _path(endless), _count(endless.get("count", 1_000_000))
        if drip is not None:
            self.drip_path, self.drip_seconds = _path(drip), float(drip.get("seconds_per_byte", 1.0))
        if checkpoint is not None:
            self.checkpoint_size = _count(checkpoint.get("size"))
            self.checkpoint_signed = bool(checkpoint.get("signed", True))
        if spec.get("claimed_size") is not None:
            self.claimed_size = _count(spec["claimed_size"])
        if spec.get("misnamed") is not None:
            self.misnamed = _count(spec["misnamed"])
        if spec.get("truncated") is not None:
            self.truncated_path = _path(spec["truncated"])
        omitted = spec.get("omitted")
        if omitted is not None:
            if not isinstance(omitted, dict):
                raise ValueError("'omitted' is an object: {index, times}")
            self.omitted, self.omitted_left = _count(omitted.get("index")), _count(omitted.get("times", 1_000_000))

    def hostile_checkpoint(self, log: SimLog) -> str | None:
        """The checkpoint to serve instead of the real one, if one is set."""
        if self.checkpoint_size is None:
            return None
        body = format_checkpoint_body(log.origin(log.active), self.checkpoint_size, os.urandom(32))
        key = log.key if self.checkpoint_signed else new_key_like(log.key)
        return sign_note(body, log.key_name, key)


def _path(spec: Any) -> str:
    if not isinstance(spec, dict) or not isinstance(spec.get("path", "/"), str):
        raise ValueError("expected an object with a string 'path'")
    return spec.get("path", "/")


def _count(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise ValueError("counts and sizes are non-negative integers")
    return value


async def serve_hostile(
    request: web.Request, hostility: Hostility, log: SimLog, answer: web.StreamResponse
) -> web.StreamResponse:
    """The answer to send instead of `answer` (the real one), given the switches."""
    if hostility.drip_path is not None and request.path.startswith(hostility.drip_path):
        return await _drip(request, answer, hostility.drip_seconds)
    checkpoint = hostility.hostile_checkpoint(log)
    if isinstance(answer, web.Response) and answer.body is not None:
        if hostility.truncated_path is not None and request.path.startswith(hostility.truncated_path):
            return web.Response(body=bytes(answer.body)[:-1], content_type=answer.content_type)  # type: ignore[arg-type]
        if request.path == "/checkpoint" and checkpoint is not None:
            return web.Response(text=checkpoint, content_type="text/plain")
        if request.path == "/api/v1/log" and (checkpoint is not None or hostility.claimed_size is not None):
            info = json.loads(bytes(answer.body))  # type: ignore[arg-type]
            if checkpoint is not None:
                info["signedTreeHead"], info["treeSize"] = checkpoint, hostility.checkpoint_size
            if hostility.claimed_size is not None:
                info["treeSize"] = hostility.claimed_size
            return web.json_response(info)
        if request.path == RETRIEVE_PATH and (hostility.misnamed is not None or hostility.omitted is not None):
            entries = json.loads(bytes(answer.body))  # type: ignore[arg-type]
            if hostility.misnamed is not None:
                entries = _misnamed(entries, hostility.misnamed)
            return web.json_response(_omitting(entries, hostility))
    return answer


def _omitting(entries: list[dict[str, Any]], hostility: Hostility) -> list[dict[str, Any]]:
    """The answer without entry `hostility.omitted`, the first `omitted_left` times it is asked for
    (a loaded Rekor leaves entries out of its answers)."""
    kept = [item for item in entries if next(iter(item.values()))["logIndex"] != hostility.omitted]
    if len(kept) < len(entries) and hostility.omitted_left > 0:
        hostility.omitted_left -= 1
        return kept
    return entries


def _misnamed(entries: list[dict[str, Any]], index: int) -> list[dict[str, Any]]:
    """The answer with entry `index` under a uuid naming another body's leaf hash."""
    renamed = []
    for item in entries:
        ((uuid, entry),) = item.items()
        if entry["logIndex"] == index:
            uuid = uuid[:-64] + leaf_hash(b"another body").hex()
        renamed.append({uuid: entry})
    return renamed


def endless_now(request: web.Request, hostility: Hostility) -> bool:
    """Whether this request gets an endless answer (it uses one up)."""
    if hostility.endless_path is None or hostility.endless_left <= 0:
        return False
    if not request.path.startswith(hostility.endless_path):
        return False
    hostility.endless_left -= 1
    return True


async def endless_answer(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    while True:  # until the client gives up and the connection goes
        await response.write(ENDLESS_PIECE)
        await asyncio.sleep(0)


async def _drip(request: web.Request, answer: web.StreamResponse, seconds_per_byte: float) -> web.StreamResponse:
    body = bytes(answer.body) if isinstance(answer, web.Response) and answer.body is not None else b""  # type: ignore[arg-type]
    response = web.StreamResponse(status=answer.status, headers={"Content-Type": answer.content_type})
    await response.prepare(request)
    for position in range(len(body)):
        await response.write(body[position : position + 1])
        await asyncio.sleep(seconds_per_byte)
    await response.write_eof()
    return response
