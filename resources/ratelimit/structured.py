"""HTTP Structured Field Values (RFC 9651, formerly RFC 8941): Lists and Dictionaries.

Just what the rate-limit headers need: the IETF draft's ``RateLimit-Policy`` and ``RateLimit``
(drafts 08-10: Lists of Items with Parameters; draft 07: a Dictionary), read strictly. A value
that does not parse is refused as a whole (``StructuredFieldError``): the draft says "Malformed
RateLimit header fields MUST be ignored", and half of a malformed field is no better.

Bare items come back as Python values: Integer -> int, Decimal -> float, String -> str,
Token -> ``Token`` (a str subclass), Byte Sequence -> bytes, Boolean -> bool.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

BareItem = int | float | str | bytes | bool


class Token(str):
    """An sf-token (``default``, ``*/*``), as opposed to an sf-string (``"default"``)."""


class StructuredFieldError(ValueError):
    """The field value is not a valid structured field of the expected type."""


@dataclass(frozen=True)
class Item:
    value: BareItem
    params: dict[str, BareItem] = field(default_factory=dict)


_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_BYTES = re.compile(r":([A-Za-z0-9+/=]*):")


class _Parser:
    def __init__(self, text: str) -> None:
        if not text.isascii():
            raise StructuredFieldError("structured fields are ASCII")
        self.text = text.strip(" ")
        self.pos = 0

    def fail(self, what: str) -> StructuredFieldError:
        return StructuredFieldError(f"{what} at position {self.pos} of {self.text!r:.80}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ows(self) -> None:
        while self.peek() in (" ", "\t") and self.peek():
            self.pos += 1

    def skip_sp(self) -> None:
        while self.peek() == " ":
            self.pos += 1

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def key(self) -> str:
        match = _KEY.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a key")
        self.pos = match.end()
        return match.group()

    def bare_item(self) -> BareItem:
        c = self.peek()
        if c == '"':
            return self.string()
        if c == ":":
            match = _BYTES.match(self.text, self.pos)
            if match is None:
                raise self.fail("bad byte sequence")
            self.pos = match.end()
            try:
                return base64.b64decode(match.group(1), validate=True)
            except binascii.Error:
                raise self.fail("bad base64") from None
        if c == "?":
            flag = self.text[self.pos + 1 : self.pos + 2]
            if flag not in ("0", "1"):
                raise self.fail("bad boolean")
            self.pos += 2
            return flag == "1"
        if c == "-" or c.isdigit():
            match = _NUMBER.match(self.text, self.pos)
            if match is None:
                raise self.fail("bad number")
            text = match.group()
            integer, _, fraction = text.lstrip("-").partition(".")
            if (fraction and (len(integer) > 12 or len(fraction) > 3)) or len(integer) > 15:
                raise self.fail("number out of range")
            self.pos = match.end()
            return float(text) if fraction else int(text)
        match = _TOKEN.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected an item")
        self.pos = match.end()
        return Token(match.group())

    def string(self) -> str:
        self.pos += 1  # the opening quote
        out: list[str] = []
        while True:
            c = self.peek()
            if not c:
                raise self.fail("unterminated string")
            self.pos += 1
            if c == '"':
                return "".join(out)
            if c == "\\":
                escaped = self.peek()
                if escaped not in ('"', "\\"):
                    raise self.fail("bad escape")
                self.pos += 1
                out.append(escaped)
            elif not " " <= c <= "~":
                raise self.fail("control character in string")
            else:
                out.append(c)

    def params(self) -> dict[str, BareItem]:
        params: dict[str, BareItem] = {}
        while self.peek() == ";":
            self.pos += 1
            self.skip_sp()
            name = self.key()
            value: BareItem = True
            if self.peek() == "=":
                self.pos += 1
                value = self.bare_item()
            params[name] = value
        return params

    def item(self) -> Item:
        if self.peek() == "(":
            raise self.fail("inner lists are not expected here")
        value = self.bare_item()
        return Item(value, self.params())

    def next_member(self) -> bool:
        """After a member: True if another follows (a comma), False at the end."""
        self.skip_ows()
        if self.done():
            return False
        if self.peek() != ",":
            raise self.fail("expected a comma")
        self.pos += 1
        self.skip_ows()
        if self.done():
            raise self.fail("trailing comma")
        return True


def parse_list(text: str) -> list[Item]:
    """An sf-list of Items (several field lines are joined with ", " before this)."""
    parser = _Parser(text)
    members: list[Item] = []
    if parser.done():
        return members
    while True:
        members.append(parser.item())
        if not parser.next_member():
            return members


def parse_dictionary(text: str) -> dict[str, Item]:
    """An sf-dictionary; a member without a value is ``True``."""
    parser = _Parser(text)
    members: dict[str, Item] = {}
    if parser.done():
        return members
    while True:
        name = parser.key()
        if parser.peek() == "=":
            parser.pos += 1
            members[name] = parser.item()
        else:
            members[name] = Item(True, parser.params())
        if not parser.next_member():
            return members
