"""One redaction for every secret, in every form a client, a server or a library can print it.

A secret (an API key, the password of a base URL, S3 keys) is registered once per process, by
whoever reads it (``register``); ``redact`` then removes it from any text about to leave the
process: log lines, exception messages, event metadata, alerts, sidecar files, metrics labels.

The forms are those seen in the wild, not only the raw value: a server that redirects echoes the
key percent-encoded in its ``Location`` (``sk%2Blive%2FAB%3D%3D``), a form encoder writes ``+``
for a space, a proxy decodes what it was sent, an ``Authorization: Basic`` header carries
``base64(user:password)``, JSON escapes quotes and backslashes, and a key may sit inside a
longer base64 text at any of the three byte alignments. ``forms`` lists them; a test checks
each form against what ``urllib``, ``httpx`` and ``base64`` produce.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit

REDACTED = "***"
# Base64 fragments shorter than this are not searched for inside longer base64 text: they would
# match by chance and blank out ordinary words. A whole-value encoding is always searched.
MIN_FRAGMENT = 8
# A "secret" shorter than this is not one (a password "p" protects nothing) and redacting it
# would blank out letters of every message: it is not registered.
MIN_SECRET = 4


def _hex_lower(text: str) -> str:
    """``%2B`` spelled ``%2b``: both are valid percent-encodings and servers use either."""
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def _base64_forms(raw: bytes) -> set[str]:
    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode()
        forms |= {whole, whole.rstrip("=")}
        # Inside a longer base64 text the value starts at one of three byte offsets; the
        # characters that encode only its own bytes are the same whatever surrounds them.
        for offset in (1, 2):
            shifted = encode(b"\0" * offset + raw).decode().rstrip("=")
            lead = (offset * 8 + 5) // 6  # characters touched by the padding bytes
            tail = (len(raw) + offset) * 8 % 6  # a last character shared with what follows
            fragment = shifted[lead : len(shifted) - (1 if tail else 0)]
            if len(fragment) >= MIN_FRAGMENT:
                forms.add(fragment)
        tail_bits = len(raw) * 8 % 6
        fragment = whole.rstrip("=")[: -1 if tail_bits else None]
        if len(fragment) >= MIN_FRAGMENT:
            forms.add(fragment)
    return forms


def forms(secret: str) -> set[str]:
    """Every spelling of ``secret`` that ``redact`` removes (the empty string has none)."""
    if not secret:
        return set()
    spellings = {secret, unquote(secret), unquote_plus(secret)}
    out: set[str] = set()
    for value in spellings:
        encoded = {
            value,
            quote(value, safe=""),
            quote(value),  # "/" kept, as in a path
            quote_plus(value, safe=""),
            quote(quote(value, safe=""), safe=""),  # encoded twice (a redirect of a redirect)
            json.dumps(value)[1:-1],
            json.dumps(value, ensure_ascii=False)[1:-1],
        }
        out |= encoded | {_hex_lower(text) for text in encoded}
        out |= _base64_forms(value.encode())
    return {text for text in out if text}


class Redactor:
    """The secrets known to this process and the forms to remove, longest first (so a form
    that contains another is removed whole)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if not secret or len(secret) < MIN_SECRET or secret in self._secrets:
            return
        with self._lock:
            self._secrets.add(secret)
            every = set().union(*(forms(s) for s in self._secrets))
            ordered = sorted(every, key=lambda text: (-len(text), text))
            self._pattern = re.compile("|".join(re.escape(text) for text in ordered))

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(REDACTED, text)

    def __contains__(self, secret: object) -> bool:
        return secret in self._secrets


# The process's secrets: everything that reads one registers it here.
SECRETS = Redactor()


def register(*secrets: str | None) -> None:
    """Remember secrets this process holds, so ``redact`` removes them from what it emits."""
    for secret in secrets:
        SECRETS.add(secret)


def register_url_password(url: str | None) -> None:
    """The password of a service URL (``postgresql://user:pw@host/db``, ``amqp://...``)."""
    if not url:
        return
    with contextlib.suppress(ValueError):
        password = urlsplit(url).password
        if password:
            register(password, unquote(password))


def redact(text: str) -> str:
    """``text`` without any form of any secret this process has registered."""
    return SECRETS(text)


def redact_value(value: object) -> object:
    """``redact`` through strings, lists and dicts (metadata, JSON payloads)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value
