"""Massive's splits and dividends: the documented answers read into typed rows, pages kept
verbatim, refusals that name what is wrong, and the typed table built from the kept pages."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from resources.errors import DataValidationError, SchemaError, StorageError
from resources.http.client import MarketApiClient
from resources.providers.polygon import PolygonAdapter
from resources.raw.actions import fetch_corporate_actions, load_actions_manifest
from resources.raw.manifest import Manifest
from resources.raw.snapshots import SnapshotStore
from resources.storage.parquet import ParquetWarehouse
from resources.tables.core import check_unadjusted
from resources.tables.corporate import build_actions_table

BASE = "https://api.massive.com"

# The documented examples (massive.com/docs, /stocks/v1/splits and /stocks/v1/dividends; the
# official client's test mocks carry the same values).
SPLITS_PAGE_1 = {
    "status": "OK",
    "request_id": "36538f14c2ee4f98b68bb4d968a85be4",
    "results": [
        {
            "id": "E91a6b74ca1a9dcbce26a1f34e24ae26ba2c6359822ccf901ecd827f419137654",
            "execution_date": "2014-06-09",
            "split_from": 1.0,
            "split_to": 7.0,
            "ticker": "AAPL",
            "adjustment_type": "forward_split",
            "historical_adjustment_factor": 0.035714,
        }
    ],
    "next_url": f"{BASE}/stocks/v1/splits?cursor=AQcPBEFBUEwCAQAABAAAAQIAAgEJ-8x-AQ8EQUFQTA==",
}
SPLITS_PAGE_2 = {
    "status": "OK",
    "request_id": "5b1c",
    "results": [
        {
            "id": "E36416cce743c3964c5da63e1ef1626c0aece30fb47302eea5a49c0055c04e8d0",
            "execution_date": "2020-08-31",
            "split_from": 1.0,
            "split_to": 4.0,
            "ticker": "AAPL",
            "adjustment_type": "forward_split",
            "historical_adjustment_factor": 0.25,
        }
    ],
}
DIVIDENDS = {
    "request_id": "1",
    "results": [
        {
            "cash_amount": 0.26,
            "currency": "USD",
            "declaration_date": "2025-07-31",
            "distribution_type": "recurring",
            "ex_dividend_date": "2025-08-11",
            "frequency": 4,
            "historical_adjustment_factor": 0.997899,
            "id": "Ed2c9da60abda1e3f0e99a43f6465863c137b671e1f5cd3f833d1fcb4f4eb27fe",
            "pay_date": "2025-08-14",
            "record_date": "2025-08-11",
            "split_adjusted_cash_amount": 0.26,
            "ticker": "AAPL",
        }
    ],
    "status": "OK",
}

Handler = Callable[[httpx.Request], httpx.Response]


def documented(request: httpx.Request) -> httpx.Response:
    query = parse_qs(urlsplit(str(request.url)).query)
    if request.url.path == "/stocks/v1/splits":
        page = SPLITS_PAGE_2 if "cursor" in query else SPLITS_PAGE_1
        return httpx.Response(200, json=page)
    if request.url.path == "/stocks/v1/dividends":
        return httpx.Response(200, json=DIVIDENDS)
    return httpx.Response(404, json={"status": "NOT_FOUND"})


def client_for(handler: Handler) -> MarketApiClient:
    return MarketApiClient(
        PolygonAdapter(),
        base_url=BASE,
        api_key="actions-test-key",
        transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
    )


def test_documented_pages_become_typed_rows_and_verbatim_snapshots(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return documented(request)

    with client_for(handler) as client:
        result = fetch_corporate_actions(
            client, store, ["AAPL", "X:BTCUSD"], now=datetime(2026, 3, 2, 11, tzinfo=UTC)
        )
    # Crypto pairs have no actions: only AAPL is asked, one request per page.
    assert result.symbols == ("AAPL",)
    assert (result.splits, result.dividends, result.snapshots_written) == (2, 1, 3)
    assert [r.url.path for r in seen] == [
        "/stocks/v1/splits",
        "/stocks/v1/splits",
        "/stocks/v1/dividends",
    ]
    first = parse_qs(urlsplit(str(seen[0].url)).query)
    assert first == {"ticker": ["AAPL"], "limit": ["5000"], "sort": ["execution_date.asc"]}
    # The key travels as a bearer token, never in a URL we keep.
    assert all(r.headers["authorization"] == "Bearer actions-test-key" for r in seen)
    manifest = load_actions_manifest(store, manifests="corporate_actions")
    assert manifest is not None and manifest.key == "2026-03-02"
    refs = manifest.symbols["AAPL"]
    assert [len(refs["splits"]), len(refs["dividends"])] == [2, 1]
    # Kept verbatim: the bytes the provider sent.
    assert json.loads(store.read(refs["dividends"][0])) == DIVIDENDS
    for ref in (*refs["splits"], *refs["dividends"]):
        assert "actions-test-key" not in json.dumps(store.read_meta(ref))

    warehouse = ParquetWarehouse(tmp_path / "lake")
    built = build_actions_table(
        store,
        warehouse,
        PolygonAdapter(),
        manifests="corporate_actions",
        table="eq__core_corp_actions",
        symbols=["AAPL"],
        where="source eq (provider polygon)",
    )
    assert (built.rows, built.splits, built.dividends) == (3, 2, 1)
    table = warehouse.read_table("eq__core_corp_actions")
    assert table is not None
    rows = table.sort("ex_date").to_dicts()
    assert [(r["ex_date"], r["kind"], r["split_from"], r["split_to"]) for r in rows[:2]] == [
        (date(2014, 6, 9), "split", 1.0, 7.0),
        (date(2020, 8, 31), "split", 1.0, 4.0),
    ]
    dividend = rows[2]
    assert dividend["cash_amount"] == 0.26 and dividend["currency"] == "USD"
    assert dividend["declaration_date"] == date(2025, 7, 31)
    assert dividend["pay_date"] == date(2025, 8, 14) and dividend["frequency"] == 4
    assert dividend["provider_factor"] == 0.997899 and dividend["action_type"] == "recurring"


def test_the_same_actions_give_the_same_digest_whatever_the_request_ids(tmp_path: Path) -> None:
    digests = []
    for request_id in ("a", "b"):

        def handler(request: httpx.Request, rid: str = request_id) -> httpx.Response:
            response = documented(request)
            body = json.loads(response.content)
            body["request_id"] = rid
            return httpx.Response(200, json=body)

        with client_for(handler) as client:
            digests.append(
                fetch_corporate_actions(client, SnapshotStore(tmp_path), ["AAPL"]).digest
            )
    assert digests[0] == digests[1]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("split_to", None, "results[0].split_to: expected a finite number, got missing"),
        ("split_from", "1", "results[0].split_from: expected a finite number, got str"),
        ("execution_date", "09/06/2014", "results[0].execution_date: expected a date"),
        ("ticker", "MSFT", "asked for ticker AAPL, the answer holds actions of MSFT"),
    ],
)
def test_a_bad_record_is_quarantined_and_named(
    tmp_path: Path, field: str, value: object, expected: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/stocks/v1/splits":
            record = dict(SPLITS_PAGE_2["results"][0])  # type: ignore[index]
            record[field] = value
            return httpx.Response(200, json={"status": "OK", "results": [record]})
        return documented(request)

    store = SnapshotStore(tmp_path)
    with client_for(handler) as client, pytest.raises(SchemaError) as caught:
        fetch_corporate_actions(client, store, ["AAPL"])
    message = str(caught.value)
    assert expected in message and "/stocks/v1/splits" in message
    assert "quarantine" in message
    # Nothing of the refused fetch is taken for the truth: no manifest.
    assert load_actions_manifest(store, manifests="corporate_actions") is None


def test_a_next_url_that_does_not_advance_fails(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=SPLITS_PAGE_1)  # always the same next_url

    with client_for(handler) as client, pytest.raises(Exception, match="did not advance"):
        fetch_corporate_actions(client, SnapshotStore(tmp_path), ["AAPL"])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"split_to": 0.0}, "split_to"),
        ({"ticker": "ZZZ"}, "ZZZ"),
    ],
)
def test_the_typed_table_refuses_a_zero_ratio_or_a_symbol_not_held(
    tmp_path: Path, change: dict[str, object], expected: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/stocks/v1/splits":
            record = {**SPLITS_PAGE_2["results"][0], **change}  # type: ignore[index]
            return httpx.Response(200, json={"status": "OK", "results": [record]})
        return httpx.Response(200, json={"status": "OK", "results": []})

    store = SnapshotStore(tmp_path)
    symbols = ["ZZZ"] if "ticker" in change else ["AAPL"]
    with client_for(handler) as client:
        fetch_corporate_actions(client, store, symbols if "ticker" in change else ["AAPL"])
    warehouse = ParquetWarehouse(tmp_path / "lake")
    with pytest.raises(DataValidationError, match=expected) as caught:
        build_actions_table(
            store,
            warehouse,
            PolygonAdapter(),
            manifests="corporate_actions",
            table="eq__core_corp_actions",
            symbols=["AAPL"],
            where="source eq (provider polygon)",
        )
    assert "source eq" in str(caught.value)
    assert warehouse.read_table("eq__core_corp_actions") is None  # nothing half-written


def test_bars_are_asked_unadjusted_and_old_adjusted_manifests_are_refused() -> None:
    adapter = PolygonAdapter()
    start, end = datetime(2026, 1, 5, 14, tzinfo=UTC), datetime(2026, 1, 5, 15, tzinfo=UTC)
    assert adapter.bars_request("AAPL", start=start, end=end).params["adjusted"] == "false"
    assert adapter.latest_request("AAPL").params["adjusted"] == "false"
    old = Manifest("2026-01-05-14:00", "polygon", start, end, {}, dataset="bars_1m")
    with pytest.raises(StorageError, match="fin-assets migrate-unadjusted us_equities"):
        check_unadjusted(old, adapter, directory="us_equities__raw_bars")
    check_unadjusted(
        Manifest("2026-01-05-14:00", "polygon", start, end, {}, dataset=adapter.bars_dataset),
        adapter,
        directory="us_equities__raw_bars",
    )
