"""The fast page decoder (msgspec) must be invisible: for any body, each adapter's parse_bars
gives exactly what the precise per-value checks give, and what the code gave before the fast
decoder existed (tests/reference_bars.py): the same frame, bit for bit, the same unknown-field
counts, or the same error with the same message and fields.

Every body below is parsed three ways, as shipped (the fast path, falling back to the precise
one when something is off), with the fast path switched off, and by the reference, and the
outcomes compared.
"""

from __future__ import annotations

import json
import math
import random
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from resources.errors import FinAssetsError
from resources.providers import binance, polygon
from resources.providers.base import ProviderAdapter
from resources.providers.decoding import PAGE_COLUMN, FastBarDecoder, ParsedBars
from resources.simulator import adapter as simulator
from resources.simulator.data import generate_bars
from tests.reference_bars import reference_parse_bars

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PARTITION = "2026-01-05-00:00"
SEEDS = range(60)


def outcome(parse: Callable[[], ParsedBars]) -> tuple[str, Any]:
    try:
        parsed = parse()
    except FinAssetsError as exc:
        return "error", (type(exc), str(exc), dict(vars(exc)))
    return "ok", (parsed.frame, dict(parsed.unknown_fields))


def assert_same_outcome(
    adapter: ProviderAdapter,
    decoder: FastBarDecoder,
    body: bytes,
    symbol: str,
    monkeypatch: pytest.MonkeyPatch,
) -> bool:
    """Compare the shipped adapter, its precise path alone and the code as it was before the
    fast decoder on one body; True if the fast path took it."""

    def shipped() -> ParsedBars:
        return adapter.parse_bars(body, symbol=symbol, partition=PARTITION)

    fast = outcome(shipped)
    with monkeypatch.context() as patch:
        patch.setattr(decoder, "columns", lambda body: None)
        precise = outcome(shipped)
    before = outcome(
        lambda: reference_parse_bars(adapter, body, symbol=symbol, partition=PARTITION)
    )
    for other in (precise, before):
        assert fast[0] == other[0], (body[:300], fast, other)
        if fast[0] == "error":
            assert fast[1] == other[1]
        else:
            assert_frame_equal(fast[1][0], other[1][0], check_exact=True)
            assert fast[1][1] == other[1][1]
    return decoder.columns(body) is not None


# -- mutations: what a provider's schema drift or a broken proxy can do to one value -----------
ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    "1.5",
    "abc",
    "",
    " 7 ",
    "1_000",
    "nan",
    "-inf",
    "2026-01-05T00:00:00Z",
    "2026-01-05 00:00:00",
    0,
    -1,
    2.0,
    0.1,
    -0.0,
    2**63,
    -(2**63) - 1,
    10**30,
    1e308,
    [],
    {},
    [1, 2],
    {"x": 1},
]
# Spellings json.loads accepts and a strict JSON parser does not (or reads differently).
RAW_ODDITIES = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E5", "0.1e-400"]


def mutate_record(record: Any, rng: random.Random) -> Any:
    record = json.loads(json.dumps(record))
    if not isinstance(record, dict | list):  # mutated before into a scalar
        return rng.choice(ODD_VALUES)
    keys = list(range(len(record))) if isinstance(record, list) else list(record)
    action = rng.randrange(6)
    if action == 0 and keys:  # drop a value
        key = rng.choice(keys)
        if isinstance(record, list):
            del record[key:]
        else:
            del record[key]
    elif action == 1 and keys:  # change a value's type
        record[rng.choice(keys)] = rng.choice(ODD_VALUES)
    elif action == 2:  # a new key, or a longer array
        if isinstance(record, list):
            record.append(rng.choice(ODD_VALUES))
        else:
            record[rng.choice(["x", "otc", "T", "vw2", "n"])] = rng.choice(ODD_VALUES)
    elif action == 3:  # a record of another shape
        record = rng.choice([None, 1, "bar", [1, 2, 3], {"t": 1}, list(record) if keys else []])
    elif action == 4 and keys:  # a number written another way
        record[rng.choice(keys)] = f"__RAW_{rng.randrange(len(RAW_ODDITIES))}__"
    return record


def render(payload: Any) -> bytes:
    text = json.dumps(payload, separators=(",", ":"))
    for index, raw in enumerate(RAW_ODDITIES):
        text = text.replace(f'"__RAW_{index}__"', raw)
    return text.encode()


def mutated_bodies(records: list[Any], wrap: Callable[[list[Any]], Any], seed: int) -> list[bytes]:
    rng = random.Random(seed)
    bodies = [render(wrap(records)), render(wrap([])), render(wrap(records[:1]))]
    for _ in range(3):
        changed = [dict(r) if isinstance(r, dict) else list(r) for r in records]
        for _ in range(rng.randint(1, 3)):
            index = rng.randrange(len(changed))
            changed[index] = mutate_record(changed[index], rng)
        bodies.append(render(wrap(changed)))
    body = render(wrap(records))
    cut = rng.randrange(1, len(body))
    bodies.append(body[:cut])  # truncated
    bodies.append(body.replace(b",", b",,", 1))  # malformed
    bodies.append(b"\xef\xbb\xbf" + body)  # a BOM: json.loads accepts it
    bodies.append(body.decode().encode("utf-16"))  # so does UTF-16, with its BOM
    return bodies


