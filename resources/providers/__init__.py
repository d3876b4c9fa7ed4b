"""Provider adapters: how to ask one API for bars and how to read its answers."""

from __future__ import annotations

from resources.errors import InvalidInputError
from resources.providers.base import ProviderAdapter
from resources.providers.binance import BinanceAdapter
from resources.providers.polygon import PolygonAdapter
from resources.simulator.adapter import SimulatorAdapter

_ADAPTERS: dict[str, type[ProviderAdapter]] = {
    adapter.name: adapter for adapter in (SimulatorAdapter, BinanceAdapter, PolygonAdapter)
}


def get_adapter(name: str) -> ProviderAdapter:
    try:
        return _ADAPTERS[name]()
    except KeyError:
        known = ", ".join(sorted(_ADAPTERS))
        raise InvalidInputError(f"unknown provider {name!r}: expected one of {known}") from None


__all__ = [
    "BinanceAdapter",
    "PolygonAdapter",
    "ProviderAdapter",
    "SimulatorAdapter",
    "get_adapter",
    "provider_names",
]


def provider_names() -> list[str]:
    return sorted(_ADAPTERS)
