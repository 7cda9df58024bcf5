"""The typed shortcut for retrieve answers reads exactly what the general parse reads, or leaves it.

`match_entries_typed` (msgspec) may only say yes: for every answer, either it declines (None) or
the general way (`match_entries` of the JSON, every field checked by hand) returns the same entries.
And it must say yes to the answers a log really sends, or it would be dead weight: the canonical ones
below, with and without their optional fields, are taken by it.

Answers: well-formed ones, each broken field of test_rekor_v1, and what an attacker would try on the
JSON itself: members removed, written twice (the bad value first or last), of another type, explicit
nulls, unknown members, invalid UTF-8, numbers a float or beyond 64 bits, and random byte edits.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.tlog.answers import parse_answer
from monitor.tlog.errors import LogProtocolError
from monitor.tlog.merkle import leaf_hash
from monitor.tlog.rekor_v1_entries import RekorEntry, match_entries, match_entries_typed
from tests.test_rekor_v1 import BROKEN_DOCUMENTS, BROKEN_ENTRIES, anonymous_entry, log_entry

REQUESTED = frozenset(range(7, 10))


def general(raw: bytes, requested: frozenset[int] = REQUESTED) -> dict[int, RekorEntry] | None:
    """The general parse's entries, None where it refuses the answer."""
    try:
        return parse_answer(raw, "u", "retrieve answer", partial(match_entries, requested=requested, proofs=False))
    except LogProtocolError:
        return None


def assert_agree(raw: bytes, requested: frozenset[int] = REQUESTED) -> dict[int, RekorEntry] | None:
    typed = match_entries_typed(raw, requested)
    if typed is not None:
        assert typed == general(raw, requested), raw[:300]
    return typed


def answer(*anonymous: dict[str, Any]) -> list[dict[str, Any]]:
    return [log_entry(7 + position, item) for position, item in enumerate(anonymous)]


def canonical() -> list[dict[str, Any]]:
    return answer(*(anonymous_entry(index) for index in sorted(REQUESTED)))