# -- per provider -----------------------------------------------------------------------------
def sim_records(seed: int) -> list[dict[str, Any]]:
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 1, 5, tzinfo=UTC) + timedelta(minutes=seed % 1000)
    return generate_bars("AAPL", start, start + timedelta(minutes=8), seed=seed)


def sim_page(bars: list[Any]) -> Any:
    return {
        "symbol": "AAPL",
        "window": {"start": "2026-01-05T00:00:00Z", "end": "2026-01-05T00:08:00Z"},
        "bars": bars,
        "next_cursor": None,
    }


def polygon_records() -> list[dict[str, Any]]:
    page = json.loads((FIXTURES / "polygon" / "aggs_AAPL_2026-01-05T00.json").read_text())
    return page["results"][:8]


def polygon_page(results: list[Any]) -> Any:
    return {"ticker": "AAPL", "status": "OK", "resultsCount": len(results), "results": results}


def binance_records() -> list[list[Any]]:
    klines = json.loads((FIXTURES / "binance" / "klines_BTCUSDT_2026-01-05T00.json").read_text())
    return klines[:8]


def test_simulator_pages_parse_the_same_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    adapter, taken = simulator.SimulatorAdapter(), 0
    for seed in SEEDS:
        for body in mutated_bodies(sim_records(seed), sim_page, seed):
            taken += assert_same_outcome(adapter, simulator.PAGE_DECODER, body, "AAPL", monkeypatch)
    assert 0 < taken < len(SEEDS) * 10  # both paths were exercised


def test_polygon_pages_parse_the_same_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    adapter, taken = polygon.PolygonAdapter(), 0
    for seed in SEEDS:
        for body in mutated_bodies(polygon_records(), polygon_page, seed):
            taken += assert_same_outcome(adapter, polygon.PAGE_DECODER, body, "AAPL", monkeypatch)
    assert 0 < taken < len(SEEDS) * 10


def test_binance_pages_parse_the_same_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    adapter, taken = binance.BinanceAdapter(), 0
    decoder = binance.KLINES_PAGE_DECODER
    for seed in SEEDS:
        for body in mutated_bodies(binance_records(), lambda rows: rows, seed):
            taken += assert_same_outcome(adapter, decoder, body, "BTCUSDT", monkeypatch)
    assert 0 < taken < len(SEEDS) * 10


def test_envelopes_parse_the_same_on_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    bars = sim_records(0)
    cases = (
        [
            (simulator.SimulatorAdapter(), simulator.PAGE_DECODER, "AAPL", body)
            for body in (
                b"[]",
                b"null",
                b'{"bars":null}',
                b'{"bars":{}}',
                b'{"window":{}}',
                render({"bars": bars, "extra": [1, {"a": None}]}),
                render({"bars": [], "bars2": bars}),
                b'{"bars":[],"bars":' + render(bars) + b"}",  # duplicate key: the last one wins
            )
        ]
        + [
            (polygon.PolygonAdapter(), polygon.PAGE_DECODER, "AAPL", body)
            for body in (
                b"{}",  # no results at all: an empty page
                b'{"results":null}',
                b'{"results":{}}',
                b"[]",
                render({"results": polygon_records(), "next_url": "https://x/y?cursor=1"}),
            )
        ]
        + [
            (binance.BinanceAdapter(), binance.KLINES_PAGE_DECODER, "BTCUSDT", body)
            for body in (b"{}", b"[[]]", b"[null]", b'{"code":-1121,"msg":"Invalid symbol."}')
        ]
    )
    for adapter, decoder, symbol, body in cases:
        assert_same_outcome(adapter, decoder, body, symbol, monkeypatch)


