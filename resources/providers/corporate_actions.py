"""Corporate actions (splits and cash dividends) in Massive's 2026 format: requests and typed rows.

Massive (formerly Polygon.io) launched ``GET /stocks/v1/splits`` and ``GET /stocks/v1/dividends``
in February 2026, deprecating ``/v3/reference/splits`` and ``/v3/reference/dividends``
(https://massive.com/docs/rest/stocks/corporate-actions/splits, .../dividends). The project's
simulator serves the same two routes in the same format, so one reader serves both.

What the documentation says, and what we rely on:
- query ``ticker``, ``limit`` (default 100, at most 5000), ``sort`` (``execution_date.asc``,
  ``ex_dividend_date.asc``); pages chain by an absolute ``next_url`` (we follow only its path and
  query, on the configured base URL, as for aggregates);
- a split: ``ticker, execution_date, split_from, split_to, adjustment_type`` (forward_split,
  reverse_split, stock_dividend), ``historical_adjustment_factor`` (cumulative, to multiply
  earlier prices by), ``id``. The execution date is the first session on the new share basis
  ("on the execution date, all trading is already adjusted for the split");
- a dividend: ``ticker, ex_dividend_date, cash_amount, currency, declaration_date, record_date,
  pay_date, frequency, distribution_type, historical_adjustment_factor,
  split_adjusted_cash_amount, id``; ``cash_amount`` is as paid, NOT split-adjusted ("our
  historical dividends are not adjusted for splits", Massive's knowledge base).

A field we need that is missing or of the wrong type is a SchemaError naming provider, endpoint,
ticker and field; a field we do not know is ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import polars as pl

from resources.errors import SchemaError
from resources.providers.base import ApiRequest
from resources.tables.schemas import CORPORATE_ACTIONS_SCHEMA

ActionDataset = Literal["splits", "dividends"]
ACTION_DATASETS: tuple[ActionDataset, ...] = ("splits", "dividends")
PAGE_LIMIT = 5000  # the documented maximum


@dataclass(frozen=True)
class ActionsPage:
    """The records of one page and the request for the next one (None: the last page)."""

    records: list[Mapping[str, Any]]
    next_request: ApiRequest | None


@dataclass(frozen=True)
class _Spec:
    path: str
    date_field: str  # the date the action takes effect: the table's ex_date


SPECS: dict[ActionDataset, _Spec] = {
    "splits": _Spec("/stocks/v1/splits", "execution_date"),
    "dividends": _Spec("/stocks/v1/dividends", "ex_dividend_date"),
}


class MassiveCorporateActions:
    """Requests and parsing of Massive's splits and dividends endpoints for one provider."""

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def request(self, dataset: ActionDataset, symbol: str) -> ApiRequest:
        """Every action of ``symbol`` in ``dataset``, oldest first, in the largest pages."""
        spec = SPECS[dataset]
        return ApiRequest(
            spec.path,
            {"ticker": symbol, "limit": str(PAGE_LIMIT), "sort": f"{spec.date_field}.asc"},
        )

    def read_page(
        self, payload: Any, *, dataset: ActionDataset, symbol: str, request: ApiRequest
    ) -> ActionsPage:
        where = f"{self.provider} {SPECS[dataset].path}: ticker {symbol}"
        if not isinstance(payload, dict):
            raise SchemaError(
                f"{where}: expected a JSON object, got {type(payload).__name__}",
                provider=self.provider,
                symbol=symbol,
            )
        results = payload.get("results", [])
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise SchemaError(
                f"{where}: field 'results' is not a list of objects",
                provider=self.provider,
                symbol=symbol,
                field="results",
            )
        next_url = payload.get("next_url")
        next_request = None
        if next_url:
            if not isinstance(next_url, str) or not results:
                raise SchemaError(
                    f"{where}: field 'next_url' is not a URL, or comes with no results",
                    provider=self.provider,
                    symbol=symbol,
                    field="next_url",
                )
            split = urlsplit(next_url)
            next_request = ApiRequest(
                split.path, dict(parse_qsl(split.query)), request.headers, request.weight
            )
        return ActionsPage(results, next_request)

    def rows(
        self, records: Sequence[Mapping[str, Any]], *, dataset: ActionDataset, symbol: str
    ) -> pl.DataFrame:
        """Typed rows (CORPORATE_ACTIONS_SCHEMA) of the records of one page."""
        where = f"{self.provider} {SPECS[dataset].path}: ticker {symbol}"
        read = _Reader(self.provider, where, symbol)
        out: list[dict[str, Any]] = []
        for index, record in enumerate(records):
            at = f"results[{index}]"
            ticker = read.text(record, "ticker", at)
            common = {
                "symbol": ticker,
                "provider_factor": read.number(record, "historical_adjustment_factor", at, False),
                "provider_id": read.text(record, "id", at, required=False),
                "provider": self.provider,
            }
            if dataset == "splits":
                out.append(
                    {
                        **common,
                        "ex_date": read.day(record, "execution_date", at),
                        "kind": "split",
                        "action_type": read.text(record, "adjustment_type", at, required=False),
                        "split_from": read.number(record, "split_from", at),
                        "split_to": read.number(record, "split_to", at),
                    }
                )
            else:
                out.append(
                    {
                        **common,
                        "ex_date": read.day(record, "ex_dividend_date", at),
                        "kind": "dividend",
                        "action_type": read.text(record, "distribution_type", at, required=False),
                        "cash_amount": read.number(record, "cash_amount", at),
                        "currency": read.text(record, "currency", at, required=False),
                        "declaration_date": read.day(record, "declaration_date", at, False),
                        "record_date": read.day(record, "record_date", at, False),
                        "pay_date": read.day(record, "pay_date", at, False),
                        "frequency": read.integer(record, "frequency", at, False),
                    }
                )
        return pl.DataFrame(out, schema=CORPORATE_ACTIONS_SCHEMA)


class _Reader:
    """Strict reads of one record's fields; errors name provider, endpoint, ticker and field."""

    def __init__(self, provider: str, where: str, symbol: str) -> None:
        self.provider, self.where, self.symbol = provider, where, symbol

    def _fail(self, at: str, name: str, expected: str, value: Any) -> SchemaError:
        shown = "missing" if value is None else f"{type(value).__name__} {str(value)[:40]!r}"
        return SchemaError(
            f"{self.where}: {at}.{name}: expected {expected}, got {shown}",
            provider=self.provider,
            symbol=self.symbol,
            field=name,
        )

    def text(self, record: Mapping[str, Any], name: str, at: str, required: bool = True) -> Any:
        value = record.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            raise self._fail(at, name, "a string", value)
        return value

    def number(self, record: Mapping[str, Any], name: str, at: str, required: bool = True) -> Any:
        value = record.get(name)
        if value is None and not required:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self._fail(at, name, "a finite number", value)
        return float(value)

    def integer(self, record: Mapping[str, Any], name: str, at: str, required: bool = True) -> Any:
        value = record.get(name)
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(at, name, "an integer", value)
        return value

    def day(self, record: Mapping[str, Any], name: str, at: str, required: bool = True) -> Any:
        value = record.get(name)
        if value is None and not required:
            return None
        try:
            if not isinstance(value, str):
                raise ValueError
            return date.fromisoformat(value)
        except ValueError:
            raise self._fail(at, name, "a date YYYY-MM-DD", value) from None