def encoded(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def without(*fields: str) -> dict[str, Any]:
    anonymous = anonymous_entry(7)
    for name in fields:
        del anonymous[name]
    return anonymous


TAKEN = {
    "three entries": canonical(),
    "no integratedTime, no verification": answer(without("integratedTime", "verification")),
    "integratedTime, verification null": answer({**anonymous_entry(7), "integratedTime": None, "verification": None}),
    "no SET": answer({**anonymous_entry(7), "verification": {}}),
    "an unknown member": answer({**anonymous_entry(7), "attestation": {"data": [1, 2.5, None]}}),
    "no entries": [],
    "fewer entries than asked": answer(anonymous_entry(7)),
}


@pytest.mark.parametrize("case", TAKEN, ids=list(TAKEN))
def test_the_answers_a_log_sends_are_taken_and_read_alike(case: str) -> None:
    raw = encoded(TAKEN[case])
    assert assert_agree(raw) is not None


def test_the_proofs_are_not_read_by_either_way() -> None:
    document = canonical()
    for item in document:
        for anonymous in item.values():
            anonymous["verification"]["inclusionProof"] = {"hashes": "not a list"}
    assert assert_agree(encoded(document)) is not None


@pytest.mark.parametrize("case", BROKEN_ENTRIES, ids=list(BROKEN_ENTRIES))
def test_each_broken_field_agrees(case: str) -> None:
    change, _field = BROKEN_ENTRIES[case]
    anonymous = anonymous_entry(7)
    change(anonymous)
    assert_agree(encoded(answer(anonymous)))


@pytest.mark.parametrize("case", BROKEN_DOCUMENTS, ids=list(BROKEN_DOCUMENTS))
def test_each_broken_document_agrees_alone_and_in_a_list(case: str) -> None:
    raw = BROKEN_DOCUMENTS[case]
    assert_agree(raw)
    assert_agree(raw if raw.startswith(b"[") else b"[" + raw + b"]")


VALUES = {
    "null": None,
    "a float": 7.0,
    "a boolean": True,
    "a string": "7",
    "a list": [],
    "an object": {},
    "2^63": 2**63,
    "2^64 + 7": 2**64 + 7,
    "negative": -7,
    "non-ASCII": "é" * 64,
    "base64 unpadded": "YWJj",
    "base64 with a space": "YW Jj",
}
MEMBERS = ("body", "logID", "logIndex", "integratedTime", "verification")


@pytest.mark.parametrize("member", MEMBERS)
@pytest.mark.parametrize("value", VALUES, ids=list(VALUES))
def test_a_member_of_any_other_value_agrees(member: str, value: str) -> None:
    anonymous = anonymous_entry(7)
    anonymous[member] = VALUES[value]
    assert_agree(encoded(answer(anonymous)))
    anonymous = anonymous_entry(7)
    anonymous["verification"]["signedEntryTimestamp"] = VALUES[value]
    assert_agree(encoded(answer(anonymous)))


@pytest.mark.parametrize("member", MEMBERS)
@pytest.mark.parametrize("bad_first", [True, False], ids=["bad first", "bad last"])
def test_a_member_written_twice_agrees(member: str, bad_first: bool) -> None:
    good = json.dumps(anonymous_entry(7)[member])
    pair = [f'"{member}": 12345', f'"{member}": {good}']
    if not bad_first:
        pair.reverse()
    others = [f"{json.dumps(name)}: {json.dumps(value)}" for name, value in anonymous_entry(7).items()]
    others = [member_text for member_text in others if not member_text.startswith(f'"{member}"')]
    uuid = next(iter(log_entry(7)))
    raw = ("[{" + json.dumps(uuid) + ": {" + ", ".join([*others, *pair]) + "}}]").encode()
    assert_agree(raw)


@pytest.mark.parametrize("member", MEMBERS)
def test_a_member_missing_agrees(member: str) -> None:
    assert_agree(encoded(answer(without(member))))


def test_invalid_utf8_is_refused_where_read_and_only_there() -> None:
    """The one difference, on purpose: the bytes of a member neither way reads are not checked."""
    raw = encoded(answer({**anonymous_entry(7), "note": "é"}))  # a real checkpoint's "—" is non-ASCII too
    assert match_entries_typed(raw, REQUESTED) is not None
    skipped_member = raw.replace("é".encode(), b"\xff")
    assert match_entries_typed(skipped_member, REQUESTED) == general(raw)
    assert general(skipped_member) is None
    uuid = next(iter(log_entry(7))).encode()
    read_member = raw.replace(uuid, uuid[:-1] + b"\xff")
    assert match_entries_typed(read_member, REQUESTED) is None
    assert general(read_member) is None


def test_unrequested_repeated_and_two_uuid_entries_are_declined() -> None:
    repeated = canonical() + canonical()[:1]
    two_uuids = [{**log_entry(7), **log_entry(8)}]
    for document in (repeated, two_uuids):
        assert match_entries_typed(encoded(document), REQUESTED) is None
        assert general(encoded(document)) is None
    assert match_entries_typed(encoded(canonical()), frozenset({7, 8})) is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_byte_edits_agree(data: st.DataObject) -> None:
    # ASCII (the checkpoints' "—" escaped), so that no edit leaves invalid UTF-8: that one difference is
    # held apart, above.
    raw = bytearray(json.dumps(canonical()).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.sampled_from(b'"{}[],:0123456789abcdefABCDEF=+/ \\nul-.e'))
    assert_agree(bytes(raw))


def test_read_without_proofs_an_entry_has_the_leaf_hash_its_uuid_names() -> None:
    """Neither way hashes the bodies: the tail's analysis does, and checks them against these
    (rekor_v1_entries.first_misnamed)."""
    named = leaf_hash(b"another body")
    entries = assert_agree(encoded([{named.hex(): anonymous_entry(7)}]))
    assert entries is not None and entries[7].leaf_hash == named
