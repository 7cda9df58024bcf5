"""The config's regular expressions (`identity_regexp`, `allow`), matched in linear time.

Anyone can write any identity into a certificate and log it, so a pattern must never take more
than linear time on what it is matched against: a backtracking engine (Python's `re`) spends
minutes on `^https://github\\.com/(a+)+$` against 30 `a`s and a `!`, and the tail stops meanwhile.
Patterns are compiled by RE2 (google-re2), whose automata match in time linear in the input, for
any pattern. What RE2 cannot do in linear time (backreferences, lookaround) it refuses to compile,
and such a pattern is a config error that says so.

Invariants:
- A match is a full match of the whole identity (DESIGN: never a substring).
- A pattern is at most MAX_PATTERN_BYTES of UTF-8, nests groups at most MAX_NESTING deep, and
  compiles to at most MAX_PROGRAM_SIZE instructions: anything larger is refused at config time,
  before it is compiled, so no config can make compiling or matching costly either.
- A compiled `Pattern` pickles as its text (the decode worker compiles it again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import re2

MAX_PATTERN_BYTES = 4096
MAX_NESTING = 50
MAX_PROGRAM_SIZE = 20_000
"""RE2 instructions; `.{1,1000}` is about 9,000, an allow-list of 40 full workflow URLs about 2,000."""
_SHOWN = 60


class PatternError(ValueError):
    """A pattern that is refused, with a one-line reason that never echoes more than its start."""


_ENGINE = "by the linear-time engine (RE2)"
_UNSUPPORTED = (
    ("invalid escape sequence: \\1", f"backreferences (\\1, (?P=name)) are not supported {_ENGINE}"),
    ("invalid escape sequence: \\2", f"backreferences (\\1, (?P=name)) are not supported {_ENGINE}"),
    ("invalid perl operator: (?P", f"backreferences (\\1, (?P=name)) are not supported {_ENGINE}"),
    ("invalid perl operator: (?=", f"lookahead and lookbehind are not supported {_ENGINE}"),
    ("invalid perl operator: (?!", f"lookahead and lookbehind are not supported {_ENGINE}"),
    ("invalid perl operator: (?<", f"lookahead and lookbehind are not supported {_ENGINE}"),
    ("invalid escape sequence: \\Z", f"\\Z is not supported {_ENGINE}: use \\z or $"),
    ("bad repetition operator: ++", f"possessive quantifiers are not supported {_ENGINE}"),
)


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern to stderr
    return options


@dataclass(frozen=True)
class Pattern:
    text: str
    _compiled: Any = field(repr=False, compare=False)

    def fullmatch(self, value: str | None) -> bool:
        return value is not None and self._compiled.fullmatch(value) is not None

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return compile_pattern, (self.text,)


def compile_pattern(text: str) -> Pattern:
    """The pattern, compiled for full matches in linear time; PatternError when it is refused."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_PATTERN_BYTES:
        raise PatternError(f"{_start(text)} is {size:,} bytes long; the limit is {MAX_PATTERN_BYTES:,}")
    depth = nesting_depth(text)
    if depth > MAX_NESTING:
        raise PatternError(f"{_start(text)} nests groups {depth} deep; the limit is {MAX_NESTING}")
    try:
        compiled = re2.compile(text, _options())
    except re2.error as exc:
        raise PatternError(f"{_start(text)} cannot be used: {_why(exc)}") from None
    if compiled.programsize > MAX_PROGRAM_SIZE:
        raise PatternError(
            f"{_start(text)} is too complex ({compiled.programsize:,} RE2 instructions; "
            f"the limit is {MAX_PROGRAM_SIZE:,}): use fewer or smaller repetitions"
        )
    return Pattern(text, compiled)


def nesting_depth(text: str) -> int:
    """The deepest nesting of groups; escaped parentheses and those in a character class aside."""
    depth = deepest = 0
    index, in_class = 0, False
    while index < len(text):
        char = text[index]
        index += 1
        if char == "\\":
            index += 1
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            index += text.startswith("^", index)
            index += text.startswith("]", index)  # `[]...]` and `[^]...]`: that `]` is a literal
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth = max(depth - 1, 0)
    return deepest


def _why(exc: re2.error) -> str:
    message = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
    for found, reason in _UNSUPPORTED:
        if message.startswith(found):
            return reason
    return f"RE2 cannot compile it ({message[:100]})"


def _start(text: str) -> str:
    return repr(text) if len(text) <= _SHOWN else repr(text[:_SHOWN]) + "…"
