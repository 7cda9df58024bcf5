"""Strict reading of a log's JSON answers: every field type-checked by hand, every failure one error.

A `MalformedError` names the field's path in the answer; `parse_answer` turns it (and invalid JSON)
into the `LogProtocolError` of the URL that answered (`parse_document`, where the URL is not known:
into a `RefusedAnswer` saying the same). Error messages describe a bad value (its type
and size), never quote it: it may be huge or hostile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from monitor.codec import loads_json, strict_base64
from monitor.tlog.errors import LogProtocolError

T = TypeVar("T")

MAX_INT64 = 2**63 - 1


class MalformedError(Exception):
    """A field of an answer has the wrong type or value; `field` is its path in the answer."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def within(self, prefix: str) -> MalformedError:
        return MalformedError(f"{prefix}.{self.field}", self.problem)


class RefusedAnswer(Exception):
    """An answer that is not JSON or is malformed; `problem` says what, as the LogProtocolError of the
    URL that answered will (`parse_answer`), once that is known."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def parse_document(raw: bytes, what: str, parse: Callable[[Any], T]) -> T:
    """`parse` of the JSON `raw`, any failure a RefusedAnswer naming `what`."""
    try:
        document = loads_json(raw)
    except (ValueError, RecursionError) as exc:
        raise RefusedAnswer(f"{what} is not valid JSON: {exc}") from exc
    try:
        return parse(document)
    except MalformedError as exc:
        raise RefusedAnswer(f"malformed {what}: {exc}") from exc


def parse_answer(raw: bytes, url: str, what: str, parse: Callable[[Any], T]) -> T:
    """`parse` of the JSON `raw`, any failure a LogProtocolError naming `url` and `what`."""
    try:
        return parse_document(raw, what, parse)
    except RefusedAnswer as exc:
        raise LogProtocolError(url, exc.problem) from exc.__cause__


def json_object(value: Any, where: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise MalformedError(where, f"is {describe(value)}, not an object")
    return value


def json_list(value: Any, where: str) -> list[Any]:
    if type(value) is not list:
        raise MalformedError(where, f"is {describe(value)}, not a list")
    return value


def json_str(value: Any, where: str) -> str:
    if type(value) is not str:
        raise MalformedError(where, f"is {describe(value)}, not a string")
    return value


def json_int(value: Any, where: str, *, minimum: int = 0) -> int:
    # `type(...) is int` also keeps out booleans, which JSON decoding makes an int subclass.
    if type(value) is not int or not minimum <= value <= MAX_INT64:
        raise MalformedError(where, f"is {describe(value)}, not an integer in [{minimum}, 2^63)")
    return value


def json_base64(value: Any, where: str) -> bytes:
    if type(value) is not str:
        raise MalformedError(where, f"is {describe(value)}, not a base64 string")
    try:
        return strict_base64(value)
    except ValueError:
        raise MalformedError(where, "is not valid base64") from None


_JSON_KINDS = {str: "a string", list: "a list", dict: "an object", bool: "a boolean", float: "a number"}


def describe(value: Any) -> str:
    """A short description of a JSON value for error messages (not the value itself: it may be huge)."""
    if value is None:
        return "missing or null"
    if type(value) is int:
        return f"the integer {value}" if abs(value) <= 2**64 else "a huge integer"
    if type(value) in (str, list, dict):
        return f"{_JSON_KINDS[type(value)]} of length {len(value)}"
    return _JSON_KINDS.get(type(value), type(value).__name__)
