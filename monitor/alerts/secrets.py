"""Keeping a sink's secrets out of everything it reports (`alert_deliveries.last_error`, logs, the API).

What is secret in a sink: its `secret`, `routing_key` and header values, and every part of its URL
but the scheme and host: the user and password (and the `Authorization: Basic` value they become),
the path (a Slack webhook's path is its token) and the query (each value, and the whole). A
receiver may echo any of it, whole or in part, raw or transformed; an error message is cut short.

The invariant: no fragment of FRAGMENT or more characters of a secret survives `Secrets.scrub`,
in the text as it is, nor once the text is decoded, up to DECODE_DEPTH times, from percent-encoding
(`%2F`), JSON and JavaScript escapes (`\\/`, `\\u002f`, `\\x2f`) or HTML character references
(`&#x2F;`, `&amp;`, with or without the `;`). Every window of FRAGMENT characters of every decoded
form of the text is looked up among the windows of every decoded form of every secret; the
characters of the original text behind a match are replaced with REDACTED. A shorter explicit
secret (4 to 7 characters) is matched whole, and a text ending in the first 4 to 7 characters of a
secret (an answer cut short) loses them.

The price is some over-redaction: a non-secret word of 8 characters that also occurs in a webhook's
path (e.g. `services` of a Slack URL) is redacted too.
"""

from __future__ import annotations

import base64
import contextlib
import html
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from monitor.config import AlertSink

FRAGMENT = 8
MIN_SECRET = 4
DECODE_DEPTH = 3
REDACTED = "[redacted]"

Span = tuple[int, int]

_ESCAPE = re.compile(
    r"(?P<percent>(?:%[0-9A-Fa-f]{2})+)"
    r"|\\u(?P<u>[0-9A-Fa-f]{4})(?:\\u(?P<low>[dD][c-fC-F][0-9A-Fa-f]{2}))?"
    r"|\\x(?P<x>[0-9A-Fa-f]{2})"
    r"|\\(?P<char>[\\/\"'bfnrt])"
    r"|&#(?P<dec>[0-9]{1,7});?"
    r"|&#[xX](?P<hex>[0-9A-Fa-f]{1,6});?"
    r"|&(?P<named>amp|lt|gt|quot|apos|sol);?"
)
_SINGLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_UTF8_LENGTH = ((0x80, 1), (0xE0, 2), (0xF0, 3), (0xF8, 4))
"""Lead byte below the bound -> length of its UTF-8 sequence (continuation bytes count as 1)."""


@dataclass(frozen=True)
class Decoded:
    """A text decoded once more, with the span of the original text behind each of its characters."""

    text: str
    spans: tuple[Span, ...]

    @classmethod
    def of(cls, text: str) -> Decoded:
        return cls(text, tuple((index, index + 1) for index in range(len(text))))

    def decode(self) -> Decoded:
        chars: list[str] = []
        spans: list[Span] = []
        position = 0
        for match in _ESCAPE.finditer(self.text):
            for index in range(position, match.start()):
                chars.append(self.text[index])
                spans.append(self.spans[index])
            for char, (start, end) in _unescape(match):
                chars.append(char)
                spans.append((self.spans[match.start() + start][0], self.spans[match.start() + end - 1][1]))
            position = match.end()
        for index in range(position, len(self.text)):
            chars.append(self.text[index])
            spans.append(self.spans[index])
        return Decoded("".join(chars), tuple(spans))


def _unescape(match: re.Match[str]) -> Iterator[tuple[str, Span]]:
    """The characters one escape sequence stands for, each with its span within the match."""
    if match["percent"] is not None:
        yield from _percent_decoded(match["percent"])
        return
    size = match.end() - match.start()
    if match["low"] is not None:
        yield from _utf16_pair(int(match["u"], 16), int(match["low"], 16))
        return
    if match["u"] is not None or match["x"] is not None:
        code = int(match["u"] or match["x"], 16)
    elif match["char"] is not None:
        yield _SINGLE_ESCAPES.get(match["char"], match["char"]), (0, size)
        return
    elif match["named"] is not None:
        yield html.unescape(f"&{match['named']};"), (0, size)  # HTML accepts it without the `;` too
        return
    else:
        code = int(match["dec"]) if match["dec"] is not None else int(match["hex"], 16)
    yield (chr(code) if code <= 0x10FFFF else "\ufffd"), (0, size)


def _utf16_pair(high: int, low: int) -> Iterator[tuple[str, Span]]:
    """`\\uD83D\\uDE00` is one character; a low surrogate after anything else is two."""
    if 0xD800 <= high <= 0xDBFF:
        yield chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)), (0, 12)
    else:
        yield chr(high), (0, 6)
        yield chr(low), (6, 12)


