"""What a base URL identifies: the server a source calls, and the credential it calls it with.

One parse, used for every name derived from a base URL, so none of them can carry its password:
the public URL (quota keys, messages, the metrics exporter), the ``host[:port]`` label (metrics
labels, pool names), the directory raw snapshots are kept under (``Feed``), and the credential
fingerprint (quota keys, and snapshot keys where the provider's answers depend on the plan).

A base URL may hold a user and password (``http://user:pass@proxy:8080``): they are secrets,
registered with ``resources.secrets`` when the URL is parsed, and kept in this process only. The
definitions give resources the public URL (Dagster shows a resource's config in its UI and keeps
it in run records); the client parsing that public URL in a step gets the user and password
back from what the same process registered when it loaded the definitions.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, replace
from urllib.parse import unquote, urlsplit

from resources.errors import InvalidInputError
from resources.secrets import redact, register
from resources.validation import validate_http_url, validate_provider

DEFAULT_PORTS = {"http": 80, "https": 443}
# public URL -> (user, password) of the base URLs this process has parsed.
_CREDENTIALS: dict[str, tuple[str, str | None]] = {}


@dataclass(frozen=True)
class Endpoint:
    """A parsed base URL: ``scheme://host[:port]/path``, and its userinfo kept apart."""

    scheme: str
    host: str  # lower case
    port: int | None  # None: the scheme's default
    path: str  # without a trailing "/"; "" for the root
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, base_url: str, *, where: str | None = None) -> Endpoint:
        """``base_url`` as an endpoint; its password is registered as a secret at once. Anything
        but an ``http(s)://`` URL with a host is refused (``validate_http_url``) naming
        ``where``, never showing a password."""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            parts = urlsplit(base_url)
            if parts.password is not None:
                secret = unquote(parts.password)
                register(parts.password, secret, f"{unquote(parts.username or '')}:{secret}")
        try:
            validate_http_url(base_url)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where}: {exc}" if where else str(exc)) from None
        parts = urlsplit(base_url)
        assert parts.hostname is not None  # validate_http_url checked it
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        port = parts.port
        if port == DEFAULT_PORTS[parts.scheme]:
            port = None
        endpoint = cls(
            scheme=parts.scheme,
            host=parts.hostname.lower(),
            port=port,
            path=parts.path.rstrip("/"),
            username=username,
            password=password,
        )
        if username is not None:
            _CREDENTIALS[endpoint.public_url] = (username, password)
        elif endpoint.public_url in _CREDENTIALS:  # the public URL of one parsed before
            username, password = _CREDENTIALS[endpoint.public_url]
            endpoint = replace(endpoint, username=username, password=password)
        return endpoint

    @property
    def netloc(self) -> str:
        """``host[:port]``: never the user or password."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def public_url(self) -> str:
        """The base URL without user, password, query or trailing slash: safe to show."""
        return f"{self.scheme}://{self.netloc}{self.path}"

    @property
    def label(self) -> str:
        """``host[:port][/path]``: the endpoint in metrics labels, pool names and messages."""
        return f"{self.netloc}{self.path}"

    def fingerprint(self, api_key: str | None) -> str:
        """Who calls: 12 hex digits of a hash of the API key and the URL's user and password
        ("anonymous" without either). Distinct credentials get distinct fingerprints; the
        fingerprint gives nothing back."""
        if self.username is None:
            # The key alone, as quota keys were written before URLs could carry a user.
            return hashlib.sha256(api_key.encode()).hexdigest()[:12] if api_key else "anonymous"
        material = "\0".join([api_key or "", self.username, self.password or ""])
        return hashlib.sha256(material.encode()).hexdigest()[:12]


def endpoint_of(base_url: str) -> str:
    """``host[:port]`` of a base URL, never its user or password (a label, a pool name)."""
    try:
        return Endpoint.parse(base_url).netloc
    except InvalidInputError:
        return urlsplit(base_url).hostname or "invalid"


def public_url(base_url: str) -> str:
    """The base URL as quota keys and ceilings are keyed by: no user, password or slash."""
    try:
        return Endpoint.parse(base_url).public_url
    except InvalidInputError:
        return redact(base_url).rstrip("/")


@dataclass(frozen=True)
class Feed:
    """The key raw snapshots are kept under: one provider's answers from one endpoint, and, for
    a provider whose answers depend on the plan (delayed data, shorter history), one
    credential. Two sources with the same feed share snapshots; any difference keeps them
    apart. ``endpoint=""`` is the layout before endpoints were part of the key (read only).

    A fingerprint cannot tell a new plan from a rotated key of the same plan: after a key
    rotation on such a provider, windows fetched with the old key are fetched again when a run
    asks for them (never mixed with the new key's answers)."""

    provider: str
    endpoint: str = ""  # Endpoint.label
    credential: str = ""  # Endpoint.fingerprint, or "" where the credential does not matter

    @classmethod
    def of(
        cls, provider: str, endpoint: Endpoint, *, api_key: str | None, by_credential: bool
    ) -> Feed:
        return cls(provider, endpoint.label, endpoint.fingerprint(api_key) if by_credential else "")

    @property
    def is_legacy(self) -> bool:
        return not self.endpoint

    @property
    def directory(self) -> str:
        """``<provider>@<host>[_<port>][-<hash of path>][~<credential>]``, or ``<provider>`` for
        the old layout: one directory name, readable where it can be and unambiguous always."""
        validate_provider(self.provider)
        if self.is_legacy:
            return self.provider
        netloc, _, path = self.endpoint.partition("/")
        name = f"{self.provider}@{netloc.replace(':', '_').strip('[]')}"
        if path:
            name += "-" + hashlib.sha256(path.encode()).hexdigest()[:8]
        if self.credential:
            name += f"~{self.credential}"
        return name

    def __str__(self) -> str:
        where = f"{self.provider} at {self.endpoint}" if self.endpoint else self.provider
        return where + (f" (credential {self.credential})" if self.credential else "")
