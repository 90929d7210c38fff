"""Secrets in the config file never reach the web page (SPEC D9).

The config editor shows the file with every secret value replaced by
:data:`PLACEHOLDER`; on save, a placeholder left in place is put back to the
value the file had at the same key path, so a technician can edit everything
else without ever seeing (or retyping) a password. A new value typed over
the placeholder replaces the secret.

A secret is found by its key wherever TOML lets one be written: a table's
key (``[uplink]`` then ``password = …``), a dotted key (``uplink.password``),
a quoted one (``"password"``, ``'password'``, ``"pass\\u0077ord"``), inside an
inline table (``uplink = { password = … }``) or an array of them, under
``[[array.tables]]`` (the path carries the element's index), with any
string form as its value — multi-line ones included. :func:`key_values` is
the small TOML scanner that finds those spans; the text between them is
never touched, so comments and layout stay as the technician wrote them.

:func:`mask_checked` then proves the result with the real parser
(``tomllib``): every secret key's value must be the placeholder, or the page
shows no text at all (:class:`MaskError`) — a form the scanner misses
fails closed, never open.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

#: The config keys whose values are secrets (``SecretStr`` fields of
#: config/models*.py; tests/test_web_secrets.py keeps the two lists equal).
SECRET_KEYS = frozenset({"password", "security_code"})

PLACEHOLDER_VALUE = "<secret: unchanged>"
PLACEHOLDER = f'"{PLACEHOLDER_VALUE}"'

#: A key path: table and key names, with the index of an array element.
KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_WS = re.compile(r"[ \t]*")
_WS_NL = re.compile(r"(?:[ \t\r\n]|#[^\n]*)*")
# A number, boolean or date; a date may have one space before its time.
_SCALAR = re.compile(r"[^\s,\]\}#]+(?: [0-9]{2}:[^\s,\]\}#]*)?")


class _Bad(Exception):
    """Not TOML here: the scanner resumes at the next line."""


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.found: list[tuple[KeyPath, int, int]] = []
        self.arrays: dict[KeyPath, int] = {}  # array-of-tables path → elements so far

    def char(self, offset: int = 0) -> str:
        return self.text[self.i + offset : self.i + offset + 1]

    def skip(self, pattern: re.Pattern[str]) -> None:
        match = pattern.match(self.text, self.i)
        assert match is not None  # both patterns match the empty string
        self.i = match.end()

    def expect(self, literal: str) -> None:
        if not self.text.startswith(literal, self.i):
            raise _Bad
        self.i += len(literal)

    def run(self) -> list[tuple[KeyPath, int, int]]:
        table: KeyPath = ()
        while self.i < len(self.text):
            start = self.i
            try:
                table = self.statement(table)
            except _Bad:
                newline = self.text.find("\n", max(start, self.i - 1))
                self.i = len(self.text) if newline < 0 else newline + 1
        return self.found

    def statement(self, table: KeyPath) -> KeyPath:
        self.skip(_WS)
        char = self.char()
        if char == "[":
            array = self.text.startswith("[[", self.i)
            self.i += 2 if array else 1
            table = self.resolve(self.key(), array)
            self.skip(_WS)
            self.expect("]]" if array else "]")
        elif char not in ("", "\n", "\r", "#"):
            self.key_value(table)
        self.end_of_line()
        return table

    def end_of_line(self) -> None:
        self.skip(_WS)
        if self.char() == "#":
            newline = self.text.find("\n", self.i)
            self.i = len(self.text) if newline < 0 else newline
        if self.text.startswith("\r\n", self.i):
            self.i += 2
        elif self.char() == "\n":
            self.i += 1
        elif self.i < len(self.text):
            raise _Bad

    def resolve(self, path: KeyPath, array: bool) -> KeyPath:
        """A header's path with the index of each array-of-tables element in it."""
        resolved: KeyPath = ()
        for n, part in enumerate(path):
            resolved += (part,)
            last = n == len(path) - 1
            if array and last:
                count = self.arrays.get(resolved, 0)
                self.arrays[resolved] = count + 1
                resolved += (count,)
            elif resolved in self.arrays:
                resolved += (self.arrays[resolved] - 1,)
        return resolved

    def key(self) -> KeyPath:
        parts: list[str | int] = []
        while True:
            self.skip(_WS)
            char = self.char()
            if char in ('"', "'"):
                start = self.i
                self.string()
                parts.append(_decode_quoted_key(self.text[start : self.i]))
            else:
                match = _BARE_KEY.match(self.text, self.i)
                if match is None:
                    raise _Bad
                parts.append(match.group())
                self.i = match.end()
            self.skip(_WS)
            if self.char() != ".":
                return tuple(parts)
            self.i += 1

    def key_value(self, table: KeyPath) -> None:
        path = table + self.key()
        self.skip(_WS)
        self.expect("=")
        self.skip(_WS)
        start = self.i
        self.value(path)
        self.found.append((path, start, self.i))

    def value(self, path: KeyPath) -> None:
        char = self.char()
        if char in ('"', "'"):
            self.string()
        elif char == "[":
            self.i += 1
            self.items(path, "]", lambda index: self.value((*path, index)))
        elif char == "{":
            self.i += 1
            self.items(path, "}", lambda _: self.key_value(path))
        else:
            match = _SCALAR.match(self.text, self.i)
            if match is None:
                raise _Bad
            self.i = match.end()

    def items(self, path: KeyPath, close: str, item: Any) -> None:
        """``a, b, …`` up to ``close`` (a trailing comma, newlines and comments allowed)."""
        index = 0
        while True:
            self.skip(_WS_NL)
            if self.char() == close:
                self.i += 1
                return
            item(index)
            index += 1
            self.skip(_WS_NL)
            if self.char() == ",":
                self.i += 1
            elif self.char() == close:
                self.i += 1
                return
            else:
                raise _Bad

    def string(self) -> None:
        quote = self.char()
        if self.text.startswith(quote * 3, self.i):
            self.i += 3
            while True:
                if quote == '"' and self.char() == "\\":
                    self.i += 2
                elif self.text.startswith(quote * 3, self.i):
                    self.i += 3
                    for _ in range(2):  # up to two quotes may close the content
                        if self.char() == quote:
                            self.i += 1
                    return
                elif self.i >= len(self.text):
                    raise _Bad
                else:
                    self.i += 1
        self.i += 1
        while True:
            char = self.char()
            if char in ("", "\n"):
                raise _Bad
            self.i += 2 if (char == "\\" and quote == '"') else 1
            if char == quote:
                return


