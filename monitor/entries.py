"""Rekor entry body -> the certificates (or public keys) it carries and the artifact digest.

Every entry kind of FORMATS.md §2 is decoded, Rekor v1 (`body`) and v2 (the canonical entry in an
entry bundle) alike. Nothing here parses X.509: certificates come out as DER bytes, and deciding
whose they are is `monitor.identity`'s job. Hostile input raises `EntryDecodeError` only, with a
short `reason` token fit for a metrics label.

When key material is a PEM bundle, only its first certificate is reported: it holds the key that
Rekor verified the signature with; the rest is a chain, which is checked against the trust root
instead.

Every entry is parsed and its key material base64-decoded, so both run on the fast libraries
(orjson, pybase64: several times faster than json and binascii) with the standard library as the
judge of what is valid: orjson and pybase64 are stricter (orjson wants UTF-8 and no NaN, pybase64 no
stray `=` after a full quantum), so what they refuse is tried again with json and binascii
(strict mode), and a body decodes exactly as it did with those alone (tests/test_decode_fast.py).
The common kinds (hashedrekord, dsse) first try a typed shortcut (msgspec, at the end of this
module) that hands everything it does not take to that path, which stays the judge.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import msgspec

from monitor.codec import loads_json, strict_base64
from monitor.errors import INTERNAL_ERROR, ReasonedError

MAX_BODY_BYTES = 8 << 20

_PEM_BEGIN = b"-----BEGIN "
_PEM_DASHES = b"-----"
_PEM_WHITESPACE = b" \t\r\n"
_CERTIFICATE_PEM_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE"}
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{32,128}")
_V2_DIGEST_ALGORITHMS = {"SHA2_256": "sha256", "SHA2_384": "sha384", "SHA2_512": "sha512"}


class EntryDecodeError(ReasonedError):
    """An entry body that cannot be decoded; `reason` is one of REASONS, `detail` says more."""


REASONS = (
    "not_json",
    "missing_field",
    "bad_field",
    "bad_base64",
    "bad_pem",
    "bad_certificate",
    "bad_digest",
    "too_large",
    "unknown_kind",
    "unknown_version",
    INTERNAL_ERROR,
)
"""EntryDecodeError reasons (here and in monitor/analysis.py): the label values of a Rekor log's
rekorwatch_entry_errors_total."""


class DecodedEntry(NamedTuple):
    """A tuple, not a frozen dataclass: one is made for every entry of every log, and a frozen
    dataclass takes 0.56 µs to make, a named tuple 0.22."""

    kind: str
    api_version: str
    certificates: tuple[bytes, ...]  # DER, signing certificates only, without duplicates
    public_keys: int  # key material that is not a certificate (PEM keys, PGP, ssh, minisign, TUF)
    artifact_digest: str | None  # "<algorithm>:<hex>", e.g. "sha256:..."


Keys = tuple[tuple[bytes, ...], int]
"""An entry's key material: its certificates (DER) and how many other keys it holds."""
_ONE_PUBLIC_KEY: Keys = ((), 1)


class _KeyMaterial:
    __slots__ = ("certificates", "public_keys")

    def __init__(self) -> None:
        self.certificates: list[bytes] = []
        self.public_keys = 0

    def add_certificate(self, der: bytes) -> None:
        if der not in self.certificates:
            self.certificates.append(der)

    def add(self, keys: Keys) -> None:
        certificates, public_keys = keys
        for der in certificates:
            self.add_certificate(der)
        self.public_keys += public_keys


def decode_entry(body: bytes) -> DecodedEntry:
    """Decode a canonical Rekor entry body (the leaf bytes)."""
    if len(body) <= MAX_BODY_BYTES and body.isascii():  # msgspec does not check the UTF-8 of what it skips
        typed = _decode_typed(body)
        if typed is not None:
            return typed
    return decode_document(_load_json(body))


