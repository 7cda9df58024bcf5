"""DER element headers (X.690 §8.1, §10.1): read a tag and a definite length, and write them back.

Enough to walk a certificate's structure without a full ASN.1 parse. Only single-byte tags and
definite lengths of at most four octets are read (a certificate never needs more); an element must
end within the bytes it is read from. `DerError` is the only exception for hostile bytes.
"""

from __future__ import annotations

MAX_LENGTH_OCTETS = 4
_LONG_FORM = 0x80
_HIGH_TAG_NUMBER = 0x1F


class DerError(ValueError):
    """The bytes are not the DER element expected."""


def read_tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the element at `pos`, which must end by `end`."""
    if pos + 2 > end:
        raise DerError(f"element header at {pos} runs past {end}")
    tag, length = data[pos], data[pos + 1]
    if tag & _HIGH_TAG_NUMBER == _HIGH_TAG_NUMBER:
        raise DerError(f"multi-byte tag at {pos}")
    pos += 2
    if length & _LONG_FORM:
        octets = length & ~_LONG_FORM
        if not 0 < octets <= MAX_LENGTH_OCTETS or pos + octets > end:
            raise DerError(f"bad length at {pos - 1}")
        length = int.from_bytes(data[pos : pos + octets], "big")
        pos += octets
    if pos + length > end:
        raise DerError(f"element at {pos} of {length} bytes runs past {end}")
    return tag, pos, pos + length


def encode_length(length: int) -> bytes:
    """The shortest definite-length encoding of `length`."""
    if length < _LONG_FORM:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([_LONG_FORM | len(octets)]) + octets


def encode_tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + encode_length(len(content)) + content
