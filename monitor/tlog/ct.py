"""Certificate Transparency log entries (RFC 6962 §3; C2SP static-ct-api data tiles): parse and build.

All integers are big-endian; `<uN>` is a vector with an N-bit length prefix:

    MerkleTreeLeaf   = u8 version (0) ‖ u8 leaf_type (0) ‖ TimestampedEntry
    TimestampedEntry = u64 timestamp (ms) ‖ u16 entry_type ‖ signed entry ‖ extensions<u16>
      x509_entry (0):    certificate<u24>
      precert_entry (1): issuer_key_hash[32] ‖ tbs_certificate<u24>   (the TBS, poison extension removed)
    extra_data (get-entries)
      x509_entry:    certificate_chain<u24> of certificate<u24>
      precert_entry: pre_certificate<u24> ‖ precertificate_chain<u24> of certificate<u24>
    TileLeaf (data tiles) = TimestampedEntry ‖ [precert_entry: pre_certificate<u24>] ‖ fingerprints<u16> of [32]

The bytes an SCT signs are a MerkleTreeLeaf's bytes too (version 0, signature_type 0 = leaf_type 0),
so `merkle_tree_leaf` serves both the log's tree and SCT verification.

Invariants: every length is checked against what remains before anything is sliced; a structure
must use every byte it is given; hostile bytes raise `CtEntryError(reason, detail)` and nothing
else. A leaf's hash is SHA256(0x00 ‖ MerkleTreeLeaf) whatever it holds, so an entry that cannot be
decoded still takes its place in the tree. A precert entry decodes only when the precertificate in
its extra data, poison extension removed, is the leaf's TBS byte for byte (as certspotter checks):
otherwise the log would commit to one certificate and show another.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from monitor.der import DerError, encode_tlv, read_tlv
from monitor.errors import INTERNAL_ERROR, ReasonedError
from monitor.tlog.merkle import leaf_hash

X509_ENTRY = 0
PRECERT_ENTRY = 1
ENTRY_TYPES = {X509_ENTRY: "x509_entry", PRECERT_ENTRY: "precert_entry"}
LEAF_VERSION = 0
TIMESTAMPED_ENTRY = 0
ISSUER_KEY_HASH_SIZE = 32
FINGERPRINT_SIZE = 32
MAX_U24 = (1 << 24) - 1
MAX_U16 = (1 << 16) - 1
MAX_U64 = (1 << 64) - 1
MAX_SERIAL_OCTETS = 32  # RFC 5280 allows 20; a little slack, but no megabyte integers
LEAF_INDEX_EXTENSION = 0  # static-ct-api: the SCT's and the leaf's extensions carry the leaf index
LEAF_INDEX_SIZE = 5

_POISON_OID_TLV = bytes.fromhex("060a2b06010401d679020403")  # OID 1.3.6.1.4.1.11129.2.4.3, RFC 6962 §3.1
_SEQUENCE = 0x30
_INTEGER = 0x02
_VERSION_TAG = 0xA0  # [0] EXPLICIT in TBSCertificate
_EXTENSIONS_TAG = 0xA3  # [3] EXPLICIT in TBSCertificate
_ENTRY_HEAD = struct.Struct(">QH")  # timestamp, entry_type


class CtEntryError(ReasonedError):
    """A CT entry that cannot be decoded; `reason` is one of REASONS."""


REASONS = (
    "malformed_leaf",  # the MerkleTreeLeaf does not parse
    "unsupported_leaf",  # a version, leaf type or entry type this code does not know
    "malformed_extra_data",  # the extra data (or a data tile's leaf) does not parse
    "malformed_certificate",  # the certificate, precertificate or TBS is not the DER it claims
    "precertificate_mismatch",  # the precertificate, poison removed, is not the leaf's TBS
    "issuer_mismatch",  # the leaf's issuer_key_hash is not the key of the CA that signed it (identity/ct_chain.py)
    INTERNAL_ERROR,  # an exception no decoder raises for bad input: a bug (monitor/analysis.py)
)


# -- the TLS vectors -------------------------------------------------------------------------------


def _vector(data: bytes, pos: int, end: int, prefix: int, reason: str, what: str) -> tuple[bytes, int]:
    """The bytes of the vector at `pos` with a `prefix`-byte length, and where it ends."""
    start = pos + prefix
    if start > end:
        raise CtEntryError(reason, f"{what}: its length runs past the end")
    stop = start + int.from_bytes(data[pos:start], "big")
    if stop > end:
        raise CtEntryError(reason, f"{what}: {stop - start} bytes announced, {end - start} left")
    return data[start:stop], stop


def _u24(length: int, what: str) -> bytes:
    if length > MAX_U24:
        raise ValueError(f"{what} of {length} bytes does not fit a 24-bit length")
    return length.to_bytes(3, "big")


def _u16(length: int, what: str) -> bytes:
    if length > MAX_U16:
        raise ValueError(f"{what} of {length} bytes does not fit a 16-bit length")
    return length.to_bytes(2, "big")


# -- TimestampedEntry and MerkleTreeLeaf ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimestampedEntry:
    """What a CT log signs in an SCT and hashes into its tree.

    `certificate` is the certificate DER for an x509_entry and the TBSCertificate DER (poison
    extension removed) for a precert_entry, whose `issuer_key_hash` is SHA-256 of the issuer's SPKI.
    """

    timestamp: int
    entry_type: int
    certificate: bytes
    issuer_key_hash: bytes | None = None
    extensions: bytes = b""

    def to_bytes(self) -> bytes:
        if not 0 <= self.timestamp <= MAX_U64:
            raise ValueError(f"timestamp {self.timestamp} does not fit 64 bits")
        if self.entry_type == PRECERT_ENTRY:
            if self.issuer_key_hash is None or len(self.issuer_key_hash) != ISSUER_KEY_HASH_SIZE:
                raise ValueError(f"a precert entry needs a {ISSUER_KEY_HASH_SIZE}-byte issuer key hash")
            signed = self.issuer_key_hash + _u24(len(self.certificate), "TBS") + self.certificate
        elif self.entry_type == X509_ENTRY:
            if self.issuer_key_hash is not None:
                raise ValueError("an x509 entry has no issuer key hash")
            signed = _u24(len(self.certificate), "certificate") + self.certificate
        else:
            raise ValueError(f"unknown entry type {self.entry_type}")
        return b"".join(
            [
                _ENTRY_HEAD.pack(self.timestamp, self.entry_type),
                signed,
                _u16(len(self.extensions), "extensions"),
                self.extensions,
            ]
        )

    def leaf_index(self) -> int | None:
        """The static-ct-api `leaf_index` extension, if the entry carries one (it is not verified here)."""
        return leaf_index_extension(self.extensions)


def merkle_tree_leaf(entry: TimestampedEntry) -> bytes:
    """The MerkleTreeLeaf (= the SCT's signed data) of an entry."""
    return bytes([LEAF_VERSION, TIMESTAMPED_ENTRY]) + entry.to_bytes()


def _timestamped_entry(data: bytes, pos: int, end: int, reason: str) -> tuple[TimestampedEntry, int]:
    """The TimestampedEntry at `pos` and where it ends (it need not end at `end`)."""
    if pos + _ENTRY_HEAD.size > end:
        raise CtEntryError(reason, "truncated before the entry type")
    timestamp, entry_type = _ENTRY_HEAD.unpack_from(data, pos)
    pos += _ENTRY_HEAD.size
    issuer_key_hash = None
    if entry_type == PRECERT_ENTRY:
        if pos + ISSUER_KEY_HASH_SIZE > end:
            raise CtEntryError(reason, "truncated in the issuer key hash")
        issuer_key_hash = data[pos : pos + ISSUER_KEY_HASH_SIZE]
        pos += ISSUER_KEY_HASH_SIZE
        certificate, pos = _vector(data, pos, end, 3, reason, "tbs_certificate")
    elif entry_type == X509_ENTRY:
        certificate, pos = _vector(data, pos, end, 3, reason, "certificate")
    else:
        raise CtEntryError("unsupported_leaf", f"entry type {entry_type}")
    if not certificate:
        raise CtEntryError(reason, f"empty {ENTRY_TYPES[entry_type]} certificate")
    extensions, pos = _vector(data, pos, end, 2, reason, "extensions")
    return TimestampedEntry(timestamp, entry_type, certificate, issuer_key_hash, extensions), pos


def parse_merkle_tree_leaf(leaf: bytes) -> TimestampedEntry:
    """A `leaf_input`: version 0, leaf type 0, one TimestampedEntry and nothing after it."""
    if len(leaf) < 2:
        raise CtEntryError("malformed_leaf", f"a leaf of {len(leaf)} bytes")
    if leaf[0] != LEAF_VERSION or leaf[1] != TIMESTAMPED_ENTRY:
        raise CtEntryError("unsupported_leaf", f"leaf version {leaf[0]}, leaf type {leaf[1]}")
    entry, end = _timestamped_entry(leaf, 2, len(leaf), "malformed_leaf")
    if end != len(leaf):
        raise CtEntryError("malformed_leaf", f"{len(leaf) - end} bytes after the entry")
    return entry


def leaf_index_extension(extensions: bytes) -> int | None:
    """The `leaf_index` of static-ct-api CtExtensions (u8 type ‖ data<u16> each), or None."""
    pos, end, found = 0, len(extensions), None
    while pos < end:
        kind = extensions[pos]
        data, pos = _vector(extensions, pos + 1, end, 2, "malformed_leaf", "CT extension")
        if kind == LEAF_INDEX_EXTENSION:
            if found is not None or len(data) != LEAF_INDEX_SIZE:
                raise CtEntryError("malformed_leaf", "leaf_index extension repeated or not 5 bytes")
            found = int.from_bytes(data, "big")
    return found


def leaf_index_extensions(index: int) -> bytes:
    """CtExtensions holding only the static-ct-api `leaf_index` (8 bytes)."""
    return bytes([LEAF_INDEX_EXTENSION]) + _u16(LEAF_INDEX_SIZE, "leaf index") + index.to_bytes(LEAF_INDEX_SIZE, "big")


# -- extra data and data tiles --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExtraData:
    """What a log serves beside a leaf, unauthenticated by its tree: the precertificate as submitted
    (precert entries) and the issuers, as certificates (get-entries) or their SHA-256 (data tiles)."""

    pre_certificate: bytes | None
    chain: tuple[bytes, ...]


def _certificate_list(data: bytes, what: str) -> tuple[bytes, ...]:
    items, pos = [], 0
    while pos < len(data):
        item, pos = _vector(data, pos, len(data), 3, "malformed_extra_data", what)
        items.append(item)
    return tuple(items)


def parse_extra_data(data: bytes, entry_type: int) -> ExtraData:
    """A get-entries `extra_data` for an entry of `entry_type`."""
    pos, end, pre_certificate = 0, len(data), None
    if entry_type == PRECERT_ENTRY:
        pre_certificate, pos = _vector(data, 0, end, 3, "malformed_extra_data", "pre_certificate")
        if not pre_certificate:
            raise CtEntryError("malformed_extra_data", "empty pre_certificate")
    chain, pos = _vector(data, pos, end, 3, "malformed_extra_data", "chain")
    if pos != end:
        raise CtEntryError("malformed_extra_data", f"{end - pos} bytes after the chain")
    return ExtraData(pre_certificate, _certificate_list(chain, "chain certificate"))


def encode_extra_data(extra: ExtraData) -> bytes:
    """The get-entries `extra_data` of `extra` (precert entries have a pre_certificate)."""
    chain = b"".join(_u24(len(der), "certificate") + der for der in extra.chain)
    head = (
        b""
        if extra.pre_certificate is None
        else _u24(len(extra.pre_certificate), "pre_certificate") + extra.pre_certificate
    )
    return head + _u24(len(chain), "chain") + chain


def _tile_leaf_tail(data: bytes, pos: int, end: int, entry_type: int) -> tuple[ExtraData, int]:
    pre_certificate = None
    if entry_type == PRECERT_ENTRY:
        pre_certificate, pos = _vector(data, pos, end, 3, "malformed_extra_data", "pre_certificate")
    fingerprints, pos = _vector(data, pos, end, 2, "malformed_extra_data", "fingerprints")
    if len(fingerprints) % FINGERPRINT_SIZE:
        raise CtEntryError("malformed_extra_data", f"fingerprints of {len(fingerprints)} bytes")
    chain = tuple(fingerprints[at : at + FINGERPRINT_SIZE] for at in range(0, len(fingerprints), FINGERPRINT_SIZE))
    return ExtraData(pre_certificate, chain), pos


def parse_tile_extra(data: bytes, entry_type: int) -> ExtraData:
    """The part of a TileLeaf after its TimestampedEntry."""
    extra, pos = _tile_leaf_tail(data, 0, len(data), entry_type)
    if pos != len(data):
        raise CtEntryError("malformed_extra_data", f"{len(data) - pos} bytes after the fingerprints")
    return extra


def encode_tile_leaf(leaf_input: bytes, extra: ExtraData) -> bytes:
    """The TileLeaf of a MerkleTreeLeaf: its entry, its precertificate (precert entries), its issuers' fingerprints."""
    if leaf_input[:2] != bytes([LEAF_VERSION, TIMESTAMPED_ENTRY]):
        raise ValueError("not a MerkleTreeLeaf of a timestamped entry")
    head = leaf_input[2:]
    if extra.pre_certificate is not None:
        head += _u24(len(extra.pre_certificate), "pre_certificate") + extra.pre_certificate
    fingerprints = b"".join(extra.chain)
    return head + _u16(len(fingerprints), "fingerprints") + fingerprints


def split_data_tile(data: bytes, width: int) -> list[tuple[bytes, bytes]]:
    """A data tile's `width` TileLeafs, each as (MerkleTreeLeaf, the TileLeaf's bytes after its entry).

    Only the lengths are read here, to find where each leaf ends; `decode_ct_entry` reads the rest.
    """
    leaves, pos, end = [], 0, len(data)
    prefix = bytes([LEAF_VERSION, TIMESTAMPED_ENTRY])
    for number in range(width):
        start = pos
        try:
            entry, pos = _timestamped_entry(data, pos, end, "malformed_extra_data")
            _, tail_end = _tile_leaf_tail(data, pos, end, entry.entry_type)
        except CtEntryError as exc:
            raise CtEntryError(exc.reason, f"data tile leaf {number} of {width}: {exc.detail}") from None
        leaves.append((prefix + data[start:pos], data[pos:tail_end]))
        pos = tail_end
    if pos != end:
        raise CtEntryError("malformed_extra_data", f"{end - pos} bytes after the data tile's {width} leaves")
    return leaves


# -- certificates, read just enough ---------------------------------------------------------------


def _tbs_region(certificate: bytes) -> tuple[int, int, int]:
    """(TBS element start, TBS content start, TBS end) of a DER Certificate with nothing after it."""
    tag, start, end = read_tlv(certificate, 0, len(certificate))
    if tag != _SEQUENCE or end != len(certificate):
        raise DerError("not one DER SEQUENCE")
    tag, content, tbs_end = read_tlv(certificate, start, end)
    if tag != _SEQUENCE:
        raise DerError("the TBSCertificate is not a SEQUENCE")
    return start, content, tbs_end


def tbs_certificate(certificate: bytes) -> bytes:
    """The TBSCertificate DER of a DER certificate."""
    try:
        start, _, end = _tbs_region(certificate)
    except DerError as exc:
        raise CtEntryError("malformed_certificate", f"certificate: {exc}") from None
    return certificate[start:end]


def tbs_without_poison(precertificate: bytes) -> bytes:
    """The precertificate's TBSCertificate with its one poison extension removed (RFC 6962 §3.1)."""
    try:
        _, tbs_content, end = _tbs_region(precertificate)
        pos, head_end, extensions = tbs_content, None, None
        while pos < end:
            tag, content, element_end = read_tlv(precertificate, pos, end)
            if tag == _EXTENSIONS_TAG:
                head_end, extensions = pos, (content, element_end)
            pos = element_end
        if extensions is None or extensions[1] != end:
            raise DerError("no extensions at the end of the TBS")
        tag, extensions_start, extensions_end = read_tlv(precertificate, *extensions)
        if tag != _SEQUENCE or extensions_end != end:
            raise DerError("the extensions are not one SEQUENCE")
        poisons = _poison_extensions(precertificate, extensions_start, extensions_end)
    except DerError as exc:
        raise CtEntryError("malformed_certificate", f"precertificate: {exc}") from None
    if len(poisons) != 1:
        raise CtEntryError("malformed_certificate", f"a precertificate has one poison extension, not {len(poisons)}")
    ((poison_start, poison_end),) = poisons
    kept = precertificate[extensions_start:poison_start] + precertificate[poison_end:extensions_end]
    content = precertificate[tbs_content:head_end]
    if kept:
        content += encode_tlv(_EXTENSIONS_TAG, encode_tlv(_SEQUENCE, kept))
    return encode_tlv(_SEQUENCE, content)


def _poison_extensions(der: bytes, pos: int, end: int) -> list[tuple[int, int]]:
    """Where the poison extensions are among the Extension SEQUENCEs in der[pos:end].

    The headers are read inline (this runs for every CT entry): an extension is a SEQUENCE of at most
    65535 bytes, as in any certificate.
    """
    found = []
    while pos < end:
        if der[pos] != _SEQUENCE or pos + 2 > end:
            raise DerError(f"extension at {pos} is not a SEQUENCE")
        length = der[pos + 1]
        if length < 0x80:
            start = pos + 2
        elif length == 0x81 and pos + 3 <= end:
            length, start = der[pos + 2], pos + 3
        elif length == 0x82 and pos + 4 <= end:
            length, start = der[pos + 2] << 8 | der[pos + 3], pos + 4
        else:
            raise DerError(f"bad extension length at {pos}")
        stop = start + length
        if stop > end:
            raise DerError(f"extension at {pos} runs past the extensions")
        if der.startswith(_POISON_OID_TLV, start, stop):
            found.append((pos, stop))
        pos = stop
    return found


def serial_number(tbs: bytes) -> int:
    """The serialNumber of a TBSCertificate DER."""
    try:
        tag, pos, end = read_tlv(tbs, 0, len(tbs))
        if tag != _SEQUENCE or end != len(tbs):
            raise DerError("the TBSCertificate is not one SEQUENCE")
        tag, content, element_end = read_tlv(tbs, pos, end)
        if tag == _VERSION_TAG:
            tag, content, element_end = read_tlv(tbs, element_end, end)
        if tag != _INTEGER or not 0 < element_end - content <= MAX_SERIAL_OCTETS:
            raise DerError("no serialNumber INTEGER of 1 to 32 octets")
    except DerError as exc:
        raise CtEntryError("malformed_certificate", f"TBS: {exc}") from None
    return int.from_bytes(tbs[content:element_end], "big", signed=True)


# -- entries as a log serves them, and decoded ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class CtLogEntry:
    """One entry as a CT log serves it, undecoded: the tail folds its leaf hash, decoding comes later.

    `extra_data` is get-entries' extra_data, or (`tile_leaf`) the TileLeaf's bytes after its entry.
    The other fields make it a `SourceEntry` like a Rekor entry.
    """

    log_index: int
    leaf_input: bytes
    extra_data: bytes
    leaf_hash: bytes
    tile_leaf: bool = False
    log_id: bytes = b""
    integrated_time: None = None
    signed_entry_timestamp: None = None

    @classmethod
    def of(
        cls, log_index: int, leaf_input: bytes, extra_data: bytes, *, tile_leaf: bool = False, log_id: bytes = b""
    ) -> CtLogEntry:
        return cls(log_index, leaf_input, extra_data, leaf_hash(leaf_input), tile_leaf, log_id)

    @property
    def body(self) -> bytes:
        return self.leaf_input

    @property
    def uuid(self) -> str:
        return self.leaf_hash.hex()


@dataclass(frozen=True, slots=True)
class CtEntry:
    """A decoded CT entry: the certificate to identify and what joins it with Rekor.

    `certificate` is the x509 entry's certificate or the precert entry's precertificate (which
    cryptography loads); `issuer_key_hash` is the leaf's claim for a precert (None for x509: the
    chain check finds the issuer); `serial_number` is read from the leaf's TBS.
    """

    log_index: int
    leaf_hash: bytes
    timestamp: int  # milliseconds since the epoch, as the log stamped it
    entry_type: int
    certificate: bytes
    issuer_key_hash: bytes | None
    serial_number: int
    extra: ExtraData


def decode_ct_entry(raw: CtLogEntry) -> CtEntry:
    """Decode a served entry; a precert entry's precertificate must match its leaf (CtEntryError)."""
    entry = parse_merkle_tree_leaf(raw.leaf_input)
    parse_extra = parse_tile_extra if raw.tile_leaf else parse_extra_data
    extra = parse_extra(raw.extra_data, entry.entry_type)
    if entry.entry_type == PRECERT_ENTRY:
        assert extra.pre_certificate is not None, "a precert entry's extra data has a pre_certificate"
        if tbs_without_poison(extra.pre_certificate) != entry.certificate:
            raise CtEntryError("precertificate_mismatch", "the precertificate, poison removed, is not the leaf's TBS")
        certificate, tbs = extra.pre_certificate, entry.certificate
    else:
        certificate, tbs = entry.certificate, tbs_certificate(entry.certificate)
    return CtEntry(
        log_index=raw.log_index,
        leaf_hash=raw.leaf_hash,
        timestamp=entry.timestamp,
        entry_type=entry.entry_type,
        certificate=certificate,
        issuer_key_hash=entry.issuer_key_hash,
        serial_number=serial_number(tbs),
        extra=extra,
    )
