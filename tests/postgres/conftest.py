"""A throwaway PostgreSQL database for the tests of the PostgreSQL backends.

``FIN_TEST_POSTGRES_URL`` is an admin URL (default ``postgresql://postgres@127.0.0.1:5432/
postgres``): the session creates ``fin_assets_test_<random hex>`` through it and drops it at the
end. If the server cannot be reached, every test here fails with one line saying how to start it
(``make test`` starts it through tests/setup.sh): a missing server is never a silent skip.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest
from psycopg2 import sql

from tests.helpers import PROJECT_ROOT

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_url() -> str:
    return os.environ.get("FIN_TEST_POSTGRES_URL") or DEFAULT_ADMIN_URL


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


@functools.cache
def unreachable_reason() -> str | None:
    """Why the tests cannot run here (None: the server answers), probed once per session."""
    url = admin_url()
    try:
        psycopg2.connect(url, connect_timeout=3).close()
    except psycopg2.OperationalError as exc:
        where = f"{urlsplit(url).hostname or 'localhost'}:{urlsplit(url).port or 5432}"
        detail = str(exc).strip().splitlines()[0]
        return (
            f"PostgreSQL not reachable at {where} ({detail}): `make test` starts it "
            "(tests/setup.sh), or point FIN_TEST_POSTGRES_URL at a running server"
        )
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Every test here fails with this one line when the server is not there."""
    reason = unreachable_reason()
    if reason is not None:
        pytest.fail(reason, pytrace=False)


@contextlib.contextmanager
def throwaway_database(prefix: str) -> Iterator[str]:
    """URL of a new database ``<prefix><random hex>``, dropped (with its connections) after."""
    admin = psycopg2.connect(admin_url(), connect_timeout=3)
    admin.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    name = f"{prefix}{secrets.token_hex(6)}"
    try:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield _with_database(admin_url(), name)
    finally:
        with admin.cursor() as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        admin.close()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a fresh database, dropped (with its connections) when the session ends."""
    with throwaway_database("fin_assets_test_") as url:
        yield url


@pytest.fixture
def db(pg_url: str) -> Iterator[Any]:
    """A plain autocommit connection, to look at the tables the way an operator would."""
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture
def pg_schema(pg_url: str) -> str:
    """A schema name no other test uses (the warehouse creates it on first write)."""
    return f"t_{secrets.token_hex(4)}"


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """A database of its own for one test (a Dagster instance's tables, say), dropped after."""
    with throwaway_database("fin_assets_instance_") as url:
        yield url


def postgres_instance_env(database_url: str, home: Path) -> dict[str, str]:
    """DAGSTER_HOME holding deploy/postgres/dagster.yaml, and the env vars it reads."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    parts = urlsplit(database_url)
    return {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": parts.hostname or "127.0.0.1",
        "DAGSTER_PG_PORT": str(parts.port or 5432),
        "DAGSTER_PG_DB": parts.path.lstrip("/"),
        "DAGSTER_PG_USERNAME": parts.username or "postgres",
        "DAGSTER_PG_PASSWORD": parts.password or "",
    }
