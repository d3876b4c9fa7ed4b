"""Choose the warehouse backend from its URL."""

from __future__ import annotations

from urllib.parse import urlparse

from resources.errors import InvalidInputError
from resources.storage.base import Warehouse
from resources.storage.parquet import ParquetWarehouse


def warehouse_from_url(url: str) -> Warehouse:
    """``parquet:///abs/dir``, ``file:///abs/dir`` or a plain directory path: the Parquet lake;
    ``postgresql://user@host:5432/db`` (or ``postgres://``): PostgreSQL."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file", "parquet"):
        path = parsed.path if parsed.scheme else url
        if not path:
            raise InvalidInputError(f"warehouse URL {url!r} has no directory")
        return ParquetWarehouse(path)
    if parsed.scheme in ("postgresql", "postgres"):
        # Imported here: the Parquet lake does not need psycopg2, and warehouse_postgres
        # imports WriteResult from this module.
        from resources.storage.postgres import PostgresWarehouse

        return PostgresWarehouse(url)
    if parsed.scheme.startswith("postgres"):
        raise InvalidInputError(
            f"unsupported PostgreSQL URL scheme {parsed.scheme!r} in FIN_WAREHOUSE_URL: "
            "use postgresql://user@host:5432/db"
        )
    raise InvalidInputError(
        f"unsupported warehouse URL scheme {parsed.scheme!r} in FIN_WAREHOUSE_URL"
    )
