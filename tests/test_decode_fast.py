"""The fast decode path finds exactly what the reference path finds, on real and hostile bodies.

Reference: the standard library (json; binascii in strict mode) and the issuer of EVERY certificate
read from its DER (`certificate_issuer`), which is what rekorwatch did before. Fast: `decode_entry`
(orjson and pybase64, each falling back to the standard library on what it refuses) and
`watched_certificates` (a byte search for the watched issuers before any DER walk). A pre-filter may
never miss a certificate the reference finds, so for every body both must agree exactly: the same
decoded entry or the same `EntryDecodeError` reason, and the same watched certificates.

Bodies: the real leaves of tests/fixtures/sigstore and simulator-made ones carrying watched
certificates (Codefresh, GitHub, an issuer with non-ASCII characters), mutated as an attacker
would: JSON escapes (\\u0041, \\/), non-canonical base64 (a stray `=`, whitespace, missing padding),
PEM line breaks and spaces, several PEM blocks and several signatures, DER edits, random byte edits.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from monitor.analysis import watched_certificates
from monitor.codec import strict_base64
from monitor.config import WatchSettings
from monitor.entries import DecodedEntry, EntryDecodeError, decode_document, decode_entry
from monitor.identity.fulcio import certificate_issuer, may_claim_issuer
from monitor.policy import Policy
from monitor.simulate.ca import CertIdentity, LocalCA, codefresh_identity, email_identity, github_identity
from monitor.simulate.entries import (
    dsse_body,
    hashedrekord_body,
    hashedrekord_v002_body,
    intoto_v002_body,
    public_key_pem,
)
from tests.paths import SIGSTORE

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
ODD_ISSUER = "https://ïssuer.example/é"  # non-ASCII: its UTF-8 bytes are what is searched
POLICIES = {
    "codefresh": Policy(
        WatchSettings.model_validate(
            {"codefresh": [{"account_id": "a1", "account_name": "acme", "pipelines": [{"id": "p1"}]}]}
        )
    ),
    "github, odd and codefresh": Policy(
        WatchSettings.model_validate({"issuers": [GITHUB_ISSUER, ODD_ISSUER, "https://oidc.codefresh.io"]})
    ),
}


def fixture_body(name: str) -> bytes:
    bundle = json.loads((SIGSTORE / name).read_text())
    return base64.b64decode(bundle["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"])


def simulated_bodies() -> list[bytes]:
    ca = LocalCA.generate()
    codefresh = ca.issue(
        codefresh_identity(account_id="a1", account_name="acme", pipeline_id="p1", pipeline_name="x/y", workflow_id="w")
    )
    github = ca.issue(github_identity())
    odd = ca.issue(CertIdentity(issuer=ODD_ISSUER, san_email="dev@example.com"))
    email = ca.issue(email_identity("dev@example.com"))
    key = codefresh.private_key
    two_signers = json.loads(dsse_body(email.pem, b"{}", key))
    signature = dict(two_signers["spec"]["signatures"][0])
    two_signers["spec"]["signatures"].append({**signature, "verifier": base64.b64encode(codefresh.pem).decode()})
    return [
        json.dumps(two_signers, separators=(",", ":")).encode(),
        hashedrekord_body(codefresh.pem, b"a", key),
        hashedrekord_body(email.pem + codefresh.pem, b"a", key),  # only the first block is the signer
        hashedrekord_body(codefresh.pem + email.pem, b"a", key),
        hashedrekord_body(odd.pem, b"a", key),
        hashedrekord_body(public_key_pem(key), b"a", key),
        dsse_body(github.pem, b"{}", key),
        intoto_v002_body(codefresh.pem, b"{}", key),
        hashedrekord_v002_body(codefresh.der, b"a", key),
        hashedrekord_v002_body(odd.der, b"a", key),
        hashedrekord_v002_body(None, b"a", key),
    ]


BODIES = [
    *simulated_bodies(),
    *(
        fixture_body(name)
        for name in (
            "bundle_v3_github.whl.sigstore",
            "happy-path-intoto-in-dsse-v3.bundle.sigstore.json",
            "bundle-publish.json",
            "staging-rekor-v2.txt.sigstore.json",
        )
    ),
    base64.b64decode(json.loads((SIGSTORE / "docker-attest.tlog.mock.go.TestEntry.json").read_text())["body"]),
]


# -- the two paths ---------------------------------------------------------------------------------


def reference(body: bytes, policy: Policy) -> tuple[DecodedEntry, list[bytes]] | str:
    try:
        document = json.loads(body)
        if not isinstance(document, dict):
            return "not_json"
        decoded = decode_document(document)
    except (ValueError, RecursionError):
        return "not_json"
    except EntryDecodeError as exc:
        return exc.reason
    return decoded, [der for der in decoded.certificates if policy.watches_issuer(certificate_issuer(der))]


def fast(body: bytes, policy: Policy) -> tuple[DecodedEntry, list[bytes]] | str:
    try:
        decoded = decode_entry(body)
    except EntryDecodeError as exc:
        return exc.reason
    return decoded, watched_certificates(decoded, policy)


# -- mutations -------------------------------------------------------------------------------------


def json_text(value: Any, escape: Callable[[str], bool]) -> str:
    """JSON of `value` where the characters `escape` picks, in keys and strings, are written \\uXXXX
    (or `\\/` for a slash): the same document to any JSON parser, other bytes to a byte search."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json_text(k, escape)}:{json_text(v, escape)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(json_text(item, escape) for item in value) + "]"
    if isinstance(value, str):
        plain = json.dumps(value, ensure_ascii=False)[1:-1]
        out = []
        for char in plain:
            if char == "/" and escape(char):
                out.append("\\/")
            elif char not in '\\"' and escape(char):
                out.append(f"\\u{ord(char):04x}")
            else:
                out.append(char)
        return '"' + "".join(out) + '"'
    return json.dumps(value)


