"""The declared sources' markets, read straight from their YAML: cheap (no Dagster import), for
the simulator's command line and the demo, which must serve those markets before anything is
loaded."""

from __future__ import annotations

from pathlib import Path

import yaml

from resources.calendars import TWENTY_FOUR_SEVEN

DEFS_DIR = Path(__file__).resolve().parents[1] / "defs"


def declared_markets(defs_dir: Path = DEFS_DIR) -> dict[str, tuple[str, tuple[str, ...]]]:
    """``{source: (calendar, symbols)}`` of the sources declared under ``defs_dir``, read from
    their YAML without building anything: what a simulator must serve for them."""
    markets = {}
    for path in sorted(defs_dir.glob("*/defs.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not document or not str(document.get("type", "")).endswith("MarketDataSource"):
                continue
            attributes = document.get("attributes", {})
            markets[attributes["name"]] = (
                attributes.get("calendar", TWENTY_FOUR_SEVEN),
                tuple(attributes["symbols"]),
            )
    return markets


def simulator_calendar_args(markets: dict[str, tuple[str, tuple[str, ...]]]) -> list[str]:
    """``--calendar NAME:SYM,...`` for every source on an exchange calendar."""
    return [
        f"--calendar={calendar}:{','.join(symbols)}"
        for calendar, symbols in markets.values()
        if calendar != TWENTY_FOUR_SEVEN
    ]
