"""PostgreSQL URLs and connections, shared by the PostgreSQL warehouse and quota store."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg2

POSTGRES_SCHEMES = ("postgresql", "postgres")

CONNECT_TIMEOUT_S = 10


# -- URLs and connections (shared with the PostgreSQL quota store) ----------------------------
def redact_url(url: str) -> str:
    """The URL without its password (in the user info or a ``password=`` parameter)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hosts = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}@{hosts}"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))


def postgres_url_problem(url: str) -> str | None:
    """What libpq would refuse in ``url`` when connecting, found without connecting (so a
    malformed URL fails the load, not the first write), or None."""
    from psycopg2.extensions import parse_dsn

    if urlsplit(url).scheme not in POSTGRES_SCHEMES:
        return f"the scheme must be {' or '.join(POSTGRES_SCHEMES)}"
    try:
        params = parse_dsn(url)
    except psycopg2.ProgrammingError as exc:
        # libpq quotes what it choked on, user info and password included: not in a message.
        return re.sub(r'"[^"]*@[^"]*"', '"..."', str(exc).strip())
    for port in str(params.get("port", "5432")).split(","):
        if not port.isdigit() or not 0 < int(port) < 65536:
            return f"port {port!r} is not a number from 1 to 65535"
    return None


def connect(url: str, *, application_name: str) -> Any:
    """A psycopg2 connection; defaults only for what the URL does not set itself."""
    given = {k for k, _ in parse_qsl(urlsplit(url).query)}
    defaults: dict[str, object] = {
        "connect_timeout": CONNECT_TIMEOUT_S,  # an unreachable host fails instead of hanging
        "application_name": application_name,  # who holds a lock, in pg_stat_activity
    }
    return psycopg2.connect(url, **{k: v for k, v in defaults.items() if k not in given})