def decode_document(entry: dict[str, Any]) -> DecodedEntry:
    """Decode an entry body already parsed from JSON."""
    kind = _string(entry, "kind")
    api_version = _string(entry, "apiVersion")
    spec = _mapping(entry, "spec")
    decoder = _DECODERS.get((kind, api_version))
    if decoder is None:
        known_kind = any(known == kind for known, _ in _DECODERS)
        raise EntryDecodeError(
            "unknown_version" if known_kind else "unknown_kind", f"{kind[:40]!r} {api_version[:20]!r}"
        )
    keys = _KeyMaterial()
    digest = decoder(spec, keys)
    return DecodedEntry(kind, api_version, tuple(keys.certificates), keys.public_keys, digest)


# -- JSON access ---------------------------------------------------------------------------------


def _load_json(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_BODY_BYTES:
        raise EntryDecodeError("too_large", f"{len(body)} bytes")
    try:
        entry = loads_json(body)  # what orjson refuses and json reads (UTF-16, NaN...) still decodes
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise EntryDecodeError("not_json", str(exc)[:120]) from None
    if not isinstance(entry, dict):
        raise EntryDecodeError("not_json", "the body is not a JSON object")
    return entry


# These run a dozen times per entry of every log: one dict lookup each, the exact type checked first
# (JSON parsers make exactly dict, list, str), isinstance only on the way to an error. The three are
# written out rather than calling one typed helper: that extra call cost 6% of decoding (14.1 -> 15.0
# µs an entry on bench_decode's mix, best of 15).


def _mapping(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key, _MISSING)
    if type(value) is dict or (value is not _MISSING and isinstance(value, dict)):
        return value  # type: ignore[no-any-return]
    raise _missing_or_bad(value, key, "an object")


def _string(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key, _MISSING)
    if type(value) is str or (value is not _MISSING and isinstance(value, str)):
        return value  # type: ignore[no-any-return]
    raise _missing_or_bad(value, key, "a string")


def _list(obj: dict[str, Any], key: str) -> list[Any]:
    value = obj.get(key, _MISSING)
    if type(value) is list or (value is not _MISSING and isinstance(value, list)):
        return value  # type: ignore[no-any-return]
    raise _missing_or_bad(value, key, "a list")


_MISSING: Any = object()


def _missing_or_bad(value: Any, key: str, wanted: str) -> EntryDecodeError:
    if value is _MISSING:
        return EntryDecodeError("missing_field", key)
    return EntryDecodeError("bad_field", f"{key} is not {wanted}")


def _path(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        obj = _mapping(obj, key)
    return obj


def _objects(items: Iterable[Any], what: str) -> Iterable[dict[str, Any]]:
    for item in items:
        if not isinstance(item, dict):
            raise EntryDecodeError("bad_field", f"{what} item is not an object")
        yield item


def _optional_mapping(obj: dict[str, Any], *keys: str) -> dict[str, Any] | None:
    """The object at `keys`, None when any level is absent (a present non-object is an error)."""
    for key in keys:
        value = obj.get(key, _MISSING)
        if value is _MISSING:
            return None
        if type(value) is not dict and not isinstance(value, dict):
            raise EntryDecodeError("bad_field", f"{key} is not an object")
        obj = value
    return obj


# -- key material ----------------------------------------------------------------------------------


def _base64(value: str, what: str) -> bytes:
    try:
        return strict_base64(value)
    except ValueError:  # binascii.Error, or non-ASCII text
        raise EntryDecodeError("bad_base64", what) from None


def _first_pem_block(pem: bytes, what: str) -> tuple[bytes, bytes]:
    """(label, base64 content without whitespace) of the first PEM block."""
    begin = pem.find(_PEM_BEGIN)
    if begin >= 0:
        label_start = begin + len(_PEM_BEGIN)
        label_end = pem.find(_PEM_DASHES, label_start)
        label = pem[label_start:label_end]
        if label_end > label_start and b"\n" not in label:
            content_start = label_end + len(_PEM_DASHES)
            end = pem.find(b"-----END " + label + _PEM_DASHES, content_start)
            if end >= 0:
                return label, pem[content_start:end].translate(None, _PEM_WHITESPACE)
    raise EntryDecodeError("bad_pem", f"{what} holds no PEM block")


def _add_pem_key_material(b64_pem: str, keys: _KeyMaterial, what: str) -> None:
    """base64 of PEM text: its first block is a CERTIFICATE (kept as DER) or a public key (counted)."""
    keys.add(_pem_key(_base64(b64_pem, what), what))


def _pem_key(pem: bytes, what: str) -> Keys:
    """The key of the PEM text's first block: a certificate (DER), or a public key (counted)."""
    der = _pem_certificate(pem, what)
    return _ONE_PUBLIC_KEY if der is None else ((der,), 0)


def _pem_certificate(pem: bytes, what: str) -> bytes | None:
    """The DER of the PEM text's first block when it is a CERTIFICATE; None for a public key."""
    label, content = _first_pem_block(pem, what)
    if label not in _CERTIFICATE_PEM_LABELS:
        return None
    try:
        der = strict_base64(content)
    except ValueError:
        raise EntryDecodeError("bad_pem", f"{what}: the certificate is not base64") from None
    if not der:
        raise EntryDecodeError("bad_pem", f"{what}: empty certificate")
    return der


def _add_v2_verifier(verifier: dict[str, Any], keys: _KeyMaterial, what: str) -> None:
    """A Rekor v2 verifier: `x509Certificate.rawBytes` (DER) or `publicKey.rawBytes` (DER SPKI)."""
    certificate = _optional_mapping(verifier, "x509Certificate")
    if certificate is not None:
        keys.add(_v2_certificate_key(_base64(_string(certificate, "rawBytes"), f"{what}.x509Certificate"), what))
        return
    public_key = _optional_mapping(verifier, "publicKey")
    if public_key is None:
        raise EntryDecodeError("missing_field", f"{what}.x509Certificate or {what}.publicKey")
    _base64(_string(public_key, "rawBytes"), f"{what}.publicKey")
    keys.add(_ONE_PUBLIC_KEY)


def _v2_certificate_key(der: bytes, what: str) -> Keys:
    """A Rekor v2 verifier's certificate (DER), which must not be empty."""
    if not der:
        raise EntryDecodeError("bad_certificate", f"{what}: empty certificate")
    return (der,), 0


# -- digests ---------------------------------------------------------------------------------------


def _v1_digest(hash_object: dict[str, Any] | None) -> str | None:
    """`{algorithm: "sha256", value: hex}` -> "sha256:<hex>"; None when the entry has no hash."""
    if hash_object is None:
        return None
    return _v1_digest_of(_string(hash_object, "algorithm"), _string(hash_object, "value"))


def _v1_digest_of(algorithm: str, value: str) -> str:
    if not algorithm.isalnum() or not _HEX_DIGEST.fullmatch(value):
        raise EntryDecodeError("bad_digest", f"{algorithm[:20]!r}:{value[:80]!r}")
    return f"{algorithm.lower()}:{value.lower()}"


def _v2_digest(hash_object: dict[str, Any] | None) -> str | None:
    """`{algorithm: "SHA2_256", digest: base64}` -> "sha256:<hex>"."""
    if hash_object is None:
        return None
    algorithm_name = _string(hash_object, "algorithm")
    return _v2_digest_of(algorithm_name, _base64(_string(hash_object, "digest"), "digest"))


def _v2_digest_of(algorithm_name: str, digest: bytes) -> str:
    algorithm = _V2_DIGEST_ALGORITHMS.get(algorithm_name)
    if algorithm is None or not 16 <= len(digest) <= 64:
        raise EntryDecodeError("bad_digest", f"{algorithm_name!r}, {len(digest)} bytes")
    return f"{algorithm}:{digest.hex()}"


# -- one decoder per kind: spec -> digest, filling the key material --------------------------------


def _hashedrekord_v001(spec: dict[str, Any], keys: _KeyMaterial) -> str | None:
    key = _path(spec, "signature", "publicKey")
    _add_pem_key_material(_string(key, "content"), keys, "signature.publicKey.content")
    return _v1_digest(_optional_mapping(spec, "data", "hash"))


def _rekord_v001(spec: dict[str, Any], keys: _KeyMaterial) -> str | None:
    signature = _mapping(spec, "signature")
    content = _string(_mapping(signature, "publicKey"), "content")
    if signature.get("format") == "x509":
        _add_pem_key_material(content, keys, "signature.publicKey.content")
    else:  # pgp, ssh, minisign: never X.509
        _base64(content, "signature.publicKey.content")
        keys.public_keys += 1
    return _v1_digest(_optional_mapping(spec, "data", "hash"))


def _intoto_v001(spec: dict[str, Any], keys: _KeyMaterial) -> str | None:
    _add_pem_key_material(_string(spec, "publicKey"), keys, "publicKey")
    return _v1_digest(_optional_mapping(spec, "content", "payloadHash"))


def _intoto_v002(spec: dict[str, Any], keys: _KeyMaterial) -> str | None:
    envelope = _path(spec, "content", "envelope")
    signatures = _list(envelope, "signatures")
    for signature in _objects(signatures, "envelope.signatures"):
        _add_pem_key_material(_string(signature, "publicKey"), keys, "envelope.signatures[].publicKey")
    return _v1_digest(_optional_mapping(spec, "content", "payloadHash"))


def _dsse_v001(spec: dict[str, Any], keys: _KeyMaterial) -> str | None:
    for signature in _objects(_list(spec, "signatures"), "signatures"):
        _add_pem_key_material(_string(signature, "verifier"), keys, "signatures[].verifier")
    return _v1_digest(_optional_mapping(spec, "payloadHash"))


def _cose_v001(spec: dict[str, Any], keys: _KeyMaterial) -> str | None:
    _add_pem_key_material(_string(spec, "publicKey"), keys, "publicKey")
    return _v1_digest(_optional_mapping(spec, "data", "payloadHash"))


def _jar_v001(spec: dict[str, Any], keys: _KeyMaterial) -> str | None:
    key = _path(spec, "signature", "publicKey")
    _add_pem_key_material(_string(key, "content"), keys, "signature.publicKey.content")
    return _v1_digest(_optional_mapping(spec, "archive", "hash"))


def _alpine_v001(spec: dict[str, Any], keys: _KeyMaterial) -> str | None:
    _add_pem_key_material(_string(_mapping(spec, "publicKey"), "content"), keys, "publicKey.content")
    return _v1_digest(_optional_mapping(spec, "package", "hash"))


def _add_pgp_key(spec: dict[str, Any], keys: _KeyMaterial) -> None:
    _base64(_string(_mapping(spec, "publicKey"), "content"), "publicKey.content")
    keys.public_keys += 1


def _helm_v001(spec: dict[str, Any], keys: _KeyMaterial) -> str | None:
    _add_pgp_key(spec, keys)
    return _v1_digest(_optional_mapping(spec, "chart", "hash"))


def _rpm_v001(spec: dict[str, Any], keys: _KeyMaterial) -> str | None:
    _add_pgp_key(spec, keys)
    return _v1_digest(_optional_mapping(spec, "package", "hash"))


def _tuf_v001(spec: dict[str, Any], keys: _KeyMaterial) -> str | None:
    root = _mapping(spec, "root")
    signed = _optional_mapping(root, "content", "signed")
    root_keys = signed.get("keys") if signed is not None else None
    keys.public_keys += len(root_keys) if isinstance(root_keys, dict) else 0
    return None


def _rfc3161_v001(spec: dict[str, Any], keys: _KeyMaterial) -> str | None:
    _base64(_string(_mapping(spec, "tsr"), "content"), "tsr.content")
    return None


def _hashedrekord_v002(spec: dict[str, Any], keys: _KeyMaterial) -> str | None:
    body = _mapping(spec, "hashedRekordV002")
    _add_v2_verifier(_path(body, "signature", "verifier"), keys, "signature.verifier")
    return _v2_digest(_optional_mapping(body, "data"))


def _dsse_v002(spec: dict[str, Any], keys: _KeyMaterial) -> str | None:
    body = _mapping(spec, "dsseV002")
    for signature in _objects(_list(body, "signatures"), "signatures"):
        _add_v2_verifier(_mapping(signature, "verifier"), keys, "signatures[].verifier")
    return _v2_digest(_optional_mapping(body, "payloadHash"))


_DECODERS: dict[tuple[str, str], Callable[[dict[str, Any], _KeyMaterial], str | None]] = {
    ("hashedrekord", "0.0.1"): _hashedrekord_v001,
    ("rekord", "0.0.1"): _rekord_v001,
    ("intoto", "0.0.1"): _intoto_v001,
    ("intoto", "0.0.2"): _intoto_v002,
    ("dsse", "0.0.1"): _dsse_v001,
    ("cose", "0.0.1"): _cose_v001,
    ("jar", "0.0.1"): _jar_v001,
    ("alpine", "0.0.1"): _alpine_v001,
    ("helm", "0.0.1"): _helm_v001,
    ("rpm", "0.0.1"): _rpm_v001,
    ("tuf", "0.0.1"): _tuf_v001,
    ("rfc3161", "0.0.1"): _rfc3161_v001,
    ("hashedrekord", "0.0.2"): _hashedrekord_v002,
    ("dsse", "0.0.2"): _dsse_v002,
}


# -- the typed shortcut for the common kinds -------------------------------------------------------
#
# hashedrekord and dsse, nearly every entry of a log, are decoded by msgspec straight into typed
# structs: a third faster than parsing to dicts and walking them (bench/bench_decode.py). It is a
# shortcut, never a judge: whatever it does not take (malformed, or only unusual: an explicit null, a
# type it does not expect, a value the helpers refuse) goes down the general path above, which
# decides. So a body decodes, or fails with a reason, exactly as it does there (tests/test_decode_fast.py).
# The body is decoded in one pass, every typed kind's spec members in one struct (a second pass for
# the spec cost about 5% of `decode_entry`); the kind then checks that its own members are there.


class _RawBytes(msgspec.Struct, rename="camel"):
    raw_bytes: bytes


class _V2Verifier(msgspec.Struct, rename="camel"):
    x509_certificate: _RawBytes | msgspec.UnsetType = msgspec.UNSET
    public_key: _RawBytes | msgspec.UnsetType = msgspec.UNSET


class _V2Signature(msgspec.Struct):
    verifier: _V2Verifier


class _V2Digest(msgspec.Struct):
    algorithm: str
    digest: bytes


class _HashedRekordV002(msgspec.Struct):
    signature: _V2Signature
    data: _V2Digest | msgspec.UnsetType = msgspec.UNSET


class _DsseV002(msgspec.Struct, rename="camel"):
    signatures: list[_V2Signature]
    payload_hash: _V2Digest | msgspec.UnsetType = msgspec.UNSET


class _V1Hash(msgspec.Struct):
    algorithm: str
    value: str


class _V1Data(msgspec.Struct):
    hash: _V1Hash | msgspec.UnsetType = msgspec.UNSET


class _PemContent(msgspec.Struct):
    content: bytes


class _V1Signature(msgspec.Struct, rename="camel"):
    public_key: _PemContent


class _DsseV001Signature(msgspec.Struct):
    verifier: bytes


class _Spec(msgspec.Struct, rename="camel"):
    """The members of every typed kind's spec, in one struct: the body is decoded in one pass, and
    the kind and version then say which members must be there (the others are not read)."""

    hashed_rekord_v002: _HashedRekordV002 | msgspec.UnsetType = msgspec.UNSET  # hashedrekord 0.0.2
    dsse_v002: _DsseV002 | msgspec.UnsetType = msgspec.UNSET  # dsse 0.0.2
    signature: _V1Signature | msgspec.UnsetType = msgspec.UNSET  # hashedrekord 0.0.1
    data: _V1Data | msgspec.UnsetType = msgspec.UNSET  # hashedrekord 0.0.1
    signatures: list[_DsseV001Signature] | msgspec.UnsetType = msgspec.UNSET  # dsse 0.0.1
    payload_hash: _V1Hash | msgspec.UnsetType = msgspec.UNSET  # dsse 0.0.1


class _Envelope(msgspec.Struct, rename="camel"):
    kind: str
    api_version: str
    spec: _Spec


def _typed_v2_key(verifier: _V2Verifier, what: str) -> Keys:
    certificate = verifier.x509_certificate
    if certificate is not msgspec.UNSET:
        return _v2_certificate_key(certificate.raw_bytes, what)
    if verifier.public_key is not msgspec.UNSET:
        return _ONE_PUBLIC_KEY
    raise EntryDecodeError("missing_field", f"{what}.x509Certificate or {what}.publicKey")


def _all_keys(keys: Iterable[Keys]) -> Keys:
    """Several signatures' keys: the certificates without duplicates, the other keys counted."""
    material = _KeyMaterial()
    for key in keys:
        material.add(key)
    return tuple(material.certificates), material.public_keys


class _Declined(Exception):
    """The typed shortcut does not take this body: the general path decides."""


# Each returns the entry's keys and digest, the keys checked first (as the general path does).
# hashedrekord, nearly every entry, has one key: no key material to gather (0.5 µs an entry).


def _typed_hashedrekord_v002(spec: _Spec) -> tuple[Keys, str | None]:
    body = spec.hashed_rekord_v002
    if body is msgspec.UNSET:
        raise _Declined
    keys = _typed_v2_key(body.signature.verifier, "signature.verifier")
    data = body.data
    return keys, None if data is msgspec.UNSET else _v2_digest_of(data.algorithm, data.digest)


def _typed_dsse_v002(spec: _Spec) -> tuple[Keys, str | None]:
    body = spec.dsse_v002
    if body is msgspec.UNSET:
        raise _Declined
    keys = _all_keys(_typed_v2_key(signature.verifier, "signatures[].verifier") for signature in body.signatures)
    digest = body.payload_hash
    return keys, None if digest is msgspec.UNSET else _v2_digest_of(digest.algorithm, digest.digest)


def _typed_hashedrekord_v001(spec: _Spec) -> tuple[Keys, str | None]:
    if spec.signature is msgspec.UNSET:
        raise _Declined
    keys = _pem_key(spec.signature.public_key.content, "signature.publicKey.content")
    if spec.data is msgspec.UNSET or spec.data.hash is msgspec.UNSET:
        return keys, None
    return keys, _v1_digest_of(spec.data.hash.algorithm, spec.data.hash.value)


def _typed_dsse_v001(spec: _Spec) -> tuple[Keys, str | None]:
    if spec.signatures is msgspec.UNSET:
        raise _Declined
    keys = _all_keys(_pem_key(signature.verifier, "signatures[].verifier") for signature in spec.signatures)
    digest = spec.payload_hash
    return keys, None if digest is msgspec.UNSET else _v1_digest_of(digest.algorithm, digest.value)


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_TYPED_DECODERS: dict[tuple[str, str], Callable[[_Spec], tuple[Keys, str | None]]] = {
    ("hashedrekord", "0.0.2"): _typed_hashedrekord_v002,
    ("dsse", "0.0.2"): _typed_dsse_v002,
    ("hashedrekord", "0.0.1"): _typed_hashedrekord_v001,
    ("dsse", "0.0.1"): _typed_dsse_v001,
}


def _decode_typed(body: bytes) -> DecodedEntry | None:
    """The entry, when it is of a common kind and decodes typed; None: take the general path."""
    try:
        envelope = _ENVELOPE.decode(body)
        decode_spec = _TYPED_DECODERS.get((envelope.kind, envelope.api_version))
        if decode_spec is None:
            return None
        (certificates, public_keys), digest = decode_spec(envelope.spec)
    except (msgspec.DecodeError, RecursionError, EntryDecodeError, _Declined):
        return None
    return DecodedEntry(envelope.kind, envelope.api_version, certificates, public_keys, digest)
