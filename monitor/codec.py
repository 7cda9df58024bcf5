"""Fast decoding with the standard library as the judge: orjson and pybase64 are several times faster
than json and binascii, and stricter (orjson wants UTF-8 and no NaN, pybase64 no stray `=` after a
full quantum), so what they refuse is tried again with json and binascii (strict mode). Whatever
these functions accept is exactly what json and strict binascii accept (tests/test_decode_fast.py).
"""

from __future__ import annotations

import binascii
import json
from typing import Any

import orjson
import pybase64


def loads_json(raw: bytes | str) -> Any:
    """json.loads, by orjson when it can; raises ValueError (or RecursionError) as json does."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def strict_base64(value: str | bytes) -> bytes:
    """binascii's strict base64 (no whitespace, exact padding), decoded by pybase64 when it can.

    Raises ValueError (binascii.Error is one) for what binascii refuses, and only for that.
    """
    try:
        return pybase64.b64decode(value, validate=True)
    except ValueError:
        return binascii.a2b_base64(value, strict_mode=True)