def _percent_decoded(run: str) -> Iterator[tuple[str, Span]]:
    """`%XX%YY...` as UTF-8; a byte that starts no valid sequence stands for U+FFFD."""
    raw = bytes(int(run[i + 1 : i + 3], 16) for i in range(0, len(run), 3))
    index = 0
    while index < len(raw):
        length = next((n for bound, n in _UTF8_LENGTH if raw[index] < bound), 1)
        try:
            char = raw[index : index + length].decode("utf-8")
        except UnicodeDecodeError:
            char, length = "\ufffd", 1
        yield char, (3 * index, 3 * (index + length))
        index += length


def decoded_forms(text: str) -> list[Decoded]:
    """`text` as it is, then decoded again and again while that changes it (at most DECODE_DEPTH times)."""
    forms = [Decoded.of(text)]
    for _ in range(DECODE_DEPTH):
        again = forms[-1].decode()
        if again.text == forms[-1].text:
            break
        forms.append(again)
    return forms


@dataclass(frozen=True)
class Secrets:
    """What to redact from a sink's reports; built once per sink."""

    windows: frozenset[str]
    """Every FRAGMENT-character window of every form of every secret, and whole short secrets."""
    lengths: frozenset[int]
    prefixes: frozenset[str]
    """Beginnings (MIN_SECRET..FRAGMENT-1 characters) of every form of every secret."""

    @classmethod
    def of(cls, values: Iterable[str], short: Iterable[str] = ()) -> Secrets:
        """`values` of FRAGMENT characters or more are matched by fragment; `short` ones (explicit
        secrets, which may be shorter) whole from MIN_SECRET characters on."""
        windows: set[str] = set()
        prefixes: set[str] = set()
        for value in [*values, *short]:
            for form in {decoded.text for decoded in decoded_forms(value)}:
                if len(form) >= FRAGMENT:
                    windows.update(form[i : i + FRAGMENT] for i in range(len(form) - FRAGMENT + 1))
                    prefixes.update(form[:size] for size in range(MIN_SECRET, FRAGMENT))
        for value in short:
            if MIN_SECRET <= len(value) < FRAGMENT:
                windows.add(value)
        return cls(frozenset(windows), frozenset(len(w) for w in windows), frozenset(prefixes))

    def scrub(self, text: str) -> str:
        if not self.windows:
            return text
        hidden = [False] * len(text)
        for form in decoded_forms(text):
            for start, end in self._matches(form):
                hidden[start:end] = [True] * (end - start)
        return _redact(text, hidden)

    def _matches(self, form: Decoded) -> Iterator[Span]:
        text = form.text
        for length in self.lengths:
            for index in range(len(text) - length + 1):
                if text[index : index + length] in self.windows:
                    yield form.spans[index][0], form.spans[index + length - 1][1]
        for size in range(min(FRAGMENT - 1, len(text)), MIN_SECRET - 1, -1):
            if text[-size:] in self.prefixes:
                yield form.spans[-size][0], form.spans[-1][1]
                break


def scrub(text: str, values: Iterable[str]) -> str:
    """`text` without any fragment of the given explicit secrets (for one-off use; a sink builds its
    `Secrets` once)."""
    return Secrets.of([], short=[value for value in values if value]).scrub(text)


def _redact(text: str, hidden: list[bool]) -> str:
    out: list[str] = []
    for index, char in enumerate(text):
        if not hidden[index]:
            out.append(char)
        elif index == 0 or not hidden[index - 1]:
            out.append(REDACTED)
    return "".join(out)


def sink_secrets(config: AlertSink) -> Secrets:
    """The secrets of a configured sink (see the module docstring for what counts)."""
    explicit = [secret.get_secret_value() for secret in (config.secret, config.routing_key) if secret]
    explicit += [value.get_secret_value() for value in config.headers.values()]
    from_url: list[str] = []
    if config.url:
        parts = urlsplit(config.url)
        if parts.username is not None or parts.password is not None:
            user, password = unquote(parts.username or ""), unquote(parts.password or "")
            explicit += [user, password, *_basic_credentials(user, password)]
        from_url += [parts.path, parts.query, parts.fragment]
        explicit += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    return Secrets.of([v for v in from_url if len(v) >= FRAGMENT], short=[v for v in explicit if v])


def _basic_credentials(user: str, password: str) -> set[str]:
    """The `Authorization: Basic` value an HTTP client makes of a URL's user and password (aiohttp
    encodes them as latin-1, others as UTF-8)."""
    pair = f"{user}:{password}"
    encoded = {pair.encode("utf-8")}
    with contextlib.suppress(UnicodeEncodeError):
        encoded.add(pair.encode("latin-1"))
    return {base64.b64encode(raw).decode("ascii") for raw in encoded}