def string_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in string_paths(item, (*path, key))]
    if isinstance(value, list):
        return [p for index, item in enumerate(value) for p in string_paths(item, (*path, index))]
    return [path] if isinstance(value, str) else []


def replace_at(document: Any, path: tuple[Any, ...], new: Any) -> None:
    for key in path[:-1]:
        document = document[key]
    document[path[-1]] = new


def get_at(document: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        document = document[key]
    return document


def rewrapped_pem(pem: bytes, data: st.DataObject) -> bytes:
    """A PEM's blocks with their base64 re-broken at random widths, with CRLF, spaces or tabs."""
    out = []
    for block in pem.split(b"-----END ")[:-1]:
        head, _, body = block.partition(b"-----\n")
        label = head.split(b"-----BEGIN ")[-1]
        text = body.translate(None, b" \t\r\n")
        width = data.draw(st.integers(1, 80), label="width")
        breaker = data.draw(st.sampled_from([b"\n", b"\r\n", b" ", b"\t", b"\n\n"]), label="line break")
        lines = breaker.join(text[at : at + width] for at in range(0, len(text), width))
        out.append(b"-----BEGIN " + label + b"-----\n" + lines + b"\n-----END " + label + b"-----\n")
    return b"".join(out) or pem


def mutated_base64(text: str, data: st.DataObject) -> str:
    how = data.draw(st.sampled_from(["insert", "strip padding", "flip last", "insert pad"]), label="base64 edit")
    at = data.draw(st.integers(0, len(text)), label="at")
    if how == "insert":
        return text[:at] + data.draw(st.sampled_from(["\n", " ", "=", "-", "_", "é", "A"])) + text[at:]
    if how == "strip padding":
        return text.rstrip("=")
    if how == "insert pad":
        return text + "="
    if not text:
        return text
    body = text.rstrip("=")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    if not body or body[-1] not in alphabet:
        return text
    flipped = alphabet[alphabet.index(body[-1]) ^ 1]  # a non-canonical last character when padded
    return body[:-1] + flipped + text[len(body) :]


STRANGERS = [None, 1, 1.5, True, [], {}, "", "QUJD", {"rawBytes": "QUJD"}, [{"verifier": "QUJD"}]]
"""Values put where the typed shortcut expects others (monitor/entries.py): it must hand them on."""


def member_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every object member, at any depth."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += [(*path, key), *member_paths(item, (*path, key))]
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += member_paths(item, (*path, index))
    return found


def restructured(document: dict[str, Any], data: st.DataObject) -> bytes:
    """The document with one member removed, replaced by a stranger, or written twice (the stranger
    first or last: JSON parsers keep the last)."""
    path = data.draw(st.sampled_from(member_paths(document)), label="member")
    holder, key = get_at(document, path[:-1]), path[-1]
    how = data.draw(st.sampled_from(["remove", "replace", "twice"]), label="edit")
    stranger = data.draw(st.sampled_from(STRANGERS), label="stranger")
    if how == "remove":
        del holder[key]
    elif how == "replace":
        holder[key] = stranger
    if how != "twice":
        return json.dumps(document).encode()
    marker = "\x00twice\x00"
    original, holder[key] = holder[key], marker
    text, pair = json.dumps(document), f"{json.dumps(key)}: {json.dumps(stranger)}"
    written = f"{json.dumps(key)}: {json.dumps(original)}"
    twice = f"{pair}, {written}" if data.draw(st.booleans(), label="stranger first") else f"{written}, {pair}"
    return text.replace(f"{json.dumps(key)}: {json.dumps(marker)}", twice).encode()


def mutated_body(body: bytes, data: st.DataObject) -> bytes:
    """The body, edited in one of the ways an attacker would try to hide a certificate."""
    how = data.draw(
        st.sampled_from(["escapes", "base64", "pem", "signatures", "der", "bytes", "structure"]), label="mutation"
    )
    if how == "bytes":
        edits = data.draw(st.lists(st.tuples(st.integers(0, len(body)), st.binary(max_size=3)), max_size=4))
        for at, new in edits:
            body = body[:at] + new + body[at + len(new) // 2 :]
        return body
    document = json.loads(body)
    if how == "structure":
        return restructured(document, data)
    paths = string_paths(document)
    if how == "escapes":
        chosen = data.draw(st.sets(st.characters(codec="utf-8"), max_size=20), label="escaped characters")
        return json_text(document, lambda char: char in chosen).encode()
    path = data.draw(st.sampled_from(paths), label="string")
    value = get_at(document, path)
    if how == "base64":
        replace_at(document, path, mutated_base64(value, data))
    elif how in ("pem", "der"):
        try:
            decoded = binascii.a2b_base64(value, strict_mode=True)
        except ValueError:
            return body
        if how == "pem" and b"-----BEGIN" in decoded:
            decoded = rewrapped_pem(decoded, data)
        elif how == "der":
            at = data.draw(st.integers(0, max(len(decoded) - 1, 0)), label="der at")
            decoded = decoded[:at] + data.draw(st.binary(max_size=4), label="der bytes") + decoded[at + 1 :]
        replace_at(document, path, base64.b64encode(decoded).decode())
    elif how == "signatures":
        lists = [path[:at] for path in paths for at in range(1, len(path)) if isinstance(path[at], int)]
        if lists:
            holder = get_at(document, data.draw(st.sampled_from(lists), label="list"))
            holder[:] = data.draw(st.lists(st.sampled_from(holder), min_size=1, max_size=3), label="items")
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


# -- the properties ---------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES.values(), ids=POLICIES.keys())
def test_the_unmutated_bodies_decode_alike_and_some_are_watched(policy: Policy) -> None:
    results = [(reference(body, policy), fast(body, policy)) for body in BODIES]
    assert all(ours == theirs for theirs, ours in results)
    assert sum(bool(result[1]) for result, _ in results if not isinstance(result, str)) >= 3


REMOVED = object()


@pytest.mark.parametrize("body", BODIES)
def test_every_member_removed_or_replaced_decodes_as_the_reference_does(body: bytes) -> None:
    """The structural edits one by one, every member and every stranger: the typed shortcut decodes
    every kind's spec in one struct, and must still decline each body that misses what its kind needs."""
    policy = POLICIES["github, odd and codefresh"]
    for path in member_paths(json.loads(body)):
        for stranger in [REMOVED, *STRANGERS]:
            document = json.loads(body)
            holder, key = get_at(document, path[:-1]), path[-1]
            if stranger is REMOVED:
                del holder[key]
            else:
                holder[key] = stranger
            edited = json.dumps(document).encode()
            assert fast(edited, policy) == reference(edited, policy), (path, stranger)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BODIES), st.sampled_from(list(POLICIES.values())), st.data())