def test_clean_pages_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path is what makes core/bars fast: clean pages of every provider must use it."""
    pages = [
        (simulator.SimulatorAdapter(), simulator.PAGE_DECODER, render(sim_page(sim_records(1)))),
        (polygon.PolygonAdapter(), polygon.PAGE_DECODER, render(polygon_page(polygon_records()))),
        (
            binance.BinanceAdapter(),
            binance.KLINES_PAGE_DECODER,
            (FIXTURES / "binance" / "klines_BTCUSDT_2026-01-05T00.json").read_bytes(),
        ),
    ]
    for adapter, decoder, body in pages:
        symbol = "BTCUSDT" if adapter.name == "binance" else "AAPL"
        assert assert_same_outcome(adapter, decoder, body, symbol, monkeypatch)


def test_a_frame_from_the_fast_path_has_the_canonical_values() -> None:
    body = render(sim_page(sim_records(2)))
    frame = simulator.SimulatorAdapter().parse_bars(body, symbol="AAPL").frame
    assert frame["close"].to_list() == [bar["c"] for bar in sim_records(2)]
    assert frame.schema["ts"] == pl.Datetime("us", "UTC")


def test_numbers_decode_to_the_floats_json_loads_gives() -> None:
    """Prices pass through msgspec's number parser on the fast path and json.loads's on the
    precise one: every spelling must give the same float (or both refuse it)."""
    rng = random.Random(11)
    spellings = []
    for _ in range(20_000):
        bits = rng.getrandbits(64)
        value = struct.unpack("d", struct.pack("Q", bits))[0]
        if math.isfinite(value):
            spellings.append(repr(value))
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 25)))
        spellings.append(f"{rng.randint(0, 10**6)}.{digits}e{rng.randint(-330, 310)}")
        spellings.append(f"{rng.uniform(0, 1e5):.{rng.randint(0, 17)}f}")
    template = '{{"bars":[{{"t":"2026-01-05T00:00:00Z","o":{0},"h":{0},"l":{0},"c":{0},"v":{0}}}]}}'
    for spelling in spellings:
        body = template.format(spelling).encode()
        expected = json.loads(body)["bars"][0]["o"]
        columns = simulator.PAGE_DECODER.columns(body)
        if columns is None:  # out of float range: msgspec refuses, the precise path decides
            assert not math.isfinite(float(spelling))
            continue
        assert columns["open"] == [expected]
        assert math.copysign(1.0, columns["open"][0]) == math.copysign(1.0, expected)


# -- several pages at once (parse_pages, what core/bars uses in a range run) -------------------
def assert_pages_parse_as_each_alone(
    adapter: ProviderAdapter, pages: list[tuple[str, bytes]]
) -> str:
    """parse_pages gives each page's parse_bars rows (under its index), the summed unknown
    counts, or the error of the first page that fails alone. Returns "ok" or "error"."""
    alone = [
        outcome(lambda s=s, b=b: adapter.parse_bars(b, symbol=s, partition=PARTITION))
        for s, b in pages
    ]  # type: ignore[misc]
    try:
        together = adapter.parse_pages(pages, partition=PARTITION)
    except FinAssetsError as exc:
        first_error = next(o for o in alone if o[0] == "error")
        assert (type(exc), str(exc), dict(vars(exc))) == first_error[1]
        return "error"
    assert all(o[0] == "ok" for o in alone), [o for o in alone if o[0] == "error"]
    assert together.frame.schema[PAGE_COLUMN] == pl.UInt32()
    unknown: dict[str, int] = {}
    for index, (_, (frame, counts)) in enumerate(alone):
        rows = together.frame.filter(pl.col(PAGE_COLUMN) == index).drop(PAGE_COLUMN)
        assert_frame_equal(rows, frame, check_exact=True)
        for key, count in counts.items():
            unknown[key] = unknown.get(key, 0) + count
    assert together.frame.height == sum(o[1][0].height for o in alone)
    assert dict(together.unknown_fields) == unknown
    return "ok"


@pytest.mark.parametrize("provider", ["simulator", "polygon", "binance"])
def test_pages_parsed_together_equal_each_page_parsed_alone(provider: str) -> None:
    adapter: ProviderAdapter
    if provider == "simulator":
        adapter, symbol = simulator.SimulatorAdapter(), "AAPL"
        clean = [render(sim_page(sim_records(seed))) for seed in range(4)]
        mutated = [b for seed in SEEDS for b in mutated_bodies(sim_records(seed), sim_page, seed)]
    elif provider == "polygon":
        adapter, symbol = polygon.PolygonAdapter(), "AAPL"
        clean = [render(polygon_page(polygon_records()))]
        mutated = [
            b for seed in SEEDS for b in mutated_bodies(polygon_records(), polygon_page, seed)
        ]
    else:
        adapter, symbol = binance.BinanceAdapter(), "BTCUSDT"
        clean = [render(binance_records())]
        mutated = [
            b for seed in SEEDS for b in mutated_bodies(binance_records(), lambda r: r, seed)
        ]
    rng = random.Random(7)
    seen = set()
    for group in range(120):
        size = rng.randint(1, 6)
        bodies = [rng.choice(clean) for _ in range(size)]
        if group % 3:  # two in three groups hold a mutated page somewhere
            bodies[rng.randrange(size)] = rng.choice(mutated)
        pages = [(f"{symbol}{i}" if i else symbol, body) for i, body in enumerate(bodies)]
        seen.add(assert_pages_parse_as_each_alone(adapter, pages))
    assert seen == {"ok", "error"}  # both outcomes were exercised
    assert adapter.parse_pages([]).frame.height == 0


def test_a_bad_timestamp_among_clean_pages_is_named_with_its_symbol() -> None:
    bars = sim_records(3)
    bad = [dict(bar) for bar in bars]
    bad[2]["t"] = "2026-13-45T99:00:00Z"
    pages = [
        ("AAPL", render(sim_page(bars))),
        ("MSFT", render(sim_page(bad))),
        ("IBM", render(sim_page(bars))),
    ]
    with pytest.raises(FinAssetsError) as raised:
        simulator.SimulatorAdapter().parse_pages(pages, partition=PARTITION)
    assert "symbol MSFT" in str(raised.value)
    assert PARTITION in str(raised.value)
    assert raised.value.symbol == "MSFT"  # type: ignore[attr-defined]