def _decode_quoted_key(token: str) -> str:
    """A quoted key as the TOML parser reads it (escapes included)."""
    import tomllib  # on the config editor's first use, not at the daemon's start

    try:
        return str(tomllib.loads(f"k = {token}")["k"])
    except tomllib.TOMLDecodeError:
        raise _Bad from None


def key_values(text: str) -> list[tuple[KeyPath, int, int]]:
    """(key path, value start, value end) of every key/value in ``text``,
    inner ones of inline tables too; unreadable lines are skipped."""
    return _Scanner(text).run()


def _secret_spans(text: str) -> list[tuple[KeyPath, int, int]]:
    """The outermost spans whose key is a secret, in text order."""
    spans: list[tuple[KeyPath, int, int]] = []
    for path, start, end in sorted(key_values(text), key=lambda found: found[1]):
        secret = isinstance(path[-1], str) and path[-1] in SECRET_KEYS
        if secret and (not spans or start >= spans[-1][2]):
            spans.append((path, start, end))
    return spans


def _replace(text: str, spans: list[tuple[int, int, str]]) -> str:
    pieces, at = [], 0
    for start, end, new in spans:
        pieces += [text[at:start], new]
        at = end
    return "".join(pieces) + text[at:]


def mask(text: str) -> str:
    """``text`` with every secret value replaced by the placeholder (best
    effort on text that is not TOML: what the editor echoes back)."""
    return _replace(text, [(start, end, PLACEHOLDER) for _, start, end in _secret_spans(text)])


class MaskError(Exception):
    """The text cannot be shown without a secret in it."""


def _secrets_in(data: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            if key in SECRET_KEYS:
                yield (*path, key), value
            else:
                yield from _secrets_in(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _secrets_in(value, (*path, index))


def mask_checked(text: str) -> str:
    """:func:`mask`, then proven by ``tomllib``: every secret is the placeholder.
    Text past config/toml_read.py's size and depth bounds is not scanned at all
    (the scanner, like the parser, recurses into arrays and inline tables)."""
    import tomllib

    from config import toml_read

    try:
        toml_read.check_text(text)
        masked = mask(text)
        data = toml_read.loads(masked)
    except tomllib.TOMLDecodeError as exc:
        raise MaskError(f"the file is not valid TOML ({exc})") from None
    for path, value in _secrets_in(data):
        if value != PLACEHOLDER_VALUE:
            raise MaskError(f"{dotted(path)}: a secret written in a form the editor cannot hide")
    return masked


def dotted(path: KeyPath) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def unmask(edited: str, current: str) -> tuple[str, list[str]]:
    """Put the current secrets back where the placeholder was left; errors for
    a placeholder whose key path the current file does not have."""
    known = {path: current[start:end] for path, start, end in _secret_spans(current)}
    spans, errors = [], []
    for path, start, end in _secret_spans(edited):
        if edited[start:end].strip() != PLACEHOLDER:
            continue
        value = known.get(path)
        if value is None:
            errors.append(f"{dotted(path)}: type a value (there is no stored secret to keep)")
            continue
        spans.append((start, end, value))
    return _replace(edited, spans), errors