def test_a_mutated_body_decodes_and_is_filtered_as_the_reference_does(
    body: bytes, policy: Policy, data: st.DataObject
) -> None:
    mutated = mutated_body(body, data)
    assert fast(mutated, policy) == reference(mutated, policy)


@settings(max_examples=300)
@given(st.sampled_from([der for body in BODIES[:11] for der in decode_entry(body).certificates]), st.data())
def test_no_certificate_claims_a_watched_issuer_the_byte_search_misses(der: bytes, data: st.DataObject) -> None:
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(der)), st.binary(max_size=3)), min_size=1, max_size=3))
    for at, new in edits:
        der = der[:at] + new + der[at + 1 :]
    issuer = certificate_issuer(der)
    watched = (b"https://oidc.codefresh.io", GITHUB_ISSUER.encode(), ODD_ISSUER.encode())
    if issuer is not None and issuer.encode() in watched:
        assert may_claim_issuer(der, watched)
        assert may_claim_issuer(der, (issuer.encode(),))


BASE64_PIECES = ["QUJD", "/+9z", "QQ==", "QUI=", "AB==", "Q", "=", "==", " ", "\n", "\t", "-", "_", "é", "\x00"]


@example("QUJD=")  # binascii reads '=' after a full quantum, pybase64 refuses it
@example("QUJDQQ==\n")
@settings(max_examples=500)
@given(
    st.one_of(
        st.lists(st.sampled_from(BASE64_PIECES), max_size=6).map("".join),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \n\t-_é", max_size=24),
    )
)
def test_fast_base64_accepts_exactly_what_strict_binascii_accepts(text: str) -> None:
    for value in (text, text.encode()):
        try:
            expected: bytes | None = binascii.a2b_base64(value, strict_mode=True)
        except ValueError:
            expected = None
        try:
            got: bytes | None = strict_base64(value)
        except ValueError:
            got = None
        assert got == expected
    # The typed shortcut of monitor/entries.py has msgspec decode base64: it may refuse more (the
    # dict walk then decides), never accept more or decode otherwise.
    try:
        typed: bytes | None = msgspec.json.decode(json.dumps({"b": text}), type=Base64Field).b
    except msgspec.ValidationError:
        typed = None
    assert typed is None or typed == expected


class Base64Field(msgspec.Struct):
    b: bytes


def test_what_the_fast_libraries_refuse_still_decodes_as_before() -> None:
    body = fixture_body("staging-rekor-v2.txt.sigstore.json")
    utf16 = json.dumps(json.loads(body)).encode("utf-16")  # orjson reads UTF-8 only
    assert decode_entry(utf16) == decode_entry(body)
    stray = b'{"apiVersion":"0.0.1","kind":"rfc3161","spec":{"tsr":{"content":"AAAA="}}}'
    assert decode_entry(stray) == DecodedEntry("rfc3161", "0.0.1", (), 0, None)  # pybase64 refuses 'AAAA='
    with pytest.raises(EntryDecodeError) as raised:
        decode_entry(b'{"kind": "hashedrekord", "apiVersion": "0.0.1", "spec": {}')
    assert raised.value.reason == "not_json"
